package backpressure

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/idemq/idemq/consumer"
)

// AIMDOptions configures an [AIMD] limiter. Zero fields take the
// documented defaults.
type AIMDOptions struct {
	// Name names the dependency it protects, in errors.
	Name string

	// Initial, Min and Max bound the concurrency limit. Defaults 10, 1
	// and 1000.
	Initial, Min, Max int

	// Backoff multiplies the limit on a drop. Default 0.9; it must lie in
	// (0, 1).
	Backoff float64

	// Timeout makes a call slower than it count as a drop, so that rising
	// latency shrinks the limit before calls start failing. Zero means
	// only errors count: context.DeadlineExceeded and rejections.
	Timeout time.Duration

	// MaxWait, MaxQueue and RetryAfter bound waiting as in
	// [AdmissionOptions].
	MaxWait    time.Duration
	MaxQueue   int
	RetryAfter time.Duration

	// Observer counts MetricAdmissionRejects, MetricAdmissionInflight,
	// MetricBackpressureDrops and the MetricConcurrencyLimit gauge.
	Observer consumer.Observer

	now func() time.Time // for tests
}

// AIMD is a concurrency limiter that finds its own limit: additive
// increase, multiplicative decrease. While the limit is in use (at least
// half of it held), each successful call raises it by one divided by the
// limit, so it grows by about one per round of calls; a drop (a call that
// timed out, was rejected downstream, or took longer than Timeout)
// multiplies it by Backoff. Only one decrease happens per round: calls
// admitted before the last decrease cannot cause another, since they were
// admitted under the limit that was already cut.
//
// Acquiring a free slot and releasing it allocate nothing.
type AIMD struct {
	o     AIMDOptions
	sem   Semaphore
	gen   atomic.Uint64 // incremented on each decrease
	limit float64       // guarded by sem.mu
}

// Permit is an admitted call, passed back to Release.
type Permit struct {
	start time.Time
	gen   uint64
}

// NewAIMD validates opts and returns the limiter.
func NewAIMD(opts AIMDOptions) (*AIMD, error) {
	if opts.Min == 0 {
		opts.Min = 1
	}
	if opts.Max == 0 {
		opts.Max = 1000
	}
	if opts.Initial == 0 {
		opts.Initial = min(max(10, opts.Min), opts.Max)
	}
	if opts.Backoff == 0 {
		opts.Backoff = 0.9
	}
	switch {
	case opts.Min < 1 || opts.Max < opts.Min:
		return nil, fmt.Errorf("backpressure: AIMD bounds Min %d, Max %d are invalid", opts.Min, opts.Max)
	case opts.Initial < opts.Min || opts.Initial > opts.Max:
		return nil, fmt.Errorf("backpressure: AIMD Initial %d is outside [%d, %d]", opts.Initial, opts.Min, opts.Max)
	case !(opts.Backoff > 0 && opts.Backoff < 1):
		return nil, fmt.Errorf("backpressure: AIMD Backoff %g is outside (0, 1)", opts.Backoff)
	case opts.Timeout < 0, opts.MaxWait < 0, opts.RetryAfter < 0:
		return nil, errors.New("backpressure: negative duration in AIMDOptions")
	case opts.MaxQueue < 0:
		return nil, fmt.Errorf("backpressure: negative MaxQueue %d", opts.MaxQueue)
	}
	if opts.MaxQueue == 0 {
		opts.MaxQueue = opts.Max
	}
	if opts.RetryAfter == 0 {
		opts.RetryAfter = time.Second
	}
	if opts.Observer == nil {
		opts.Observer = consumer.NopObserver{}
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	l := &AIMD{o: opts, limit: float64(opts.Initial)}
	l.sem.limit = opts.Initial
	l.o.Observer.Count(MetricConcurrencyLimit, int64(opts.Initial))
	return l, nil
}

// Acquire admits the caller or returns a [*RejectedError]; if ctx is done
// while waiting it returns ctx's error and leaves the limiter as it was.
// An admitted caller must call Release with the Permit.
func (l *AIMD) Acquire(ctx context.Context) (Permit, error) {
	if err := acquire(ctx, &l.sem, l.o.Name, l.o.MaxWait, l.o.MaxQueue, l.o.RetryAfter, l.o.Observer); err != nil {
		return Permit{}, err
	}
	p := Permit{gen: l.gen.Load()}
	if l.o.Timeout > 0 {
		p.start = l.o.now()
	}
	return p, nil
}

// Release frees the permit's slot and adjusts the limit by the call's
// outcome: err nil is a success unless the call took longer than Timeout;
// context.DeadlineExceeded, rejections ([ErrRejected]) and [ErrOverload]
// are drops;
// context.Canceled is ignored (the caller gave up, which says nothing
// about the dependency); other errors count as successes, since the
// dependency answered.
func (l *AIMD) Release(p Permit, err error) {
	var latency time.Duration
	if l.o.Timeout > 0 {
		latency = l.o.now().Sub(p.start)
	}
	drop := err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrRejected) ||
		errors.Is(err, ErrOverload)) ||
		l.o.Timeout > 0 && latency > l.o.Timeout
	ignore := !drop && err != nil && errors.Is(err, context.Canceled)

	// The limit lives under the semaphore's lock, so that releasing the
	// slot and adjusting the limit take one lock.
	s := &l.sem
	s.mu.Lock()
	held := s.held
	if held == 0 {
		s.mu.Unlock()
		panic("backpressure: AIMD.Release without Acquire")
	}
	s.held--
	old := int(l.limit)
	switch {
	case ignore:
	case drop:
		if p.gen == l.gen.Load() { // else admitted before the last decrease
			l.limit = max(float64(l.o.Min), math.Floor(l.limit*l.o.Backoff))
			l.gen.Add(1)
		}
	case 2*held >= old:
		l.limit = min(float64(l.o.Max), l.limit+1/l.limit)
	}
	cur := int(l.limit)
	s.limit = cur
	s.grantLocked()
	s.mu.Unlock()

	l.o.Observer.Count(MetricAdmissionInflight, -1)
	if drop {
		l.o.Observer.Count(MetricBackpressureDrops, 1)
	}
	if cur != old {
		l.o.Observer.Count(MetricConcurrencyLimit, int64(cur-old))
	}
}

// Limit returns the current concurrency limit.
func (l *AIMD) Limit() int {
	l.sem.mu.Lock()
	defer l.sem.mu.Unlock()
	return int(l.limit)
}

// InFlight returns the calls holding a slot.
func (l *AIMD) InFlight() int { return l.sem.Held() }
