// Package pgqueue is a queue in a PostgreSQL table: a [Source] that
// implements [consumer.Source] and a [Publisher] that implements
// [consumer.Publisher], for applications that already run PostgreSQL and
// want their messages in the same database, and the same transactions, as
// their data.
//
//	if err := pgqueue.Migrate(ctx, pool, opts); err != nil { ... }
//	src, err := pgqueue.New(pool, opts)   // consume
//	defer src.Close()
//	pub, err := pgqueue.NewPublisher(tx, opts) // publish inside the caller's pgx.Tx
//
// Several logical queues share a table, selected by [Options.Queue]. Every
// Source and Publisher of a queue, in any number of processes, must agree
// on [Options.Table] (spelled the same way), [Options.Queue] and
// [Options.Notify].
//
// # Guarantees
//
//   - At least once. A message is a row until a consumer acknowledges it.
//     Fetch leases rows in one statement (SELECT ... FOR UPDATE SKIP LOCKED
//     inside an UPDATE), so concurrent Fetches never lease one row twice.
//     A lease is the row's visible_at: an unacknowledged row whose lease
//     ends is simply fetchable again. A consumer that crashed, hung or lost
//     its connection loses its messages to the next Fetch once their
//     leases end, with no reaper and nothing to run at start-up.
//   - Attempt is a column, incremented by each lease, so it counts
//     deliveries across consumers, processes and crashes.
//   - Fenced leases. Each lease has a token from a sequence. Ack, Nack and
//     Extend name it and require the lease to be live, in the statement
//     that writes; a stale holder (its lease ended, whether or not another
//     consumer holds the row now) gets an error matching
//     [consumer.ErrLeaseLost] and changes nothing.
//   - The database's clock. Every lease end and delay is computed by
//     PostgreSQL from statement_timestamp(), never from a client's clock,
//     in whole microseconds rounded up. A delivery's Deadline is the local
//     time before the statement was sent plus the visibility timeout, so it
//     never outlasts the lease the database keeps, whatever the clocks say.
//   - Transactional publish. One Publish is one INSERT: all or nothing. Given
//     a pgx.Tx, its messages, and its notification, exist only if and when
//     that transaction commits; this is the transactional outbox without
//     the relay.
//   - Cancellation leaves the queue as it was. A Fetch whose context ends
//     while it sleeps returns at once. The statement that leases rows is not
//     cut off by the context, since a cut-off statement could still commit
//     leases whose rows nobody receives; if the context ended meanwhile,
//     Fetch puts the rows back as they were (Attempt included) and returns
//     the context's error.
//   - Grouped acks. Acks of one Source that arrive while an earlier ack
//     statement runs are deleted together by the next one, and each Ack
//     learns its own outcome. At most two ack statements per Source run at
//     once; an idle Source acks in one round trip.
//   - Drivers report, the core decides: errors are returned as they are,
//     with nothing retried. The one exception is the LISTEN connection,
//     which is an optimisation: see Waking up.
//
// What it does not give:
//
//   - Order. Fetch takes the rows that became visible first, oldest
//     first, and a batch is returned in that order, but concurrent
//     consumers, Nacks and expired leases reorder messages. Use
//     [consumer.Config.OrderByKey] within a consumer; across consumers,
//     nothing here partitions keys.
//   - Exactly once. A handler may run again after a crash or a lost lease;
//     make its effect idempotent (package idempotency). If the connection
//     dies after the fetch statement committed but before its rows arrived,
//     those leases run out unused and Attempt counts them.
//   - Dead-lettering, retention or priorities: a row stays until it is
//     acknowledged. Park poison messages with package dlq.
//   - Text beyond what PostgreSQL's text keeps: IDs, keys and headers must be
//     valid UTF-8 without NUL bytes (Publish refuses others rather than alter
//     them); bodies are bytea and may hold anything. EnqueuedAt keeps
//     microseconds.
//
// # Schema
//
// [Migrate] creates, if they do not exist, the table (default
// [DefaultTable]), a sequence for lease tokens and the fetch index, all
// named after the table:
//
//	id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY
//	queue       text        NOT NULL
//	message_id  text        NOT NULL
//	key         text        NOT NULL DEFAULT ''
//	body        bytea                 -- NULL for a nil body
//	headers     jsonb                 -- {"name": "value"}; NULL for no headers
//	attempts    integer     NOT NULL  -- deliveries made
//	enqueued_at timestamptz NOT NULL
//	visible_at  timestamptz NOT NULL  -- publish time, end of a Nack's delay, or lease end
//	lease_token bigint                -- set while a consumer holds the row
//
//	<table>_lease_seq   sequence of lease tokens
//	<table>_fetch_idx   (queue, visible_at, id)
//
// [Schema] returns the same SQL for migration tools. Table names are
// lower-case identifiers, optionally schema-qualified ("jobs.queue");
// anything else is refused with [ErrInvalidTable].
//
// # Waking up
//
// Polling is always on. A Fetch that finds nothing asks the fetch index
// when the queue's earliest row becomes visible (the end of a lease or of
// a Nack's delay) and sleeps until then, or [Options.PollInterval] (1s by
// default), whichever is sooner: a 600ms Nack delay is honoured after
// 600ms, not after the next poll. A Nack through a Source also wakes that
// Source's waiting Fetches at once.
//
// With [Options.Notify], each Publish and each Nack also notifies a
// channel named after the table and queue, from the same statement, so the
// notification is sent when (and only if) it commits. Each Source then keeps
// one connection of its pool, hijacked (outside the pool's MaxConns), for
// LISTEN, and wakes its waiting Fetches when notified: at most once per
// [Options.NotifyThrottle], with notifications in between folded into one
// wake-up at its end. When that connection breaks, the Source logs it
// (through [Options.Logger]), goes on polling and connects again with
// backoff (100ms doubling to 10s); it pings the connection after 30s of
// silence to notice a peer that vanished. [Source.Close] ends it. With
// Notify on, the poll interval only matters when the LISTEN connection is
// down or rows are changed by hand, so it can be long.
//
// # Operating the table
//
// A queue table churns: every delivery writes a new row version (the lease
// moves visible_at, which is indexed, so these updates are never HOT), and
// every ack deletes one. Dead versions pile up in the table and the fetch
// index at the rate of the traffic, not of the backlog, and each Fetch walks
// past the dead index entries at the head of its queue until vacuum
// removes them. To keep Fetch fast, let autovacuum visit the table often
// and finish quickly. Its default trigger (20% of the table dead) suits
// tables that grow, not a queue whose live rows are few; for example:
//
//	ALTER TABLE idemq_queue SET (
//	    autovacuum_vacuum_scale_factor  = 0.01,
//	    autovacuum_vacuum_threshold     = 1000,
//	    autovacuum_vacuum_cost_delay    = 0,
//	    autovacuum_analyze_scale_factor = 0.05,
//	    fillfactor                      = 80);
//
// Also:
//
//   - Keep every transaction in the database short, including those that
//     never touch the queue: vacuum cannot remove a row version that a
//     running transaction might still see, so one long transaction, a
//     session idle in transaction, a stale replication slot, or a long query
//     on a standby with hot_standby_feedback holds back the cleanup of the
//     whole queue. Set idle_in_transaction_session_timeout, and do not hold
//     a transaction open in a handler across slow calls.
//   - A fillfactor below 100 (70 to 90) lets a lease's new row version
//     usually go on the same page as the old one.
//   - Watch n_dead_tup and last_autovacuum in pg_stat_user_tables. If the
//     fetch index has bloated after an outage, REINDEX INDEX CONCURRENTLY
//     rebuilds it without blocking the queue.
//
// PgBouncer in transaction mode works with polling: every statement stands
// alone. Use a pgx query mode it supports (QueryExecModeExec or
// QueryExecModeSimpleProtocol, or prepared statements with PgBouncer 1.21's
// max_prepared_statements). LISTEN needs a session of its own, so leave
// Notify off behind transaction pooling, or give the Source a pool that
// connects directly.
package pgqueue
