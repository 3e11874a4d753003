package pgqueue_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/pgqueue"
)

var errTransient = errors.New("transient failure")

// plannedFailures is how many times the handler fails message id before it
// succeeds: about one message in ten fails, and one in forty of those
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

// TestManyWithFailures runs four consumers, each on a Source of its own,
// over one queue with transient failures: every message is handled
// successfully exactly once, on the attempt after its planned failures,
// and the table is empty at the end.
func TestManyWithFailures(t *testing.T) {
	t.Parallel()
	n := 50_000
	if testing.Short() {
		n = 10_000
	}
	const consumers = 4
	ctx := t.Context()
	opts := pgqueue.Options{PollInterval: 50 * time.Millisecond}
	_, pub, pool := newQueue(t, opts)

	var (
		mu        sync.Mutex
		failures  = make(map[string]int, n)
		successes = make(map[string]int, n)
		attemptOK = make(map[string]int, n)
		wrong     []string
		finished  atomic.Int64
	)
	runCtx, stop := context.WithTimeout(ctx, 5*time.Minute)
	defer stop()
	handler := consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if failures[m.ID] < plannedFailures(m.ID) {
			failures[m.ID]++
			return errTransient
		}
		successes[m.ID]++
		attemptOK[m.ID] = m.Attempt
		if successes[m.ID] > 1 {
			wrong = append(wrong, fmt.Sprintf("%s handled successfully %d times", m.ID, successes[m.ID]))
		}
		if successes[m.ID] == 1 && finished.Add(1) == int64(n) {
			stop()
		}
		return nil
	})

	var wg sync.WaitGroup
	runErrs := make([]error, consumers)
	for i := range consumers {
		src, _ := sourceOn(t, pool, opts)
		c, err := consumer.New(src, handler, consumer.Config{
			MaxInFlight: 256,
			Backoff:     consumer.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond},
			Logger:      quietLogger(),
		})
		require.NoError(t, err)
		wg.Go(func() { runErrs[i] = c.Run(runCtx) })
	}

	// Publish while the consumers run, in chunks of various sizes.
	planned := make(map[string]int, n)
	msgs := make([]consumer.Message, n)
	for i := range msgs {
		id := fmt.Sprintf("many-%06d", i)
		msgs[i] = consumer.Message{ID: id, Key: fmt.Sprintf("k%d", i%13), Body: []byte(id)}
		planned[id] = plannedFailures(id)
	}
	for chunk := range slices.Chunk(msgs, 1000) {
		require.NoError(t, pub.Publish(ctx, chunk...))
	}
	wg.Wait()
	for _, err := range runErrs {
		require.NoError(t, err)
	}

	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, wrong)
	require.Len(t, successes, n, "messages never handled successfully within the time limit")
	totalFailures := 0
	for id, p := range planned {
		require.Equal(t, 1, successes[id], "successful handlings of %s", id)
		require.Equal(t, p, failures[id], "failures of %s", id)
		require.Equal(t, 1+p, attemptOK[id], "Attempt of %s on its success, after %d failures", id, p)
		totalFailures += p
	}
	t.Logf("%d messages, %d transient failures", n, totalFailures)
	require.Zero(t, rowCount(t, pool, "idemq_queue"), "rows left after every message was acknowledged")
}
