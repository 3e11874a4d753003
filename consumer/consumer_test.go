package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/internal/sourcetest"
)

var quiet = slog.New(slog.DiscardHandler)

func newQueue(t testing.TB, vis time.Duration) *consumer.MemQueue {
	t.Helper()
	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{VisibilityTimeout: vis})
	require.NoError(t, err)
	return q
}

func publishN(t testing.TB, q consumer.Publisher, n int, key func(i int) string) {
	t.Helper()
	msgs := make([]consumer.Message, n)
	for i := range msgs {
		msgs[i] = consumer.Message{ID: strconv.Itoa(i), Body: []byte(strconv.Itoa(i))}
		if key != nil {
			msgs[i].Key = key(i)
		}
	}
	require.NoError(t, q.Publish(context.Background(), msgs...))
}

// start runs c in the background and returns a stop function that cancels
// it and returns Run's result.
func start(t *testing.T, c *consumer.Consumer) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-errc
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func fastBackoff() consumer.Backoff {
	return consumer.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Jitter: consumer.NoJitter}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	q := newQueue(t, 0)
	h := consumer.HandlerFunc(func(context.Context, *consumer.Message) error { return nil })
	for name, tc := range map[string]struct {
		src consumer.Source
		h   consumer.Handler
		cfg consumer.Config
	}{
		"nil source":                {nil, h, consumer.Config{}},
		"nil handler":               {q, nil, consumer.Config{}},
		"negative MaxInFlight":      {q, h, consumer.Config{MaxInFlight: -1}},
		"negative Concurrency":      {q, h, consumer.Config{Concurrency: -1}},
		"Concurrency > MaxInFlight": {q, h, consumer.Config{MaxInFlight: 2, Concurrency: 3}},
		"negative DrainTimeout":     {q, h, consumer.Config{DrainTimeout: -time.Second}},
		"negative backoff":          {q, h, consumer.Config{Backoff: consumer.Backoff{Initial: -1}}},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := consumer.New(tc.src, tc.h, tc.cfg)
			require.Error(t, err)
			require.Nil(t, c)
		})
	}
	_, err := consumer.NewMemQueue(consumer.MemQueueConfig{VisibilityTimeout: -1})
	require.Error(t, err)
}

func TestRunTwiceIsRefused(t *testing.T) {
	t.Parallel()
	q := newQueue(t, 0)
	started := make(chan struct{})
	var once sync.Once
	c, err := consumer.New(q, consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		once.Do(func() { close(started) })
		return nil
	}), consumer.Config{Logger: quiet})
	require.NoError(t, err)
	stop := start(t, c)
	publishN(t, q, 1, nil)
	<-started
	require.ErrorIs(t, c.Run(context.Background()), consumer.ErrRunning)
	require.NoError(t, stop())
	// Once stopped it may run again.
	stop = start(t, c)
	require.NoError(t, stop())
}

func TestMaxInFlightIsNeverExceeded(t *testing.T) {
	t.Parallel()
	const maxInFlight, concurrency, n = 8, 4, 200
	q := newQueue(t, 0)
	rec := sourcetest.New(q)
	publishN(t, q, n, nil)

	release := make(chan struct{})
	var running, peakRunning atomic.Int32
	var handled atomic.Int32
	done := make(chan struct{})
	c, err := consumer.New(rec, consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		cur := running.Add(1)
		for {
			p := peakRunning.Load()
			if cur <= p || peakRunning.CompareAndSwap(p, cur) {
				break
			}
		}
		<-release
		running.Add(-1)
		if handled.Add(1) == n {
			close(done)
		}
		return nil
	}), consumer.Config{MaxInFlight: maxInFlight, Concurrency: concurrency, Logger: quiet})
	require.NoError(t, err)
	stop := start(t, c)

	// The consumer fills its window: 4 handlers blocked, 4 prefetched.
	require.Eventually(t, func() bool {
		held := 0
		rec.Locked(func() { held = rec.Held })
		return running.Load() == concurrency && held == maxInFlight
	}, 10*time.Second, time.Millisecond)
	close(release)
	<-done
	require.NoError(t, stop())

	rec.Locked(func() {
		require.Equal(t, maxInFlight, rec.PeakHeld, "peak unacked deliveries")
		require.Len(t, rec.Acks, n)
		for id, k := range rec.Acks {
			require.Equal(t, 1, k, "acks of %s", id)
		}
		require.Empty(t, rec.Nacks)
	})
	require.Equal(t, int32(concurrency), peakRunning.Load(), "peak concurrent handlers")
	require.Equal(t, consumer.MemQueueStats{}, q.Stats())
}

