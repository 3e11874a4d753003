package consumer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Recover turns a panic in next into a [*PanicError], so that middleware
// outside it (a dead-letter middleware, say) sees an ordinary error. The
// [Consumer] recovers panics on its own as well; Recover is for chains that
// want to handle them.
func Recover(next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, msg *Message) (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = &PanicError{Value: v, Stack: debug.Stack()}
			}
		}()
		return next.Handle(ctx, msg)
	})
}

// Timeout bounds each call of the handler to d by giving it a context with
// that deadline. A call that runs out of time and fails returns an error
// matching [ErrHandlerTimeout] and context.DeadlineExceeded. The handler
// must honour its context: Timeout does not abandon a call that ignores it,
// since a message whose handler may still be running must not be
// redelivered. d <= 0 means no timeout.
func Timeout(d time.Duration) Middleware {
	return func(next Handler) Handler {
		if d <= 0 {
			return next
		}
		return HandlerFunc(func(ctx context.Context, msg *Message) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			err := next.Handle(ctx, msg)
			if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, ErrHandlerTimeout) {
				return &timeoutError{d: d, err: err}
			}
			return err
		})
	}
}

type timeoutError struct {
	d   time.Duration
	err error
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("%v after %s: %v", ErrHandlerTimeout, e.d, e.err)
}

func (e *timeoutError) Unwrap() []error { return []error{ErrHandlerTimeout, e.err} }

// RetryOptions configures the [Retry] middleware. Zero fields take the
// documented defaults.
type RetryOptions struct {
	// MaxAttempts is the number of calls per delivery, the first included.
	// Default 3.
	MaxAttempts int
	// Initial is the wait before the first retry; later waits double, with
	// jitter, up to MaxInterval. Defaults 50ms and 1s.
	Initial     time.Duration
	MaxInterval time.Duration
	// MaxElapsed is the time budget for one delivery's retries: no retry
	// starts after it. Default 2s. Keep it well under the source's lease;
	// longer outages belong to redelivery, which frees the consumer.
	MaxElapsed time.Duration
}

// Retry retries a failing handler a few times within the same delivery, for
// transient errors that clear in milliseconds (a dropped connection, a
// deadlock victim). It does not retry [Permanent] errors, a cancelled or
// expired context (a lost lease, a shutdown, a [Timeout]) or a
// [RetryAfter] whose delay does not fit in the remaining budget; those, and
// the last error once the budget is spent, go back to the caller so the
// message is redelivered later.
func Retry(opts RetryOptions) (Middleware, error) {
	switch {
	case opts.MaxAttempts < 0:
		return nil, fmt.Errorf("consumer: negative Retry MaxAttempts %d", opts.MaxAttempts)
	case opts.Initial < 0, opts.MaxInterval < 0, opts.MaxElapsed < 0:
		return nil, errors.New("consumer: negative Retry duration")
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 3
	}
	if opts.Initial == 0 {
		opts.Initial = 50 * time.Millisecond
	}
	if opts.MaxInterval == 0 {
		opts.MaxInterval = time.Second
	}
	if opts.MaxElapsed == 0 {
		opts.MaxElapsed = 2 * time.Second
	}
	if opts.Initial > opts.MaxInterval {
		return nil, fmt.Errorf("consumer: Retry Initial %s exceeds MaxInterval %s", opts.Initial, opts.MaxInterval)
	}
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, msg *Message) error {
			err := next.Handle(ctx, msg)
			if err == nil || opts.MaxAttempts == 1 {
				return err
			}
			// The schedule is made only on the failure path, so a
			// succeeding handler pays nothing for it.
			b := &backoff.ExponentialBackOff{
				InitialInterval:     opts.Initial,
				RandomizationFactor: 0.5,
				Multiplier:          2,
				MaxInterval:         opts.MaxInterval,
				MaxElapsedTime:      opts.MaxElapsed,
				Stop:                backoff.Stop,
				Clock:               backoff.SystemClock,
			}
			b.Reset()
			var timer *time.Timer
			defer func() {
				if timer != nil {
					timer.Stop()
				}
			}()
			for attempt := 1; attempt < opts.MaxAttempts; attempt++ {
				if !retryable(ctx, err) {
					return err
				}
				// A RetryAfter replaces the backoff's wait; the schedule
				// still advances so later waits keep growing.
				wait := b.NextBackOff()
				if d, ok := RetryAfterDelay(err); ok {
					wait = d
				} else if wait == backoff.Stop {
					return err
				}
				if b.GetElapsedTime()+wait > opts.MaxElapsed {
					return err
				}
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-ctx.Done():
					return err
				case <-timer.C:
				}
				if err = next.Handle(ctx, msg); err == nil {
					return nil
				}
			}
			return err
		})
	}, nil
}

func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || IsPermanent(err) {
		return false
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(err, ErrLeaseLost) && !errors.Is(err, ErrHandlerTimeout)
}
