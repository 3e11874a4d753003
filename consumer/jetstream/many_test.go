package jetstream_test

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
	"github.com/idemq/idemq/consumer/jetstream"
)

// TestManyWithFailures runs 20,000 messages (5,000 with -short) through
// four Consumers on four Sources of one durable while they are published.
// The handler fails one attempt in ten, half of those asking for an
// immediate redelivery (Nak) and half going through the backoff
// (NakWithDelay). Every message must succeed exactly once, at the attempt
// that follows its failures, and be acknowledged exactly once; the stream
// (a work queue) must be empty at the end, with nothing pending.
func TestManyWithFailures(t *testing.T) {
	t.Parallel()
	n := 20_000
	if testing.Short() {
		n = 5_000
	}
	const consumers = 4
	nc := connect(t)
	stream := uniqueStream(t, nc)
	_, pub := newQueue(t, nc, jetstream.Options{Stream: stream})

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
	var srcs []*jetstream.Source
	var wg sync.WaitGroup
	runErrs := make([]error, consumers)
	for i := range consumers {
		// Each Consumer on a connection of its own, as in separate
		// processes.
		src, err := jetstream.New(connect(t), jetstream.Options{Stream: stream})
		require.NoError(t, err)
		srcs = append(srcs, src)
		counted := ackCounter{src, func(m *consumer.Message) {
			mu.Lock()
			acks[m.ID]++
			mu.Unlock()
		}}
		c, err := consumer.New(counted, h, consumer.Config{
			MaxInFlight: 128,
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
	requireDrained(t, nc, srcs[0])
}
