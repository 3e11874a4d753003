package pgqueue_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/consumertest"
	"github.com/idemq/idemq/consumer/pgqueue"
	"github.com/idemq/idemq/internal/testenv"
)

// crashConfig is what the crash child needs to reach the queue.
type crashConfig struct {
	URL, Schema string
	Lease       time.Duration
}

// crashOptions are the queue's options in the test and in its child.
func crashOptions(lease time.Duration) pgqueue.Options {
	return pgqueue.Options{VisibilityTimeout: lease, PollInterval: 50 * time.Millisecond}
}

// TestCrashRedelivers kills a consumer process that holds messages, with
// SIGKILL so that nothing in it runs on the way out, and checks that
// another consumer gets every message once its leases run out: the held
// ones as their second delivery, no sooner than a quarter lease after the
// kill, the others as their first, none lost, none twice
// (consumertest.Crash).
func TestCrashRedelivers(t *testing.T) {
	t.Parallel()
	const (
		hold  = 20 // what the child holds when it is killed
		spare = 10 // what it never fetches (its MaxInFlight is hold)
		lease = 2 * time.Second
	)
	pool, schema := testenv.PostgresWithSchema(t)
	opts := crashOptions(lease)
	require.NoError(t, pgqueue.Migrate(t.Context(), pool, opts))
	pub, err := pgqueue.NewPublisher(pool, opts)
	require.NoError(t, err)
	src, err := pgqueue.New(pool, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })

	consumertest.Crash(t, consumertest.CrashConfig{
		Publisher: pub,
		Child:     crashConfig{URL: testenv.PostgresURL(), Schema: schema, Lease: lease},
		Held:      hold,
		Spare:     spare,
		Holding: func() {
			require.Equal(t, hold, leasedRows(t, pool), "rows leased by the child")
		},
		Source: src,
		// The child extended each lease at least every half lease, so the
		// last one ended at least half a lease after the kill.
		MinRedelay: lease / 4,
		Within:     10 * lease,
	})
	require.Zero(t, rowCount(t, pool, "idemq_queue"))
}

func leasedRows(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(t.Context(),
		`SELECT count(*) FROM idemq_queue WHERE lease_token IS NOT NULL AND visible_at > statement_timestamp()`).Scan(&n))
	return n
}

// TestCrashChild is the consumer that TestCrashRedelivers kills.
func TestCrashChild(t *testing.T) {
	consumertest.CrashChild(t, func(cfg crashConfig) consumer.Source {
		pc, err := pgxpool.ParseConfig(cfg.URL)
		require.NoError(t, err)
		pc.ConnConfig.RuntimeParams["search_path"] = cfg.Schema
		pool, err := pgxpool.NewWithConfig(t.Context(), pc)
		require.NoError(t, err)
		src, err := pgqueue.New(pool, crashOptions(cfg.Lease))
		require.NoError(t, err)
		return src
	})
}
