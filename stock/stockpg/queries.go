package stockpg

import "strings"

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
//     then the holder row, then (Reserve's insert) the new reservation's
//     key. Shard rows are waited for only by statements that hold no
//     other shard, or hold lower ones; reservation rows are locked with
//     SKIP LOCKED, except by Release and Confirm, which wait for one
//     hold; whoever holds it (Confirm, Sweep, or a Reserve that took it
//     with SKIP LOCKED) never waits for a shard afterwards. So no cycle of
//     waits can form among the statements.
//
// Every deadline is computed from statement_timestamp(): the database's
// clock, the same for every client, moving from statement to statement
// inside a caller's transaction too.
type queries struct {
	reserveSkip, reserveWait, reserveAll string

	confirm, release, get, sweep string

	define, restock, loadCodes, setDisabled, level string

	reservationsKey string // the primary key constraint's name
}

// Reserve's statement comes in three variants that differ only in which
// shard rows it locks, {lock} below.
const (
	// lockSkip takes one shard with enough units that no one else holds,
	// the requested one first.
	lockSkip = `
    SELECT shard, available FROM {shards}
    WHERE item = $1::text AND available >= $4::bigint AND EXISTS (SELECT FROM gate)
    ORDER BY shard = $6::int DESC, random()
    LIMIT 1
    FOR NO KEY UPDATE SKIP LOCKED`

	// lockWait waits for one shard that had enough units in the
	// snapshot, and keeps it only if it still has them. It locks at most
	// that one row: a list of rows in random order locked one after the
	// other could deadlock with another such list.
	lockWait = `
    SELECT shard, available FROM {shards}
    WHERE item = $1::text AND available >= $4::bigint AND EXISTS (SELECT FROM gate)
      AND shard = (SELECT shard FROM {shards}
                   WHERE item = $1::text AND available >= $4::bigint
                   ORDER BY shard = $6::int DESC, random()
                   LIMIT 1)
    FOR NO KEY UPDATE`

	// lockAll waits for every shard of the item, in ascending order: the
	// exact answer, used by unsharded stores and when no single shard has
	// enough units.
	lockAll = `
    SELECT shard, available FROM {shards}
    WHERE item = $1::text AND EXISTS (SELECT FROM gate)
    ORDER BY shard
    FOR NO KEY UPDATE`
)

