// Package outbox publishes events if and only if the PostgreSQL transaction
// that produced them commits: the transactional outbox.
//
// A [Writer] writes events into outbox tables in the caller's transaction,
// beside the business change they announce; a [Relay] reads them back and
// publishes them through a [Publisher] to a broker, such as a Redis stream
// (package redisstream), a PostgreSQL queue (pgqueue), the in-memory queue
// (consumer.MemQueue) or your own:
//
//	if err := outbox.Migrate(ctx, pool, opts); err != nil { ... }
//	w, err := outbox.NewWriter(opts)
//	err = w.Enqueue(ctx, tx, outbox.Message{ID: "order-42-paid", Key: "order-42", Destination: "orders", Body: body})
//	// ... tx.Commit(ctx)
//
//	relay, err := outbox.NewRelay(pool, outbox.Route(map[string]consumer.Publisher{"orders": orders}), opts)
//	err = relay.Run(ctx)
//
// Every Writer and Relay of one outbox, in any number of processes, must
// agree on [Options.Table] (spelled the same way) and [Options.Notify].
//
// # Guarantees
//
//   - Atomic with the business change. Enqueue is one statement in the
//     caller's transaction: its events, and its notification, exist if and
//     when that transaction commits, and never if it rolls back.
//   - At least once. An event stays in the table until a relay has
//     published it and recorded so. A relay that crashes, hangs or loses
//     its connection loses its keys to another relay when its lease
//     ([Options.Lease], 30s by default) ends, and that relay publishes
//     them again from the last recorded point: nothing is lost, and events
//     published but not recorded are published twice.
//   - Per-key commit order. Events that share a [Message.Key] are
//     published in the order their transactions committed, one at a time,
//     however many writers and relays there are and in whatever order the
//     writers' IDs were handed out. Enqueue numbers a key's events from a
//     per-key counter that it increments with an upsert, whose row lock the
//     transaction holds until it ends: a second writer of the key gets the
//     next number only once the first has committed (or rolled back, which
//     undoes its increment). So a key's numbers are its commit order, with
//     no gaps, and a relay never skips an event that a slow transaction
//     commits late: it publishes a key's events strictly in number order
//     and stops at the first one not yet committed.
//   - One relay per key. A relay claims keys, not events, with a lease on
//     the key's cursor (FOR UPDATE SKIP LOCKED, so claiming relays pass
//     over each other's keys), publishes each key's events in order,
//     different keys in parallel ([Options.Concurrency]), and records each
//     key's progress conditionally on its fencing token: a relay whose
//     lease ended changes nothing. Several relays, in any number of
//     processes, run side by side safely.
//   - Relays never wait for writers' transactions: they keep their state
//     in rows writers do not lock, and touch a key's counter only with
//     SKIP LOCKED, to delete it once every number given out is published.
//     Writers never wait for a relay's publishing, only, at most, for one
//     of its short statements on their key.
//   - The message ID travels. A relayed message's ID is the event's
//     [Message.ID], also in the [HeaderID] header, so consumers dedupe
//     redeliveries with package idempotency: at least once from the
//     outbox, one effect in the consumer.
//   - Failures are retried with backoff ([Options.Backoff]), never
//     dropped. An event that keeps failing ([Options.MaxAttempts], or
//     once for a [consumer.Permanent] error) is moved to the failed table
//     and counted, and its key goes on ([Skip], the default), or it holds
//     its key until it succeeds ([Block]). [Writer.Requeue] brings failed
//     events back.
//   - The database's clock. Leases, retry times, retention and ages are
//     computed by PostgreSQL, never from a client's clock.
//
// What it does not give:
//
//   - Exactly once. An event can be published twice: after a relay's
//     crash or lost lease, or when a Publish call that failed had in fact
//     delivered some messages. Make consumers idempotent.
//   - Order among duplicates. A duplicate can arrive after later events
//     of its key (a relay whose lease ended may finish a call late), but
//     first deliveries are always in order: a consumer that skips
//     duplicates sees each key in commit order.
//   - Order across keys, or for events without a key: those are published
//     in parallel, roughly oldest first.
//   - Order past a skipped event. Under [Skip], a key's later events go on
//     without the event moved aside; requeued, it comes after them.
//   - Order a Publisher does not keep. The relay calls Publish for a key's
//     events one call after the other and waits for each; a broker that
//     reorders accepted messages, or a consumer that runs one key's
//     messages concurrently, loses the order anyway (see
//     consumer.Config.OrderByKey).
//   - Free concurrency on a key. Writers of one key commit one at a time:
//     a transaction that enqueues on a key and then runs long holds up the
//     key's other writers (not its relaying, nor other keys). Under
//     REPEATABLE READ or SERIALIZABLE, the second of two concurrent
//     writers of a key fails with a serialization error, to be retried.
//
// # Events without a key
//
// An event with an empty Key gets no number and no counter: it is leased
// on its own row, like a message of package pgqueue, and events without a
// key are published in parallel, in batches of one destination. That is
// the cheapest path through the outbox; give a key only to events whose
// order matters.
//
// # Publishers and destinations
//
// [Message.Destination] says where an event goes. The relay hands it to its
// [Publisher] with each call, a key's consecutive events of one destination
// in one call; [Route] sends each destination to a consumer.Publisher of its
// own, [To] sends everything to one, and [PublisherFunc] adapts any
// function. When a call of several events fails, the relay tries them one
// by one, so that only the failing event counts an attempt.
//
// # Schema
//
// [Migrate] creates, if they do not exist, these relations, all named after
// [Options.Table] (default [DefaultTable]); [Schema] returns the same SQL
// for migration tools:
//
//	<table>            the events: pending ones, and published ones kept for Options.Retention
//	<table>_keys       writers' per-key counters: the last number given out
//	<table>_cursors    relays' per-key progress (published_seq) and lease
//	<table>_failed     events given up on, until you requeue or delete them
//	<table>_awake      one row: until when a relay has promised to look often (see below)
//	<table>_token_seq  lease tokens
//
// A key has a counter and a cursor from its first Enqueue until a relay
// has published every event of it; then both are deleted, so the tables
// hold the keys with events in flight, not every key ever used. Table names
// are lower-case identifiers, optionally schema-qualified ("ops.outbox");
// anything else is refused with [ErrInvalidTable]. IDs, keys, destinations
// and headers must be valid UTF-8 without NUL bytes (Enqueue refuses
// others rather than alter them); bodies may hold any bytes.
//
// Published events are deleted at once, or, with [Options.Retention],
// marked with the time they were published and deleted in batches by the
// relays ([Options.CleanupInterval]) once the retention has passed. Nothing
// deletes failed events: inspect them in the failed table, requeue them
// with [Writer.Requeue], or delete them by hand.
//
// # Waking up
//
// Polling is always on: an idle relay looks again after
// [Options.PollInterval] (1s by default). With [Options.Notify], Enqueue
// also notifies the relays, from its own statement, so the notification is
// sent when (and only if) the transaction commits, and each relay keeps a
// connection of its pool, hijacked, for LISTEN, waking at most once per
// [Options.NotifyThrottle]. When that connection breaks, the relay logs
// it, goes on polling and connects again with backoff.
//
// A notification is not free: PostgreSQL serialises the commits of all
// transactions that notify, so one per Enqueue would cap a busy outbox at a
// few hundred commits a second. So a relay that has just found events, or
// was just notified, goes on looking every NotifyThrottle for a second, and
// promises so in the awake row; writers do not notify while a promise has
// more than half a second left. Events are then relayed within about
// NotifyThrottle of their commit, by polling, and writers notify only a
// relay that may be asleep. (A transaction that commits more than half a
// second after its Enqueue, while a relay was awake, may wait for the next
// poll; so may events committed in the second after a relay that had
// promised stopped or died.) A busy relay takes everything ready in each
// batch, and looks again at once when a batch came back full.
//
// # Observability
//
// A relay reports to [Options.Observer]: [MetricPublished],
// [MetricPublishErrors] and [MetricFailures] as they happen, and every
// [Options.StatsInterval] the count of pending events ([MetricPending], a
// gauge) and the age of the oldest ([MetricLag]), which grows while a key
// is blocked or the relays fall behind. Each relay counts the whole
// outbox: with several relays on one observer, turn the statistics off on
// all but one.
//
// # Operating the tables
//
// The outbox churns: every event is inserted and deleted, and every batch
// updates cursors. Let autovacuum visit the tables often (see the advice in
// package pgqueue), keep every transaction in the database short, and keep
// those that enqueue on busy keys shortest: they hold their keys. A relay
// uses at most two connections of its pool at once, plus, with Notify, one
// it hijacks for LISTEN. LISTEN needs a session of its own, so behind
// PgBouncer in transaction mode leave Notify off (on writers and relays
// alike) and let polling, with a short PollInterval, do the work.
package outbox
