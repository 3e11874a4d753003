// Package dlqpg keeps dead-lettered messages in PostgreSQL: a [Store] that
// implements [dlq.Store] on one table.
//
// # Guarantees
//
//   - Durable: Put returns once the entry is committed (or, when the DBTX
//     is a pgx.Tx, once it is written in that transaction, which the
//     caller commits).
//   - Never drops an entry on its own: entries leave only through Delete,
//     Purge and DeleteReserved (a Replay). There is no retention and no
//     eviction; operators purge explicitly, and Purge counts what it
//     removed.
//   - The cap refuses, it does not evict: with [Options.MaxEntries] set,
//     Put of a new ID fails with [dlq.ErrFull] while the table holds that
//     many entries, and the message stays on its queue. The check is
//     atomic under concurrency, across processes: a per-table advisory
//     lock, taken for a transaction that holds only the lock and the
//     insert, makes capped Puts count one after another. Replacing an
//     existing entry is always allowed. Capped Puts need READ COMMITTED
//     (the default); in a pgx.Tx at a stricter level they fail with an
//     error rather than risk passing the cap, and in any pgx.Tx the lock
//     is held until that transaction ends.
//   - Put of an existing ID replaces the entry in one INSERT ... ON
//     CONFLICT DO UPDATE statement, keeping the earlier FirstFailedAt and
//     ending any reservation.
//   - Reserve is one conditional UPDATE: of concurrent reservations of an
//     entry, exactly one wins; the others get [dlq.ErrReserved].
//     Unreserve and DeleteReserved change the entry only while their token
//     holds a reservation that has not run out, and return
//     [dlq.ErrReserved] otherwise ([dlq.ErrNotFound] when the entry is
//     gone). Reservation deadlines use the database's clock
//     (statement_timestamp()), never the client's; leases are passed in
//     whole microseconds, rounded up.
//   - List pages by keyset on (last_failed_at, id), with an opaque cursor:
//     an entry present throughout a listing is shown exactly once, and a
//     page costs the same wherever it starts. Filters run in SQL and
//     select exactly what [dlq.Filter.Match] selects of the entries as Get
//     returns them (bounds finer than a microsecond included).
//
// An entry is stored exactly as given, with two limits of PostgreSQL:
// times keep microseconds (they come back in UTC), and text (IDs, key,
// source, reason, errors, header names and values) must be valid UTF-8
// without NUL bytes; Put refuses anything else with an error rather than
// altering it. The body is bytea and may hold any bytes. Nil and empty
// bodies, headers and error chains stay apart, and a zero EnqueuedAt or
// FirstFailedAt is stored as NULL (unknown): replacing an entry keeps the
// earlier of two known first failures.
//
// # Schema
//
// [Migrate] creates, if they do not exist, a table (default
// [DefaultTable]) and three indexes named after it:
//
//	id              text COLLATE "C" PRIMARY KEY  -- bytewise, as Go orders strings
//	message_id      text        NOT NULL
//	message_key     text        NOT NULL
//	body            bytea                 -- NULL for a nil body
//	headers         jsonb                 -- {"name": "value"}; NULL for nil headers
//	attempt         bigint      NOT NULL
//	enqueued_at     timestamptz           -- NULL when unknown
//	source          text        NOT NULL
//	reason          text        NOT NULL
//	error           text        NOT NULL
//	error_chain     text[]                -- outermost first
//	attempts        bigint      NOT NULL
//	first_failed_at timestamptz           -- NULL when unknown
//	last_failed_at  timestamptz NOT NULL
//	reserved_token  text                  -- set while a replay holds the entry
//	reserved_until  timestamptz
//
//	<table>_last_failed_at_idx  (last_failed_at, id)          -- listing
//	<table>_reason_idx          (reason, last_failed_at, id)  -- by reason
//	<table>_source_idx          (source, last_failed_at, id)  -- by source
//
// [Schema] returns the same SQL for migration tools. Table names are
// lower-case identifiers, optionally schema-qualified ("ops.dead_letters");
// anything else is refused with [ErrInvalidTable].
package dlqpg
