package idempotencypg_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/idempotency/idempotencypg"
	"github.com/idemq/idemq/internal/testenv"
)

// newStore returns a migrated store on a schema of its own, and the pool
// under it for looking at the table.
func newStore(t testing.TB) (*idempotencypg.Store, *pgxpool.Pool) {
	t.Helper()
	pool := testenv.Postgres(t)
	require.NoError(t, idempotencypg.Migrate(context.Background(), pool, idempotencypg.Options{}))
	s, err := idempotencypg.New(pool, idempotencypg.Options{})
	require.NoError(t, err)
	return s, pool
}

// expire moves key's deadline into the past, as if its lease or retention
// had run out, without waiting for it.
func expire(t testing.TB, db idempotencypg.DBTX, key string) {
	t.Helper()
	tag, err := db.Exec(context.Background(),
		`UPDATE idemq_idempotency_keys SET expires_at = statement_timestamp() - interval '1 second' WHERE key = $1`, key)
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected(), "no row for key %q", key)
}

// rowCount counts the rows of table.
func rowCount(t testing.TB, db idempotencypg.DBTX, table string) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n))
	return n
}
