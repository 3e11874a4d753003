package backpressure

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// coalesceHangGuard bounds how long a test waits for something that should
// happen on its own. Reaching it means a hang, not a slow machine.
const coalesceHangGuard = time.Minute

type coalesceResult struct {
	v      int
	shared bool
	err    error
}

// coalesceJoins installs a hook on c and returns a channel that receives
// the key each time a caller has registered as a waiter.
func coalesceJoins[T any](c *Coalescer[T], buf int) <-chan string {
	ch := make(chan string, buf)
	c.testHookWaiting = func(key string) { ch <- key }
	return ch
}

func coalesceAwaitJoins(t *testing.T, joins <-chan string, n int) {
	t.Helper()
	for i := range n {
		select {
		case <-joins:
		case <-time.After(coalesceHangGuard):
			t.Fatalf("only %d of %d callers joined", i, n)
		}
	}
}

func coalesceRecv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(coalesceHangGuard):
		t.Fatal("timed out waiting on a channel")
		panic("unreachable")
	}
}

// coalesceGo runs c.Do in a goroutine and returns a channel with its result.
func coalesceGo(ctx context.Context, c *Coalescer[int], key string, fn func(context.Context) (int, error)) <-chan coalesceResult {
	ch := make(chan coalesceResult, 1)
	go func() {
		v, shared, err := c.Do(ctx, key, fn)
		ch <- coalesceResult{v, shared, err}
	}()
	return ch
}

func TestCoalescerSharesOneExecution(t *testing.T) {
	t.Parallel()
	const n = 100
	var c Coalescer[int]
	joins := coalesceJoins(&c, n)
	release := make(chan struct{})
	var runs atomic.Int32
	fn := func(context.Context) (int, error) {
		runs.Add(1)
		<-release
		return 42, nil
	}

	results := make([]<-chan coalesceResult, n)
	for i := range n {
		results[i] = coalesceGo(context.Background(), &c, "k", fn)
	}
	coalesceAwaitJoins(t, joins, n)
	close(release)

	unshared := 0
	for _, ch := range results {
		r := coalesceRecv(t, ch)
		require.NoError(t, r.err)
		require.Equal(t, 42, r.v)
		if !r.shared {
			unshared++
		}
	}
	require.Equal(t, 1, unshared, "exactly the caller that started the call reports shared=false")
	require.EqualValues(t, 1, runs.Load())
}

func TestCoalescerDifferentKeysRunInParallel(t *testing.T) {
	t.Parallel()
	var c Coalescer[int]
	startedA, startedB := make(chan struct{}), make(chan struct{})
	// Each function waits for the other to have started: run one after
	// the other, they would never finish.
	both := func(mine, theirs chan struct{}, v int) func(context.Context) (int, error) {
		return func(context.Context) (int, error) {
			close(mine)
			select {
			case <-theirs:
				return v, nil
			case <-time.After(coalesceHangGuard):
				return 0, errors.New("the other key's call never started")
			}
		}
	}
	a := coalesceGo(context.Background(), &c, "a", both(startedA, startedB, 1))
	b := coalesceGo(context.Background(), &c, "b", both(startedB, startedA, 2))

	ra, rb := coalesceRecv(t, a), coalesceRecv(t, b)
	require.NoError(t, ra.err)
	require.NoError(t, rb.err)
	require.Equal(t, 1, ra.v)
	require.Equal(t, 2, rb.v)
	require.False(t, ra.shared)
	require.False(t, rb.shared)
}

