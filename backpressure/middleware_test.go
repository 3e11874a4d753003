package backpressure_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/idemq/idemq/backpressure"
	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
)

func TestConsumerMiddlewareDefersRejections(t *testing.T) {
	t.Parallel()
	a, err := backpressure.NewAdmission(backpressure.AdmissionOptions{Name: "db", Limit: 1, RetryAfter: 250 * time.Millisecond})
	require.NoError(t, err)
	var calls atomic.Int32
	h := backpressure.Middleware(a)(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		calls.Add(1)
		return nil
	}))
	require.NoError(t, a.Acquire(context.Background())) // someone else holds the only slot
	err = h.Handle(context.Background(), &consumer.Message{ID: "m", Attempt: 1})
	d, ok := consumer.RetryAfterDelay(err)
	require.True(t, ok)
	require.GreaterOrEqual(t, d, 250*time.Millisecond, "the hint, never shortened")
	require.LessOrEqual(t, d, 375*time.Millisecond, "stretched by at most half")
	// Over many rejections the stretch is spread out, not constant.
	seen := map[time.Duration]bool{}
	for range 50 {
		d, _ := consumer.RetryAfterDelay(h.Handle(context.Background(), &consumer.Message{ID: "m", Attempt: 1}))
		seen[d] = true
	}
	require.Greater(t, len(seen), 10)
	require.ErrorIs(t, err, backpressure.ErrRejected)
	require.ErrorIs(t, err, consumer.ErrDeferred)
	require.Zero(t, calls.Load())
	a.Release()
	require.NoError(t, h.Handle(context.Background(), &consumer.Message{ID: "m", Attempt: 2}))
	require.Equal(t, int32(1), calls.Load())
	require.Zero(t, a.InFlight(), "the middleware released its slot")
}

// TestRejectedMessagesAreNotDeadLettered: with a DLQ allowing 2 attempts
// and an admission limit of 1, a burst of messages is redelivered as often
// as needed and every one is processed; none is parked.
func TestRejectedMessagesAreNotDeadLettered(t *testing.T) {
	t.Parallel()
	const n = 50
	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	require.NoError(t, err)
	store, err := dlq.NewMemoryStore(dlq.MemoryOptions{})
	require.NoError(t, err)
	quiet := slogDiscard()
	park, err := dlq.Middleware(dlq.Options{Sink: store, MaxAttempts: 2, Logger: quiet})
	require.NoError(t, err)
	a, err := backpressure.NewAdmission(backpressure.AdmissionOptions{Limit: 1, RetryAfter: time.Millisecond})
	require.NoError(t, err)
	var mu sync.Mutex
	seen := map[string]int{}
	var done atomic.Int32
	finished := make(chan struct{})
	h := consumer.Chain(park, backpressure.Middleware(a))(consumer.HandlerFunc(
		func(_ context.Context, m *consumer.Message) error {
			time.Sleep(100 * time.Microsecond) // the dependency's work
			mu.Lock()
			seen[m.ID]++
			mu.Unlock()
			if done.Add(1) == n {
				close(finished)
			}
			return nil
		}))
	c, err := consumer.New(q, h, consumer.Config{MaxInFlight: 16, Logger: quiet})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	for i := range n {
		require.NoError(t, q.Publish(ctx, consumer.Message{ID: strconv.Itoa(i)}))
	}
	<-finished
	cancel()
	require.NoError(t, <-errc)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, n)
	for id, k := range seen {
		require.Equal(t, 1, k, "message %s", id)
	}
	parked, err := store.Count(context.Background(), dlq.Filter{})
	require.NoError(t, err)
	require.Zero(t, parked)
}

func retryAfterHeader(t *testing.T, rec *httptest.ResponseRecorder) int {
	t.Helper()
	v := rec.Header().Get("Retry-After")
	secs, err := strconv.Atoi(v)
	require.NoError(t, err, "Retry-After %q is not whole seconds", v)
	require.GreaterOrEqual(t, secs, 1)
	return secs
}

