package consumer

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrLeaseLost reports that a delivery's lease has ended: it expired,
	// another consumer holds the message now, or the delivery was already
	// acknowledged or nacked. It is also the cause of a handler context
	// that was cancelled because its lease could not be extended.
	ErrLeaseLost = errors.New("consumer: lease lost")

	// ErrDrainTimeout is returned by [Consumer.Run] when shutdown ran out of
	// drain time and nacked unfinished work, and is the cause of the
	// handler contexts it cancelled.
	ErrDrainTimeout = errors.New("consumer: drain timeout")

	// ErrRunning is returned by [Consumer.Run] when the consumer is already
	// running.
	ErrRunning = errors.New("consumer: already running")

	// ErrHandlerTimeout is returned by the [Timeout] middleware when the
	// handler did not finish in time.
	ErrHandlerTimeout = errors.New("consumer: handler timeout")

	// ErrDeferred marks an error that says "not now" rather than "this
	// message failed": an overloaded dependency's admission limit, an open
	// circuit breaker, a duplicate whose original is still running. Such a
	// message is redelivered (usually after a RetryAfter delay), but a
	// dead-letter middleware does not count it towards parking.
	ErrDeferred = errors.New("consumer: deferred")
)

// PermanentError marks a failure that retrying cannot fix, such as a
// message that does not decode. Build it with [Permanent].
type PermanentError struct {
	Err error
}

// Permanent marks err as a failure that retrying cannot fix. The [Retry]
// middleware does not retry it, and a dead-letter middleware parks the
// message at once. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Error returns the wrapped error's text, marked permanent.
func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// IsPermanent reports whether err's chain holds a [PermanentError].
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// RetryAfterError asks for the message to be delivered again after Delay
// rather than after the consumer's backoff. Build it with [RetryAfter].
type RetryAfterError struct {
	Delay time.Duration
	Err   error
}

// RetryAfter wraps err with the delay after which the message should be
// delivered again, overriding the consumer's backoff (a rate limit's reset
// time, a circuit breaker's remaining open time). A nil err becomes an error
// that says only that a retry was asked for.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = errors.New("retry requested")
	}
	return &RetryAfterError{Delay: d, Err: err}
}

// Error returns the wrapped error's text with the delay.
func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %v", e.Delay, e.Err)
}

// Unwrap returns the wrapped error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfterDelay returns the delay of the first [RetryAfterError] in err's
// chain.
func RetryAfterDelay(err error) (time.Duration, bool) {
	var r *RetryAfterError
	if errors.As(err, &r) {
		return r.Delay, true
	}
	return 0, false
}

// PanicError is the error a recovered handler panic becomes.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the panicking goroutine's stack
}

// Error describes the panic value.
func (e *PanicError) Error() string { return fmt.Sprintf("consumer: handler panic: %v", e.Value) }

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}
