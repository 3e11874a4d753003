package redisstream_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/consumertest"
	"github.com/idemq/idemq/consumer/redisstream"
	"github.com/idemq/idemq/internal/testenv"
)

// TestManyWithFailures runs 50,000 messages (10,000 with -short) through
// four Consumers on four Sources of one stream while they are published
// (consumertest.Stress). The handler fails one attempt in ten, half of
// those asking for an immediate redelivery (Nack(0): back into the stream)
// and half going through the backoff (Nack with a delay: through the
// delayed set). Every message must succeed exactly once, at the attempt
// that follows its failures, and be acknowledged exactly once; the stream,
// the pending entries list and the delayed set must be empty at the end.
func TestManyWithFailures(t *testing.T) {
	t.Parallel()
	n := 50_000
	if testing.Short() {
		n = 10_000
	}
	client, prefix := testenv.Redis(t)
	srcs := make([]consumer.Source, 4)
	for i := range srcs {
		src, err := redisstream.New(client, redisstream.Options{
			Stream: "many", Prefix: prefix, Consumer: fmt.Sprint("c", i),
			// Short enough that a message nacked with a delay while every
			// consumer waits in XREADGROUP is not held up long at the end.
			Block: 100 * time.Millisecond,
		})
		require.NoError(t, err)
		srcs[i] = src
	}
	consumertest.Stress(t, consumertest.StressConfig{
		Publisher: newPublisher(t, client, prefix, "many"),
		Sources:   srcs,
		Messages:  n,
	})
	requireEmpty(t, client, srcs[0].(*redisstream.Source))
}