func TestHTTPMiddleware(t *testing.T) {
	t.Parallel()
	var served atomic.Int32
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		served.Add(1)
		w.WriteHeader(http.StatusCreated)
	})

	// Admission full: 503 with Retry-After rounded up.
	a, err := backpressure.NewAdmission(backpressure.AdmissionOptions{Name: "db", Limit: 1, RetryAfter: 1500 * time.Millisecond})
	require.NoError(t, err)
	mw, err := backpressure.HTTPMiddleware(a, backpressure.HTTPOptions{})
	require.NoError(t, err)
	h := mw(ok)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/pay", nil))
	require.Equal(t, http.StatusCreated, rec.Code)
	require.NoError(t, a.Acquire(context.Background()))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/pay", nil))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Equal(t, 2, retryAfterHeader(t, rec))
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var body map[string]string
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	require.Contains(t, body["error"], "db rejected")
	require.Equal(t, int32(1), served.Load(), "a rejected request never reaches the handler")
	a.Release()

	// Rate limited: 429.
	rl, err := backpressure.NewRateLimiter(backpressure.RateOptions{Rate: rate.Every(time.Hour), Burst: 1})
	require.NoError(t, err)
	mw, err = backpressure.HTTPMiddleware(rl, backpressure.HTTPOptions{})
	require.NoError(t, err)
	h = mw(ok)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusCreated, rec.Code)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	secs := retryAfterHeader(t, rec)
	require.InDelta(t, 3600, secs, 2)

	// A chosen status.
	mw, err = backpressure.HTTPMiddleware(rl, backpressure.HTTPOptions{Status: http.StatusServiceUnavailable})
	require.NoError(t, err)
	rec = httptest.NewRecorder()
	mw(ok).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	_, err = backpressure.HTTPMiddleware(rl, backpressure.HTTPOptions{Status: 200})
	require.Error(t, err)
}

// TestHTTPMiddlewareTeachesAIMD: 5xx answers count as drops.
func TestHTTPMiddlewareTeachesAIMD(t *testing.T) {
	t.Parallel()
	l, err := backpressure.NewAIMD(backpressure.AIMDOptions{Initial: 10})
	require.NoError(t, err)
	mw, err := backpressure.HTTPMiddleware(l, backpressure.HTTPOptions{})
	require.NoError(t, err)
	failing := mw(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	rec := httptest.NewRecorder()
	failing.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusBadGateway, rec.Code)
	require.Equal(t, 9, l.Limit())
	require.Zero(t, l.InFlight())

	panicking := mw(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	require.Panics(t, func() {
		panicking.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	})
	require.Zero(t, l.InFlight(), "a panicking handler releases its slot")
	require.Equal(t, 8, l.Limit())
}

func TestRetryAfterSeconds(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "1", time.Millisecond: "1", time.Second: "1", 1001 * time.Millisecond: "2", 90 * time.Second: "90",
	} {
		require.Equal(t, want, backpressure.RetryAfterSeconds(d), "%s", d)
	}
}

// TestKeyedBreakers: one partner's failures open its breaker and defer
// its messages; another partner's messages keep flowing.
func TestKeyedBreakers(t *testing.T) {
	t.Parallel()
	bs, err := backpressure.NewBreakers(backpressure.BreakerOptions{ConsecutiveFailures: 2, OpenTimeout: time.Hour}, 10)
	require.NoError(t, err)
	errDown := errors.New("partner down")
	calls := map[string]int{}
	h := backpressure.KeyedMiddleware(bs, func(m *consumer.Message) string { return m.Key })(
		consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
			calls[m.Key]++
			if m.Key == "acme" {
				return errDown
			}
			return nil
		}))
	for range 2 {
		require.ErrorIs(t, h.Handle(context.Background(), &consumer.Message{Key: "acme"}), errDown)
	}
	err = h.Handle(context.Background(), &consumer.Message{Key: "acme"})
	require.ErrorIs(t, err, backpressure.ErrOpen)
	require.ErrorIs(t, err, consumer.ErrDeferred)
	d, ok := consumer.RetryAfterDelay(err)
	require.True(t, ok)
	require.Greater(t, d, 59*time.Minute)
	require.NoError(t, h.Handle(context.Background(), &consumer.Message{Key: "globex"}))
	require.Equal(t, map[string]int{"acme": 2, "globex": 1}, calls)
	require.Equal(t, backpressure.StateOpen, bs.Get("acme").State())

	// An operator closes it by hand; the breaker guards HTTP too.
	bs.Close("acme")
	require.Equal(t, backpressure.StateClosed, bs.Get("acme").State())
	bs.Open("globex")
	mw, err := backpressure.HTTPMiddleware(bs.Get("globex"), backpressure.HTTPOptions{})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	mw(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	retryAfterHeader(t, rec)
}