func TestOrderByKey(t *testing.T) {
	t.Parallel()
	const keys, perKey = 10, 100
	q := newQueue(t, 0)
	rec := sourcetest.New(q)
	msgs := make([]consumer.Message, 0, keys*perKey)
	for seq := range perKey {
		for k := range keys {
			msgs = append(msgs, consumer.Message{
				ID:   fmt.Sprintf("%d-%d", k, seq),
				Key:  fmt.Sprintf("k%d", k),
				Body: []byte(strconv.Itoa(seq)),
			})
		}
	}
	require.NoError(t, q.Publish(context.Background(), msgs...))

	var (
		mu          sync.Mutex
		order       = map[string][]int{}
		active      = map[string]int{}
		overlaps    int
		running     int
		peakRunning int
		handled     int
	)
	done := make(chan struct{})
	c, err := consumer.New(rec, consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		active[m.Key]++
		if active[m.Key] > 1 {
			overlaps++
		}
		running++
		peakRunning = max(peakRunning, running)
		mu.Unlock()

		time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond) // the handler's work

		seq, _ := strconv.Atoi(string(m.Body))
		mu.Lock()
		order[m.Key] = append(order[m.Key], seq)
		active[m.Key]--
		running--
		handled++
		if handled == keys*perKey {
			close(done)
		}
		mu.Unlock()
		return nil
	}), consumer.Config{MaxInFlight: 64, Concurrency: 8, OrderByKey: true, Logger: quiet})
	require.NoError(t, err)
	stop := start(t, c)
	<-done
	require.NoError(t, stop())

	mu.Lock()
	defer mu.Unlock()
	require.Zero(t, overlaps, "same-key handlers overlapped")
	require.Greater(t, peakRunning, 1, "different keys should run in parallel")
	want := make([]int, perKey)
	for i := range want {
		want[i] = i
	}
	require.Len(t, order, keys)
	for k, got := range order {
		require.Equal(t, want, got, "order of key %s", k)
	}
	rec.Locked(func() { require.Len(t, rec.Acks, keys*perKey) })
}

func TestLongHandlerKeepsItsLease(t *testing.T) {
	t.Parallel()
	const lease = 100 * time.Millisecond
	q := newQueue(t, lease)
	rec := sourcetest.New(q)
	var calls atomic.Int32
	finished := make(chan struct{})
	h := consumer.HandlerFunc(func(ctx context.Context, m *consumer.Message) error {
		calls.Add(1)
		time.Sleep(3 * lease) // the handler's work, three leases long
		if ctx.Err() != nil {
			return ctx.Err()
		}
		close(finished)
		return nil
	})
	// Two consumers on the same queue: if the lease ended while the first
	// one works, the second would receive the message.
	c1, err := consumer.New(rec, h, consumer.Config{Logger: quiet})
	require.NoError(t, err)
	c2, err := consumer.New(rec, h, consumer.Config{Logger: quiet})
	require.NoError(t, err)
	stop1 := start(t, c1)
	stop2 := start(t, c2)
	publishN(t, q, 1, nil)
	<-finished
	require.NoError(t, stop1())
	require.NoError(t, stop2())

	require.Equal(t, int32(1), calls.Load(), "handler calls")
	rec.Locked(func() {
		require.Equal(t, map[string]int{"0": 1}, rec.Acks)
		require.GreaterOrEqual(t, rec.Extends["0"], 2, "lease extensions")
	})
	require.Equal(t, consumer.MemQueueStats{}, q.Stats())
}

func TestLostLeaseCancelsHandler(t *testing.T) {
	t.Parallel()
	const lease = 100 * time.Millisecond
	q := newQueue(t, lease)
	rec := sourcetest.New(q)
	rec.FailExtend.Store(true)
	causes := make(chan error, 1)
	secondDone := make(chan struct{})
	c, err := consumer.New(rec, consumer.HandlerFunc(func(ctx context.Context, m *consumer.Message) error {
		if m.Attempt == 1 {
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return ctx.Err()
		}
		close(secondDone)
		return nil
	}), consumer.Config{Logger: quiet, Backoff: fastBackoff()})
	require.NoError(t, err)
	stop := start(t, c)
	publishN(t, q, 1, nil)

	require.ErrorIs(t, <-causes, consumer.ErrLeaseLost)
	// The lease ends in the queue too and the message comes back.
	rec.FailExtend.Store(false)
	<-secondDone
	require.NoError(t, stop())
	rec.Locked(func() {
		require.Equal(t, 2, rec.Fetched["0"])
		require.Equal(t, 1, rec.Acks["0"], "only the second delivery is acked")
		require.Empty(t, rec.Nacks, "a lost delivery is neither acked nor nacked")
	})
	require.Equal(t, consumer.MemQueueStats{}, q.Stats())
}

