package backpressure

import (
	"context"
	"errors"
	"time"

	"golang.org/x/time/rate"

	"github.com/idemq/idemq/consumer"
)

// RateOptions configures a [RateLimiter].
type RateOptions struct {
	// Name names the dependency in rejections.
	Name string
	// Rate is how many calls per second are admitted on average. It must
	// be more than zero; rate.Inf admits everything.
	Rate rate.Limit
	// Burst is how many calls may be admitted at once after a quiet spell.
	// Zero means one second's worth of calls: max(1, int(Rate)).
	Burst int
	// MaxWait is the longest a caller waits for its turn. A caller whose
	// turn is further off is rejected at once, with the time until its
	// turn as RetryAfter. Zero means never wait: reject unless a call is
	// allowed right now.
	MaxWait time.Duration
	// Observer receives MetricAdmissionRejects. Nil means none.
	Observer consumer.Observer
}

// RateLimiter shapes calls to a dependency to a steady rate with a token
// bucket (golang.org/x/time/rate). Unlike rate.Limiter.Wait, it does not
// queue a caller for as long as its context allows: it waits at most
// MaxWait and otherwise rejects with a [*RejectedError] saying when to come
// back, so a consumer can put the message off instead of holding it.
//
// A RateLimiter is safe for concurrent use.
type RateLimiter struct {
	name    string
	maxWait time.Duration
	obs     consumer.Observer
	lim     *rate.Limiter

	// Hooks for tests: the clock, and the timer a waiting caller sleeps on.
	now   func() time.Time
	after func(d time.Duration) (<-chan time.Time, func() bool)
}

// NewRateLimiter returns a RateLimiter configured by opts.
func NewRateLimiter(opts RateOptions) (*RateLimiter, error) {
	if !(opts.Rate > 0) { // also rejects NaN
		return nil, errors.New("backpressure: RateOptions.Rate must be more than zero")
	}
	if opts.Burst < 0 {
		return nil, errors.New("backpressure: RateOptions.Burst must not be negative")
	}
	if opts.MaxWait < 0 {
		return nil, errors.New("backpressure: RateOptions.MaxWait must not be negative")
	}
	burst := opts.Burst
	if burst == 0 {
		burst = 1
		// rate.Inf ignores the burst; converting it to int is not defined.
		if opts.Rate != rate.Inf && opts.Rate >= 1 {
			burst = int(min(opts.Rate, rate.Limit(1<<30)))
		}
	}
	obs := opts.Observer
	if obs == nil {
		obs = consumer.NopObserver{}
	}
	return &RateLimiter{
		name:    opts.Name,
		maxWait: opts.MaxWait,
		obs:     obs,
		lim:     rate.NewLimiter(opts.Rate, burst),
		now:     time.Now,
		after: func(d time.Duration) (<-chan time.Time, func() bool) {
			t := time.NewTimer(d)
			return t.C, t.Stop
		},
	}, nil
}

// Wait takes a token, waiting for it if it comes within MaxWait (or before
// ctx's deadline, if that is sooner). Otherwise it takes nothing and
// returns a [*RejectedError] whose RetryAfter is the time until a token
// would have been free; the error matches [ErrRejected] and
// [consumer.ErrDeferred]. When ctx is done while waiting, Wait gives its
// token back, so that later callers are not delayed by it, and returns
// ctx.Err().
func (l *RateLimiter) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := l.now()
	r := l.lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d == 0 {
		return nil
	}
	limit := l.maxWait
	if deadline, ok := ctx.Deadline(); ok {
		limit = min(limit, deadline.Sub(now))
	}
	if d > limit {
		r.CancelAt(now)
		l.obs.Count(MetricAdmissionRejects, 1)
		return &RejectedError{Name: l.name, Reason: "rate limited", RetryAfter: d}
	}

	ch, stop := l.after(d)
	defer stop()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		r.CancelAt(l.now())
		return ctx.Err()
	}
}

// Allow takes a token if one is free now and reports whether it did. It
// never waits. A false result counts as a rejection in
// MetricAdmissionRejects, like a rejected Wait.
func (l *RateLimiter) Allow() bool {
	if l.lim.AllowN(l.now(), 1) {
		return true
	}
	l.obs.Count(MetricAdmissionRejects, 1)
	return false
}

// SetRate changes the rate, in calls per second, from now on. It panics
// if r is not more than zero, as [NewRateLimiter] would have refused it.
func (l *RateLimiter) SetRate(r rate.Limit) {
	if !(r > 0) {
		panic("backpressure: RateLimiter.SetRate with a rate that is not more than zero")
	}
	l.lim.SetLimitAt(l.now(), r)
}

// SetBurst changes the burst from now on. It panics if b is less than one:
// a bucket that holds no token would admit nothing.
func (l *RateLimiter) SetBurst(b int) {
	if b < 1 {
		panic("backpressure: RateLimiter.SetBurst with a burst less than one")
	}
	l.lim.SetBurstAt(l.now(), b)
}
