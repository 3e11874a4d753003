package outbox

import (
	"fmt"
	"strings"

	"github.com/idemq/idemq/internal/pgschema"
)

// Statements of the Writer and the Relay. Every time comes from the
// database's clock: statement_timestamp(), which in a transaction still
// moves from statement to statement.
//
// Writers touch {keys} rows (and hold their locks until they commit) and
// insert events; relays touch {cursors} rows and events, and lock a {keys}
// row only with SKIP LOCKED, to delete it once its key is fully published.
// So a relay never waits for a writer's transaction, and a writer waits
// for a relay only while one of its short statements runs.
type queries struct {
	enqueue, requeue                     string
	advertise                            string
	claimKeys, claimUnkeyed              string
	lockLanes, moveFailed, recordRetries string
	ackLanes, ackUnkeyed                 string
	cleanup, stats                       string
}

// enqueueFrom is the body of the enqueue statement after a CTE named input
// that yields (message_id, key, destination, body, headers, n), n giving
// the order.
//
// counts has the number of events per key. k bumps each key's counter by
// that many, in key order (so that two transactions enqueueing on the same
// keys lock them in the same order and cannot deadlock), and returns the
// new last seq; the key's events get the seqs just below it, in input
// order. A counter row that was inserted, not updated (its seq equals the
// count), is a new key, which also needs its cursor. Events without a key
// get no seq and are claimable at once (visible_at).
const enqueueFrom = `, counts AS (
    SELECT key, count(*) AS c FROM input WHERE key <> '' GROUP BY key
), k AS (
    INSERT INTO {keys} AS k (key, seq)
    SELECT key, c FROM counts ORDER BY key
    ON CONFLICT (key) DO UPDATE SET seq = k.seq + excluded.seq
    RETURNING k.key, k.seq
), cur AS (
    INSERT INTO {cursors} (key, ready_at)
    SELECT k.key, {ts} FROM k JOIN counts USING (key) WHERE k.seq = counts.c
    ON CONFLICT (key) DO NOTHING
), e AS (
    INSERT INTO {table} (message_id, key, seq, destination, body, headers, enqueued_at, visible_at)
    SELECT i.message_id, i.key,
           k.seq - counts.c + row_number() OVER (PARTITION BY i.key ORDER BY i.n),
           i.destination, i.body, i.headers, {ts},
           CASE WHEN i.key = '' THEN {ts} END
    FROM input i LEFT JOIN k ON k.key = i.key LEFT JOIN counts ON counts.key = i.key
    ORDER BY i.n
)
`

