package idempotency_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/internal/observetest"
)

var quietLog = slog.New(slog.DiscardHandler)

func wrap(t *testing.T, opts idempotency.Options, h consumer.HandlerFunc) consumer.Handler {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLog
	}
	mw, err := idempotency.Middleware(opts)
	require.NoError(t, err)
	return mw(h)
}

func msg(id, body string) *consumer.Message {
	return &consumer.Message{ID: id, Body: []byte(body), Attempt: 1}
}

func TestMiddlewareOptions(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemoryStore()
	for name, o := range map[string]idempotency.Options{
		"no store":                 {},
		"negative MaxKeyLen":       {Store: store, MaxKeyLen: -1},
		"negative Lease":           {Store: store, Lease: -time.Second},
		"retention < lease":        {Store: store, Lease: time.Hour, Retention: time.Minute},
		"negative Retention":       {Store: store, Retention: -1},
		"negative InProgressDelay": {Store: store, InProgressDelay: -1},
	} {
		t.Run(name, func(t *testing.T) {
			mw, err := idempotency.Middleware(o)
			require.Error(t, err)
			require.Nil(t, mw)
		})
	}
}

func TestMiddlewareSkipsCompletedDuplicates(t *testing.T) {
	t.Parallel()
	obs := &observetest.Counts{}
	var calls atomic.Int32
	h := wrap(t, idempotency.Options{Store: idempotency.NewMemoryStore(), Observer: obs},
		func(context.Context, *consumer.Message) error { calls.Add(1); return nil })
	for range 3 {
		require.NoError(t, h.Handle(context.Background(), msg("m1", "body")))
	}
	require.NoError(t, h.Handle(context.Background(), msg("m2", "body")))
	require.Equal(t, int32(2), calls.Load())
	require.Equal(t, int64(2), obs.Get(idempotency.MetricDuplicatesSkipped))
}

func TestMiddlewareReleasesOnFailure(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemoryStore()
	errBoom := errors.New("boom")
	var calls atomic.Int32
	h := wrap(t, idempotency.Options{Store: store}, func(context.Context, *consumer.Message) error {
		if calls.Add(1) <= 5 {
			return errBoom
		}
		return nil
	})
	for range 5 {
		require.ErrorIs(t, h.Handle(context.Background(), msg("m", "b")), errBoom)
	}
	require.NoError(t, h.Handle(context.Background(), msg("m", "b")))
	require.NoError(t, h.Handle(context.Background(), msg("m", "b")), "now a duplicate")
	require.Equal(t, int32(6), calls.Load())
}

func TestMiddlewareReleasesOnPanic(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemoryStore()
	h := wrap(t, idempotency.Options{Store: store}, func(context.Context, *consumer.Message) error {
		panic("kaboom")
	})
	require.PanicsWithValue(t, "kaboom", func() { _ = h.Handle(context.Background(), msg("m", "b")) })
	c, err := store.Claim(context.Background(), "m", "", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claimed, c.Status, "a panic must release the claim")
}

func TestMiddlewareInProgressAsksForRetry(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemoryStore()
	_, err := store.Claim(context.Background(), "m", idempotency.FingerprintBody(msg("m", "b")), time.Minute)
	require.NoError(t, err)
	var calls atomic.Int32
	h := wrap(t, idempotency.Options{Store: store}, func(context.Context, *consumer.Message) error {
		calls.Add(1)
		return nil
	})
	err = h.Handle(context.Background(), msg("m", "b"))
	require.ErrorIs(t, err, idempotency.ErrInProgress)
	require.ErrorIs(t, err, consumer.ErrDeferred, "a dead-letter middleware must not count it")
	d, ok := consumer.RetryAfterDelay(err)
	require.True(t, ok)
	require.Equal(t, time.Second, d, "the default InProgressDelay, shorter than the holder's lease")
	require.False(t, consumer.IsPermanent(err))
	require.Zero(t, calls.Load())

	h = wrap(t, idempotency.Options{Store: store, InProgressDelay: 5 * time.Minute}, func(context.Context, *consumer.Message) error { return nil })
	err = h.Handle(context.Background(), msg("m", "b"))
	d, ok = consumer.RetryAfterDelay(err)
	require.True(t, ok)
	require.Greater(t, d, 50*time.Second, "capped at the holder's remaining lease")
	require.LessOrEqual(t, d, time.Minute)
}