func TestCoalescerOneCallerCancelling(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cancel int // index of the caller that gives up: 0 started the call
	}{
		{"starter gives up", 0},
		{"joiner gives up", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c Coalescer[int]
			joins := coalesceJoins(&c, 3)
			started, release := make(chan struct{}), make(chan struct{})
			fnCtxErr := make(chan error, 1)
			fn := func(ctx context.Context) (int, error) {
				close(started)
				<-release
				fnCtxErr <- ctx.Err()
				return 7, nil
			}

			ctxs := make([]context.Context, 3)
			cancels := make([]context.CancelFunc, 3)
			for i := range ctxs {
				ctxs[i], cancels[i] = context.WithCancel(context.Background())
				defer cancels[i]()
			}
			results := []<-chan coalesceResult{coalesceGo(ctxs[0], &c, "k", fn)}
			coalesceRecv(t, started)
			coalesceAwaitJoins(t, joins, 1)
			for i := 1; i < 3; i++ {
				results = append(results, coalesceGo(ctxs[i], &c, "k", fn))
			}
			coalesceAwaitJoins(t, joins, 2)

			cancels[tc.cancel]()
			gaveUp := coalesceRecv(t, results[tc.cancel])
			require.ErrorIs(t, gaveUp.err, context.Canceled)
			require.Zero(t, gaveUp.v)

			close(release)
			require.NoError(t, coalesceRecv(t, fnCtxErr), "the call goes on while callers wait")
			for i, ch := range results {
				if i == tc.cancel {
					continue
				}
				r := coalesceRecv(t, ch)
				require.NoError(t, r.err)
				require.Equal(t, 7, r.v)
				require.Equal(t, i != 0, r.shared)
			}
		})
	}
}

func TestCoalescerAllCallersCancellingCancelsCall(t *testing.T) {
	t.Parallel()
	const n = 5
	var c Coalescer[int]
	joins := coalesceJoins(&c, n)
	started := make(chan struct{})
	fnDone := make(chan error, 1)
	exit := make(chan struct{})
	fn := func(ctx context.Context) (int, error) {
		close(started)
		select {
		case <-ctx.Done():
			fnDone <- ctx.Err()
		case <-time.After(coalesceHangGuard):
			fnDone <- errors.New("fn's context was never cancelled")
		}
		<-exit // keep winding down, to show a new caller does not join
		return 0, ctx.Err()
	}

	cancels := make([]context.CancelFunc, n)
	results := make([]<-chan coalesceResult, n)
	for i := range n {
		var ctx context.Context
		ctx, cancels[i] = context.WithCancel(context.Background())
		defer cancels[i]()
		results[i] = coalesceGo(ctx, &c, "k", fn)
	}
	coalesceAwaitJoins(t, joins, n)
	coalesceRecv(t, started)

	for i := range n - 1 {
		cancels[i]()
		require.ErrorIs(t, coalesceRecv(t, results[i]).err, context.Canceled)
	}
	select {
	case err := <-fnDone:
		t.Fatalf("fn's context ended (%v) while a caller was still waiting", err)
	default:
	}
	cancels[n-1]()
	require.ErrorIs(t, coalesceRecv(t, results[n-1]).err, context.Canceled)
	require.ErrorIs(t, coalesceRecv(t, fnDone), context.Canceled)

	// The abandoned call is still running, but a new caller starts afresh.
	v, shared, err := c.Do(context.Background(), "k", func(context.Context) (int, error) { return 9, nil })
	require.NoError(t, err)
	require.False(t, shared)
	require.Equal(t, 9, v)
	close(exit)
}

func TestCoalescerCallContext(t *testing.T) {
	t.Parallel()
	type ctxKey struct{}
	var c Coalescer[int]
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), ctxKey{}, "first"), coalesceHangGuard)
	defer cancel()
	var (
		value       any
		hasDeadline bool
	)
	_, _, err := c.Do(ctx, "k", func(ctx context.Context) (int, error) {
		value = ctx.Value(ctxKey{})
		_, hasDeadline = ctx.Deadline()
		return 0, nil
	})
	require.NoError(t, err)
	require.Equal(t, "first", value, "keeps the first caller's values")
	require.False(t, hasDeadline, "drops the first caller's deadline")
}

func TestCoalescerSharesError(t *testing.T) {
	t.Parallel()
	const n = 10
	var c Coalescer[int]
	joins := coalesceJoins(&c, n)
	release := make(chan struct{})
	errBoom := errors.New("boom")
	fn := func(context.Context) (int, error) {
		<-release
		return 0, errBoom
	}
	results := make([]<-chan coalesceResult, n)
	for i := range n {
		results[i] = coalesceGo(context.Background(), &c, "k", fn)
	}
	coalesceAwaitJoins(t, joins, n)
	close(release)
	for _, ch := range results {
		require.ErrorIs(t, coalesceRecv(t, ch).err, errBoom)
	}
}

