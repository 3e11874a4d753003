package pgqueue_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer/pgqueue"
	"github.com/idemq/idemq/internal/testenv"
)

// newQueue migrates opts.Table on a schema of its own and returns a Source
// and a Publisher on it, and the pool under them.
func newQueue(t testing.TB, opts pgqueue.Options) (*pgqueue.Source, *pgqueue.Publisher, *pgxpool.Pool) {
	t.Helper()
	pool := testenv.Postgres(t)
	require.NoError(t, pgqueue.Migrate(context.Background(), pool, opts))
	src, pub := sourceOn(t, pool, opts)
	return src, pub, pool
}

// sourceOn returns a Source and a Publisher on pool, closing the Source
// when t ends (before the pool: cleanups run last-in first-out).
func sourceOn(t testing.TB, pool *pgxpool.Pool, opts pgqueue.Options) (*pgqueue.Source, *pgqueue.Publisher) {
	t.Helper()
	src, err := pgqueue.New(pool, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, src.Close()) })
	pub, err := pgqueue.NewPublisher(pool, opts)
	require.NoError(t, err)
	return src, pub
}

// rowCount counts the rows of table.
func rowCount(t testing.TB, db pgqueue.DBTX, table string) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n))
	return n
}
