package stockpg

import (
	"strings"
	"sync"

	"github.com/idemq/idemq/internal/pgschema"
)

// Every statement runs at READ COMMITTED and takes its decisions on row
// versions it has locked, never on its snapshot alone:
//
//   - a row locked with FOR NO KEY UPDATE (or updated) after waiting for
//     a concurrent writer is re-read at its newest version and the
//     statement's conditions re-checked on it, so a conditional lock or
//     update never acts on a stale count;
//   - conditions on columns that move both ways (a shard's available)
//     are only ever checked on locked rows; a reservation's state moves
//     only forward, out of 'held', so a snapshot that says a row is no
//     longer held is never wrong;
//   - locks are taken in one order: shard rows first (several only in
//     ascending shard order, or with SKIP LOCKED), then reservation rows,
//     then (Reserve's inserts) the new reservations' keys (several in the
//     byte order of their IDs), with holder rows (several in one order,
//     the bytes of the holder) before the keys for an item with a holder
//     limit and after them for one without. Shard rows are waited for only by
//     statements that hold no other shard, or hold lower ones;
//     reservation rows are locked with SKIP LOCKED, except by Release and
//     Confirm, which wait for one hold; whoever holds it (Confirm, Sweep,
//     or a Reserve that took it with SKIP LOCKED) never waits for a shard
//     afterwards. So no cycle of waits can form among the statements.
//
// Reserve is the reserve_batch function of stock.sql, called by the
// statement below with a batch of requests.
//
// Every deadline is computed from statement_timestamp(): the database's
// clock, the same for every client, moving from statement to statement
// inside a caller's transaction too.
type queries struct {
	reserveBatch, reserveOne string
	reservationsKey          string // the constraint a duplicate ID violates

	confirm, release, get, sweep string
	settle                       string

	define, restock, loadCodes, setDisabled, level string
}

// queriesByPrefix holds the statements of every prefix a store has been
// made with, so that a store made for each transaction (New on a pgx.Tx)
// builds none.
var queriesByPrefix sync.Map // pgschema.Name -> queries

func queriesFor(p pgschema.Name) queries {
	if q, ok := queriesByPrefix.Load(p); ok {
		return q.(queries)
	}
	q, _ := queriesByPrefix.LoadOrStore(p, newQueries(p))
	return q.(queries)
}

