package backpressure

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/internal/observetest"
)

const rateHangGuard = time.Minute

// rateClock is a settable clock for a RateLimiter's now hook.
type rateClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *rateClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *rateClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// rateTimer replaces a RateLimiter's timer: each wait announces its
// duration on waits and sleeps until the test sends on fire.
type rateTimer struct {
	waits chan time.Duration
	fire  chan time.Time
}

func (f *rateTimer) after(d time.Duration) (<-chan time.Time, func() bool) {
	f.waits <- d
	return f.fire, func() bool { return true }
}

// newFakeRateLimiter returns a limiter on a fake clock set to t0 and a fake
// timer.
func newFakeRateLimiter(t *testing.T, opts RateOptions) (*RateLimiter, *rateClock, *rateTimer, time.Time) {
	t.Helper()
	l, err := NewRateLimiter(opts)
	require.NoError(t, err)
	t0 := time.Now()
	clock := &rateClock{now: t0}
	timer := &rateTimer{waits: make(chan time.Duration, 1), fire: make(chan time.Time)}
	l.now, l.after = clock.Now, timer.after
	return l, clock, timer, t0
}

func rateRecv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(rateHangGuard):
		t.Fatal("timed out waiting on a channel")
		panic("unreachable")
	}
}

func rateWaitAsync(ctx context.Context, l *RateLimiter) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- l.Wait(ctx) }()
	return ch
}

func TestRateLimiterRejectsWithoutWaiting(t *testing.T) {
	t.Parallel()
	obs := &observetest.Counts{}
	l, clock, _, t0 := newFakeRateLimiter(t, RateOptions{Name: "payments", Rate: 10, Burst: 5, Observer: obs})
	ctx := context.Background()

	for i := range 5 {
		require.NoError(t, l.Wait(ctx), "call %d is within the burst", i)
	}
	err := l.Wait(ctx)
	var rej *RejectedError
	require.ErrorAs(t, err, &rej)
	require.Equal(t, "payments", rej.Name)
	require.Equal(t, "rate limited", rej.Reason)
	require.InDelta(t, 100*time.Millisecond, rej.RetryAfter, float64(time.Millisecond))
	require.ErrorIs(t, err, ErrRejected)
	require.ErrorIs(t, err, consumer.ErrDeferred)
	require.NotErrorIs(t, err, ErrOpen)
	hint, ok := RetryAfterHint(err)
	require.True(t, ok)
	require.Equal(t, rej.RetryAfter, hint)
	require.EqualValues(t, 1, obs.Get(MetricAdmissionRejects))

	// The rejection took nothing: the token due at RetryAfter is free then.
	clock.Set(t0.Add(rej.RetryAfter))
	require.True(t, l.Allow())
	require.False(t, l.Allow())
	require.EqualValues(t, 2, obs.Get(MetricAdmissionRejects), "a refused Allow counts too")
}

func TestRateLimiterWaitsWithinMaxWait(t *testing.T) {
	t.Parallel()
	obs := &observetest.Counts{}
	l, clock, timer, t0 := newFakeRateLimiter(t, RateOptions{Rate: 10, Burst: 5, MaxWait: 100 * time.Millisecond, Observer: obs})
	ctx := context.Background()
	for range 5 {
		require.NoError(t, l.Wait(ctx))
	}

	done := rateWaitAsync(ctx, l)
	require.InDelta(t, 100*time.Millisecond, rateRecv(t, timer.waits), float64(time.Millisecond))
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v before its turn", err)
	default:
	}
	timer.fire <- t0.Add(100 * time.Millisecond)
	require.NoError(t, rateRecv(t, done))
	require.Zero(t, obs.Get(MetricAdmissionRejects))

	// The waiter used the token due at t0+100ms.
	clock.Set(t0.Add(100 * time.Millisecond))
	require.False(t, l.Allow())
}

func TestRateLimiterCancelledWaitGivesTokenBack(t *testing.T) {
	t.Parallel()
	l, clock, timer, t0 := newFakeRateLimiter(t, RateOptions{Rate: 10, Burst: 5, MaxWait: time.Second})
	for range 5 {
		require.NoError(t, l.Wait(context.Background()))
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := rateWaitAsync(ctx, l)
	rateRecv(t, timer.waits)
	cancel()
	require.ErrorIs(t, rateRecv(t, done), context.Canceled)

	// Had the waiter kept it, the token due at t0+100ms would be gone (see
	// TestRateLimiterWaitsWithinMaxWait); the next caller gets it instead.
	clock.Set(t0.Add(100 * time.Millisecond))
	require.True(t, l.Allow())
	require.False(t, l.Allow())
}

func TestRateLimiterWaitsInRealTime(t *testing.T) {
	t.Parallel()
	l, err := NewRateLimiter(RateOptions{Rate: 20, Burst: 1, MaxWait: 10 * time.Second})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, l.Wait(ctx))
	start := time.Now()
	require.NoError(t, l.Wait(ctx))
	// Only a lower bound: a slow machine may wait longer.
	require.GreaterOrEqual(t, time.Since(start), 40*time.Millisecond)
}

