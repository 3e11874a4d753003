package amqp_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/amqp"
	"github.com/idemq/idemq/consumer/consumertest"
)

// crashConfig is what the crash child needs to reach the queue.
type crashConfig struct {
	URL, Queue string
	Prefetch   int
}

// TestCrash kills (SIGKILL) a consumer process that holds every message of
// a queue while its handlers run, and checks that another consumer gets
// each of them, as the second delivery, and that none is lost or
// acknowledged twice (consumertest.Crash). While the child lives, the
// broker gives its messages to no one else: without a lease, the channel
// is the lease.
func TestCrash(t *testing.T) {
	t.Parallel()
	const n = 25
	url := amqp.BrokerURL(t)
	q := amqp.TempQueue(t, url)
	pub, err := amqp.NewPublisher(amqp.PublisherOptions{URL: url, Queue: q})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, pub.Close()) })
	src, err := amqp.New(amqp.Options{URL: url, Queue: q, Prefetch: n})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, src.Close()) })

	consumertest.Crash(t, consumertest.CrashConfig{
		Publisher: pub,
		Child:     crashConfig{URL: url, Queue: q, Prefetch: n},
		Held:      n,
		Holding: func() {
			// While the child lives, nobody else gets its messages.
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			ds, err := src.Fetch(ctx, n)
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded, "got %d deliveries while the child held them", len(ds))
			require.Zero(t, amqp.QueueDepth(t, url, q), "messages ready while the child holds them")
		},
		Source: src,
	})
	requireNothing(t, src, time.Second)
	require.Zero(t, amqp.QueueDepth(t, url, q))
}

// TestCrashChild is the process TestCrash kills.
func TestCrashChild(t *testing.T) {
	consumertest.CrashChild(t, func(cfg crashConfig) consumer.Source {
		src, err := amqp.New(amqp.Options{URL: cfg.URL, Queue: cfg.Queue, Prefetch: cfg.Prefetch})
		require.NoError(t, err)
		return src
	})
}

// requireNothing checks that src delivers nothing within wait.
func requireNothing(t *testing.T, src consumer.Source, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	ds, err := src.Fetch(ctx, 10)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Empty(t, ds)
}
