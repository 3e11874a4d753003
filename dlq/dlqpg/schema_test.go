package dlqpg_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqpg"
	"github.com/idemq/idemq/internal/testenv"
)

func TestMigrateTwice(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := testenv.Postgres(t)
	require.NoError(t, dlqpg.Migrate(ctx, pool, dlqpg.Options{}))
	s, err := dlqpg.New(pool, dlqpg.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Put(ctx, entry("kept", 0)))
	require.NoError(t, dlqpg.Migrate(ctx, pool, dlqpg.Options{}))
	_, err = s.Get(ctx, "kept")
	require.NoError(t, err, "a second Migrate must keep the entries")

	var indexes []string
	rows, err := pool.Query(ctx, "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1")
	require.NoError(t, err)
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		indexes = append(indexes, name)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{
		"idemq_dead_letters_last_failed_at_idx",
		"idemq_dead_letters_pkey",
		"idemq_dead_letters_reason_idx",
		"idemq_dead_letters_source_idx",
	}, indexes)
}

// TestMigrateConcurrent checks that processes starting together can all
// migrate: plain CREATE ... IF NOT EXISTS races in the catalog.
func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := testenv.Postgres(t)
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() { errs[i] = dlqpg.Migrate(ctx, pool, dlqpg.Options{}) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
}

// TestSchemaQualifiedTable runs a capped store on a table in a schema that
// is not on the search_path, to prove the qualified name is used
// everywhere, the cap's lock included.
func TestSchemaQualifiedTable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, schema := testenv.PostgresWithSchema(t)
	opts := dlqpg.Options{Table: schema + ".parked", MaxEntries: 1}
	require.NoError(t, dlqpg.Migrate(ctx, pool, opts))

	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, "SET search_path TO pg_catalog")
	require.NoError(t, err)
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "SET search_path TO "+schema) }()
	s, err := dlqpg.New(conn, opts)
	require.NoError(t, err)

	require.NoError(t, s.Put(ctx, entry("a", 0)))
	require.ErrorIs(t, s.Put(ctx, entry("b", 0)), dlq.ErrFull)
	p, err := s.List(ctx, dlq.Filter{Source: "orders"}, "", 10)
	require.NoError(t, err)
	require.Len(t, p.Entries, 1)
	n, err := s.Count(ctx, dlq.Filter{})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	tok, err := s.Reserve(ctx, "a", time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.DeleteReserved(ctx, "a", tok))
	n, err = s.Purge(ctx, dlq.Filter{})
	require.NoError(t, err)
	require.Zero(t, n)
}

// TestSeparateTables checks two stores on two tables of one schema do not
// see each other's entries or share a cap.
func TestSeparateTables(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := testenv.Postgres(t)
	var stores []*dlqpg.Store
	for _, table := range []string{"dlq_a", "dlq_b"} {
		opts := dlqpg.Options{Table: table, MaxEntries: 1}
		require.NoError(t, dlqpg.Migrate(ctx, pool, opts))
		s, err := dlqpg.New(pool, opts)
		require.NoError(t, err)
		stores = append(stores, s)
	}
	require.NoError(t, stores[0].Put(ctx, entry("x", 0)))
	require.NoError(t, stores[1].Put(ctx, entry("y", 0)))
	_, err := stores[1].Get(ctx, "x")
	require.ErrorIs(t, err, dlq.ErrNotFound)
	require.Equal(t, 1, rowCount(t, pool, "dlq_a"))
	require.Equal(t, 1, rowCount(t, pool, "dlq_b"))
}

func TestInvalidTable(t *testing.T) {
	t.Parallel()
	// The rules for names are tested in internal/pgschema; these prove
	// dlqpg applies them, with its own suffixes, under its own sentinel.
	bad := []string{
		"Parked",
		"a.b.c",
		strings.Repeat("p", 45), // too long with _last_failed_at_idx
	}
	for _, name := range bad {
		opts := dlqpg.Options{Table: name}
		_, err := dlqpg.New(nopDB{}, opts)
		require.ErrorIs(t, err, dlqpg.ErrInvalidTable, "New, table %q", name)
		require.ErrorIs(t, dlqpg.Migrate(t.Context(), nopDB{}, opts), dlqpg.ErrInvalidTable, "Migrate, table %q", name)
		_, err = dlqpg.Schema(opts)
		require.ErrorIs(t, err, dlqpg.ErrInvalidTable, "Schema, table %q", name)
	}
	for _, name := range []string{"parked", "_p2", "ops.parked", strings.Repeat("p", 44)} {
		_, err := dlqpg.New(nopDB{}, dlqpg.Options{Table: name})
		require.NoError(t, err, name)
	}
}

func TestSchemaSQL(t *testing.T) {
	t.Parallel()
	sql, err := dlqpg.Schema(dlqpg.Options{Table: "ops.parked"})
	require.NoError(t, err)
	require.Contains(t, sql, `CREATE TABLE IF NOT EXISTS "ops"."parked"`)
	require.Contains(t, sql, `CREATE INDEX IF NOT EXISTS "parked_last_failed_at_idx" ON "ops"."parked" (last_failed_at, id)`)
	require.Contains(t, sql, `CREATE INDEX IF NOT EXISTS "parked_reason_idx" ON "ops"."parked"`)
	require.Contains(t, sql, `CREATE INDEX IF NOT EXISTS "parked_source_idx" ON "ops"."parked"`)
	sql, err = dlqpg.Schema(dlqpg.Options{})
	require.NoError(t, err)
	require.Contains(t, sql, `CREATE TABLE IF NOT EXISTS "idemq_dead_letters"`)
}