func TestRateLimiterContextDeadlineBoundsWait(t *testing.T) {
	t.Parallel()
	l, err := NewRateLimiter(RateOptions{Rate: 10, Burst: 1, MaxWait: time.Hour})
	require.NoError(t, err)
	// Put the limiter's clock an hour ahead, so a deadline 50ms after it
	// is an hour away in real time and cannot expire during the test.
	t0 := time.Now().Add(time.Hour)
	l.now = func() time.Time { return t0 }
	ctx, cancel := context.WithDeadline(context.Background(), t0.Add(50*time.Millisecond))
	defer cancel()

	require.NoError(t, l.Wait(ctx))
	err = l.Wait(ctx)
	require.ErrorIs(t, err, ErrRejected, "a turn after the deadline is rejected at once")
	d, _ := RetryAfterHint(err)
	require.InDelta(t, 100*time.Millisecond, d, float64(time.Millisecond))
}

func TestRateLimiterDoneContext(t *testing.T) {
	t.Parallel()
	l, _, _, _ := newFakeRateLimiter(t, RateOptions{Rate: 10, Burst: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, l.Wait(ctx), context.Canceled)
	require.True(t, l.Allow(), "a caller that had given up took no token")
}

func TestRateLimiterSetRateAndBurst(t *testing.T) {
	t.Parallel()
	l, clock, _, t0 := newFakeRateLimiter(t, RateOptions{Rate: 1, Burst: 1})
	require.True(t, l.Allow())
	require.False(t, l.Allow())

	l.SetRate(100)
	clock.Set(t0.Add(10 * time.Millisecond))
	require.True(t, l.Allow(), "at 100/s a token comes every 10ms")
	require.False(t, l.Allow())

	l.SetBurst(3)
	clock.Set(t0.Add(time.Second))
	for range 3 {
		require.True(t, l.Allow())
	}
	require.False(t, l.Allow())

	require.Panics(t, func() { l.SetRate(0) })
	require.Panics(t, func() { l.SetRate(rate.Limit(math.NaN())) })
	require.Panics(t, func() { l.SetBurst(0) })
}

func TestNewRateLimiterOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		opts      RateOptions
		wantErr   bool
		wantBurst int
	}{
		{name: "no rate", opts: RateOptions{}, wantErr: true},
		{name: "negative rate", opts: RateOptions{Rate: -1}, wantErr: true},
		{name: "NaN rate", opts: RateOptions{Rate: rate.Limit(math.NaN())}, wantErr: true},
		{name: "negative burst", opts: RateOptions{Rate: 1, Burst: -1}, wantErr: true},
		{name: "negative max wait", opts: RateOptions{Rate: 1, MaxWait: -time.Second}, wantErr: true},
		{name: "default burst is a second's worth", opts: RateOptions{Rate: 10.5}, wantBurst: 10},
		{name: "default burst is at least one", opts: RateOptions{Rate: 0.5}, wantBurst: 1},
		{name: "default burst for Inf", opts: RateOptions{Rate: rate.Inf}, wantBurst: 1},
		{name: "explicit burst", opts: RateOptions{Rate: 10, Burst: 3}, wantBurst: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, err := NewRateLimiter(tc.opts)
			if tc.wantErr {
				require.Error(t, err)
				require.Nil(t, l)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantBurst, l.lim.Burst())
		})
	}
}

func TestRateLimiterInfAdmitsEverything(t *testing.T) {
	t.Parallel()
	l, _, _, _ := newFakeRateLimiter(t, RateOptions{Rate: rate.Inf})
	for range 1000 {
		require.NoError(t, l.Wait(context.Background()))
	}
}

// TestRateLimiterConcurrent is for the race detector: many callers on the
// real clock, some waiting, some giving up.
func TestRateLimiterConcurrent(t *testing.T) {
	t.Parallel()
	const (
		goroutines = 32
		calls      = 50
		burst      = 5
	)
	l, err := NewRateLimiter(RateOptions{Rate: 1000, Burst: burst, MaxWait: time.Millisecond})
	require.NoError(t, err)
	var admitted, rejected atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				ctx, cancel := context.WithCancel(context.Background())
				if (g+i)%7 == 0 {
					cancel()
				}
				switch err := l.Wait(ctx); {
				case err == nil:
					admitted.Add(1)
				case errors.Is(err, ErrRejected):
					rejected.Add(1)
				case !errors.Is(err, context.Canceled):
					t.Errorf("unexpected error %v", err)
				}
				cancel()
				if i%5 == 0 {
					l.Allow()
				}
			}
		})
	}
	wg.Wait()
	require.GreaterOrEqual(t, admitted.Load(), int64(burst))
}
