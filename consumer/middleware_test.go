package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

var errTransient = errors.New("transient")

// mwHangGuard bounds how long a test waits for a call that should return
// on its own. It is far above any real duration: reaching it means the
// call hung, not that the machine was slow.
const mwHangGuard = time.Minute

// mwCallAsync runs h in a goroutine and returns a channel with its result.
func mwCallAsync(ctx context.Context, h consumer.Handler) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- h.Handle(ctx, &consumer.Message{ID: "m"}) }()
	return errc
}

// mwAwait returns the result from errc, failing the test if it never comes.
func mwAwait(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(mwHangGuard):
		t.Fatal("the handler did not return: it hung")
		return nil
	}
}

// mwRetry builds a Retry middleware, failing the test on a config error.
func mwRetry(t *testing.T, opts consumer.RetryOptions) consumer.Middleware {
	t.Helper()
	mw, err := consumer.Retry(opts)
	require.NoError(t, err)
	require.NotNil(t, mw)
	return mw
}

// --- Recover ---

func TestRecover(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		value any
		check func(t *testing.T, pe *consumer.PanicError)
	}{
		{"string", "kaboom", func(t *testing.T, pe *consumer.PanicError) {
			require.Equal(t, "kaboom", pe.Value)
			require.NoError(t, pe.Unwrap())
			require.Contains(t, pe.Error(), "kaboom")
		}},
		{"error", errTransient, func(t *testing.T, pe *consumer.PanicError) {
			require.Same(t, errTransient, pe.Value)
			require.ErrorIs(t, pe, errTransient)
		}},
		{"wrapped error", fmt.Errorf("db: %w", context.DeadlineExceeded), func(t *testing.T, pe *consumer.PanicError) {
			require.ErrorIs(t, pe, context.DeadlineExceeded)
		}},
		{"nil", nil, func(t *testing.T, pe *consumer.PanicError) {
			// Since Go 1.21 panic(nil) panics with a *runtime.PanicNilError.
			var pn *runtime.PanicNilError
			require.ErrorAs(t, pe, &pn)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := consumer.Recover(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
				panic(tc.value)
			}))

			var err error
			require.NotPanics(t, func() { err = h.Handle(context.Background(), &consumer.Message{}) })

			var pe *consumer.PanicError
			require.ErrorAs(t, err, &pe)
			require.NotEmpty(t, pe.Stack)
			require.Contains(t, string(pe.Stack), "TestRecover", "the stack must be the panicking goroutine's")
			tc.check(t, pe)
		})
	}
}

func TestRecoverPassesThrough(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ret  error
	}{
		{"nil", nil},
		{"error", errTransient},
		{"permanent", consumer.Permanent(errTransient)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			h := consumer.Recover(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
				calls++
				return tc.ret
			}))
			err := h.Handle(context.Background(), &consumer.Message{})
			require.Equal(t, 1, calls)
			require.Equal(t, tc.ret, err, "Recover must return the handler's error unchanged")
			var pe *consumer.PanicError
			require.False(t, errors.As(err, &pe))
		})
	}
}

// --- Timeout ---

func TestTimeoutExpires(t *testing.T) {
	t.Parallel()
	h := consumer.Timeout(time.Millisecond)(consumer.HandlerFunc(func(ctx context.Context, _ *consumer.Message) error {
		<-ctx.Done()
		return fmt.Errorf("querying: %w", ctx.Err())
	}))

	err := mwAwait(t, mwCallAsync(context.Background(), h))

	require.ErrorIs(t, err, consumer.ErrHandlerTimeout)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "querying")
	require.False(t, consumer.IsPermanent(err))
}

func TestTimeoutPassesThrough(t *testing.T) {
	t.Parallel()
	errPlain := errors.New("plain")
	for _, tc := range []struct {
		name string
		d    time.Duration
		ret  error
	}{
		{"nil", time.Hour, nil},
		{"error", time.Hour, errPlain},
		{"permanent", time.Hour, consumer.Permanent(errPlain)},
		{"zero nil", 0, nil},
		{"zero error", 0, errPlain},
		{"negative error", -time.Second, errPlain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := consumer.Timeout(tc.d)(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
				return tc.ret
			}))
			err := h.Handle(context.Background(), &consumer.Message{})
			require.Equal(t, tc.ret, err, "a handler that finishes in time must have its result unchanged")
			require.False(t, errors.Is(err, consumer.ErrHandlerTimeout))
		})
	}
}