func newQueries(t pgschema.Name, notify bool, retention bool) queries {
	r := strings.NewReplacer(
		"{table}", t.Ident(),
		"{keys}", t.Sibling(keysSuffix),
		"{cursors}", t.Sibling(cursorsSuffix),
		"{failed}", t.Sibling(failedSuffix),
		"{awake}", t.Sibling(awakeSuffix),
		"{seq}", pgschema.Literal(t.Sibling(tokenSeqSuffix)),
		"{ts}", "statement_timestamp()",
	)
	enqueue := `
WITH input AS (
    SELECT u.message_id, u.key, u.destination, u.body, u.headers::jsonb AS headers, u.n
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[])
         WITH ORDINALITY AS u(message_id, key, destination, body, headers, n)
)` + enqueueFrom
	// requeue moves failed events back, each key's in their old order,
	// behind the events its key has now.
	requeue := `
WITH m AS (
    DELETE FROM {failed} WHERE message_id = ANY ($1::text[])
    RETURNING id, message_id, key, seq, destination, body, headers
), input AS (
    SELECT message_id, key, destination, body, headers,
           row_number() OVER (ORDER BY key, seq, id) AS n
    FROM m
)` + enqueueFrom
	// One statement, so that the notification goes out when, and only if,
	// the events commit; and none while a relay has promised to be awake
	// for a while yet, since a notifying commit holds a lock that
	// serialises every notifying commit in the database.
	if notify {
		asleep := fmt.Sprintf(`NOT EXISTS (SELECT 1 FROM {awake} WHERE until > {ts} + %d * interval '1 microsecond')`,
			pgschema.Micros(awakeMargin))
		enqueue += `SELECT pg_notify($6, '') WHERE ` + asleep
		requeue += `SELECT (SELECT count(*) FROM input), (SELECT pg_notify($2, '') WHERE ` + asleep + `)`
	} else {
		enqueue += `SELECT 1`
		requeue += `SELECT count(*) FROM input`
	}

	// Recording published events: deleted, or marked for the retention.
	publishedLanes := `
    DELETE FROM {table} e USING own
    WHERE e.key = own.key AND e.seq <= own.seq AND e.published_at IS NULL`
	ackUnkeyed := `
DELETE FROM {table} e USING unnest($1::bigint[], $2::bigint[]) AS a(id, token)
WHERE e.id = a.id AND e.lease_token = a.token AND e.published_at IS NULL`
	if retention {
		publishedLanes = `
    UPDATE {table} e SET published_at = {ts} FROM own
    WHERE e.key = own.key AND e.seq <= own.seq AND e.published_at IS NULL`
		ackUnkeyed = `
UPDATE {table} e SET published_at = {ts}, lease_token = NULL
FROM unnest($1::bigint[], $2::bigint[]) AS a(id, token)
WHERE e.id = a.id AND e.lease_token = a.token AND e.published_at IS NULL`
	}

	// An event is still the relay's when it holds the event's lease (no
	// key) or its key's (with a key).
	const stillOurs = `
      AND (e.lease_token = f.token OR EXISTS (
          SELECT 1 FROM {cursors} c WHERE c.key = e.key AND c.lease_token = f.token))`

	return queries{
		enqueue: r.Replace(enqueue),
		requeue: r.Replace(requeue),

		// advertise promises that a relay looks for events at least every
		// NotifyThrottle for $1 microseconds more.
		advertise: r.Replace(`UPDATE {awake} SET until = greatest(until, {ts} + $1::bigint * interval '1 microsecond')`),

		// claimKeys leases up to $1 keys that are neither leased nor
		// waiting for a retry, those ready longest first, skipping the
		// ones another relay is claiming, and reads up to $3 of each
		// one's pending events in seq order. A key's events are a gapless
		// run from published_seq+1: a writer that got a seq holds the key
		// until it commits, so no later seq of the key can commit before
		// it. A key whose run is empty (its writers have not committed)
		// comes back with NULL event columns. The cursors are found by
		// key through the primary key, a plan that does not depend on how
		// many the planner expects.
		claimKeys: r.Replace(`
WITH c AS (
    UPDATE {cursors} AS c
    SET ready_at = {ts} + $2::bigint * interval '1 microsecond', lease_token = nextval({seq})
    WHERE c.key = ANY (ARRAY(
        SELECT key FROM {cursors}
        WHERE ready_at <= {ts}
        ORDER BY ready_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED))
    RETURNING c.key, c.lease_token, c.published_seq
)
SELECT c.key, c.lease_token, c.published_seq,
       e.id, e.seq, e.message_id, e.destination, e.body, e.headers, e.enqueued_at, e.attempts
FROM c LEFT JOIN LATERAL (
    SELECT * FROM {table} e
    WHERE e.key = c.key AND e.seq > c.published_seq AND e.published_at IS NULL
    ORDER BY e.seq
    LIMIT $3
) e ON true
ORDER BY c.key, e.seq`),

		// claimUnkeyed leases up to $1 claimable events without a key,
		// oldest first, as pgqueue's fetch does.
		claimUnkeyed: r.Replace(`
UPDATE {table} AS t
SET visible_at = {ts} + $2::bigint * interval '1 microsecond', lease_token = nextval({seq})
WHERE t.id = ANY (ARRAY(
    SELECT id FROM {table}
    WHERE seq IS NULL AND published_at IS NULL AND visible_at <= {ts}
    ORDER BY visible_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED))
RETURNING t.id, t.lease_token, t.message_id, t.destination, t.body, t.headers, t.enqueued_at, t.attempts`),

		// The statements below run in one batch, one implicit
		// transaction, in this order. lockLanes locks the cursors the
		// relay still holds, so that no other relay can claim them
		// before the batch ends and the checks of the statements after
		// it stay true.
		lockLanes: r.Replace(`
SELECT c.key FROM {cursors} c
JOIN unnest($1::text[], $2::bigint[]) AS a(key, token) ON c.key = a.key AND c.lease_token = a.token
FOR UPDATE OF c`),

		// moveFailed moves events the relay gave up on to the failed
		// table.
		moveFailed: r.Replace(`
WITH f AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::integer[], $4::text[])
        AS f(id, token, attempts, last_error)
), m AS (
    DELETE FROM {table} e USING f
    WHERE e.id = f.id AND e.published_at IS NULL` + stillOurs + `
    RETURNING e.id, e.message_id, e.key, e.seq, e.destination, e.body, e.headers, e.enqueued_at,
              f.attempts, f.last_error
)
INSERT INTO {failed} (id, message_id, key, seq, destination, body, headers, enqueued_at,
                      attempts, last_error, failed_at)
SELECT m.*, {ts} FROM m`),

		// recordRetries counts failed attempts on the events to be tried
		// again (or releases, unchanged and with no error, those the
		// relay ran out of time for). An event without a key is released
		// until its retry time; a key's retry time is set on its cursor by
		// ackLanes.
		recordRetries: r.Replace(`
UPDATE {table} e
SET attempts = f.attempts, last_error = coalesce(nullif(f.last_error, ''), e.last_error), lease_token = NULL,
    visible_at = CASE WHEN e.seq IS NULL
                      THEN {ts} + f.delay * interval '1 microsecond'
                      ELSE e.visible_at END
FROM unnest($1::bigint[], $2::bigint[], $3::integer[], $4::text[], $5::bigint[])
    AS f(id, token, attempts, last_error, delay)
WHERE e.id = f.id AND e.published_at IS NULL` + stillOurs),

		// ackLanes records each held key's progress: every seq up to
		// $3 is published (or moved aside), and the key may be claimed
		// again after $4 microseconds. A key whose counter shows no seq
		// given out beyond that is drained: its counter and cursor are
		// deleted, unless a writer holds the counter (it is about to
		// commit an event), which SKIP LOCKED leaves alone. The check
		// reads the counter's latest version: when a writer committed
		// after this statement's snapshot, locking the row re-evaluates
		// k.seq = own.seq on the new version, which then fails.
		ackLanes: r.Replace(`
WITH own AS (
    SELECT a.* FROM {cursors} c
    JOIN unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS a(key, token, seq, delay)
      ON c.key = a.key AND c.lease_token = a.token
), drained AS (
    SELECT k.key FROM {keys} k JOIN own ON own.key = k.key
    WHERE k.seq = own.seq
    FOR UPDATE OF k SKIP LOCKED
), dk AS (
    DELETE FROM {keys} k USING drained d WHERE k.key = d.key
), dc AS (
    DELETE FROM {cursors} c USING drained d WHERE c.key = d.key
), uc AS (
    UPDATE {cursors} c
    SET published_seq = own.seq, lease_token = NULL,
        ready_at = {ts} + own.delay * interval '1 microsecond'
    FROM own
    WHERE c.key = own.key AND c.lease_token = own.token
      AND NOT EXISTS (SELECT 1 FROM drained d WHERE d.key = own.key)
), pub AS (` + publishedLanes + `
)
SELECT count(*) FROM own`),

		ackUnkeyed: r.Replace(ackUnkeyed),

		// cleanup deletes up to $2 published events older than the
		// retention ($1 microseconds), skipping rows others are deleting.
		cleanup: r.Replace(`
DELETE FROM {table} WHERE id = ANY (ARRAY(
    SELECT id FROM {table}
    WHERE published_at IS NOT NULL AND published_at < {ts} - $1::bigint * interval '1 microsecond'
    ORDER BY published_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED))`),

		// stats counts pending events and the oldest one's age in
		// microseconds.
		stats: r.Replace(`
SELECT count(*), coalesce(ceil(extract(epoch FROM {ts} - min(enqueued_at)) * 1000000), 0)::bigint
FROM {table}
WHERE published_at IS NULL`),
	}
}
