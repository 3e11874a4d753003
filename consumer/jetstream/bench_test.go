package jetstream_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/consumertest"
	"github.com/idemq/idemq/consumer/jetstream"
)

// BenchmarkJetStream measures the driver end to end
// (consumertest.Throughput): one goroutine publishes b.N messages in
// batches of 500 while four Consumers, each on a Source and a connection
// of its own (MaxInFlight 256), fetch, handle with a no-op handler and
// acknowledge them (AckSync: one round trip each). The timer covers
// everything from the first publish to the last acknowledgement; msgs/s is
// b.N over that time.
func BenchmarkJetStream(b *testing.B) {
	const consumers, maxInFlight = 4, 256
	nc := connect(b)
	opts := jetstream.Options{Stream: uniqueStream(b, nc), MaxAckPending: consumers * maxInFlight}
	_, pub := newQueue(b, nc, opts)
	srcs := make([]consumer.Source, consumers)
	for i := range srcs {
		src, err := jetstream.New(connect(b), opts)
		require.NoError(b, err)
		srcs[i] = src
	}
	consumertest.Throughput(b, consumertest.ThroughputConfig{
		Publisher: pub, Sources: srcs, MaxInFlight: maxInFlight,
	})
}