func TestTimeoutDeadline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		d            time.Duration
		wantDeadline bool
	}{
		{"positive", time.Hour, true},
		{"zero", 0, false},
		{"negative", -time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var (
				deadline time.Time
				ok       bool
				inside   time.Time
			)
			h := consumer.Timeout(tc.d)(consumer.HandlerFunc(func(ctx context.Context, _ *consumer.Message) error {
				inside = time.Now()
				deadline, ok = ctx.Deadline()
				return nil
			}))
			before := time.Now()
			require.NoError(t, h.Handle(context.Background(), &consumer.Message{}))

			require.Equal(t, tc.wantDeadline, ok)
			if tc.wantDeadline {
				require.False(t, deadline.Before(before.Add(tc.d)), "deadline %v is earlier than d after the call", deadline)
				require.False(t, deadline.After(inside.Add(tc.d)), "deadline %v is later than d after the call", deadline)
			}
		})
	}
}

func TestTimeoutParentCancelIsNotATimeout(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	h := consumer.Timeout(time.Hour)(consumer.HandlerFunc(func(ctx context.Context, _ *consumer.Message) error {
		cancel()
		<-ctx.Done()
		return ctx.Err()
	}))

	err := mwAwait(t, mwCallAsync(ctx, h))

	require.ErrorIs(t, err, context.Canceled)
	require.False(t, errors.Is(err, consumer.ErrHandlerTimeout), "a cancelled parent is not a handler timeout")
}

// --- Retry ---

func TestRetryInvalidOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		opts    consumer.RetryOptions
		wantErr bool
	}{
		{"zero", consumer.RetryOptions{}, false},
		{"one attempt", consumer.RetryOptions{MaxAttempts: 1}, false},
		{"initial equals max", consumer.RetryOptions{Initial: time.Second, MaxInterval: time.Second}, false},
		{"negative attempts", consumer.RetryOptions{MaxAttempts: -1}, true},
		{"negative initial", consumer.RetryOptions{Initial: -time.Millisecond}, true},
		{"negative max interval", consumer.RetryOptions{MaxInterval: -time.Millisecond}, true},
		{"negative max elapsed", consumer.RetryOptions{MaxElapsed: -time.Millisecond}, true},
		{"initial above max interval", consumer.RetryOptions{Initial: 2 * time.Second, MaxInterval: time.Second}, true},
		{"initial above default max interval", consumer.RetryOptions{Initial: 2 * time.Second}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mw, err := consumer.Retry(tc.opts)
			if tc.wantErr {
				require.Error(t, err)
				require.Nil(t, mw)
				require.Contains(t, err.Error(), "consumer: ")
				return
			}
			require.NoError(t, err)
			require.NotNil(t, mw)
		})
	}
}

func TestRetrySucceedsAfterFailures(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	h := mwRetry(t, consumer.RetryOptions{
		MaxAttempts: 5,
		Initial:     time.Millisecond,
		MaxInterval: 2 * time.Millisecond,
		MaxElapsed:  time.Hour,
	})(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		if calls.Add(1) <= 2 {
			return errTransient
		}
		return nil
	}))

	require.NoError(t, h.Handle(context.Background(), &consumer.Message{}))
	require.Equal(t, int32(3), calls.Load())
}

func TestRetryExhaustsAttempts(t *testing.T) {
	t.Parallel()
	for _, maxAttempts := range []int{1, 2, 4} {
		t.Run(fmt.Sprint(maxAttempts), func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			h := mwRetry(t, consumer.RetryOptions{
				MaxAttempts: maxAttempts,
				Initial:     time.Millisecond,
				MaxInterval: 2 * time.Millisecond,
				MaxElapsed:  time.Hour,
			})(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
				n := calls.Add(1)
				return fmt.Errorf("call %d: %w", n, errTransient)
			}))

			err := h.Handle(context.Background(), &consumer.Message{})

			require.Equal(t, int32(maxAttempts), calls.Load())
			require.ErrorIs(t, err, errTransient)
			require.EqualError(t, err, fmt.Sprintf("call %d: transient", maxAttempts), "the last error must be returned")
		})
	}
}

func TestRetryDefaultAttempts(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	h := mwRetry(t, consumer.RetryOptions{
		Initial:     time.Millisecond,
		MaxInterval: time.Millisecond,
		MaxElapsed:  time.Hour,
	})(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		calls.Add(1)
		return errTransient
	}))
	require.ErrorIs(t, h.Handle(context.Background(), &consumer.Message{}), errTransient)
	require.Equal(t, int32(3), calls.Load(), "MaxAttempts defaults to 3")
}

