package idempotencypg_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/idempotency/idempotencypg"
	"github.com/idemq/idemq/internal/testenv"
)

func TestMigrateIdempotent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := testenv.Postgres(t)
	for range 2 {
		require.NoError(t, idempotencypg.Migrate(ctx, pool, idempotencypg.Options{}))
		require.NoError(t, idempotencypg.MigrateInbox(ctx, pool, idempotencypg.InboxOptions{}))
	}
	require.Zero(t, rowCount(t, pool, "idemq_idempotency_keys"))
	require.Zero(t, rowCount(t, pool, "idemq_inbox"))

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
		"idemq_idempotency_keys_expires_at_idx",
		"idemq_idempotency_keys_pkey",
		"idemq_inbox_pkey",
		"idemq_inbox_processed_at_idx",
	}, indexes)
}

// TestMigrateConcurrent checks that processes starting together can all
// migrate: plain CREATE ... IF NOT EXISTS races in the catalog.
func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := testenv.Postgres(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			if i%2 == 0 {
				errs <- idempotencypg.Migrate(ctx, pool, idempotencypg.Options{})
			} else {
				errs <- idempotencypg.MigrateInbox(ctx, pool, idempotencypg.InboxOptions{})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestSchemaQualifiedTable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, schema := testenv.PostgresWithSchema(t)
	// The pool's search_path is schema; set it elsewhere to prove the
	// qualified name is used.
	opts := idempotencypg.Options{Table: schema + ".keys"}
	require.NoError(t, idempotencypg.Migrate(ctx, pool, opts))

	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, "SET search_path TO pg_catalog")
	require.NoError(t, err)
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "SET search_path TO "+schema) }()
	s, err := idempotencypg.New(conn, opts)
	require.NoError(t, err)

	c, err := s.Claim(ctx, "k", "", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claimed, c.Status)
	require.NoError(t, s.Release(ctx, "k", c.Token))
	c2, err := s.Claim(ctx, "k", "", time.Minute)
	require.NoError(t, err)
	require.Greater(t, c2.Token, c.Token)

	var seq string
	require.NoError(t, conn.QueryRow(ctx,
		"SELECT pg_get_serial_sequence($1, 'token')", schema+".keys").Scan(&seq))
	require.Equal(t, schema+".keys_token_seq", seq, "the sequence is not owned by the table")
}

func TestInvalidTable(t *testing.T) {
	t.Parallel()
	// The rules for names are tested in internal/pgschema; these prove
	// idempotencypg applies them, with its own suffixes, under its own
	// sentinel.
	bad := []string{
		"Keys",
		"a.b.c",
		strings.Repeat("k", 49), // too long with _expires_at_idx
	}
	for _, name := range bad {
		_, err := idempotencypg.New(nopDB{}, idempotencypg.Options{Table: name})
		require.ErrorIs(t, err, idempotencypg.ErrInvalidTable, "Store table %q", name)
		require.ErrorIs(t, idempotencypg.Migrate(t.Context(), nopDB{}, idempotencypg.Options{Table: name}),
			idempotencypg.ErrInvalidTable, "Migrate table %q", name)
		_, err = idempotencypg.Inbox(nopBeginner{}, idempotencypg.InboxOptions{Table: name})
		require.ErrorIs(t, err, idempotencypg.ErrInvalidTable, "Inbox table %q", name)
		require.ErrorIs(t, idempotencypg.MigrateInbox(t.Context(), nopDB{}, idempotencypg.InboxOptions{Table: name}),
			idempotencypg.ErrInvalidTable, "MigrateInbox table %q", name)
	}
	// Derived names must fit 63 bytes: the store's index adds 15, the
	// inbox's 17.
	_, err := idempotencypg.New(nopDB{}, idempotencypg.Options{Table: strings.Repeat("k", 48)})
	require.NoError(t, err)
	_, err = idempotencypg.Inbox(nopBeginner{}, idempotencypg.InboxOptions{Table: strings.Repeat("k", 47)})
	require.ErrorIs(t, err, idempotencypg.ErrInvalidTable)
	for _, name := range []string{"keys", "_k2", "app.keys", strings.Repeat("k", 46)} {
		_, err := idempotencypg.New(nopDB{}, idempotencypg.Options{Table: name})
		require.NoError(t, err, name)
		_, err = idempotencypg.Inbox(nopBeginner{}, idempotencypg.InboxOptions{Table: name})
		require.NoError(t, err, name)
	}
}

func TestSchemaSQL(t *testing.T) {
	t.Parallel()
	sql, err := idempotencypg.Schema(idempotencypg.Options{Table: "app.keys"})
	require.NoError(t, err)
	require.Contains(t, sql, `CREATE TABLE IF NOT EXISTS "app"."keys"`)
	require.Contains(t, sql, `CREATE SEQUENCE IF NOT EXISTS "app"."keys_token_seq"`)
	require.Contains(t, sql, `CREATE INDEX IF NOT EXISTS "keys_expires_at_idx" ON "app"."keys"`)
	sql, err = idempotencypg.InboxSchema(idempotencypg.InboxOptions{})
	require.NoError(t, err)
	require.Contains(t, sql, `CREATE TABLE IF NOT EXISTS "idemq_inbox"`)
}