func TestMiddlewarePermanentFailures(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemoryStore()
	var calls atomic.Int32
	noop := func(context.Context, *consumer.Message) error { calls.Add(1); return nil }

	h := wrap(t, idempotency.Options{Store: store}, noop)
	require.NoError(t, h.Handle(context.Background(), msg("m", "original")))
	err := h.Handle(context.Background(), msg("m", "tampered"))
	require.True(t, consumer.IsPermanent(err), "%v", err)
	require.ErrorIs(t, err, idempotency.ErrFingerprintMismatch)

	err = h.Handle(context.Background(), msg(strings.Repeat("k", 257), "b"))
	require.True(t, consumer.IsPermanent(err))
	require.ErrorIs(t, err, idempotency.ErrKeyTooLong)

	h = wrap(t, idempotency.Options{Store: store, Namespace: "ns", MaxKeyLen: 10}, noop)
	require.NoError(t, h.Handle(context.Background(), msg("1234567", "b")), "ns:1234567 is 10 bytes")
	require.ErrorIs(t, h.Handle(context.Background(), msg("12345678", "b")), idempotency.ErrKeyTooLong)

	h = wrap(t, idempotency.Options{Store: store, Key: idempotency.KeyFromHeader("Event-Id")}, noop)
	err = h.Handle(context.Background(), msg("x", "b"))
	require.True(t, consumer.IsPermanent(err))

	h = wrap(t, idempotency.Options{Store: store}, noop)
	require.True(t, consumer.IsPermanent(h.Handle(context.Background(), msg("", "b"))), "no ID, no key")
	require.Equal(t, int32(2), calls.Load())
}

func TestMiddlewareNoFingerprint(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	h := wrap(t, idempotency.Options{Store: idempotency.NewMemoryStore(), Fingerprint: idempotency.NoFingerprint},
		func(context.Context, *consumer.Message) error { calls.Add(1); return nil })
	require.NoError(t, h.Handle(context.Background(), msg("m", "a")))
	require.NoError(t, h.Handle(context.Background(), msg("m", "b")))
	require.Equal(t, int32(1), calls.Load())
}

func TestMiddlewareKeysFromHeaderAndContent(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	noop := func(context.Context, *consumer.Message) error { calls.Add(1); return nil }
	h := wrap(t, idempotency.Options{Store: idempotency.NewMemoryStore(), Key: idempotency.KeyFromHeader("Event-Id")}, noop)
	m1 := &consumer.Message{ID: "1", Body: []byte("x"), Headers: map[string]string{"Event-Id": "e"}}
	m2 := &consumer.Message{ID: "2", Body: []byte("x"), Headers: map[string]string{"Event-Id": "e"}}
	require.NoError(t, h.Handle(context.Background(), m1))
	require.NoError(t, h.Handle(context.Background(), m2))
	require.Equal(t, int32(1), calls.Load(), "same header, one effect")

	calls.Store(0)
	h = wrap(t, idempotency.Options{Store: idempotency.NewMemoryStore(), Key: idempotency.KeyFromContent("orders")}, noop)
	require.NoError(t, h.Handle(context.Background(), &consumer.Message{ID: "1", Key: "k", Body: []byte("x")}))
	require.NoError(t, h.Handle(context.Background(), &consumer.Message{ID: "2", Key: "k", Body: []byte("x")}))
	require.NoError(t, h.Handle(context.Background(), &consumer.Message{ID: "3", Key: "k", Body: []byte("y")}))
	require.NoError(t, h.Handle(context.Background(), &consumer.Message{ID: "4", Key: "kx", Body: []byte("")}))
	require.Equal(t, int32(3), calls.Load(), "equal content is one effect, different content is not")

	a, _ := idempotency.KeyFromContent("a")(&consumer.Message{Body: []byte("x")})
	b, _ := idempotency.KeyFromContent("b")(&consumer.Message{Body: []byte("x")})
	require.NotEqual(t, a, b, "namespaces keep equal payloads apart")
}

func TestMiddlewareStoresResultAndToken(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemoryStore()
	var token int64
	h := wrap(t, idempotency.Options{Store: store}, func(ctx context.Context, _ *consumer.Message) error {
		var ok bool
		token, ok = idempotency.TokenFromContext(ctx)
		require.True(t, ok)
		require.True(t, idempotency.SetResult(ctx, []byte("receipt-42")))
		return nil
	})
	require.NoError(t, h.Handle(context.Background(), msg("m", "b")))
	require.NotZero(t, token)
	c, err := store.Claim(context.Background(), "m", "", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Completed, c.Status)
	require.Equal(t, []byte("receipt-42"), c.Result)
	require.False(t, idempotency.SetResult(context.Background(), nil))
	_, ok := idempotency.TokenFromContext(context.Background())
	require.False(t, ok)
}

