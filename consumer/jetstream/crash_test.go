package jetstream_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/consumertest"
	"github.com/idemq/idemq/consumer/jetstream"
)

// crashConfig is what the crash child needs to reach the stream.
type crashConfig struct {
	URL, Stream string
	Lease       time.Duration
}

// TestCrash kills a consumer process that holds every message of a stream
// while its handlers run, and checks that another consumer gets each of
// them once its ack wait lapses, as the second delivery, and that none is
// lost or acknowledged twice (consumertest.Crash). While the child lives,
// the durable shows every message delivered once and unacknowledged.
func TestCrash(t *testing.T) {
	t.Parallel()
	const n = 25
	const lease = time.Second
	nc := connect(t)
	cfg := crashConfig{URL: natsURL(), Stream: uniqueStream(t, nc), Lease: lease}
	src, pub := newQueue(t, nc, jetstream.Options{Stream: cfg.Stream, AckWait: lease})
	consumertest.Crash(t, consumertest.CrashConfig{
		Publisher: pub,
		Child:     cfg,
		Held:      n,
		Holding: func() {
			// While the child lives, its runtime extends the leases: after
			// more than a lease, every message is still its own, delivered
			// once.
			time.Sleep(3 * lease / 2)
			info := consumerInfo(t, nc, src)
			require.EqualValues(t, n, info.NumAckPending, "held by the child")
			require.Zero(t, info.NumRedelivered, "the child's leases were not extended")
			require.Zero(t, info.NumPending)
		},
		Source: src,
	})
	requireDrained(t, nc, src)
}

// TestCrashChild is the process TestCrash kills.
func TestCrashChild(t *testing.T) {
	consumertest.CrashChild(t, func(cfg crashConfig) consumer.Source {
		nc, err := nats.Connect(cfg.URL)
		require.NoError(t, err)
		src, err := jetstream.New(nc, jetstream.Options{Stream: cfg.Stream, AckWait: cfg.Lease})
		require.NoError(t, err)
		return src
	})
}
