package pgqueue_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/pgqueue"
	"github.com/idemq/idemq/internal/testenv"
)

// BenchmarkPGQueue publishes b.N messages, then consumes them with four
// consumers on four Sources and a no-op handler. msgs/s is the whole run,
// publish and consume; publish-msgs/s and consume-msgs/s are its halves.
// Run it with a fixed count, such as -benchtime 100000x.
func BenchmarkPGQueue(b *testing.B) {
	const (
		consumers   = 4
		maxInFlight = 256
		chunk       = 1000
	)
	ctx := b.Context()
	migrated := testenv.Postgres(b)
	cfg := migrated.Config()
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(b, err)
	b.Cleanup(pool.Close) // before the schema is dropped
	opts := pgqueue.Options{PollInterval: 50 * time.Millisecond}
	require.NoError(b, pgqueue.Migrate(ctx, pool, opts))
	pub, err := pgqueue.NewPublisher(pool, opts)
	require.NoError(b, err)

	msgs := make([]consumer.Message, b.N)
	for i := range msgs {
		msgs[i] = consumer.Message{ID: fmt.Sprintf("bench-%09d", i), Body: []byte(`{"order":42,"amount":"19.99"}`)}
	}

	b.ResetTimer()
	start := time.Now()
	for c := range slices.Chunk(msgs, chunk) {
		require.NoError(b, pub.Publish(ctx, c...))
	}
	published := time.Now()

	var done atomic.Int64
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	handler := consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		if done.Add(1) == int64(b.N) {
			stop()
		}
		return nil
	})
	var wg sync.WaitGroup
	for range consumers {
		src, err := pgqueue.New(pool, opts)
		require.NoError(b, err)
		c, err := consumer.New(src, handler, consumer.Config{MaxInFlight: maxInFlight})
		require.NoError(b, err)
		wg.Go(func() { _ = c.Run(runCtx) })
	}
	wg.Wait() // Run drains: every ack is done
	end := time.Now()
	b.StopTimer()

	require.Equal(b, int64(b.N), done.Load())
	require.Zero(b, rowCount(b, pool, "idemq_queue"))
	b.ReportMetric(float64(b.N)/end.Sub(start).Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/published.Sub(start).Seconds(), "publish-msgs/s")
	b.ReportMetric(float64(b.N)/end.Sub(published).Seconds(), "consume-msgs/s")
}
