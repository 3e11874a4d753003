package jetstream_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/consumertest"
	"github.com/idemq/idemq/consumer/jetstream"
)

// TestManyWithFailures runs 20,000 messages (5,000 with -short) through
// four Consumers on four Sources of one durable while they are published
// (consumertest.Stress). The handler fails one attempt in ten, half of
// those asking for an immediate redelivery (Nak) and half going through
// the backoff (NakWithDelay). Every message must succeed exactly once, at
// the attempt that follows its failures, and be acknowledged exactly once;
// the stream (a work queue) must be empty at the end, with nothing
// pending.
func TestManyWithFailures(t *testing.T) {
	t.Parallel()
	n := 20_000
	if testing.Short() {
		n = 5_000
	}
	nc := connect(t)
	stream := uniqueStream(t, nc)
	first, pub := newQueue(t, nc, jetstream.Options{Stream: stream})
	srcs := make([]consumer.Source, 4)
	for i := range srcs {
		// Each Consumer on a connection of its own, as in separate
		// processes.
		src, err := jetstream.New(connect(t), jetstream.Options{Stream: stream})
		require.NoError(t, err)
		srcs[i] = src
	}
	consumertest.Stress(t, consumertest.StressConfig{Publisher: pub, Sources: srcs, Messages: n})
	requireDrained(t, nc, first)
}
