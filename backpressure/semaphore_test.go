package backpressure_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/backpressure"
	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/internal/observetest"
)

// TestSemaphoreBound: 1,000 goroutines through a semaphore of 10 never
// exceed 10 at once, and do reach it.
func TestSemaphoreBound(t *testing.T) {
	t.Parallel()
	const n, goroutines = 10, 1000
	s, err := backpressure.NewSemaphore(n)
	require.NoError(t, err)
	var cur, peak atomic.Int32
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for range goroutines {
		wg.Go(func() {
			<-gate
			require.NoError(t, s.Acquire(context.Background()))
			c := cur.Add(1)
			for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
			}
			time.Sleep(50 * time.Microsecond) // the protected call
			cur.Add(-1)
			s.Release()
		})
	}
	close(gate)
	wg.Wait()
	require.Equal(t, int32(n), peak.Load())
	require.Zero(t, s.Held())
	require.Zero(t, s.Waiting())
}

func TestSemaphoreCancelledWaitLeavesItUnchanged(t *testing.T) {
	t.Parallel()
	s, err := backpressure.NewSemaphore(1)
	require.NoError(t, err)
	require.True(t, s.TryAcquire())
	require.False(t, s.TryAcquire())

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Acquire(ctx) }()
	require.Eventually(t, func() bool { return s.Waiting() == 1 }, 10*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	require.Equal(t, 1, s.Held())
	require.Zero(t, s.Waiting())

	// An already cancelled context never waits.
	require.ErrorIs(t, s.Acquire(ctx), context.Canceled)
	require.Zero(t, s.Waiting())

	s.Release()
	require.True(t, s.TryAcquire(), "the cancelled waiter did not keep a slot")
	s.Release()
	require.Zero(t, s.Held())
}

// TestSemaphoreCancelRacesGrant: waiters cancelled at the moment a slot is
// granted hand it on; no slot is ever lost or duplicated.
func TestSemaphoreCancelRacesGrant(t *testing.T) {
	t.Parallel()
	s, err := backpressure.NewSemaphore(3)
	require.NoError(t, err)
	var wg sync.WaitGroup
	var cur atomic.Int32
	for i := range 500 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%7)*50*time.Microsecond)
			defer cancel()
			if s.Acquire(ctx) != nil {
				return
			}
			if cur.Add(1) > 3 {
				t.Error("more than 3 holders")
			}
			time.Sleep(20 * time.Microsecond)
			cur.Add(-1)
			s.Release()
		})
	}
	wg.Wait()
	require.Zero(t, s.Held())
	require.Zero(t, s.Waiting())
	for range 3 {
		require.True(t, s.TryAcquire())
	}
	require.False(t, s.TryAcquire())
}

func TestSemaphoreFIFOAndSetLimit(t *testing.T) {
	t.Parallel()
	s, err := backpressure.NewSemaphore(1)
	require.NoError(t, err)
	require.NoError(t, s.Acquire(context.Background()))
	order := make(chan int, 3)
	for i := range 3 {
		go func() {
			if s.Acquire(context.Background()) == nil {
				order <- i
			}
		}()
		require.Eventually(t, func() bool { return s.Waiting() == i+1 }, 10*time.Second, time.Millisecond)
	}
	s.SetLimit(3) // two more slots: the first two waiters (their sends may race)
	first := map[int]bool{<-order: true, <-order: true}
	require.Equal(t, map[int]bool{0: true, 1: true}, first)
	require.Equal(t, 1, s.Waiting())
	s.SetLimit(1) // below the 3 held: releases do not admit until under it
	s.Release()
	s.Release()
	require.Equal(t, 1, s.Held())
	require.Equal(t, 1, s.Waiting())
	s.Release()
	require.Equal(t, 2, <-order)
	require.Equal(t, 1, s.Held())
	require.Equal(t, 1, s.Limit())
	s.Release()
	require.PanicsWithValue(t, "backpressure: Semaphore.Release without Acquire", s.Release)
	_, err = backpressure.NewSemaphore(0)
	require.Error(t, err)
}

func TestAdmission(t *testing.T) {
	t.Parallel()
	obs := &observetest.Counts{}
	a, err := backpressure.NewAdmission(backpressure.AdmissionOptions{
		Name: "payments", Limit: 2, MaxWait: time.Hour, MaxQueue: 1, RetryAfter: 3 * time.Second, Observer: obs})
	require.NoError(t, err)
	require.NoError(t, a.Acquire(context.Background()))
	require.NoError(t, a.Acquire(context.Background()))
	require.Equal(t, int64(2), obs.Get(backpressure.MetricAdmissionInflight))

	// One caller may wait...
	waited := make(chan error, 1)
	go func() { waited <- a.Acquire(context.Background()) }()
	require.Eventually(t, func() bool { return a.Waiting() == 1 }, 10*time.Second, time.Millisecond)
	// ...the next finds the queue full.
	err = a.Acquire(context.Background())
	var rej *backpressure.RejectedError
	require.ErrorAs(t, err, &rej)
	require.Equal(t, "queue full", rej.Reason)
	require.Equal(t, "payments", rej.Name)
	require.Equal(t, 3*time.Second, rej.RetryAfter)
	require.ErrorIs(t, err, backpressure.ErrRejected)
	require.ErrorIs(t, err, consumer.ErrDeferred)
	require.NotErrorIs(t, err, backpressure.ErrOpen)
	d, ok := backpressure.RetryAfterHint(err)
	require.True(t, ok)
	require.Equal(t, 3*time.Second, d)

	a.Release()
	require.NoError(t, <-waited)
	require.Equal(t, 2, a.InFlight())
	a.Release()
	a.Release()
	require.Equal(t, int64(1), obs.Get(backpressure.MetricAdmissionRejects))
	require.Zero(t, obs.Get(backpressure.MetricAdmissionInflight))
}