func TestRetryDoesNotRetry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"permanent", consumer.Permanent(errTransient)},
		{"wrapped permanent", fmt.Errorf("x: %w", consumer.Permanent(errTransient))},
		{"canceled", fmt.Errorf("query: %w", context.Canceled)},
		{"deadline exceeded", fmt.Errorf("query: %w", context.DeadlineExceeded)},
		{"lease lost", fmt.Errorf("extend: %w", consumer.ErrLeaseLost)},
		{"handler timeout", fmt.Errorf("inner: %w", consumer.ErrHandlerTimeout)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			h := mwRetry(t, consumer.RetryOptions{
				MaxAttempts: 10,
				Initial:     time.Millisecond,
				MaxInterval: time.Millisecond,
				MaxElapsed:  time.Hour,
			})(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
				calls.Add(1)
				return tc.err
			}))

			err := h.Handle(context.Background(), &consumer.Message{})

			require.Equal(t, int32(1), calls.Load())
			require.Equal(t, tc.err, err, "the error must go back unchanged")
		})
	}
}

func TestRetryStopsOnCancelInHandler(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	// Only cancellation can end the wait: the backoff is an hour and the
	// budget ten.
	h := mwRetry(t, consumer.RetryOptions{
		MaxAttempts: 10,
		Initial:     time.Hour,
		MaxInterval: time.Hour,
		MaxElapsed:  10 * time.Hour,
	})(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		calls.Add(1)
		cancel()
		return errTransient
	}))

	err := mwAwait(t, mwCallAsync(ctx, h))

	require.ErrorIs(t, err, errTransient)
	require.Equal(t, int32(1), calls.Load())
}

// cancelOnWaitCtx is a context that is not done until someone waits on
// Done: it lets a test cancel exactly when Retry starts its backoff wait,
// after Retry has looked at ctx.Err.
type cancelOnWaitCtx struct {
	context.Context
	once   sync.Once
	done   chan struct{}
	waited atomic.Bool
}

func newCancelOnWaitCtx() *cancelOnWaitCtx {
	return &cancelOnWaitCtx{Context: context.Background(), done: make(chan struct{})}
}

func (c *cancelOnWaitCtx) Done() <-chan struct{} {
	c.once.Do(func() {
		c.waited.Store(true)
		close(c.done)
	})
	return c.done
}

func (c *cancelOnWaitCtx) Err() error {
	if c.waited.Load() {
		return context.Canceled
	}
	return nil
}

func TestRetryStopsOnCancelDuringWait(t *testing.T) {
	t.Parallel()
	ctx := newCancelOnWaitCtx()
	var calls atomic.Int32
	h := mwRetry(t, consumer.RetryOptions{
		MaxAttempts: 10,
		Initial:     time.Hour,
		MaxInterval: time.Hour,
		MaxElapsed:  10 * time.Hour,
	})(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		calls.Add(1)
		return errTransient
	}))

	err := mwAwait(t, mwCallAsync(ctx, h))

	require.ErrorIs(t, err, errTransient)
	require.Equal(t, int32(1), calls.Load())
	require.True(t, ctx.waited.Load(), "Retry must wait on ctx.Done during its backoff")
}

func TestRetryAfterBeyondBudget(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	retryErr := consumer.RetryAfter(time.Hour, errTransient)
	h := mwRetry(t, consumer.RetryOptions{
		MaxAttempts: 10,
		Initial:     time.Millisecond,
		MaxInterval: time.Millisecond,
		MaxElapsed:  time.Minute,
	})(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		calls.Add(1)
		return retryErr
	}))

	// If Retry waited for the hour it would hang: the guard catches it.
	err := mwAwait(t, mwCallAsync(context.Background(), h))

	require.Equal(t, int32(1), calls.Load())
	require.Equal(t, retryErr, err)
	d, ok := consumer.RetryAfterDelay(err)
	require.True(t, ok)
	require.Equal(t, time.Hour, d, "the caller needs the delay to nack with")
}

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	const delay = 5 * time.Millisecond
	// With an hour of backoff, only the RetryAfter delay lets the second
	// call happen; ctx bounds the test should it be ignored.
	ctx, cancel := context.WithTimeout(context.Background(), mwHangGuard)
	defer cancel()
	var (
		calls      atomic.Int32
		firstEnd   time.Time
		secondCall time.Time
	)
	h := mwRetry(t, consumer.RetryOptions{
		MaxAttempts: 3,
		Initial:     time.Hour,
		MaxInterval: time.Hour,
		MaxElapsed:  10 * time.Hour,
	})(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		if calls.Add(1) == 1 {
			firstEnd = time.Now()
			return consumer.RetryAfter(delay, errTransient)
		}
		secondCall = time.Now()
		return nil
	}))

	err := h.Handle(ctx, &consumer.Message{})

	require.NoError(t, err, "the RetryAfter delay must replace the backoff")
	require.Equal(t, int32(2), calls.Load())
	require.GreaterOrEqual(t, secondCall.Sub(firstEnd), delay, "Retry must wait the RetryAfter delay")
}

