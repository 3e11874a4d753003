package amqp_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/amqp"
	"github.com/idemq/idemq/consumer/consumertest"
)

// BenchmarkAMQP measures the driver end to end (consumertest.Throughput):
// one goroutine publishes b.N messages in batches of 500 (each batch waits
// for its publisher confirms) while four Consumers, each on a Source of its
// own (prefetch and MaxInFlight 256), fetch, handle with a no-op handler
// and acknowledge them. The timer covers everything from the first publish
// to the last acknowledgement; msgs/s is b.N over that time.
func BenchmarkAMQP(b *testing.B) {
	const maxInFlight = 256
	url := amqp.BrokerURL(b)
	q := amqp.TempQueue(b, url)
	pub, err := amqp.NewPublisher(amqp.PublisherOptions{URL: url, Queue: q})
	require.NoError(b, err)
	defer pub.Close()
	require.NoError(b, pub.Setup(b.Context()))
	srcs := make([]consumer.Source, 4)
	for i := range srcs {
		src, err := amqp.New(amqp.Options{URL: url, Queue: q, Prefetch: maxInFlight})
		require.NoError(b, err)
		defer src.Close()
		require.NoError(b, src.Setup(b.Context()))
		srcs[i] = src
	}
	consumertest.Throughput(b, consumertest.ThroughputConfig{
		Publisher: pub, Sources: srcs, MaxInFlight: maxInFlight,
	})
}
