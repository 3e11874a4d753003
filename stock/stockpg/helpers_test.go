package stockpg_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/internal/testenv"
	"github.com/idemq/idemq/stock"
	"github.com/idemq/idemq/stock/stockpg"
)

// newStore returns a migrated store with opts on a schema of its own, and
// the pool under it for looking at the tables.
func newStore(t testing.TB, opts stockpg.Options) (*stockpg.Store, *pgxpool.Pool) {
	t.Helper()
	pool := testenv.Postgres(t)
	require.NoError(t, stockpg.Migrate(context.Background(), pool, opts))
	s, err := stockpg.New(pool, opts)
	require.NoError(t, err)
	return s, pool
}

// newWideStore is newStore on a pool of conns connections, for storms.
func newWideStore(t testing.TB, opts stockpg.Options, conns int32) (*stockpg.Store, *pgxpool.Pool) {
	t.Helper()
	_, schema := testenv.PostgresWithSchema(t)
	cfg, err := pgxpool.ParseConfig(testenv.PostgresURL())
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = conns
	cfg.MinConns = conns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close) // before testenv drops the schema
	require.NoError(t, stockpg.Migrate(context.Background(), pool, opts))
	s, err := stockpg.New(pool, opts)
	require.NoError(t, err)
	return s, pool
}

// mode is a store configuration that focused tests run in.
type mode struct {
	name    string
	shards  int
	perCall bool
}

func (m mode) opts() stockpg.Options { return stockpg.Options{Shards: m.shards, PerCall: m.perCall} }

var (
	// modes are the group-commit configurations, which every focused
	// test runs in: those of the batches themselves and of callers'
	// transactions only in these.
	modes = []mode{
		{name: "Unsharded"},
		{name: "Sharded", shards: 8},
	}
	// allModes adds the per-call configurations, for the tests of
	// Reserve through a pool.
	allModes = append(slices.Clip(modes),
		mode{name: "PerCall", perCall: true},
		mode{name: "PerCallSharded", shards: 8, perCall: true})
	// shardedModes are the sharded ones of allModes.
	shardedModes = slices.DeleteFunc(slices.Clone(allModes), func(m mode) bool { return m.shards <= 1 })
)

const longHold = 10 * time.Minute

func reserveReq(item, holder, id string, quantity int) stock.ReserveRequest {
	return stock.ReserveRequest{Item: item, Holder: holder, ID: id, Quantity: quantity, Hold: longHold}
}

// expire moves a hold's deadline into the past, as if its time had run
// out, without waiting for it.
func expire(t testing.TB, pool *pgxpool.Pool, id string) {
	t.Helper()
	tag, err := pool.Exec(context.Background(),
		`UPDATE idemq_stock_reservations SET expires_at = statement_timestamp() - interval '1 second' WHERE id = $1`, id)
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected(), "no reservation %q", id)
}

// placeUnits sets an item's free units shard by shard, as if earlier
// reservations had drained the others; the units added to the item change
// by as many as the free units do, so that its counts still add up.
func placeUnits(t testing.TB, pool *pgxpool.Pool, item string, units map[int]int) {
	t.Helper()
	ctx := context.Background()
	placed := 0
	for _, n := range units {
		placed += n
	}
	_, err := pool.Exec(ctx, `
UPDATE idemq_stock_shards s
SET added = CASE WHEN s.shard = t.first THEN t.added - t.free + $2 ELSE 0 END,
    available = 0
FROM (SELECT min(shard) AS first, sum(added) AS added, sum(available) AS free
      FROM idemq_stock_shards WHERE item = $1) t
WHERE s.item = $1`, item, placed)
	require.NoError(t, err)
	for shard, n := range units {
		tag, err := pool.Exec(ctx,
			`UPDATE idemq_stock_shards SET available = $3 WHERE item = $1 AND shard = $2`, item, shard, n)
		require.NoError(t, err)
		require.EqualValues(t, 1, tag.RowsAffected(), "no shard %d of %q", shard, item)
	}
}

// shardUnits returns an item's free units by shard.
func shardUnits(t testing.TB, pool *pgxpool.Pool, item string) map[int]int {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT shard, available FROM idemq_stock_shards WHERE item = $1`, item)
	require.NoError(t, err)
	defer rows.Close()
	units := map[int]int{}
	for rows.Next() {
		var shard, n int
		require.NoError(t, rows.Scan(&shard, &n))
		units[shard] = n
	}
	require.NoError(t, rows.Err())
	return units
}

// requireConsistent checks the invariants that tie the tables together:
// every unit an item ever got is free, held or confirmed; every holder
// row counts exactly its counted reservations; no count is negative; and
// Level agrees.
func requireConsistent(t testing.TB, s *stockpg.Store, pool *pgxpool.Pool, item string, total int) stock.Level {
	t.Helper()
	ctx := context.Background()
	var added, free, held, confirmed int
	require.NoError(t, pool.QueryRow(ctx, `
SELECT coalesce((SELECT sum(added) FROM idemq_stock_shards WHERE item = $1), 0),
       coalesce((SELECT sum(available) FROM idemq_stock_shards WHERE item = $1), 0),
       coalesce((SELECT sum(quantity) FROM idemq_stock_reservations WHERE item = $1 AND state = 'held'), 0),
       coalesce((SELECT sum(quantity) FROM idemq_stock_reservations WHERE item = $1 AND state = 'confirmed'), 0)`,
		item).Scan(&added, &free, &held, &confirmed))
	require.Equal(t, total, added, "units added to %q", item)
	require.Equal(t, added, free+held+confirmed, "free %d + held %d + confirmed %d of %q", free, held, confirmed, item)

	var negative int
	require.NoError(t, pool.QueryRow(ctx,
		`SELECT count(*) FROM idemq_stock_shards WHERE available < 0`).Scan(&negative))
	require.Zero(t, negative, "shards with negative units")

	var wrong int
	require.NoError(t, pool.QueryRow(ctx, `
SELECT count(*) FROM idemq_stock_holders h
FULL JOIN (SELECT item, holder, sum(quantity) AS units FROM idemq_stock_reservations
           WHERE counted GROUP BY item, holder) r USING (item, holder)
WHERE coalesce(h.units, 0) <> coalesce(r.units, 0)`).Scan(&wrong))
	require.Zero(t, wrong, "holder rows that do not count their reservations")

	l, err := s.Level(ctx, item)
	require.NoError(t, err)
	require.Equal(t, total, l.Available+l.Held+l.Confirmed, "level %+v", l)
	require.Equal(t, confirmed, l.Confirmed, "level %+v", l)
	return l
}

// waitBlockedBy waits until some backend waits for a lock that the
// backend pid holds.
func waitBlockedBy(t testing.TB, pool *pgxpool.Pool, pid uint32) {
	t.Helper()
	waitBlocked(t, pool, pid, 1)
}

// waitBlocked waits until at least n backends wait for locks that the
// backend pid holds, directly or behind other backends that wait for
// them too.
func waitBlocked(t testing.TB, pool *pgxpool.Pool, pid uint32, n int) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var blocked int
		require.NoError(t, pool.QueryRow(ctx, `
WITH RECURSIVE b(pid) AS (
    SELECT $1::int
    UNION
    SELECT a.pid FROM pg_stat_activity a JOIN b ON b.pid = ANY (pg_blocking_pids(a.pid))
)
SELECT count(*) - 1 FROM b`, int32(pid)).Scan(&blocked))
		if blocked >= n {
			return
		}
		require.True(t, time.Now().Before(deadline), "%d backends waited for backend %d, want %d", blocked, pid, n)
		time.Sleep(5 * time.Millisecond)
	}
}
