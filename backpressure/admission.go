package backpressure

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/idemq/idemq/consumer"
)

// AdmissionOptions configures an [Admission]. Zero fields take the
// documented defaults.
type AdmissionOptions struct {
	// Name names the dependency it protects, in errors.
	Name string

	// Limit is the number of calls admitted at once. Required.
	Limit int

	// MaxWait bounds how long a caller waits for a slot. Zero means no
	// waiting: a caller that finds the limit reached is rejected at once.
	MaxWait time.Duration

	// MaxQueue bounds the callers waiting at once; more are rejected at
	// once. Default Limit. Only meaningful with MaxWait.
	MaxQueue int

	// RetryAfter is the hint rejections carry. Default 1s.
	RetryAfter time.Duration

	// Observer counts MetricAdmissionRejects and MetricAdmissionInflight.
	Observer consumer.Observer
}

// Admission admits at most Limit concurrent calls to one dependency (a
// database, a payment provider, a partner API), lets a bounded number of
// callers wait a bounded time for a slot, and rejects the rest with a
// [RejectedError] that says when to come back. Rejecting early keeps the
// dependency within its latency budget instead of queueing work that
// would time out anyway.
//
// Admitting a caller when a slot is free, and releasing it, allocate
// nothing.
type Admission struct {
	o   AdmissionOptions
	sem Semaphore
}

// NewAdmission validates opts and returns the limiter.
func NewAdmission(opts AdmissionOptions) (*Admission, error) {
	switch {
	case opts.Limit < 1:
		return nil, fmt.Errorf("backpressure: admission Limit %d is below 1", opts.Limit)
	case opts.MaxWait < 0, opts.RetryAfter < 0:
		return nil, errors.New("backpressure: negative duration in AdmissionOptions")
	case opts.MaxQueue < 0:
		return nil, fmt.Errorf("backpressure: negative MaxQueue %d", opts.MaxQueue)
	}
	if opts.MaxQueue == 0 {
		opts.MaxQueue = opts.Limit
	}
	if opts.RetryAfter == 0 {
		opts.RetryAfter = time.Second
	}
	if opts.Observer == nil {
		opts.Observer = consumer.NopObserver{}
	}
	a := &Admission{o: opts}
	a.sem.limit = opts.Limit
	return a, nil
}

// Acquire admits the caller or returns a [*RejectedError]. If ctx is done
// while waiting it returns ctx's error instead, and the limiter is left as
// it was. An admitted caller must call Release.
func (a *Admission) Acquire(ctx context.Context) error {
	return acquire(ctx, &a.sem, a.o.Name, a.o.MaxWait, a.o.MaxQueue, a.o.RetryAfter, a.o.Observer)
}

// Release frees the caller's slot.
func (a *Admission) Release() {
	a.sem.Release()
	a.o.Observer.Count(MetricAdmissionInflight, -1)
}

// Limit returns the number of calls admitted at once.
func (a *Admission) Limit() int { return a.sem.Limit() }

// InFlight returns the calls holding a slot.
func (a *Admission) InFlight() int { return a.sem.Held() }

// Waiting returns the callers waiting for a slot.
func (a *Admission) Waiting() int { return a.sem.Waiting() }

// acquire is the admission logic shared with the adaptive limiter.
func acquire(ctx context.Context, sem *Semaphore, name string, maxWait time.Duration, maxQueue int,
	retryAfter time.Duration, obs consumer.Observer) error {
	if sem.TryAcquire() {
		obs.Count(MetricAdmissionInflight, 1)
		return nil
	}
	reject := func(reason string) error {
		obs.Count(MetricAdmissionRejects, 1)
		return &RejectedError{Name: name, Reason: reason, RetryAfter: retryAfter}
	}
	if maxWait == 0 {
		return reject("limit reached")
	}
	wctx, cancel := context.WithTimeout(ctx, maxWait)
	defer cancel()
	if err := sem.acquire(wctx, maxQueue); err != nil {
		switch {
		case errors.Is(err, errQueueFull):
			return reject("queue full")
		case ctx.Err() != nil:
			return ctx.Err()
		}
		return reject("no slot within the wait limit")
	}
	obs.Count(MetricAdmissionInflight, 1)
	return nil
}
