package dlq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/internal/observetest"
	"github.com/idemq/idemq/internal/sourcetest"
)

var quiet = slog.New(slog.DiscardHandler)

func newStore(t testing.TB) *dlq.MemoryStore {
	t.Helper()
	s, err := dlq.NewMemoryStore(dlq.MemoryOptions{})
	require.NoError(t, err)
	return s
}

func middleware(t testing.TB, o dlq.Options) consumer.Middleware {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quiet
	}
	mw, err := dlq.Middleware(o)
	require.NoError(t, err)
	return mw
}

func allEntries(t testing.TB, s dlq.Store) []dlq.Entry {
	t.Helper()
	var out []dlq.Entry
	cursor := ""
	for {
		p, err := s.List(context.Background(), dlq.Filter{}, cursor, 100)
		require.NoError(t, err)
		out = append(out, p.Entries...)
		if p.Next == "" {
			return out
		}
		cursor = p.Next
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	_, err := dlq.Middleware(dlq.Options{})
	require.Error(t, err)
	_, err = dlq.Middleware(dlq.Options{Sink: newStore(t), MaxAttempts: -1})
	require.Error(t, err)
	_, err = dlq.NewMemoryStore(dlq.MemoryOptions{MaxEntries: -1})
	require.Error(t, err)
}

func TestReasons(t *testing.T) {
	t.Parallel()
	errPlain := errors.New("plain")
	for _, tc := range []struct {
		name    string
		err     error
		attempt int
		reason  dlq.Reason // "" when the message is not parked
	}{
		{"transient before the last attempt", errPlain, 2, ""},
		{"transient at the last attempt", errPlain, 3, dlq.ReasonAttemptsExhausted},
		{"transient past the last attempt", errPlain, 9, dlq.ReasonAttemptsExhausted},
		{"permanent", consumer.Permanent(errPlain), 1, dlq.ReasonPermanent},
		{"wrapped permanent", fmt.Errorf("ctx: %w", consumer.Permanent(errPlain)), 1, dlq.ReasonPermanent},
		{"undecodable", dlq.Undecodable(errPlain), 1, dlq.ReasonUndecodable},
		{"fingerprint mismatch", consumer.Permanent(fmt.Errorf("k: %w", idempotency.ErrFingerprintMismatch)), 1, dlq.ReasonFingerprintMismatch},
		{"custom", errors.New("quota"), 1, "quota"},
		{"deferred at the last attempt", consumer.RetryAfter(time.Second, fmt.Errorf("%w: %w", consumer.ErrDeferred, errPlain)), 9, ""},
		{"in progress elsewhere", fmt.Errorf("%w: %w", idempotency.ErrInProgress, errPlain), 9, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := newStore(t)
			obs := &observetest.Counts{}
			h := middleware(t, dlq.Options{Sink: store, MaxAttempts: 3, Source: "orders", Observer: obs,
				Classify: func(err error) (dlq.Reason, bool) { return "quota", err.Error() == "quota" },
			})(consumer.HandlerFunc(func(context.Context, *consumer.Message) error { return tc.err }))
			m := &consumer.Message{ID: "m1", Key: "k", Body: []byte("b"), Headers: map[string]string{"h": "v"}, Attempt: tc.attempt}
			err := h.Handle(context.Background(), m)
			n, cerr := store.Count(context.Background(), dlq.Filter{})
			require.NoError(t, cerr)
			if tc.reason == "" {
				require.ErrorIs(t, err, errPlain)
				require.Zero(t, n)
				require.Zero(t, obs.Get(dlq.MetricDeadLettered))
				return
			}
			require.NoError(t, err, "a parked message is handled")
			require.Equal(t, int64(1), obs.Get(dlq.MetricDeadLettered))
			e, gerr := store.Get(context.Background(), dlq.EntryID("orders", "m1"))
			require.NoError(t, gerr)
			require.Equal(t, tc.reason, e.Reason)
			require.Equal(t, *m, e.Message)
			require.Equal(t, "orders", e.Source)
			require.Equal(t, tc.attempt, e.Attempts)
			require.Equal(t, tc.err.Error(), e.Error)
			require.Equal(t, tc.err.Error(), e.ErrorChain[0])
			inner := tc.err
			for errors.Unwrap(inner) != nil {
				inner = errors.Unwrap(inner)
			}
			require.Equal(t, inner.Error(), e.ErrorChain[len(e.ErrorChain)-1])
			require.False(t, e.LastFailedAt.IsZero())
			require.Equal(t, e.LastFailedAt, e.FirstFailedAt, "only one failure was seen")
		})
	}
}

