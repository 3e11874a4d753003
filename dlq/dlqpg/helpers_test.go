package dlqpg_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqpg"
	"github.com/idemq/idemq/internal/testenv"
)

// newStore returns a migrated store on a schema of its own, and the pool
// under it for looking at the table.
func newStore(t testing.TB, opts dlqpg.Options) (*dlqpg.Store, *pgxpool.Pool) {
	t.Helper()
	pool := testenv.Postgres(t)
	require.NoError(t, dlqpg.Migrate(context.Background(), pool, opts))
	s, err := dlqpg.New(pool, opts)
	require.NoError(t, err)
	return s, pool
}

// base is a time with whole microseconds, as PostgreSQL keeps them.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)

// entry returns a complete entry with id, parked at base plus offset.
func entry(id string, offset time.Duration) dlq.Entry {
	return dlq.Entry{
		ID: id,
		Message: consumer.Message{
			ID:         "msg-" + id,
			Key:        "key-" + id,
			Body:       []byte(`{"order":42}`),
			Headers:    map[string]string{"content-type": "application/json", "empty": ""},
			Attempt:    5,
			EnqueuedAt: base.Add(-time.Hour),
		},
		Source:        "orders",
		Reason:        dlq.ReasonAttemptsExhausted,
		Error:         "charge: card declined",
		ErrorChain:    []string{"charge: card declined", "card declined"},
		Attempts:      5,
		FirstFailedAt: base.Add(offset - time.Minute),
		LastFailedAt:  base.Add(offset),
	}
}

// expireReservation moves id's reservation deadline into the past, as if
// its lease had run out, without waiting for it.
func expireReservation(t testing.TB, db dlqpg.DBTX, id string) {
	t.Helper()
	tag, err := db.Exec(context.Background(),
		`UPDATE idemq_dead_letters SET reserved_until = statement_timestamp() - interval '1 second'
		 WHERE id = $1 AND reserved_until IS NOT NULL`, id)
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected(), "no reservation of %q", id)
}

// rowCount counts the rows of table.
func rowCount(t testing.TB, db dlqpg.DBTX, table string) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n))
	return n
}

// nopDB stands in for a database in tests of configuration that must fail
// before any statement runs. It is not a mock of PostgreSQL: every call
// fails. It has no SendBatch.
type nopDB struct{}

var errNoDB = errors.New("no database in this test")

func (nopDB) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, errNoDB
}
func (nopDB) Query(context.Context, string, ...any) (pgx.Rows, error) { return nil, errNoDB }
func (nopDB) QueryRow(context.Context, string, ...any) pgx.Row        { return nil }
