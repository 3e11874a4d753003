package backpressure

import (
	"errors"
	"fmt"
	"time"

	"github.com/idemq/idemq/consumer"
)

var (
	// ErrRejected is matched by every rejection from this package: a full
	// limit or queue, a wait that ran out, a rate limit, an open breaker.
	ErrRejected = errors.New("backpressure: rejected")

	// ErrOpen is matched by the rejections of an open circuit breaker.
	ErrOpen = errors.New("backpressure: circuit open")

	// ErrOverload marks a failure that signals an overloaded dependency
	// (a 503 from a partner, a pool exhausted). Wrap it in a handler's
	// error to make an adaptive limiter count the call as a drop.
	ErrOverload = errors.New("backpressure: dependency overloaded")
)

// RejectedError is a rejection with a hint of when to come back. It
// matches [ErrRejected] and [consumer.ErrDeferred] (a rejected message is
// put off, not failed), and [ErrOpen] when a breaker rejected it.
type RejectedError struct {
	// Name is the limiter's or breaker's name (the dependency).
	Name string
	// Reason says what was full or open, such as "queue full".
	Reason string
	// RetryAfter is when trying again is likely to be admitted.
	RetryAfter time.Duration

	open bool
}

// Error describes the rejection and its hint.
func (e *RejectedError) Error() string {
	name := e.Name
	if name == "" {
		name = "dependency"
	}
	return fmt.Sprintf("backpressure: %s rejected: %s (retry after %s)", name, e.Reason, e.RetryAfter)
}

// Unwrap lets errors.Is match ErrRejected, consumer.ErrDeferred and, for a
// breaker, ErrOpen.
func (e *RejectedError) Unwrap() []error {
	if e.open {
		return []error{ErrRejected, ErrOpen, consumer.ErrDeferred}
	}
	return []error{ErrRejected, consumer.ErrDeferred}
}

// RetryAfterHint returns the RetryAfter of the first RejectedError in
// err's chain.
func RetryAfterHint(err error) (time.Duration, bool) {
	var r *RejectedError
	if errors.As(err, &r) {
		return r.RetryAfter, true
	}
	return 0, false
}

// Metric names reported through a consumer.Observer.
const (
	MetricAdmissionRejects   = "admission_rejects"   // counter: calls rejected by a limiter
	MetricAdmissionInflight  = "admission_inflight"  // gauge: calls holding a slot
	MetricConcurrencyLimit   = "concurrency_limit"   // gauge: an adaptive limiter's current limit
	MetricBackpressureDrops  = "backpressure_drops"  // counter: calls an adaptive limiter counted as drops
	MetricBreakerState       = "circuit_open"        // gauge: 1 while a breaker is open, 0 when closed or half-open
	MetricBreakerTransitions = "breaker_transitions" // counter: state changes
	MetricBreakerRejects     = "breaker_rejects"     // counter: calls rejected by an open breaker
)