func TestRetryMaxElapsedBudget(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	h := mwRetry(t, consumer.RetryOptions{
		MaxAttempts: 100,
		Initial:     20 * time.Millisecond,
		MaxElapsed:  30 * time.Millisecond,
	})(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		calls.Add(1)
		return errTransient
	}))

	err := h.Handle(context.Background(), &consumer.Message{})

	require.ErrorIs(t, err, errTransient)
	// Waits start at 20ms and double (±50% jitter), so the budget covers
	// at most two of them; a slow machine only lowers the count.
	require.GreaterOrEqual(t, calls.Load(), int32(1))
	require.Less(t, calls.Load(), int32(10))
}

// TestRetrySuccessDoesNotAllocate is not parallel: AllocsPerRun counts the
// whole process's allocations.
func TestRetrySuccessDoesNotAllocate(t *testing.T) {
	h := mwRetry(t, consumer.RetryOptions{})(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		return nil
	}))
	ctx := context.Background()
	msg := &consumer.Message{ID: "m"}
	allocs := testing.AllocsPerRun(1000, func() {
		if err := h.Handle(ctx, msg); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs)
}

// --- Composition ---

func TestRetryRetriesRecoveredPanic(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	h := consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		if calls.Add(1) == 1 {
			panic("first call panics")
		}
		return nil
	})
	retry := mwRetry(t, consumer.RetryOptions{Initial: time.Millisecond, MaxInterval: time.Millisecond, MaxElapsed: time.Hour})

	// Retry outside Recover: Recover turns the panic into a *PanicError,
	// an ordinary retryable error for Retry.
	err := consumer.Chain(retry, consumer.Recover)(h).Handle(context.Background(), &consumer.Message{})

	require.NoError(t, err)
	require.Equal(t, int32(2), calls.Load())
}

func TestRecoverOutsideRetryDoesNotRetryPanic(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	h := consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		if calls.Add(1) == 1 {
			panic("first call panics")
		}
		return nil
	})
	retry := mwRetry(t, consumer.RetryOptions{Initial: time.Millisecond, MaxInterval: time.Millisecond, MaxElapsed: time.Hour})

	// Recover outermost: the panic unwinds through Retry, which never sees
	// an error, and Recover returns it for the runtime to redeliver.
	err := consumer.Chain(consumer.Recover, retry)(h).Handle(context.Background(), &consumer.Message{})

	var pe *consumer.PanicError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "first call panics", pe.Value)
	require.Equal(t, int32(1), calls.Load())
}

// TestRetryAfterThatFitsBudgetIsHonoured: a RetryAfter replaces the
// backoff's wait, so it is retried when its own delay fits the budget even
// if the backoff's wait would not. Here the budget is an hour, the
// RetryAfter asks for 1ms, and the backoff (2h ±50%) never fits.
func TestRetryAfterThatFitsBudgetIsHonoured(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), mwHangGuard)
	defer cancel()
	var calls atomic.Int32
	h := mwRetry(t, consumer.RetryOptions{
		MaxAttempts: 3,
		Initial:     2 * time.Hour,
		MaxInterval: 2 * time.Hour,
		MaxElapsed:  time.Hour,
	})(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		if calls.Add(1) == 1 {
			return consumer.RetryAfter(time.Millisecond, errTransient)
		}
		return nil
	}))

	err := h.Handle(ctx, &consumer.Message{})

	require.NoError(t, err, "a 1ms RetryAfter fits a 1h budget and must be retried")
	require.Equal(t, int32(2), calls.Load())
}
