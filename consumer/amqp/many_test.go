package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/amqp"
)

// TestManyWithFailures runs 20,000 messages (5,000 with -short) through
// four Consumers, each on a Source of its own, while they are published.
// The handler fails one attempt in ten, half of those asking for an
// immediate redelivery (basic.nack with requeue) and half going through
// the backoff (a Nack with a delay: through a delay queue). Every message
// must succeed exactly once, at the attempt that follows its failures, and
// be acknowledged exactly once; the queue and its delay queues must be
// empty at the end.
func TestManyWithFailures(t *testing.T) {
	t.Parallel()
	n := 20_000
	if testing.Short() {
		n = 5_000
	}
	const consumers, maxInFlight = 4, 128
	url := amqp.BrokerURL(t)
	q := amqp.TempQueue(t, url)
	pub, err := amqp.NewPublisher(amqp.PublisherOptions{URL: url, Queue: q})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, pub.Close()) })
	require.NoError(t, pub.Setup(t.Context())) // one declaration before the Sources'

	var (
		mu        sync.Mutex
		failures  = make(map[string]int, n)
		successes = make(map[string]int, n)
		attemptOK = make(map[string]int, n)
		acks      = make(map[string]int, n)
		badIDs    []string
		done      = make(chan struct{})
	)
	ids := make(map[string]bool, n)
	for i := range n {
		ids[fmt.Sprintf("many-%06d", i)] = true
	}
	transient := errors.New("transient")
	h := consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if !ids[m.ID] {
			badIDs = append(badIDs, m.ID)
			return nil
		}
		if rand.IntN(10) == 0 {
			failures[m.ID]++
			if rand.IntN(2) == 0 {
				return consumer.RetryAfter(0, transient)
			}
			return transient
		}
		successes[m.ID]++
		if successes[m.ID] == 1 {
			attemptOK[m.ID] = m.Attempt
			if len(attemptOK) == n {
				close(done)
			}
		}
		return nil
	})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var srcs []*amqp.Source
	var wg sync.WaitGroup
	runErrs := make([]error, consumers)
	for i := range consumers {
		src, err := amqp.New(amqp.Options{URL: url, Queue: q, Prefetch: maxInFlight})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, src.Close()) })
		srcs = append(srcs, src)
		counted := ackCounter{src, func(m *consumer.Message) {
			mu.Lock()
			acks[m.ID]++
			mu.Unlock()
		}}
		c, err := consumer.New(counted, h, consumer.Config{
			MaxInFlight: maxInFlight,
			Backoff:     consumer.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond},
			Logger:      slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		wg.Go(func() { runErrs[i] = c.Run(ctx) })
	}

	msgs := make([]consumer.Message, 0, n)
	for id := range ids {
		msgs = append(msgs, consumer.Message{ID: id, Key: id[len(id)-2:], Body: []byte(id)})
	}
	slices.SortFunc(msgs, func(a, b consumer.Message) int { return strings.Compare(a.ID, b.ID) })
	for chunk := range slices.Chunk(msgs, 1000) {
		require.NoError(t, pub.Publish(ctx, chunk...))
	}

	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		mu.Lock()
		got := len(attemptOK)
		mu.Unlock()
		require.FailNow(t, "not every message succeeded", "%d of %d after 5 minutes", got, n)
	}
	cancel()
	wg.Wait()
	for i, err := range runErrs {
		require.NoError(t, err, "Run of consumer %d", i)
	}

	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, badIDs, "delivered messages that were never published")
	var twice, wrongAttempt []string
	totalFailures := 0
	for id := range ids {
		totalFailures += failures[id]
		if successes[id] != 1 || acks[id] != 1 {
			twice = append(twice, fmt.Sprintf("%s (succeeded %d times, acked %d times)", id, successes[id], acks[id]))
		}
		if attemptOK[id] != 1+failures[id] {
			wrongAttempt = append(wrongAttempt, fmt.Sprintf("%s (failed %d times, succeeded at attempt %d)", id, failures[id], attemptOK[id]))
		}
	}
	require.Empty(t, twice, "every message must succeed and be acknowledged exactly once")
	require.Empty(t, wrongAttempt, "Attempt must count deliveries")
	require.Greater(t, totalFailures, n/20, "the handler failed too rarely for the test to mean much")
	t.Logf("%d messages, %d failed attempts", n, totalFailures)

	// Nothing is left, waiting or held: every Source is still connected,
	// so anything left would be delivered to them.
	for _, src := range srcs {
		requireNothing(t, src, 200*time.Millisecond)
	}
	require.Zero(t, amqp.QueueDepth(t, url, q))
	require.Zero(t, amqp.QueueDepth(t, url, srcs[0].DelayQueues()[0]))
}
