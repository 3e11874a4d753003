package stockpg_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/internal/testenv"
	"github.com/idemq/idemq/stock"
	"github.com/idemq/idemq/stock/stockpg"
)

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts stockpg.Options
		want string
	}{
		{"UpperCase", stockpg.Options{Prefix: "Stock"}, "invalid table prefix"},
		{"ThreeParts", stockpg.Options{Prefix: "a.b.c"}, "invalid table prefix"},
		{"TooLong", stockpg.Options{Prefix: strings.Repeat("s", 40)}, "invalid table prefix"},
		{"NegativeShards", stockpg.Options{Shards: -1}, "negative Shards"},
		{"TooManyShards", stockpg.Options{Shards: stockpg.MaxShards + 1}, "MaxShards"},
		{"PerCallNegativeShards", stockpg.Options{Shards: -1, PerCall: true}, "negative Shards"},
		{"PerCallUpperCase", stockpg.Options{Prefix: "Stock", PerCall: true}, "invalid table prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := stockpg.New(noDB{}, tc.opts)
			require.ErrorContains(t, err, tc.want)
			if strings.Contains(tc.want, "prefix") {
				require.ErrorIs(t, err, stockpg.ErrInvalidPrefix)
				_, err = stockpg.Schema(tc.opts)
				require.ErrorIs(t, err, stockpg.ErrInvalidPrefix)
			}
		})
	}
	_, err := stockpg.New(nil, stockpg.Options{})
	require.Error(t, err)
	_, err = stockpg.New(noDB{}, stockpg.Options{Prefix: strings.Repeat("s", 39), Shards: stockpg.MaxShards})
	require.NoError(t, err, "the longest prefix and the most shards")
	_, err = stockpg.New(noDB{}, stockpg.Options{Shards: 8, PerCall: true})
	require.NoError(t, err, "per-call reserves, sharded")
}

func TestSchema(t *testing.T) {
	t.Parallel()
	sql, err := stockpg.Schema(stockpg.Options{})
	require.NoError(t, err)
	for _, table := range []string{"items", "shards", "reservations", "holders", "codes"} {
		require.Contains(t, sql, `CREATE TABLE IF NOT EXISTS "idemq_stock_`+table+`"`)
	}
	sql, err = stockpg.Schema(stockpg.Options{Prefix: "shop.promo"})
	require.NoError(t, err)
	require.Contains(t, sql, `"shop"."promo_reservations"`)
	require.Contains(t, sql, `CREATE INDEX IF NOT EXISTS "promo_reservations_held_idx" ON "shop"."promo_reservations"`)
	require.Contains(t, sql, `CREATE OR REPLACE FUNCTION "shop"."promo_reserve_batch"(`)
	require.Contains(t, sql, `CREATE OR REPLACE FUNCTION "shop"."promo_reserve_one"(`)
}

func TestMigrateTwice(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := newStore(t, stockpg.Options{})
	require.NoError(t, s.Define(ctx, "kept", stock.ItemConfig{}))
	require.NoError(t, s.Restock(ctx, "kept", 3))
	require.NoError(t, stockpg.Migrate(ctx, pool, stockpg.Options{}))
	l, err := s.Level(ctx, "kept")
	require.NoError(t, err)
	require.Equal(t, 3, l.Available, "a second Migrate must keep the stock")

	var relations []string
	rows, err := pool.Query(ctx, `
SELECT relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() ORDER BY 1`)
	require.NoError(t, err)
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		relations = append(relations, name)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{
		"idemq_stock_codes",
		"idemq_stock_codes_free_idx",
		"idemq_stock_codes_pkey",
		"idemq_stock_codes_seq_seq",
		"idemq_stock_holders",
		"idemq_stock_holders_pkey",
		"idemq_stock_items",
		"idemq_stock_items_pkey",
		"idemq_stock_reservations",
		"idemq_stock_reservations_due_idx",
		"idemq_stock_reservations_held_idx",
		"idemq_stock_reservations_holder_idx",
		"idemq_stock_reservations_pkey",
		"idemq_stock_shards",
		"idemq_stock_shards_pkey",
	}, relations)
}

// TestMigrateConcurrent checks that processes starting together can all
// migrate: plain CREATE ... IF NOT EXISTS races in the catalog.
func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := testenv.Postgres(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = stockpg.Migrate(ctx, pool, stockpg.Options{}) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
}

// TestSchemaQualifiedPrefix runs a store on tables in a schema that is not
// on the search_path, to prove the qualified names are used everywhere.
func TestSchemaQualifiedPrefix(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, schema := testenv.PostgresWithSchema(t)
	opts := stockpg.Options{Prefix: schema + ".promo", Shards: 4}
	require.NoError(t, stockpg.Migrate(ctx, pool, opts))

	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, "SET search_path TO pg_catalog")
	require.NoError(t, err)
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "SET search_path TO "+schema) }()
	s, err := stockpg.New(conn, opts)
	require.NoError(t, err)

	require.NoError(t, s.Define(ctx, "codes", stock.ItemConfig{Codes: true}))
	n, err := s.LoadCodes(ctx, "codes", []string{"A", "B"})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	r, err := s.Reserve(ctx, reserveReq("codes", "h", "r1", 2))
	require.NoError(t, err)
	r, err = s.Confirm(ctx, r.ID)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"A", "B"}, r.Codes)
	require.NoError(t, s.Define(ctx, "units", stock.ItemConfig{}))
	require.NoError(t, s.Restock(ctx, "units", 2))
	r, err = s.Reserve(ctx, reserveReq("units", "h", "r2", 1))
	require.NoError(t, err)
	require.NoError(t, s.Release(ctx, r.ID))
	_, err = s.Sweep(ctx, 10)
	require.NoError(t, err)
	l, err := s.Level(ctx, "units")
	require.NoError(t, err)
	require.Equal(t, stock.Level{Item: "units", Available: 2}, l)
}

// noDB is a DBTX for tests that never reach the database.
type noDB struct{ stockpg.DBTX }
