package backpressure

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
)

// Coalescer runs one call per key at a time and shares its result with
// every caller that asks for the same key meanwhile. It is what
// golang.org/x/sync/singleflight does, made context-aware:
//
//   - each caller waits on its own context and, when that is done, returns
//     its error at once without disturbing the others;
//   - the shared call runs with a context that keeps the first caller's
//     values but not its cancellation or deadline ([context.WithoutCancel]),
//     so one impatient caller does not fail everyone; it is cancelled when
//     every caller waiting for it has given up;
//   - a panic in the function reaches every waiting caller as a
//     [*PanicError] instead of crashing the process or leaving them blocked.
//
// Results are not cached: once a call has returned, the next caller for
// its key starts a new one. A call whose callers all gave up is forgotten
// at once, so a caller that arrives while it is still winding down starts a
// fresh call rather than inherit a cancelled one.
//
// The zero value is ready to use. A Coalescer must not be copied after
// first use.
type Coalescer[T any] struct {
	mu    sync.Mutex
	calls map[string]*call[T] // in-flight calls by key

	// testHookWaiting, when set, is called each time a caller has
	// registered as a waiter for key, so tests know everyone has joined.
	testHookWaiting func(key string)
}

// call is one in-flight execution. val and err are written once, before
// done is closed; waiters is guarded by the Coalescer's mutex.
type call[T any] struct {
	done    chan struct{}
	cancel  context.CancelFunc
	waiters int
	val     T
	err     error
}

// PanicError is what every caller of a coalesced call gets when the
// call's function panicked. The function runs on a goroutine of its own
// that no caller owns, so re-panicking would crash the process; the panic
// is recovered and its value and stack are kept here instead. A panic while
// no caller is waiting any more is not reported anywhere.
type PanicError struct {
	Key   string // the key of the call
	Value any    // the value passed to panic
	Stack []byte // the panicking goroutine's stack
}

// Error describes the panic and the key of the call.
func (e *PanicError) Error() string {
	return fmt.Sprintf("backpressure: coalesced call %q panicked: %v", e.Key, e.Value)
}

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// errGoexit is what callers get when fn called runtime.Goexit (t.FailNow
// in a test, say) instead of returning.
var errGoexit = errors.New("backpressure: coalesced call exited without returning (runtime.Goexit)")

// Do runs fn for key, or waits for the run already in flight for key, and
// returns its result. shared reports whether the result came from a call
// another caller started: of the callers that share one call, exactly the
// one that started it sees false.
//
// When ctx is done before the result is ready, Do returns ctx.Err() and the
// call goes on for the callers still waiting; fn's context is cancelled
// once none is left. A ctx that is already done returns its error without
// starting or joining anything.
//
// fn runs on a goroutine of its own with a context carrying ctx's values
// but neither its cancellation nor its deadline: fn should bound its own
// duration if it needs a limit while callers wait.
func (c *Coalescer[T]) Do(ctx context.Context, key string, fn func(ctx context.Context) (T, error)) (v T, shared bool, err error) {
	if err := ctx.Err(); err != nil {
		return v, false, err
	}

	c.mu.Lock()
	if c.calls == nil {
		c.calls = make(map[string]*call[T])
	}
	cl, shared := c.calls[key]
	if shared {
		cl.waiters++
	} else {
		callCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		cl = &call[T]{done: make(chan struct{}), cancel: cancel, waiters: 1}
		c.calls[key] = cl
		go c.run(callCtx, key, cl, fn)
	}
	hook := c.testHookWaiting
	c.mu.Unlock()
	if hook != nil {
		hook(key)
	}

	select {
	case <-cl.done:
		return cl.val, shared, cl.err
	case <-ctx.Done():
	}

	c.mu.Lock()
	select {
	case <-cl.done:
		// The result arrived as ctx ended: no reason to throw it away.
		c.mu.Unlock()
		return cl.val, shared, cl.err
	default:
	}
	cl.waiters--
	if cl.waiters == 0 {
		cl.cancel()
		if c.calls[key] == cl {
			delete(c.calls, key)
		}
	}
	c.mu.Unlock()
	return v, shared, ctx.Err()
}

// run executes fn for cl and publishes its outcome.
func (c *Coalescer[T]) run(ctx context.Context, key string, cl *call[T], fn func(ctx context.Context) (T, error)) {
	returned := false
	defer func() {
		if !returned {
			if r := recover(); r != nil {
				cl.err = &PanicError{Key: key, Value: r, Stack: debug.Stack()}
			} else {
				cl.err = errGoexit
			}
		}
		cl.cancel()
		// Forget the call before publishing its result, so that a caller
		// that has the result and asks again starts a new call.
		c.mu.Lock()
		if c.calls[key] == cl {
			delete(c.calls, key)
		}
		c.mu.Unlock()
		close(cl.done)
	}()
	cl.val, cl.err = fn(ctx)
	returned = true
}

// Forget makes the next Do for key start a new call even if one is in
// flight. The call in flight goes on, and its callers still get its result.
func (c *Coalescer[T]) Forget(key string) {
	c.mu.Lock()
	delete(c.calls, key)
	c.mu.Unlock()
}
