package pgqueue

import (
	"strings"

	"github.com/idemq/idemq/internal/pgschema"
)

// Every deadline is computed from statement_timestamp(): the database's
// clock, the same for every client, and the start of the statement that
// sets it. In a transaction (a pgx.Tx given to a Publisher) it still moves
// from statement to statement, where now() would stay at the
// transaction's start.
//
// A row is held while lease_token is set and visible_at, its lease end, is
// still ahead. Every write that follows a lease names the token and checks
// that the lease is live, in the statement that writes: a stale holder
// changes nothing.
type queries struct {
	fetch, unfetch, next string
	ack, nack, extend    string
	publish              string
}

func newQueries(t pgschema.Name, notify bool) queries {
	r := strings.NewReplacer(
		"{table}", t.Ident(),
		"{seq}", pgschema.Literal(t.Sibling(seqSuffix)),
		"{ts}", "statement_timestamp()",
	)
	publish := `
INSERT INTO {table} (queue, message_id, key, body, headers, enqueued_at, visible_at)
SELECT $1, u.message_id, u.key, u.body, u.headers::jsonb, coalesce(u.enqueued_at, {ts}), {ts}
FROM unnest($2::text[], $3::text[], $4::bytea[], $5::text[], $6::timestamptz[])
     WITH ORDINALITY AS u(message_id, key, body, headers, enqueued_at, n)
ORDER BY u.n`
	nack := `
UPDATE {table}
SET visible_at = {ts} + $3::bigint * interval '1 microsecond', lease_token = NULL
WHERE id = $1 AND lease_token = $2 AND visible_at > {ts}`
	if notify {
		// A Nack makes a row visible sooner than a waiting Fetch may
		// expect: it is announced, so that Fetches elsewhere take it at
		// once or sleep until its delay ends. The statement returns one
		// row, and notifies, only if it changed the row.
		nack = `
WITH n AS (` + nack + `
    RETURNING 1
)
SELECT pg_notify($4, '') FROM n`
		// One statement, so the notification goes out when, and only if,
		// the rows commit: at once outside a transaction, at the commit
		// of the caller's pgx.Tx inside one.
		publish = `
WITH ins AS (` + publish + `
)
SELECT pg_notify($7, '')`
	}
	return queries{
		// c picks and locks up to $2 ready rows, skipping those another
		// fetch has locked; MATERIALIZED makes it run once. u leases them:
		// one more attempt, a fresh token, and visible_at moved to the
		// lease end. The rows are found by their ids through the primary
		// key, a plan that does not depend on how many rows the planner
		// expects c to return (a generic plan of a join with c guesses a
		// tenth of the table and scans all of it). Joining c back gives
		// each row's visible_at before the lease: the order in which it
		// was picked, and what undoing the lease restores.
		fetch: r.Replace(`
WITH c AS MATERIALIZED (
    SELECT id, visible_at
    FROM {table}
    WHERE queue = $1 AND visible_at <= {ts}
    ORDER BY visible_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), u AS (
    UPDATE {table} AS t
    SET attempts    = t.attempts + 1,
        lease_token = nextval({seq}),
        visible_at  = {ts} + $3::bigint * interval '1 microsecond'
    WHERE t.id = ANY (ARRAY(SELECT id FROM c))
    RETURNING t.id, t.lease_token, t.message_id, t.key, t.body, t.headers, t.attempts, t.enqueued_at
)
SELECT u.*, c.visible_at
FROM u JOIN c ON c.id = u.id`),

		// unfetch puts back rows a Fetch leased but could not hand out
		// (its context ended meanwhile) as they were before.
		unfetch: r.Replace(`
UPDATE {table} AS t
SET attempts = t.attempts - 1, lease_token = NULL, visible_at = u.visible_at
FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[]) AS u(id, token, visible_at)
WHERE t.id = u.id AND t.lease_token = u.token`),

		// next tells an idle Fetch how long until the queue's earliest row
		// becomes visible (a Nack's delay or a lease ends), in
		// microseconds; NULL for an empty queue, zero or less when ready
		// rows are locked by others. It reads one entry of the fetch
		// index.
		next: r.Replace(`
SELECT ceil(extract(epoch FROM min(visible_at) - {ts}) * 1000000)::bigint
FROM {table}
WHERE queue = $1`),

		// ack deletes a batch of leased rows in one statement: the rows it
		// returns are those whose token and live lease matched.
		ack: r.Replace(`
DELETE FROM {table} AS t
USING unnest($1::bigint[], $2::bigint[]) AS a(id, token)
WHERE t.id = a.id AND t.lease_token = a.token AND t.visible_at > {ts}
RETURNING t.id, t.lease_token`),

		nack: r.Replace(nack),

		extend: r.Replace(`
UPDATE {table}
SET visible_at = {ts} + $3::bigint * interval '1 microsecond'
WHERE id = $1 AND lease_token = $2 AND visible_at > {ts}`),

		publish: r.Replace(publish),
	}
}
