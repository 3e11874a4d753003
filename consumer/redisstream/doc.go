// Package redisstream is a queue driver on Redis Streams (Redis 7.0 or
// later): a [Source] that consumes a stream as one consumer of a consumer
// group, and a [Publisher] that adds to it. Together they keep the whole
// [consumer.Source] contract, and they pass package consumertest against a
// real server.
//
//	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs})
//	src, err := redisstream.New(client, redisstream.Options{Stream: "orders"})
//	if err != nil { ... }
//	c, err := consumer.New(src, handler, consumer.Config{})
//	if err != nil { ... }
//	err = c.Run(ctx)
//
//	pub, err := redisstream.NewPublisher(client, redisstream.PublisherOptions{Stream: "orders"})
//	err = pub.Publish(ctx, consumer.Message{ID: "order-1", Body: body})
//
// # Keys
//
// A stream named S lives in two keys, "<Prefix>{S}:stream" (the stream,
// with its consumer group) and "<Prefix>{S}:delayed" (a sorted set of
// messages nacked with a delay). The hash tag {S} puts both in one slot, so
// every change that touches both is one Lua script and the driver runs on
// Redis Cluster unchanged; it also means one stream is served by one
// primary, however large the cluster. Split a busy queue into several
// streams to spread it.
//
// Each message is one stream entry whose fields hold its ID, Key, Body,
// Headers (packed into one binary-safe field) and EnqueuedAt. Entries added
// by other tools are delivered too, with the entry ID standing in for the
// message ID.
//
// # Leases and attempts
//
// Fetch reads new entries with XREADGROUP and reclaims, with XAUTOCLAIM,
// entries that have been idle for VisibilityTimeout: that is how the
// messages of a consumer that crashed, hung or lost its connection come
// back. A delivery's lease is the pair (consumer name, delivery counter at
// fetch); Ack, Nack and Extend are scripts that first check, in the pending
// entries list, that the entry is still pending, owned by that consumer,
// with that counter, and idle for less than VisibilityTimeout, and change
// nothing otherwise (the error matches [consumer.ErrLeaseLost]). Extend
// resets the idle time with XCLAIM ... JUSTID, which does not count as a
// delivery. Deadline is VisibilityTimeout after the call that took or
// extended the lease began, by the local clock, so it errs early; the
// server's idle time decides.
//
// Ack acknowledges and deletes the entry (XACK and XDEL in one script), so
// the stream holds only messages that no one has acknowledged, and nothing
// is ever trimmed. Concurrent Acks on one Source share script calls, one in
// flight at a time, which is what lets a Source acknowledge tens of
// thousands of messages a second.
//
// Nack deletes the entry and adds the message again, at once at the
// stream's tail or, with a delay, to the delayed set scored by the server's
// clock; every Fetch first moves the due ones back into the stream. The
// new entry carries the deliveries made so far, so [consumer.Message.Attempt]
// (the entry's delivery counter plus that carried count) goes on counting
// across Nacks, reclaims and consumers. A renacked message goes to the back
// of the queue: the stream keeps no order among redeliveries.
//
// # Timing
//
// Fetch blocks in XREADGROUP for at most Block (2s) at a time. A lapsed
// lease is reclaimed by the next Fetch round of any consumer, so when every
// consumer is idle, up to about Block plus a second after it lapsed; a
// message nacked with a delay likewise comes back up to about Block after
// it is due when no Fetch round runs sooner. Neither ever comes early.
// Fetch notices cancellation between rounds, so it returns up to Block
// after ctx is done (see [Source.Fetch]), and a Consumer's shutdown takes
// that much longer.
//
// # Errors and retries
//
// The driver reports errors and never retries on its own. go-redis,
// though, resends a command whose reply was lost (MaxRetries); for these
// scripts that means a lost reply to a Fetch leaves what it took pending
// under this consumer until VisibilityTimeout, when it is redelivered with
// Attempt increased; a resent Ack or Nack finds its own change made and
// reports [consumer.ErrLeaseLost] although it took effect; a resent
// Publish adds the messages twice, under the same IDs. None of that loses
// a message: delivery is at least once, and handlers must be idempotent
// (package idempotency) in any case.
//
// Consumer names: each Source is one consumer of the group, by default
// with a name unique to the Source. Redis keeps a consumer's name in the
// group (XINFO CONSUMERS) until it is deleted, so processes that come and
// go leave names behind. Remove one with XGROUP DELCONSUMER only once
// XPENDING shows it holds nothing: deleting a consumer drops its pending
// entries from the group, and those messages would never be delivered
// again.
//
// # When Redis fails
//
// The queue is as durable as the Redis it runs on, and Redis acknowledges
// writes before they are safe on disk or on a replica:
//
//   - Without persistence, a restart loses every message, and the group.
//   - With AOF and appendfsync everysec, a crash can lose about the last
//     second of writes: published messages vanish, and acknowledged ones
//     can come back (to be handled again).
//   - Replication is asynchronous: a failover to a replica can lose the
//     writes the old primary had not yet sent, with the same effects.
//
// Memory grows with the messages no one has acknowledged: those waiting,
// those held and those in the delayed set. A stalled consumer fleet makes
// the stream grow until Redis's maxmemory; [PublisherOptions.MaxLen] caps
// it by refusing to publish rather than by dropping messages.
package redisstream