func TestMiddlewareExtendsTheClaim(t *testing.T) {
	t.Parallel()
	const lease = 90 * time.Millisecond
	store := idempotency.NewMemoryStore()
	running := make(chan struct{})
	release := make(chan struct{})
	h := wrap(t, idempotency.Options{Store: store, Lease: lease, Fingerprint: idempotency.NoFingerprint},
		func(ctx context.Context, _ *consumer.Message) error {
			close(running)
			<-release
			return context.Cause(ctx)
		})
	errc := make(chan error, 1)
	go func() { errc <- h.Handle(context.Background(), msg("m", "b")) }()
	<-running
	// Over four leases, a competitor always finds the key in progress.
	deadline := time.Now().Add(4 * lease)
	for time.Now().Before(deadline) {
		c, err := store.Claim(context.Background(), "m", "", lease)
		require.NoError(t, err)
		require.Equal(t, idempotency.InProgress, c.Status)
		time.Sleep(lease / 10)
	}
	close(release)
	require.NoError(t, <-errc)
	c, err := store.Claim(context.Background(), "m", "", lease)
	require.NoError(t, err)
	require.Equal(t, idempotency.Completed, c.Status)
}

// loseClaims is a Store whose Extend reports the claim lost.
type loseClaims struct{ idempotency.Store }

func (loseClaims) Extend(context.Context, string, int64, time.Duration) error {
	return idempotency.ErrStaleToken
}

func TestMiddlewareLostClaimCancelsHandler(t *testing.T) {
	t.Parallel()
	store := loseClaims{idempotency.NewMemoryStore()}
	h := wrap(t, idempotency.Options{Store: store, Lease: 30 * time.Millisecond},
		func(ctx context.Context, _ *consumer.Message) error {
			<-ctx.Done()
			return context.Cause(ctx)
		})
	err := h.Handle(context.Background(), msg("m", "b"))
	require.ErrorIs(t, err, idempotency.ErrStaleToken)
}

func TestMiddlewareSettlesAfterCancellation(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemoryStore()
	ctx, cancel := context.WithCancel(context.Background())
	h := wrap(t, idempotency.Options{Store: store}, func(ctx context.Context, _ *consumer.Message) error {
		cancel() // the consumer lost its lease meanwhile
		return ctx.Err()
	})
	require.ErrorIs(t, h.Handle(ctx, msg("m", "b")), context.Canceled)
	c, err := store.Claim(context.Background(), "m", "", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claimed, c.Status, "the claim was released despite the cancelled context")
}

// TestMiddlewareWithConsumer runs the middleware in the consumer runtime:
// a message delivered many times, whose handler fails its first 5 attempts,
// takes effect exactly once and is not dropped as a duplicate.
func TestMiddlewareWithConsumer(t *testing.T) {
	t.Parallel()
	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	require.NoError(t, err)
	store := idempotency.NewMemoryStore()
	obs := &observetest.Counts{}
	var attempts, effects atomic.Int32
	done := make(chan struct{})
	mw, err := idempotency.Middleware(idempotency.Options{Store: store, Observer: obs, InProgressDelay: time.Millisecond, Logger: quietLog})
	require.NoError(t, err)
	h := mw(consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
		if m.ID == "flaky" && attempts.Add(1) <= 5 {
			return errors.New("not yet")
		}
		if effects.Add(1) == 2 {
			close(done)
		}
		return nil
	}))
	c, err := consumer.New(q, h, consumer.Config{Logger: quietLog,
		Backoff: consumer.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	require.NoError(t, q.Publish(ctx,
		consumer.Message{ID: "flaky", Body: []byte("x")},
		consumer.Message{ID: "dup", Body: []byte("y")},
		consumer.Message{ID: "dup", Body: []byte("y")},
		consumer.Message{ID: "dup", Body: []byte("y")},
	))
	<-done
	// Wait until every copy has been settled.
	require.Eventually(t, func() bool { return q.Stats() == consumer.MemQueueStats{} }, 10*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-errc)
	require.Equal(t, int32(2), effects.Load())
	require.Equal(t, int32(6), attempts.Load())
	require.Equal(t, int64(2), obs.Get(idempotency.MetricDuplicatesSkipped))
}
