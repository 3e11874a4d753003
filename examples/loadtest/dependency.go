package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Simulated failures. errUnavailable is what a dead partner produces and
// the only failure the circuit breaker counts; errTransient is an
// occasional 500 that the Retry middleware absorbs.
var (
	errUnavailable = errors.New("partner: dial tcp 10.0.0.7:443: connect: connection refused")
	errTransient   = errors.New("partner: 500 internal server error")
)

// The dependency's latencies.
const (
	baseLatency    = 5 * time.Millisecond  // fastest call
	baseJitter     = 10 * time.Millisecond // added uniformly: calls take 5-15ms
	slowLatency    = 200 * time.Millisecond
	slowJitter     = 300 * time.Millisecond // -fault slow adds 200-500ms
	connectTimeout = 50 * time.Millisecond  // how long a dead partner takes to refuse
)

// dependency is the partner the handler calls: it serves at most capacity
// calls at once, as a database or an API with a fixed pool of workers does.
// Further calls queue inside it until a worker frees up or their caller
// gives up. A call being served runs to completion even when its caller
// has given up, as a query keeps running on a database server after the
// client timed out: work abandoned by a timeout still costs the partner.
type dependency struct {
	workers chan struct{}
	clock   clock
	fault   fault
}

func newDependency(capacity int, c clock, f fault) *dependency {
	return &dependency{workers: make(chan struct{}, capacity), clock: c, fault: f}
}

// Call makes one call, honouring ctx while it waits.
func (d *dependency) Call(ctx context.Context) error {
	now := time.Now()
	cond := d.fault.at(d.clock.frac(now))
	if cond.dead {
		t := time.NewTimer(connectTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			return errUnavailable
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case d.workers <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	service := baseLatency + rand.N(baseJitter)
	if cond.slow {
		service += slowLatency + rand.N(slowJitter)
	}
	done := make(chan struct{})
	time.AfterFunc(service, func() {
		<-d.workers
		close(done)
	})
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if cond.errorRate > 0 && rand.Float64() < cond.errorRate {
		return errTransient
	}
	return nil
}
