// Package dlqredis keeps dead-lettered messages in Redis (7.0 or later): a
// [Store] that implements [dlq.Store], for consumers that already run
// Redis and can accept what Redis may forget when it fails (see below).
//
//	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs})
//	store, err := dlqredis.New(client, dlqredis.Options{Name: "orders"})
//	if err != nil { ... }
//
// # Layout
//
// A store is named by [Options.Name]; all of its keys carry the hash tag
// {Name}:
//
//	<prefix>{<name>}:idx        sorted set of entry IDs, scored by LastFailedAt in µs
//	<prefix>{<name>}:e:<id>     hash holding one entry
//	<prefix>{<name>}:r:<nonce>  short-lived receipt of a write (see below)
//
// One DLQ therefore lives in one slot, on one node of a cluster, and every
// script that touches several of its keys runs there unchanged. That suits
// a dead-letter queue, which should be small; to spread the load of many
// DLQs, give them different names.
//
// # Guarantees
//
//   - Never drops an entry on its own: entries have no TTL and leave only
//     through Delete, Purge and DeleteReserved (a Replay). This holds only
//     if Redis does not evict them: run it with maxmemory-policy
//     noeviction (or a volatile-* policy, which evicts only keys with a
//     TTL), so that a full Redis refuses writes instead of dropping
//     entries.
//   - The cap refuses, it does not evict: with [Options.MaxEntries] set,
//     Put of a new ID fails with [dlq.ErrFull] while the store holds that
//     many entries. Put is one Lua script that checks the count and writes,
//     so concurrent Puts never pass the cap. Replacing an existing entry is
//     always allowed.
//   - Put of an existing ID replaces the entry in the same script, keeping
//     the earlier FirstFailedAt and ending any reservation.
//   - Reserve is one script: of concurrent reservations of an entry,
//     exactly one wins; the others get [dlq.ErrReserved]. Unreserve and
//     DeleteReserved change the entry only while their token holds a
//     reservation that has not run out, and return [dlq.ErrReserved]
//     otherwise ([dlq.ErrNotFound] when the entry is gone). Deadlines use
//     the Redis server's clock (TIME inside the script), never the
//     client's; leases are kept in whole microseconds, rounded up.
//   - List pages by keyset on (LastFailedAt, ID), with an opaque cursor:
//     an entry present and unchanged throughout a listing is shown exactly
//     once, and finding a page's start costs O(log² n) wherever it is.
//     Equal LastFailedAt are ordered by ID bytewise, as Go compares
//     strings.
//
// An entry comes back exactly as it was put, bytes and all, with nil and
// empty bodies, headers and error chains kept apart, except that
// FirstFailedAt and LastFailedAt keep whole microseconds (rounded down, as
// in dlqpg) and all times come back in UTC. A zero FirstFailedAt or
// EnqueuedAt is stored as unknown.
//
// The index scores are doubles, exact to the microsecond for times between
// the years 1685 and 2255 (within 2^53 µs of 1970). Outside that span,
// LastFailedAt values a few microseconds apart may share a score: List
// then orders them by ID, and a Since or Until bound may take in its
// neighbours. Paging stays exact (no entry skipped or repeated), and
// FirstFailedAt is compared exactly whatever its value.
//
// # Cost of filters
//
// The index knows only LastFailedAt, so a Filter's Since and Until are
// score bounds, and Count without Reason or Source is one ZCOUNT. A
// Reason or Source filter is applied while scanning the time range in Lua,
// reading those two fields of each entry, in scripts of at most 500
// entries each so that Redis serves other clients in between: Count and
// Purge with such a filter cost one read per entry in the time range, and
// a List page as many as lie between its first and last match. Keep DLQs
// small, or give each source its own name, if you filter large ones often.
//
// Count, List and Purge are not snapshots: between two scripts other
// clients run, so entries added, replaced or removed meanwhile may or may
// not be seen. Purge returns exactly the number of entries it deleted.
//
// # Retried calls
//
// go-redis retries a command whose reply was lost, so a script may run
// twice for one call. Put and Reserve are written so that running twice
// does what running once does. Delete, Unreserve, DeleteReserved and each
// batch of Purge leave a small receipt key (for one minute) when they
// change something, so that their retry reports the first run's result
// rather than ErrNotFound, ErrReserved or a short count. A call that still
// fails, or whose context ends, may or may not have taken effect.
//
// # When Redis fails
//
// The store is as durable as the Redis it runs on, and Redis acknowledges
// writes before they are safe on disk or on a replica. A parked message
// has already been acked on its queue, so an entry Redis forgets is a
// message lost for good:
//
//   - Without persistence, a restart loses every parked message.
//   - With AOF and appendfsync everysec, a crash can lose about the last
//     second of Puts; with appendfsync always, an acknowledged Put
//     survives a crash of the server (at a cost in write latency).
//     RDB snapshots alone lose everything since the last snapshot.
//   - Replication is asynchronous: a failover to a replica can lose the
//     writes the old primary had not yet sent, Puts included. WAIT after
//     a Put narrows that window but does not close it.
//
// Forgetting other writes is milder: a lost Delete or DeleteReserved
// brings an entry back (a Replay may then publish it again, which
// consumers dedupe by message ID), and a lost reservation lets another
// Replay take the entry. For a DLQ that must never lose an entry, use AOF
// with appendfsync always, or keep it in PostgreSQL (dlqpg).
package dlqredis
