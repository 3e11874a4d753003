package redisstream_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/consumertest"
	"github.com/idemq/idemq/consumer/redisstream"
	"github.com/idemq/idemq/internal/testenv"
)

// crashConfig is what the crash child needs to reach the stream.
type crashConfig struct {
	Addr, Prefix, Stream string
	Lease                time.Duration
}

// TestCrash kills a consumer process that holds every message of a stream
// while its handlers run, and checks that another consumer gets each of
// them once its lease lapses, as the second delivery, and that none is lost
// or acknowledged twice (consumertest.Crash). While the child lives, the
// pending entries list shows every message as the child's, delivered once,
// with its lease extended.
func TestCrash(t *testing.T) {
	t.Parallel()
	const n = 25
	const lease = time.Second
	client, prefix := testenv.Redis(t)
	cfg := crashConfig{Addr: testenv.RedisAddr(), Prefix: prefix, Stream: "crash", Lease: lease}
	src := newSource(t, client, prefix, cfg.Stream, "parent", lease)
	consumertest.Crash(t, consumertest.CrashConfig{
		Publisher: newPublisher(t, client, prefix, cfg.Stream),
		Child:     cfg,
		Held:      n,
		Holding: func() {
			// While the child lives, its runtime extends the leases: after
			// more than a lease, every message is still its own, delivered
			// once.
			time.Sleep(3 * lease / 2)
			p := pending(t, client, src)
			require.Len(t, p, n)
			for _, e := range p {
				require.Equal(t, "child", e.Consumer)
				require.EqualValues(t, 1, e.RetryCount)
				require.Less(t, e.Idle, lease, "the child's lease on %s was not extended", e.ID)
			}
		},
		Source: src,
	})
	requireEmpty(t, client, src)
}

// TestCrashChild is the process TestCrash kills.
func TestCrashChild(t *testing.T) {
	consumertest.CrashChild(t, func(cfg crashConfig) consumer.Source {
		client := redis.NewClient(&redis.Options{Addr: cfg.Addr})
		src, err := redisstream.New(client, redisstream.Options{
			Stream: cfg.Stream, Prefix: cfg.Prefix, Consumer: "child", VisibilityTimeout: cfg.Lease,
		})
		require.NoError(t, err)
		return src
	})
}
