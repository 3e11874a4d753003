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

// BenchmarkPGQueue publishes b.N messages, in chunks of 1000, then
// consumes them with four consumers on four Sources and a no-op handler
// (consumertest.Throughput with PublishFirst). msgs/s is the whole run,
// publish and consume; publish-msgs/s and consume-msgs/s are its halves.
// Run it with a fixed count, such as -benchtime 100000x.
func BenchmarkPGQueue(b *testing.B) {
	migrated := testenv.Postgres(b)
	cfg := migrated.Config()
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(b.Context(), cfg)
	require.NoError(b, err)
	b.Cleanup(pool.Close) // before the schema is dropped
	opts := pgqueue.Options{PollInterval: 50 * time.Millisecond}
	require.NoError(b, pgqueue.Migrate(b.Context(), pool, opts))
	pub, err := pgqueue.NewPublisher(pool, opts)
	require.NoError(b, err)
	srcs := make([]consumer.Source, 4)
	for i := range srcs {
		srcs[i], err = pgqueue.New(pool, opts)
		require.NoError(b, err)
	}
	consumertest.Throughput(b, consumertest.ThroughputConfig{
		Publisher: pub, Sources: srcs, Batch: 1000, PublishFirst: true,
	})
	require.Zero(b, rowCount(b, pool, "idemq_queue"))
}
