package amqp_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/amqp"
	"github.com/idemq/idemq/consumer/consumertest"
)

// TestManyWithFailures runs 20,000 messages (5,000 with -short) through
// four Consumers, each on a Source of its own, while they are published
// (consumertest.Stress). The handler fails one attempt in ten, half of
// those asking for an immediate redelivery (basic.nack with requeue) and
// half going through the backoff (a Nack with a delay: through a delay
// queue). Every message must succeed exactly once, at the attempt that
// follows its failures, and be acknowledged exactly once; the queue and
// its delay queues must be empty at the end.
func TestManyWithFailures(t *testing.T) {
	t.Parallel()
	n := 20_000
	if testing.Short() {
		n = 5_000
	}
	const maxInFlight = 128
	url := amqp.BrokerURL(t)
	q := amqp.TempQueue(t, url)
	pub, err := amqp.NewPublisher(amqp.PublisherOptions{URL: url, Queue: q})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, pub.Close()) })
	require.NoError(t, pub.Setup(t.Context())) // one declaration before the Sources'

	srcs := make([]*amqp.Source, 4)
	sources := make([]consumer.Source, len(srcs))
	for i := range srcs {
		src, err := amqp.New(amqp.Options{URL: url, Queue: q, Prefetch: maxInFlight})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, src.Close()) })
		srcs[i], sources[i] = src, src
	}
	consumertest.Stress(t, consumertest.StressConfig{
		Publisher: pub, Sources: sources, Messages: n, MaxInFlight: maxInFlight,
	})

	// Nothing is left, waiting or held: every Source is still connected,
	// so anything left would be delivered to them.
	for _, src := range srcs {
		requireNothing(t, src, 200*time.Millisecond)
	}
	require.Zero(t, amqp.QueueDepth(t, url, q))
	require.Zero(t, amqp.QueueDepth(t, url, srcs[0].DelayQueues()[0]))
}