func TestPanicLeadsToRedelivery(t *testing.T) {
	t.Parallel()
	const n = 10
	q := newQueue(t, 0)
	rec := sourcetest.New(q)
	var mu sync.Mutex
	attempts := map[string][]int{}
	var ok atomic.Int32
	done := make(chan struct{})
	c, err := consumer.New(rec, consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		attempts[m.ID] = append(attempts[m.ID], m.Attempt)
		mu.Unlock()
		if m.ID == "3" && m.Attempt == 1 {
			panic("boom")
		}
		if ok.Add(1) == n {
			close(done)
		}
		return nil
	}), consumer.Config{Logger: quiet, Backoff: fastBackoff()})
	require.NoError(t, err)
	stop := start(t, c)
	publishN(t, q, n, nil)
	<-done
	require.NoError(t, stop())

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []int{1, 2}, attempts["3"])
	for i := range n {
		if i != 3 {
			require.Equal(t, []int{1}, attempts[strconv.Itoa(i)])
		}
	}
	rec.Locked(func() {
		require.Len(t, rec.Acks, n)
		for _, k := range rec.Acks {
			require.Equal(t, 1, k)
		}
		require.Equal(t, map[string][]time.Duration{"3": {time.Millisecond}}, rec.Nacks)
	})
}

func TestShutdownDrainsAndNacksTheRest(t *testing.T) {
	t.Parallel()
	const drain = 200 * time.Millisecond
	q := newQueue(t, 0)
	rec := sourcetest.New(q)
	publishN(t, q, 6, nil)

	releaseA := make(chan struct{})
	var started sync.WaitGroup
	started.Add(2)
	var mu sync.Mutex
	var roles []string
	causeB := make(chan error, 1)
	c, err := consumer.New(rec, consumer.HandlerFunc(func(ctx context.Context, m *consumer.Message) error {
		mu.Lock()
		role := "A"
		if len(roles) == 1 {
			role = "B"
		}
		roles = append(roles, m.ID)
		mu.Unlock()
		started.Done()
		if role == "A" {
			<-releaseA // finishes during the drain
			return nil
		}
		<-ctx.Done() // outlives the drain
		causeB <- context.Cause(ctx)
		return ctx.Err()
	}), consumer.Config{MaxInFlight: 4, Concurrency: 2, DrainTimeout: drain, Logger: quiet})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()

	started.Wait()
	require.Eventually(t, func() bool {
		held := 0
		rec.Locked(func() { held = rec.Held })
		return held == 4
	}, 10*time.Second, time.Millisecond)
	cancel()

	// The two prefetched messages go back at once.
	require.Eventually(t, func() bool {
		k := 0
		rec.Locked(func() { k = len(rec.Nacks) })
		return k == 2
	}, 10*time.Second, time.Millisecond)
	close(releaseA)
	require.ErrorIs(t, <-errc, consumer.ErrDrainTimeout)
	require.ErrorIs(t, <-causeB, consumer.ErrDrainTimeout)

	mu.Lock()
	a, b := roles[0], roles[1]
	mu.Unlock()
	rec.Locked(func() {
		require.Equal(t, map[string]int{a: 1}, rec.Acks)
		require.Len(t, rec.Nacks, 3)
		require.Contains(t, rec.Nacks, b)
		for id, ds := range rec.Nacks {
			require.Equal(t, []time.Duration{0}, ds, "nack of %s is for immediate redelivery", id)
		}
		require.Equal(t, 0, rec.Held)
	})
	require.Equal(t, consumer.MemQueueStats{Ready: 5}, q.Stats())
}