func TestAdmissionWaitLimits(t *testing.T) {
	t.Parallel()
	a, err := backpressure.NewAdmission(backpressure.AdmissionOptions{Limit: 1})
	require.NoError(t, err)
	require.NoError(t, a.Acquire(context.Background()))
	var rej *backpressure.RejectedError
	require.ErrorAs(t, a.Acquire(context.Background()), &rej, "no MaxWait: rejected at once")
	require.Equal(t, "limit reached", rej.Reason)
	require.Equal(t, time.Second, rej.RetryAfter, "the default hint")

	a, err = backpressure.NewAdmission(backpressure.AdmissionOptions{Limit: 1, MaxWait: 5 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, a.Acquire(context.Background()))
	require.ErrorAs(t, a.Acquire(context.Background()), &rej)
	require.Equal(t, "no slot within the wait limit", rej.Reason)
	require.Zero(t, a.Waiting())

	// The caller's own cancellation is not a rejection.
	a, err = backpressure.NewAdmission(backpressure.AdmissionOptions{Limit: 1, MaxWait: time.Hour})
	require.NoError(t, err)
	require.NoError(t, a.Acquire(context.Background()))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Acquire(ctx) }()
	require.Eventually(t, func() bool { return a.Waiting() == 1 }, 10*time.Second, time.Millisecond)
	cancel()
	err = <-errc
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, errors.Is(err, backpressure.ErrRejected))
	require.Equal(t, 1, a.InFlight())
	require.Zero(t, a.Waiting())

	for _, o := range []backpressure.AdmissionOptions{
		{}, {Limit: 1, MaxWait: -1}, {Limit: 1, MaxQueue: -1}, {Limit: 1, RetryAfter: -1},
	} {
		_, err := backpressure.NewAdmission(o)
		require.Error(t, err, "%+v", o)
	}
}

func TestAIMDOutcomes(t *testing.T) {
	t.Parallel()
	obs := &observetest.Counts{}
	l, err := backpressure.NewAIMD(backpressure.AIMDOptions{Initial: 10, Min: 2, Max: 12, Observer: obs})
	require.NoError(t, err)
	require.Equal(t, int64(10), obs.Get(backpressure.MetricConcurrencyLimit))

	// Ten calls in flight; the first drop cuts the limit to 9; the other
	// drops of calls admitted before the cut change nothing.
	permits := make([]backpressure.Permit, 10)
	for i := range permits {
		permits[i], err = l.Acquire(context.Background())
		require.NoError(t, err)
	}
	_, err = l.Acquire(context.Background())
	require.ErrorIs(t, err, backpressure.ErrRejected, "the limit is reached")
	for _, p := range permits[:5] {
		l.Release(p, context.DeadlineExceeded)
	}
	require.Equal(t, 9, l.Limit())
	require.Equal(t, int64(5), obs.Get(backpressure.MetricBackpressureDrops))
	require.Equal(t, int64(9), obs.Get(backpressure.MetricConcurrencyLimit))

	// Cancellation is ignored; other errors count as answers.
	l.Release(permits[5], context.Canceled)
	require.Equal(t, 9, l.Limit())
	for _, p := range permits[6:] {
		l.Release(p, errors.New("404"))
	}
	require.Zero(t, l.InFlight())
	require.Equal(t, 9, l.Limit(), "successes with less than half the limit in use do not grow it")

	// With the limit in use, each success adds 1/limit.
	for range 40 {
		var ps []backpressure.Permit
		for range l.Limit() {
			p, err := l.Acquire(context.Background())
			require.NoError(t, err)
			ps = append(ps, p)
		}
		for _, p := range ps {
			l.Release(p, nil)
		}
	}
	require.Equal(t, 12, l.Limit(), "grows to Max and stops")

	// Repeated drops, each after a cut, stop at Min.
	for range 50 {
		p, err := l.Acquire(context.Background())
		require.NoError(t, err)
		l.Release(p, backpressure.ErrRejected)
	}
	require.Equal(t, 2, l.Limit())

	for _, o := range []backpressure.AIMDOptions{
		{Min: 5, Max: 4}, {Initial: 20, Max: 10}, {Backoff: 1}, {Backoff: -0.5}, {Timeout: -1}, {MaxQueue: -1},
	} {
		_, err := backpressure.NewAIMD(o)
		require.Error(t, err, "%+v", o)
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
