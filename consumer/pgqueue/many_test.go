package pgqueue_test

import (
	"hash/fnv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/consumertest"
	"github.com/idemq/idemq/consumer/pgqueue"
)

// plannedFailures is how many times the handler fails message id before it
// succeeds: about one message in ten fails, and one in a hundred fails
// twice.
func plannedFailures(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	switch v := h.Sum32() % 400; {
	case v < 4:
		return 2
	case v < 40:
		return 1
	default:
		return 0
	}
}

// TestManyWithFailures runs 50,000 messages (10,000 with -short) through
// four consumers, each on a Source of its own, over one queue while they
// are published, with planned transient failures (consumertest.Stress):
// every message is handled successfully exactly once, on the attempt after
// its planned failures, and acknowledged exactly once, and the table is
// empty at the end.
func TestManyWithFailures(t *testing.T) {
	t.Parallel()
	n := 50_000
	if testing.Short() {
		n = 10_000
	}
	opts := pgqueue.Options{PollInterval: 50 * time.Millisecond}
	_, pub, pool := newQueue(t, opts)
	srcs := make([]consumer.Source, 4)
	for i := range srcs {
		srcs[i], _ = sourceOn(t, pool, opts)
	}
	consumertest.Stress(t, consumertest.StressConfig{
		Publisher:   pub,
		Sources:     srcs,
		Messages:    n,
		MaxInFlight: 256,
		Failures:    plannedFailures,
	})
	require.Zero(t, rowCount(t, pool, "idemq_queue"), "rows left after every message was acknowledged")
}