func TestShutdownWaitsForRunningHandlers(t *testing.T) {
	t.Parallel()
	q := newQueue(t, 0)
	rec := sourcetest.New(q)
	publishN(t, q, 2, nil)
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(2)
	c, err := consumer.New(rec, consumer.HandlerFunc(func(ctx context.Context, m *consumer.Message) error {
		started.Done()
		<-release
		return ctx.Err() // nil: a clean drain does not cancel handlers
	}), consumer.Config{MaxInFlight: 2, Logger: quiet})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	started.Wait()
	cancel()
	select {
	case err := <-errc:
		t.Fatalf("Run returned %v while handlers were running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	require.NoError(t, <-errc)
	rec.Locked(func() {
		require.Equal(t, map[string]int{"0": 1, "1": 1}, rec.Acks)
		require.Empty(t, rec.Nacks)
	})
}

func TestRedeliveryDelays(t *testing.T) {
	t.Parallel()
	q := newQueue(t, 0)
	rec := sourcetest.New(q)
	errPlain := errors.New("plain")
	done := make(chan struct{}, 3)
	c, err := consumer.New(rec, consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
		if m.Attempt > 1 {
			done <- struct{}{}
			return nil
		}
		switch m.ID {
		case "0":
			return fmt.Errorf("wrapped: %w", consumer.RetryAfter(7*time.Millisecond, errPlain))
		case "1":
			return consumer.Permanent(errPlain)
		default:
			return errPlain
		}
	}), consumer.Config{Logger: quiet, Backoff: consumer.Backoff{
		Initial: 3 * time.Millisecond, Max: 20 * time.Millisecond, Jitter: consumer.NoJitter}})
	require.NoError(t, err)
	stop := start(t, c)
	publishN(t, q, 3, nil)
	for range 3 {
		<-done
	}
	require.NoError(t, stop())
	rec.Locked(func() {
		require.Equal(t, map[string][]time.Duration{
			"0": {7 * time.Millisecond},  // RetryAfter wins
			"1": {20 * time.Millisecond}, // permanent without a DLQ: the longest delay
			"2": {3 * time.Millisecond},  // the backoff for attempt 1
		}, rec.Nacks)
	})
}

func TestFetchErrorsAreRetried(t *testing.T) {
	t.Parallel()
	q := newQueue(t, 0)
	rec := sourcetest.New(q)
	rec.FailFetch.Store(2)
	done := make(chan struct{})
	c, err := consumer.New(rec, consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		close(done)
		return nil
	}), consumer.Config{Logger: quiet})
	require.NoError(t, err)
	stop := start(t, c)
	publishN(t, q, 1, nil)
	<-done
	require.NoError(t, stop())
	require.Zero(t, rec.FailFetch.Load())
	rec.Locked(func() { require.Equal(t, map[string]int{"0": 1}, rec.Acks) })
}

// TestManyMessagesWithTransientFailures runs 100k messages through three
// consumers sharing one queue, with a random 10% of attempts failing and
// some panicking: every message must be acked exactly once and none lost.
func TestManyMessagesWithTransientFailures(t *testing.T) {
	t.Parallel()
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	q := newQueue(t, 0)
	rec := sourcetest.New(q)
	done := make(chan struct{})
	rec.OnAck = func(total int) {
		if total == n {
			close(done)
		}
	}
	successes := make([]atomic.Int32, n)
	var failures, panics atomic.Int32
	h := consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
		switch r := rand.IntN(100); {
		case r < 9:
			failures.Add(1)
			return errors.New("transient")
		case r < 10:
			panics.Add(1)
			panic("transient panic")
		}
		i, err := strconv.Atoi(m.ID)
		if err != nil {
			return consumer.Permanent(err)
		}
		successes[i].Add(1)
		return nil
	})
	var stops []func() error
	for range 3 {
		c, err := consumer.New(rec, h, consumer.Config{
			MaxInFlight: 64, Concurrency: 8, Backoff: fastBackoff(), Logger: quiet})
		require.NoError(t, err)
		stops = append(stops, start(t, c))
	}
	for i := 0; i < n; i += 1000 {
		msgs := make([]consumer.Message, 0, 1000)
		for j := i; j < i+1000 && j < n; j++ {
			msgs = append(msgs, consumer.Message{ID: strconv.Itoa(j), Key: strconv.Itoa(j % 97)})
		}
		require.NoError(t, q.Publish(context.Background(), msgs...))
	}
	<-done
	for _, stop := range stops {
		require.NoError(t, stop())
	}

	require.Positive(t, failures.Load())
	require.Positive(t, panics.Load())
	for i := range successes {
		require.Equal(t, int32(1), successes[i].Load(), "successful handler calls for message %d", i)
	}
	rec.Locked(func() {
		require.Len(t, rec.Acks, n)
		for id, k := range rec.Acks {
			require.Equal(t, 1, k, "acks of message %s", id)
		}
		nacked := 0
		for _, ds := range rec.Nacks {
			nacked += len(ds)
		}
		require.Equal(t, int(failures.Load()+panics.Load()), nacked, "every failure is nacked once")
		require.Equal(t, 0, rec.Held)
	})
	require.Equal(t, consumer.MemQueueStats{}, q.Stats())
}