func TestSuccessPassesThrough(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	h := middleware(t, dlq.Options{Sink: store, MaxAttempts: 1})(
		consumer.HandlerFunc(func(context.Context, *consumer.Message) error { return nil }))
	require.NoError(t, h.Handle(context.Background(), &consumer.Message{ID: "m", Attempt: 1}))
	n, err := store.Count(context.Background(), dlq.Filter{})
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestNotParkedWhenContextIsDone(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	h := middleware(t, dlq.Options{Sink: store, MaxAttempts: 1})(
		consumer.HandlerFunc(func(ctx context.Context, _ *consumer.Message) error {
			cancel(consumer.ErrLeaseLost)
			return consumer.Permanent(ctx.Err())
		}))
	require.ErrorIs(t, h.Handle(ctx, &consumer.Message{ID: "m", Attempt: 5}), context.Canceled)
	n, err := store.Count(context.Background(), dlq.Filter{})
	require.NoError(t, err)
	require.Zero(t, n, "a lost lease says nothing about the message")
}

func TestErrorChainFollowsJoins(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	a, b := errors.New("a"), errors.New("b")
	h := middleware(t, dlq.Options{Sink: store, MaxAttempts: 1})(consumer.HandlerFunc(
		func(context.Context, *consumer.Message) error { return fmt.Errorf("top: %w", errors.Join(a, b)) }))
	require.NoError(t, h.Handle(context.Background(), &consumer.Message{ID: "m", Attempt: 1}))
	e, err := store.Get(context.Background(), dlq.EntryID("default", "m"))
	require.NoError(t, err)
	require.Equal(t, []string{"top: a\nb", "a\nb", "a", "b"}, e.ErrorChain)
}

// failingSink refuses every Put.
type failingSink struct{ puts atomic.Int32 }

func (s *failingSink) Put(context.Context, dlq.Entry) error {
	s.puts.Add(1)
	return errors.New("sink down")
}

// TestFailingSinkKeepsTheMessage: when parking fails, the message is nacked,
// not acked, and comes back.
func TestFailingSinkKeepsTheMessage(t *testing.T) {
	t.Parallel()
	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	require.NoError(t, err)
	rec := sourcetest.New(q)
	sink := &failingSink{}
	obs := &observetest.Counts{}
	var calls atomic.Int32
	third := make(chan struct{})
	h := middleware(t, dlq.Options{Sink: sink, Observer: obs})(consumer.HandlerFunc(
		func(_ context.Context, m *consumer.Message) error {
			if calls.Add(1) == 3 {
				close(third)
			}
			return dlq.Undecodable(errors.New("bad json"))
		}))
	c, err := consumer.New(rec, h, consumer.Config{Logger: quiet,
		Backoff: consumer.Backoff{Initial: time.Millisecond, Max: time.Millisecond}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	require.NoError(t, q.Publish(ctx, consumer.Message{ID: "poison", Body: []byte("{")}))
	<-third
	cancel()
	require.NoError(t, <-errc)
	rec.Locked(func() {
		require.Empty(t, rec.Acks, "never acked while the sink fails")
		require.GreaterOrEqual(t, len(rec.Nacks["poison"]), 2)
	})
	require.GreaterOrEqual(t, sink.puts.Load(), int32(3))
	require.Equal(t, int64(sink.puts.Load()), obs.Get(dlq.MetricDeadLetterFailures))
	st := q.Stats()
	require.Equal(t, 1, st.Ready+st.Delayed, "the message is still queued")
}

// TestAlwaysFailingMessage: a message that always fails is delivered
// exactly MaxAttempts times, in-process retries included in each delivery,
// then parked with Attempts = MaxAttempts; the redelivery delays grow and
// are jittered.
func TestAlwaysFailingMessage(t *testing.T) {
	t.Parallel()
	const maxAttempts, messages, tries = 6, 200, 2
	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	require.NoError(t, err)
	rec := sourcetest.New(q)
	store := newStore(t)
	obs := &observetest.Counts{}
	done := obs.Reached(dlq.MetricDeadLettered, messages)
	retry, err := consumer.Retry(consumer.RetryOptions{MaxAttempts: tries, Initial: time.Microsecond, MaxInterval: time.Microsecond})
	require.NoError(t, err)
	var mu sync.Mutex
	calls := map[string][]int{} // message ID -> Attempt of each handler call
	h := consumer.Chain(middleware(t, dlq.Options{Sink: store, MaxAttempts: maxAttempts, Observer: obs}), retry)(
		consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
			mu.Lock()
			calls[m.ID] = append(calls[m.ID], m.Attempt)
			mu.Unlock()
			return errors.New("always")
		}))
	backoff := consumer.Backoff{Initial: 100 * time.Microsecond, Max: 10 * time.Millisecond, Multiplier: 2}
	c, err := consumer.New(rec, h, consumer.Config{Logger: quiet, Backoff: backoff, MaxInFlight: 256})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	for i := range messages {
		require.NoError(t, q.Publish(ctx, consumer.Message{ID: strconv.Itoa(i)}))
	}
	<-done
	cancel()
	require.NoError(t, <-errc)

	mu.Lock()
	for id, as := range calls {
		want := make([]int, 0, maxAttempts*tries)
		for a := 1; a <= maxAttempts; a++ {
			for range tries {
				want = append(want, a)
			}
		}
		require.Equal(t, want, as, "handler calls of message %s", id)
	}
	mu.Unlock()
	entries := allEntries(t, store)
	require.Len(t, entries, messages)
	for _, e := range entries {
		require.Equal(t, maxAttempts, e.Attempts)
		require.Equal(t, dlq.ReasonAttemptsExhausted, e.Reason)
		require.False(t, e.FirstFailedAt.After(e.LastFailedAt))
		require.True(t, e.FirstFailedAt.Before(e.LastFailedAt), "several failures were seen")
	}

	// Redelivery delays: message i's k-th nack is drawn from [0, ceiling(k)]
	// with full jitter, and ceilings double. Check the bounds for every
	// nack and that the mean per attempt grows and sits near ceiling/2.
	rec.Locked(func() {
		require.Len(t, rec.Nacks, messages)
		sums := make([]float64, maxAttempts)
		for id, ds := range rec.Nacks {
			require.Len(t, ds, maxAttempts-1, "nacks of %s", id)
			for k, d := range ds {
				ceiling := float64(backoff.Initial) * math.Pow(2, float64(k))
				require.GreaterOrEqual(t, d, time.Duration(0))
				require.LessOrEqual(t, float64(d), ceiling)
				sums[k] += float64(d)
			}
		}
		distinct := map[time.Duration]bool{}
		for _, ds := range rec.Nacks {
			distinct[ds[3]] = true
		}
		require.Greater(t, len(distinct), messages/2, "delays are jittered")
		for k := range maxAttempts - 1 {
			mean := sums[k] / messages
			ceiling := float64(backoff.Initial) * math.Pow(2, float64(k))
			require.InDelta(t, 0.5, mean/ceiling, 0.15, "mean delay of nack %d relative to its ceiling", k+1)
			if k > 0 {
				require.Greater(t, mean, sums[k-1]/messages, "delays grow")
			}
		}
		require.Len(t, rec.Acks, messages, "parked messages are acked")
	})
}

type order struct {
	Seq int `json:"seq"`
}

// TestPoisonAndTransientMix: 10k messages, 1% undecodable and 5% failing
// 1-3 times. Healthy messages are processed once, poison ones are parked
// after exactly one attempt, transient ones are processed, none is lost.
func TestPoisonAndTransientMix(t *testing.T) {
	t.Parallel()
	const n = 10_000
	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	require.NoError(t, err)
	rec := sourcetest.New(q)
	store := newStore(t)
	obs := &observetest.Counts{}
	done := make(chan struct{})
	rec.OnAck = func(total int) {
		if total == n {
			close(done)
		}
	}
	kind := func(i int) string {
		switch {
		case i%100 == 7:
			return "poison"
		case i%20 == 3:
			return "transient"
		}
		return "healthy"
	}
	failures := func(i int) int { return 1 + i%3 } // for transient ones

	var mu sync.Mutex
	processed := map[int]int{}
	calls := map[string]int{}
	var healthyWhileParking atomic.Int32
	h := middleware(t, dlq.Options{Sink: store, MaxAttempts: 5, Observer: obs})(consumer.HandlerFunc(
		func(_ context.Context, m *consumer.Message) error {
			mu.Lock()
			calls[m.ID]++
			mu.Unlock()
			var o order
			if err := json.Unmarshal(m.Body, &o); err != nil {
				return dlq.Undecodable(err)
			}
			if kind(o.Seq) == "transient" && m.Attempt <= failures(o.Seq) {
				return fmt.Errorf("dependency blip on attempt %d", m.Attempt)
			}
			if obs.Get(dlq.MetricDeadLettered) > 0 && obs.Get(dlq.MetricDeadLettered) < n/100 {
				healthyWhileParking.Add(1)
			}
			mu.Lock()
			processed[o.Seq]++
			mu.Unlock()
			return nil
		}))
	c, err := consumer.New(rec, h, consumer.Config{Logger: quiet, MaxInFlight: 128,
		Backoff: consumer.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	msgs := make([]consumer.Message, n)
	for i := range msgs {
		body := fmt.Appendf(nil, `{"seq":%d}`, i)
		if kind(i) == "poison" {
			body = fmt.Appendf(nil, `{"seq":%d`, i) // truncated JSON
		}
		msgs[i] = consumer.Message{ID: strconv.Itoa(i), Body: body}
	}
	require.NoError(t, q.Publish(ctx, msgs...))
	<-done
	cancel()
	require.NoError(t, <-errc)

	mu.Lock()
	defer mu.Unlock()
	var poison, transient, healthy int
	for i := range n {
		id := strconv.Itoa(i)
		switch kind(i) {
		case "poison":
			poison++
			require.Equal(t, 1, calls[id], "poison %d is attempted once", i)
			require.Zero(t, processed[i])
			e, err := store.Get(context.Background(), dlq.EntryID("default", id))
			require.NoError(t, err, "poison %d is parked", i)
			require.Equal(t, dlq.ReasonUndecodable, e.Reason)
			require.Equal(t, 1, e.Attempts)
		case "transient":
			transient++
			require.Equal(t, 1, processed[i], "transient %d", i)
			require.Equal(t, failures(i)+1, calls[id])
		default:
			healthy++
			require.Equal(t, 1, processed[i], "healthy %d", i)
			require.Equal(t, 1, calls[id])
		}
	}
	require.Equal(t, 100, poison)
	require.Equal(t, 500, transient)
	count, err := store.Count(context.Background(), dlq.Filter{})
	require.NoError(t, err)
	require.Equal(t, poison, count)
	require.Equal(t, int64(poison), obs.Get(dlq.MetricDeadLettered))
	require.Positive(t, healthyWhileParking.Load(), "healthy messages flowed between the first and last parking")
	rec.Locked(func() {
		require.Len(t, rec.Acks, n)
		for id, k := range rec.Acks {
			require.Equal(t, 1, k, "acks of %s", id)
		}
	})
	require.Equal(t, consumer.MemQueueStats{}, q.Stats())
}

// TestDeferralsDoNotCountAsAttempts: deliveries put off by backpressure
// raise the broker's Attempt but not the failures the DLQ counts.
func TestDeferralsDoNotCountAsAttempts(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	deferred := consumer.RetryAfter(time.Second, fmt.Errorf("admission: %w", consumer.ErrDeferred))
	errFail := errors.New("fail")
	var next error
	h := middleware(t, dlq.Options{Sink: store, MaxAttempts: 3})(consumer.HandlerFunc(
		func(context.Context, *consumer.Message) error { return next }))
	count := func() int {
		n, err := store.Count(context.Background(), dlq.Filter{})
		require.NoError(t, err)
		return n
	}
	attempt := 0
	deliver := func(err error) error {
		attempt++
		next = err
		return h.Handle(context.Background(), &consumer.Message{ID: "m", Attempt: attempt})
	}
	for range 4 {
		require.ErrorIs(t, deliver(deferred), consumer.ErrDeferred)
	}
	require.ErrorIs(t, deliver(errFail), errFail, "delivery 5 is the first failed attempt")
	require.ErrorIs(t, deliver(errFail), errFail)
	require.Zero(t, count())
	require.NoError(t, deliver(errFail), "the third failure parks it")
	e, err := store.Get(context.Background(), dlq.EntryID("default", "m"))
	require.NoError(t, err)
	require.Equal(t, 3, e.Attempts)
	require.Equal(t, 7, e.Message.Attempt)
	require.False(t, e.FirstFailedAt.After(e.LastFailedAt))
}
