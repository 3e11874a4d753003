// Package idempotencypg keeps idempotency keys in PostgreSQL, in two ways:
// a [Store] for the [idempotency] middleware, and a transactional [Inbox]
// whose keys commit with the handler's own writes.
//
// # Store
//
// [Store] implements [idempotency.Store] on one table. Its guarantees:
//
//   - Claim is atomic: one INSERT ... ON CONFLICT DO UPDATE ... WHERE
//     statement takes an absent key, or one whose lease or retention has
//     run out, and returns a new fencing token; of any number of
//     concurrent claims of a key, exactly one is Claimed.
//   - Tokens come from a sequence, so a key's tokens only grow, across
//     releases, takeovers and the reaper's deletions alike.
//   - Extend, Complete and Release are single statements conditional on
//     the token still holding the claim (the key in progress, its lease
//     not run out, not claimed since); otherwise they change nothing and
//     return [idempotency.ErrStaleToken].
//   - Every deadline is computed on the database's clock
//     (statement_timestamp()), never the client's, so consumers with
//     skewed clocks agree on when a lease runs out. Durations are passed
//     in whole microseconds, PostgreSQL's resolution, rounded up.
//
// A key whose lease or retention has run out is absent to Claim at once;
// its row stays until [Store.DeleteExpired] or [Store.RunReaper] deletes
// it, which only reclaims space.
//
// Keys are text: valid UTF-8 without NUL bytes, and short enough for a
// btree index entry (well under 2kB; the middleware's MaxKeyLen sees to
// that).
//
// # Schema
//
// [Migrate] creates, if they do not exist, a table (default
// [DefaultTable]), a sequence named after it with the suffix _token_seq,
// and an index on expires_at for the reaper:
//
//	key         text        PRIMARY KEY
//	fingerprint text        NOT NULL DEFAULT ''
//	state       text        NOT NULL  -- 'in progress' or 'completed'
//	token       bigint      NOT NULL  -- nextval of the sequence
//	result      bytea
//	expires_at  timestamptz NOT NULL  -- end of the lease or the retention
//	created_at  timestamptz NOT NULL DEFAULT now()
//
// [MigrateInbox] creates the inbox's table (default [DefaultInboxTable]):
// key text PRIMARY KEY and processed_at timestamptz, with an index on
// processed_at. [Schema] and [InboxSchema] return the same SQL for
// migration tools. Table names are lower-case identifiers, optionally
// schema-qualified ("jobs.idempotency_keys"); anything else is refused
// with [ErrInvalidTable].
//
// # Inbox or Store
//
// The two differ in what a crash can do.
//
// With the [Store] (or any store outside the handler's database), the
// effect and the completion of the key are two writes. If the process
// dies after the effect but before Complete, the claim's lease runs out
// and the redelivery runs the handler again: the effect happens twice,
// unless it is idempotent itself (the fencing token helps downstream
// systems refuse stale writers).
//
// With the [Inbox], the handler's business writes and the row recording
// the message's key commit in one transaction. A crash before the commit
// leaves neither, so the redelivery runs the handler on a clean slate; a
// commit leaves both, so the redelivery is skipped. A duplicate that
// arrives while the first delivery is running waits on the key's primary
// key index, then is skipped if the first committed. This covers only
// writes made through the transaction from [TxFromContext]: calls to
// other systems from the handler are not rolled back.
//
// Inbox keys have no lease: they are kept until [DeleteInboxOlderThan]
// or [RunInboxReaper] deletes them, which must not happen before the
// same message can no longer arrive: the broker's redelivery horizon plus
// the longest time a message may wait in a dead-letter queue before it is
// replayed.
package idempotencypg
