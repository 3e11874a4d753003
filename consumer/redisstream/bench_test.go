package redisstream_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/consumertest"
	"github.com/idemq/idemq/consumer/redisstream"
	"github.com/idemq/idemq/internal/testenv"
)

// BenchmarkRedisStream measures the driver end to end
// (consumertest.Throughput): one goroutine publishes b.N messages in
// batches of 500 while four Consumers, each on a Source of its own
// (MaxInFlight 256), fetch, handle with a no-op handler and acknowledge
// them. The timer covers everything from the first publish to the last
// acknowledgement; msgs/s is b.N over that time. Shutting the consumers
// down afterwards (up to Block, 2s, while each waits out its last
// XREADGROUP) is not counted.
func BenchmarkRedisStream(b *testing.B) {
	client, prefix := testenv.Redis(b)
	pub, err := redisstream.NewPublisher(client, redisstream.PublisherOptions{Stream: "bench", Prefix: prefix})
	require.NoError(b, err)
	srcs := make([]consumer.Source, 4)
	for i := range srcs {
		src, err := redisstream.New(client, redisstream.Options{Stream: "bench", Prefix: prefix})
		require.NoError(b, err)
		require.NoError(b, src.Setup(b.Context()))
		srcs[i] = src
	}
	consumertest.Throughput(b, consumertest.ThroughputConfig{Publisher: pub, Sources: srcs})
}