// reserveSQL is Reserve's statement. Parameters: $1 item, $2 holder, $3
// reservation ID, $4 quantity, $5 hold in microseconds, $6 preferred
// shard (also the offset that spreads remainders), $7 how many expired
// holds of other holders to take back at most.
//
// It answers one row (see reserveRow) and changes nothing unless the item
// is known and enabled, the ID is new and a snapshot read says that the
// holder is within the limit and that enough units are free. Then, with
// the shard rows of {lock} held:
//
//  1. recl expires held rows whose time has passed: the holder's own (any
//     shard) and up to $7 others in the locked shards. Their units go
//     back to the locked shards, units being interchangeable; the
//     holder's own are no longer counted in the holder row.
//  2. recon stops counting the holder's released and expired rows.
//  3. hold updates the holder row once: it subtracts what 1 and 2
//     stopped counting and, if the locked shards have enough units and
//     the limit allows, adds the request's units and records its ID in
//     last_id, which is how the statement learns that it granted them.
//  4. ins inserts the reservation. A concurrent Reserve with the same ID
//     that committed after this statement's snapshot makes it fail with
//     a unique violation, which rolls every step back; the caller then
//     reads the winner.
//  5. upd writes the locked shards once: their units, plus what 1 took
//     back, minus what 4 took, spread evenly over them.
const reserveSQL = `
WITH
prior AS (
    SELECT item, holder, quantity, state, expires_at, codes, expires_at <= {ts} AS due
    FROM {res} WHERE id = $3::text
),
it AS (
    SELECT holder_limit, disabled, reason FROM {items} WHERE item = $1::text
),
snap AS (
    SELECT (coalesce((SELECT sum(available) FROM {shards} WHERE item = $1::text), 0)
          + coalesce((SELECT sum(quantity) FROM {res}
                      WHERE item = $1::text AND state = 'held' AND expires_at <= {ts}), 0))::bigint AS total,
           coalesce((SELECT sum(quantity) FROM {res}
                     WHERE item = $1::text AND holder = $2::text AND counted
                       AND (state = 'confirmed' OR (state = 'held' AND expires_at > {ts}))), 0)::bigint AS mine
),
gate AS (
    SELECT it.holder_limit FROM it, snap
    WHERE NOT it.disabled
      AND NOT EXISTS (SELECT FROM prior)
      AND snap.total >= $4::bigint
      AND (it.holder_limit = 0 OR snap.mine + $4::bigint <= it.holder_limit)
),
sh AS MATERIALIZED ({lock}
),
due_mine AS MATERIALIZED (
    SELECT id FROM {res}
    WHERE item = $1::text AND holder = $2::text AND counted AND state = 'held' AND expires_at <= {ts}
      AND EXISTS (SELECT FROM sh)
    FOR NO KEY UPDATE SKIP LOCKED
),
due_other AS MATERIALIZED (
    SELECT id FROM {res}
    WHERE item = $1::text AND state = 'held' AND expires_at <= {ts} AND holder <> $2::text
      AND shard IN (SELECT shard FROM sh)
    ORDER BY expires_at
    LIMIT $7::int
    FOR NO KEY UPDATE SKIP LOCKED
),
recl AS (
    UPDATE {res} r
    SET state = 'expired', ended_at = {ts}, counted = (r.holder <> $2::text)
    WHERE r.id IN (SELECT id FROM due_mine UNION ALL SELECT id FROM due_other)
      AND r.state = 'held' AND r.expires_at <= {ts}
    RETURNING r.holder, r.quantity
),
recon AS (
    UPDATE {res} r
    SET counted = false
    WHERE r.id IN (SELECT id FROM {res}
                   WHERE item = $1::text AND holder = $2::text AND counted
                     AND state IN ('released', 'expired')
                     AND EXISTS (SELECT FROM sh)
                   FOR NO KEY UPDATE SKIP LOCKED)
      AND r.counted AND r.state IN ('released', 'expired')
    RETURNING r.quantity
),
tally AS (
    SELECT coalesce(sum(quantity), 0)::bigint AS units,
           (coalesce(sum(quantity) FILTER (WHERE holder = $2::text), 0)
            + (SELECT coalesce(sum(quantity), 0) FROM recon))::bigint AS mine
    FROM recl
),
stock AS (
    SELECT (coalesce(sum(available), 0) + (SELECT units FROM tally))::bigint AS total,
           count(*) AS shards
    FROM sh
),
hold AS (
    INSERT INTO {holders} AS h (item, holder, units, last_id)
    SELECT $1::text, $2::text,
           CASE WHEN x.ok THEN $4::bigint ELSE 0 END,
           CASE WHEN x.ok THEN $3::text ELSE '' END
    FROM (SELECT st.total >= $4::bigint AND (g.holder_limit = 0 OR $4::bigint <= g.holder_limit) AS ok,
                 st.total >= $4::bigint AS stock_ok,
                 g.holder_limit
          FROM gate g, stock st
          WHERE st.shards > 0) x
    WHERE x.stock_ok OR x.holder_limit > 0 OR (SELECT mine FROM tally) > 0
    ON CONFLICT (item, holder) DO UPDATE
    SET units = h.units - (SELECT mine FROM tally)
              + CASE WHEN {grant} THEN $4::bigint ELSE 0 END,
        last_id = CASE WHEN {grant} THEN $3::text ELSE h.last_id END
    RETURNING h.units, h.last_id = $3::text AS granted
),
ins AS (
    INSERT INTO {res} (id, item, holder, quantity, state, shard, counted, expires_at, created_at)
    SELECT $3::text, $1::text, $2::text, $4::bigint, 'held',
           (SELECT shard FROM sh ORDER BY shard = $6::int DESC, shard LIMIT 1),
           true, {ts} + $5::bigint * interval '1 microsecond', {ts}
    FROM hold
    WHERE hold.granted
    RETURNING expires_at
),
upd AS (
    UPDATE {shards} s
    SET available = v.available
    FROM (SELECT r.shard,
                 b.total / b.n + CASE WHEN (r.rank + $6::int) % b.n < b.total % b.n THEN 1 ELSE 0 END AS available
          FROM (SELECT shard, row_number() OVER (ORDER BY shard) - 1 AS rank FROM sh) r,
               (SELECT st.total - CASE WHEN EXISTS (SELECT FROM ins) THEN $4::bigint ELSE 0 END AS total,
                       st.shards AS n
                FROM stock st
                WHERE st.shards > 0) b
          WHERE EXISTS (SELECT FROM ins) OR (SELECT units FROM tally) > 0 OR b.n > 1) v
    WHERE s.item = $1::text AND s.shard = v.shard
)
SELECT p.item, p.holder, p.quantity, p.state, p.expires_at, p.codes, p.due,
       it.holder_limit, it.disabled, it.reason,
       snap.total, snap.mine,
       (SELECT shards FROM stock), (SELECT total FROM stock),
       (SELECT count(*) FROM due_other) >= $7::int,
       (SELECT units FROM hold), coalesce((SELECT granted FROM hold), false),
       (SELECT expires_at FROM ins)
FROM snap
LEFT JOIN prior p ON true
LEFT JOIN it ON true`

// grantSQL is the holder row's condition for adding the request's units:
// enough units in the locked shards, and the limit, on the newest version
// of the holder row, less what this statement stopped counting.
const grantSQL = `((SELECT total FROM stock) >= $4::bigint
          AND ((SELECT holder_limit FROM gate) = 0
               OR h.units - (SELECT mine FROM tally) + $4::bigint <= (SELECT holder_limit FROM gate)))`

func newQueries(p prefix) queries {
	r := strings.NewReplacer(
		"{items}", p.table(itemsSuffix),
		"{shards}", p.table(shardsSuffix),
		"{res}", p.table(reservationsSuffix),
		"{holders}", p.table(holdersSuffix),
		"{codes}", p.table(codesSuffix),
		"{ts}", "statement_timestamp()",
	)
	reserve := func(lock string) string {
		s := strings.Replace(reserveSQL, "{lock}", lock, 1)
		s = strings.ReplaceAll(s, "{grant}", grantSQL)
		return r.Replace(s)
	}
	return queries{
		reserveSkip: reserve(lockSkip),
		reserveWait: reserve(lockWait),
		reserveAll:  reserve(lockAll),

		// The reservation is locked first (its newest state decides),
		// then as many free codes as it has units, skipping codes that
		// concurrent confirmations hold. It is confirmed only with all
		// its codes; the caller retries a shortfall, which a code loaded
		// after the snapshot can cause, with a new snapshot.
		confirm: r.Replace(`
WITH
r AS MATERIALIZED (
    SELECT x.item, x.holder, x.quantity, x.state, x.expires_at, x.codes,
           x.state = 'held' AND x.expires_at > {ts} AS live, i.codes AS code_item
    FROM {res} x JOIN {items} i ON i.item = x.item
    WHERE x.id = $1::text
    FOR NO KEY UPDATE OF x
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

		reservationsKey: p.name + reservationsKeySuffix,
	}
}