func TestCoalescerDoesNotCacheResults(t *testing.T) {
	t.Parallel()
	var c Coalescer[int]
	var runs atomic.Int32
	fn := func(context.Context) (int, error) { return int(runs.Add(1)), nil }
	for want := 1; want <= 3; want++ {
		v, shared, err := c.Do(context.Background(), "k", fn)
		require.NoError(t, err)
		require.False(t, shared)
		require.Equal(t, want, v)
	}
}

func TestCoalescerDoneContext(t *testing.T) {
	t.Parallel()
	var c Coalescer[int]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := c.Do(ctx, "k", func(context.Context) (int, error) {
		t.Error("fn ran for a caller that had already given up")
		return 0, nil
	})
	require.ErrorIs(t, err, context.Canceled)
}

func TestCoalescerForget(t *testing.T) {
	t.Parallel()
	var c Coalescer[int]
	joins := coalesceJoins(&c, 3)
	started, release := make(chan struct{}), make(chan struct{})
	first := coalesceGo(context.Background(), &c, "k", func(context.Context) (int, error) {
		close(started)
		<-release
		return 1, nil
	})
	coalesceRecv(t, started)
	joiner := coalesceGo(context.Background(), &c, "k", nil) // joins: fn unused
	coalesceAwaitJoins(t, joins, 2)

	c.Forget("k")
	v, shared, err := c.Do(context.Background(), "k", func(context.Context) (int, error) { return 2, nil })
	require.NoError(t, err)
	require.False(t, shared)
	require.Equal(t, 2, v)

	close(release)
	require.Equal(t, coalesceResult{v: 1}, coalesceRecv(t, first))
	require.Equal(t, coalesceResult{v: 1, shared: true}, coalesceRecv(t, joiner))
}

func TestCoalescerPanic(t *testing.T) {
	t.Parallel()
	errCause := errors.New("cause")
	for _, tc := range []struct {
		name  string
		value any
	}{
		{"string", "boom"},
		{"error", errCause},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c Coalescer[int]
			joins := coalesceJoins(&c, 2)
			release := make(chan struct{})
			fn := func(context.Context) (int, error) {
				<-release
				panic(tc.value)
			}
			a := coalesceGo(context.Background(), &c, "k", fn)
			b := coalesceGo(context.Background(), &c, "k", fn)
			coalesceAwaitJoins(t, joins, 2)
			close(release)

			for _, ch := range []<-chan coalesceResult{a, b} {
				err := coalesceRecv(t, ch).err
				var pe *PanicError
				require.ErrorAs(t, err, &pe)
				require.Equal(t, "k", pe.Key)
				require.Equal(t, tc.value, pe.Value)
				require.NotEmpty(t, pe.Stack)
				require.Equal(t, tc.value == errCause, errors.Is(err, errCause))
			}

			// The key is usable again.
			v, _, err := c.Do(context.Background(), "k", func(context.Context) (int, error) { return 3, nil })
			require.NoError(t, err)
			require.Equal(t, 3, v)
		})
	}
}

func TestCoalescerGoexit(t *testing.T) {
	t.Parallel()
	var c Coalescer[int]
	_, _, err := c.Do(context.Background(), "k", func(context.Context) (int, error) {
		runtime.Goexit()
		return 0, nil
	})
	require.ErrorIs(t, err, errGoexit)
}

// TestCoalescerStress mixes keys, cancellations and panics across many
// goroutines; it is for the race detector as much as for its assertions.
func TestCoalescerStress(t *testing.T) {
	t.Parallel()
	const (
		goroutines = 64
		calls      = 200
		keys       = 8
	)
	var c Coalescer[int]
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range calls {
				k := rng.IntN(keys)
				key := fmt.Sprint(k)
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(4) == 0 {
					cancel()
				}
				mode := rng.IntN(10)
				v, _, err := c.Do(ctx, key, func(ctx context.Context) (int, error) {
					runtime.Gosched()
					switch mode {
					case 0:
						panic("boom")
					case 1:
						return k, ctx.Err() // nil unless every caller gave up
					}
					return k, nil
				})
				cancel()
				var pe *PanicError
				switch {
				case err == nil:
					if v != k {
						t.Errorf("key %s: got %d", key, v)
					}
				case errors.Is(err, context.Canceled), errors.As(err, &pe):
				default:
					t.Errorf("key %s: unexpected error %v", key, err)
				}
			}
		})
	}
	wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Empty(t, c.calls, "every call is forgotten once it ends")
}