func newQueries(p pgschema.Name) queries {
	r := strings.NewReplacer(
		"{items}", p.Sibling(itemsSuffix),
		"{shards}", p.Sibling(shardsSuffix),
		"{res}", p.Sibling(reservationsSuffix),
		"{holders}", p.Sibling(holdersSuffix),
		"{codes}", p.Sibling(codesSuffix),
		"{reserve_batch}", p.Sibling(reserveBatchSuffix),
		"{reserve_one}", p.Sibling(reserveOneSuffix),
		"{ts}", "statement_timestamp()",
	)
	return queries{
		reservationsKey: p.Bare(reservationsKeySuffix),

		// See the functions in stock.sql, batch.go and reserve.go.
		reserveBatch: r.Replace(`
SELECT o_outcome, o_item, o_holder, o_quantity, o_state, o_expires_at, o_codes, o_due, o_available, o_reason
FROM {reserve_batch}($1::text, $2::integer, $3::text[], $4::integer[], $5::text[], $6::integer[],
                     $7::integer[], $8::bigint[], $9::integer)`),
		reserveOne: r.Replace(`
SELECT o_outcome, o_item, o_holder, o_quantity, o_state, o_expires_at, o_codes, o_due, o_available, o_reason
FROM {reserve_one}($1::text, $2::integer, $3::text, $4::text, $5::integer, $6::bigint)`),

		// A reservation that the snapshot shows as a live hold is locked
		// first (its newest state decides); any other state is final and
		// is answered as the snapshot has it, without a lock, so that a
		// Confirm of an expired hold, even in a long transaction, never
		// keeps a Reserve from taking its units back. Then as many free
		// codes as it has units are locked, skipping codes that
		// concurrent confirmations hold. It is confirmed only with all
		// its codes; the caller retries a shortfall, which a code loaded
		// after the snapshot can cause, with a new snapshot.
		confirm: r.Replace(`
WITH
s AS MATERIALIZED (
    SELECT x.item, x.holder, x.quantity, x.state, x.expires_at, x.codes,
           x.state = 'held' AND x.expires_at > {ts} AS live, i.codes AS code_item
    FROM {res} x JOIN {items} i ON i.item = x.item
    WHERE x.id = $1::text
),
l AS MATERIALIZED (
    SELECT x.item, x.holder, x.quantity, x.state, x.expires_at, x.codes,
           x.state = 'held' AND x.expires_at > {ts} AS live, i.codes AS code_item
    FROM {res} x JOIN {items} i ON i.item = x.item
    WHERE x.id = $1::text AND (SELECT s.live FROM s)
    FOR NO KEY UPDATE OF x
),
r AS MATERIALIZED (
    SELECT * FROM l
    UNION ALL
    SELECT * FROM s WHERE NOT s.live
),
picked AS MATERIALIZED (
    SELECT c.code, c.seq FROM {codes} c
    WHERE c.item = (SELECT item FROM r WHERE live AND code_item)
      AND c.reservation_id IS NULL
    ORDER BY c.seq
    LIMIT coalesce((SELECT quantity FROM r WHERE live AND code_item), 0)
    FOR NO KEY UPDATE SKIP LOCKED
),
conf AS (
    UPDATE {res} x
    SET state = 'confirmed', ended_at = {ts},
        codes = CASE WHEN r.code_item THEN (SELECT array_agg(code ORDER BY seq) FROM picked) END
    FROM r
    WHERE x.id = $1::text AND r.live
      AND (NOT r.code_item OR (SELECT count(*) FROM picked) = r.quantity)
    RETURNING x.codes
),
assign AS (
    UPDATE {codes} c SET reservation_id = $1::text
    FROM picked p
    WHERE c.item = (SELECT item FROM r) AND c.code = p.code AND EXISTS (SELECT FROM conf)
)
SELECT r.item, r.holder, r.quantity, r.state, r.expires_at, r.live,
       coalesce((SELECT codes FROM conf), r.codes), EXISTS (SELECT FROM conf)
FROM r`),

		// The hold's shard is locked before the hold, as Reserve does.
		release: r.Replace(`
WITH
r0 AS (
    SELECT item, shard FROM {res}
    WHERE id = $1::text AND state = 'held' AND expires_at > {ts}
),
sh AS MATERIALIZED (
    SELECT s.item, s.shard FROM {shards} s JOIN r0 ON s.item = r0.item AND s.shard = r0.shard
    FOR NO KEY UPDATE OF s
),
rel AS (
    UPDATE {res} x
    SET state = 'released', ended_at = {ts}
    FROM sh
    WHERE x.id = $1::text AND x.state = 'held' AND x.expires_at > {ts}
    RETURNING x.quantity
),
upd AS (
    UPDATE {shards} s
    SET available = s.available + rel.quantity
    FROM sh, rel
    WHERE s.item = sh.item AND s.shard = sh.shard
)
SELECT count(*) FROM rel`),

		settle: r.Replace(`SELECT FROM {res} WHERE id = $1::text FOR NO KEY UPDATE`),

		get: r.Replace(`
SELECT item, holder, quantity, state, expires_at, codes, expires_at <= {ts}
FROM {res} WHERE id = $1::text`),

		// Shards that a Reserve, Restock or Release holds are skipped,
		// and so are their holds: the next Sweep, or that Reserve, takes
		// them back.
		sweep: r.Replace(`
WITH
cand AS MATERIALIZED (
    SELECT id, item, shard FROM {res}
    WHERE state = 'held' AND expires_at <= {ts}
    ORDER BY expires_at
    LIMIT $1::int
),
sh AS MATERIALIZED (
    SELECT s.item, s.shard FROM {shards} s
    WHERE (s.item, s.shard) IN (SELECT item, shard FROM cand)
    FOR NO KEY UPDATE SKIP LOCKED
),
locked AS MATERIALIZED (
    SELECT x.id FROM {res} x
    WHERE x.id IN (SELECT c.id FROM cand c JOIN sh ON sh.item = c.item AND sh.shard = c.shard)
      AND x.state = 'held' AND x.expires_at <= {ts}
    FOR NO KEY UPDATE SKIP LOCKED
),
exp AS (
    UPDATE {res} x
    SET state = 'expired', ended_at = {ts}
    WHERE x.id IN (SELECT id FROM locked) AND x.state = 'held' AND x.expires_at <= {ts}
    RETURNING x.item, x.shard, x.quantity
),
upd AS (
    UPDATE {shards} s
    SET available = s.available + e.units
    FROM (SELECT item, shard, sum(quantity) AS units FROM exp GROUP BY item, shard) e
    WHERE s.item = e.item AND s.shard = e.shard
)
SELECT count(*) FROM exp`),

		// The item row is written only if its kind does not change; its
		// shard rows are created up to the store's count ($4).
		define: r.Replace(`
WITH
up AS (
    INSERT INTO {items} AS i (item, codes, holder_limit)
    VALUES ($1::text, $2::boolean, $3::int)
    ON CONFLICT (item) DO UPDATE
    SET holder_limit = EXCLUDED.holder_limit
    WHERE i.codes = EXCLUDED.codes
    RETURNING i.item
),
sh AS (
    INSERT INTO {shards} (item, shard)
    SELECT $1::text, g FROM generate_series(0, $4::int - 1) g
    WHERE EXISTS (SELECT FROM up)
    ON CONFLICT (item, shard) DO NOTHING
)
SELECT count(*) FROM up`),

		// Restock and LoadCodes lock every shard of the item in order and
		// spread all its free units evenly over them, the new ones
		// included; $3 is the offset that spreads the remainder.
		restock: r.Replace(`
WITH
it AS (SELECT codes FROM {items} WHERE item = $1::text),
sh AS MATERIALIZED (
    SELECT shard, available FROM {shards}
    WHERE item = $1::text AND EXISTS (SELECT FROM it WHERE NOT codes)
    ORDER BY shard
    FOR NO KEY UPDATE
),
upd AS (
    UPDATE {shards} s
    SET available = b.total / b.n + CASE WHEN (v.rank + $3::int) % b.n < b.total % b.n THEN 1 ELSE 0 END,
        added = s.added + CASE WHEN v.rank = 0 THEN $2::bigint ELSE 0 END
    FROM (SELECT shard, row_number() OVER (ORDER BY shard) - 1 AS rank FROM sh) v,
         (SELECT (sum(available) + $2::bigint)::bigint AS total, count(*) AS n FROM sh HAVING count(*) > 0) b
    WHERE s.item = $1::text AND s.shard = v.shard
    RETURNING 1
)
SELECT (SELECT codes FROM it), (SELECT count(*) FROM upd)`),

		loadCodes: r.Replace(`
WITH
it AS (SELECT codes FROM {items} WHERE item = $1::text),
sh AS MATERIALIZED (
    SELECT shard, available FROM {shards}
    WHERE item = $1::text AND EXISTS (SELECT FROM it WHERE codes)
    ORDER BY shard
    FOR NO KEY UPDATE
),
new AS (
    INSERT INTO {codes} (item, code)
    SELECT $1::text, u.code FROM unnest($2::text[]) WITH ORDINALITY AS u(code, n)
    WHERE u.code <> '' AND EXISTS (SELECT FROM sh)
    ORDER BY u.n
    ON CONFLICT (item, code) DO NOTHING
    RETURNING 1
),
added AS (SELECT count(*) AS n FROM new),
upd AS (
    UPDATE {shards} s
    SET available = b.total / b.n + CASE WHEN (v.rank + $3::int) % b.n < b.total % b.n THEN 1 ELSE 0 END,
        added = s.added + CASE WHEN v.rank = 0 THEN b.added ELSE 0 END
    FROM (SELECT shard, row_number() OVER (ORDER BY shard) - 1 AS rank FROM sh) v,
         (SELECT (sum(available) + (SELECT n FROM added))::bigint AS total, count(*) AS n, (SELECT n FROM added) AS added
          FROM sh HAVING count(*) > 0) b
    WHERE s.item = $1::text AND s.shard = v.shard AND b.added > 0
)
SELECT (SELECT codes FROM it), (SELECT count(*) FROM sh), (SELECT n FROM added)`),

		setDisabled: r.Replace(`
UPDATE {items} SET disabled = $2::boolean, reason = $3::text WHERE item = $1::text`),

		// The confirmed units follow from the others: every unit ever
		// added is free, in a hold (expired or not) or confirmed.
		level: r.Replace(`
SELECT i.disabled, i.reason,
       coalesce((SELECT sum(available) FROM {shards} WHERE item = $1::text), 0)::bigint,
       coalesce((SELECT sum(added) FROM {shards} WHERE item = $1::text), 0)::bigint,
       coalesce(h.due, 0)::bigint, coalesce(h.live, 0)::bigint
FROM {items} i
LEFT JOIN LATERAL (
    SELECT sum(quantity) FILTER (WHERE expires_at <= {ts}) AS due,
           sum(quantity) FILTER (WHERE expires_at > {ts}) AS live
    FROM {res} WHERE item = $1::text AND state = 'held'
) h ON true
WHERE i.item = $1::text`),
	}
}
