package consumertest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

// StressConfig describes a run of [Stress].
type StressConfig struct {
	// Publisher publishes the messages to the queue the Sources consume.
	Publisher consumer.Publisher

	// Sources are Sources of one queue; Stress runs a Consumer on each, at
	// once. They are still open when Stress returns, so that the caller can
	// check through them that nothing is left.
	Sources []consumer.Source

	// Messages is how many messages are published.
	Messages int

	// MaxInFlight is each Consumer's [consumer.Config.MaxInFlight].
	// Default 128.
	MaxInFlight int

	// Failures, when set, is how many times the handler fails message id
	// before it succeeds, each time with an error that goes through the
	// backoff. When nil, each attempt fails at random, one in ten, half of
	// those asking for an immediate redelivery (Nack with no delay) and
	// half going through the backoff (Nack with a delay).
	Failures func(id string) int
}

// stressTimeout bounds how long the Consumers of [Stress] may take.
const stressTimeout = 5 * time.Minute

// Stress publishes cfg.Messages messages while one [consumer.Consumer] per
// Source handles them, with a handler that fails some attempts
// transiently, and checks the end to end guarantee: every message
// succeeds exactly once, at the attempt that follows its failures (Attempt
// is 1 + failures), and is acknowledged exactly once, and nothing that was
// never published is delivered. The Consumers have five minutes; Stress
// returns once they have stopped.
//
// What Stress cannot see is the backend's state: the caller checks
// afterwards, in its backend's terms, that the queue is empty and nothing
// is held.
func Stress(t *testing.T, cfg StressConfig) {
	t.Helper()
	n := cfg.Messages
	require.Positive(t, n, "consumertest: StressConfig.Messages")
	require.NotEmpty(t, cfg.Sources, "consumertest: StressConfig.Sources")
	require.NotNil(t, cfg.Publisher, "consumertest: StressConfig.Publisher")

	var (
		mu        sync.Mutex
		failures  = make(map[string]int, n)
		successes = make(map[string]int, n)
		attemptOK = make(map[string]int, n)
		acks      = make(map[string]int, n)
		badIDs    []string
		done      = make(chan struct{})
	)
	msgs := make([]consumer.Message, n)
	ids := make(map[string]bool, n)
	for i := range msgs {
		id := fmt.Sprintf("many-%06d", i)
		msgs[i] = consumer.Message{ID: id, Key: id[len(id)-2:], Body: []byte(id)}
		ids[id] = true
	}
	transient := errors.New("transient")
	fail := func(m *consumer.Message) error {
		if cfg.Failures != nil {
			if failures[m.ID] < cfg.Failures(m.ID) {
				return transient
			}
			return nil
		}
		if rand.IntN(10) == 0 {
			if rand.IntN(2) == 0 {
				return consumer.RetryAfter(0, transient)
			}
			return transient
		}
		return nil
	}
	h := consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if !ids[m.ID] {
			badIDs = append(badIDs, m.ID)
			return nil
		}
		if err := fail(m); err != nil {
			failures[m.ID]++
			return err
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
	onAck := func(m *consumer.Message) {
		mu.Lock()
		acks[m.ID]++
		mu.Unlock()
	}

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // also when a check stops the test early
	runErrs := make([]error, len(cfg.Sources))
	for i, src := range cfg.Sources {
		c, err := consumer.New(ackCounter{src, onAck}, h, consumer.Config{
			MaxInFlight: cmp.Or(cfg.MaxInFlight, 128),
			Backoff:     consumer.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond},
			Logger:      slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		wg.Go(func() { runErrs[i] = c.Run(ctx) })
	}

	for chunk := range slices.Chunk(msgs, 1000) {
		require.NoError(t, cfg.Publisher.Publish(ctx, chunk...))
	}
	select {
	case <-done:
	case <-time.After(stressTimeout):
		mu.Lock()
		got := len(attemptOK)
		mu.Unlock()
		require.FailNow(t, "not every message succeeded", "%d of %d after %s", got, n, stressTimeout)
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
	for _, m := range msgs {
		id := m.ID
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
}
