package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/backpressure"
	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/internal/testenv"
	"github.com/idemq/idemq/stock"
)

// newSeeded returns a server over the stores, with the -seed items.
func newSeeded(t *testing.T, st stock.Store, keys idempotency.Store, opts serverOptions) *server {
	t.Helper()
	require.NoError(t, seed(context.Background(), st))
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := newServer(st, keys, opts)
	require.NoError(t, err)
	return srv
}

// newTestServer returns a seeded server on memory stores.
func newTestServer(t *testing.T, opts serverOptions) *server {
	t.Helper()
	return newSeeded(t, stock.NewMemoryStore(), idempotency.NewMemoryStore(), opts)
}

func redeem(h http.Handler, item, key, holder string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/items/"+item+"/redeem", strings.NewReader(fmt.Sprintf(`{"holder":%q}`, holder)))
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func post(h http.Handler, path, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
	return rec
}

func availability(t *testing.T, h http.Handler, item string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/items/"+item, nil))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var v struct{ Item, Availability string }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v))
	require.Equal(t, item, v.Item)
	return v.Availability
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v), rec.Body.String())
	return v
}

func level(t *testing.T, st stock.Store, item string) stock.Level {
	t.Helper()
	l, err := st.Level(context.Background(), item)
	require.NoError(t, err)
	return l
}

// storm sends 500 redeems at once, from distinct holders, for the 100
// welcome vouchers.
func storm(t *testing.T, srv *server) {
	t.Helper()
	const n = 500
	recs := make([]*httptest.ResponseRecorder, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			recs[i] = redeem(srv, welcomeItem, fmt.Sprintf("storm-%d", i), fmt.Sprintf("user-%d", i))
		})
	}
	close(start)
	wg.Wait()

	granted, soldOut := 0, 0
	ids := map[string]bool{}
	for _, rec := range recs {
		switch rec.Code {
		case http.StatusCreated:
			granted++
			r := decode[redemption](t, rec)
			require.Equal(t, "confirmed", r.State)
			ids[r.ReservationID] = true
		case http.StatusConflict:
			soldOut++
			require.Equal(t, "sold out", decode[errorBody](t, rec).Error)
		default:
			t.Fatalf("unexpected answer %d %s", rec.Code, rec.Body)
		}
	}
	require.Equal(t, welcomeUnits, granted)
	require.Equal(t, n-welcomeUnits, soldOut)
	require.Len(t, ids, welcomeUnits)
	require.Equal(t, stock.Level{Item: welcomeItem, Confirmed: welcomeUnits}, level(t, srv.stock, welcomeItem))
	require.Equal(t, welcomeUnits, srv.partner.activations())
	require.Equal(t, "Unavailable", availability(t, srv, welcomeItem))
}

// stormOptions let the storm's redeems wait for admission as long as
// they need: on a slow machine the default MaxWait would turn some away
// with 503, which is right for a service but not what the storm counts.
var stormOptions = serverOptions{MaxWait: time.Minute}

func TestStorm(t *testing.T) {
	t.Parallel()
	storm(t, newTestServer(t, stormOptions))
}

func TestStormRedis(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t) // skips or fails per IDEMQ_REQUIRE_SERVICES
	be, err := redisBackend(client, prefix)
	require.NoError(t, err)
	storm(t, newSeeded(t, be.stock, be.keys, stormOptions))
}

func TestStormPostgres(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	be, err := postgresBackend(context.Background(), pool, "")
	require.NoError(t, err)
	storm(t, newSeeded(t, be.stock, be.keys, stormOptions))
}

func TestSameKeyTwice(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, serverOptions{})
	first := redeem(srv, welcomeItem, "key-1", "user-1")
	require.Equal(t, http.StatusCreated, first.Code, first.Body.String())
	require.Empty(t, first.Header().Get(idempotency.HTTPReplayedHeader))

	second := redeem(srv, welcomeItem, "key-1", "user-1")
	require.Equal(t, http.StatusCreated, second.Code)
	require.Equal(t, "true", second.Header().Get(idempotency.HTTPReplayedHeader))
	require.Equal(t, first.Body.String(), second.Body.String())

	// The same key as a quoted Structured Field string is the same key.
	third := redeem(srv, welcomeItem, `"key-1"`, "user-1")
	require.Equal(t, "true", third.Header().Get(idempotency.HTTPReplayedHeader))

	l := level(t, srv.stock, welcomeItem)
	require.Equal(t, 1, l.Confirmed)
	require.Equal(t, welcomeUnits-1, l.Available)
	require.EqualValues(t, 1, srv.partner.calls.Load())

	// The key with another body is refused by the middleware.
	other := redeem(srv, welcomeItem, "key-1", "user-2")
	require.Equal(t, http.StatusUnprocessableEntity, other.Code, other.Body.String())
}

func TestHolderLimit(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, serverOptions{})
	require.Equal(t, http.StatusCreated, redeem(srv, welcomeItem, "key-1", "user-1").Code)
	rec := redeem(srv, welcomeItem, "key-2", "user-1")
	require.Equal(t, http.StatusConflict, rec.Code)
	require.Equal(t, "holder limit reached", decode[errorBody](t, rec).Error)
	require.Equal(t, 1, level(t, srv.stock, welcomeItem).Confirmed)
	// Another holder is not affected.
	require.Equal(t, http.StatusCreated, redeem(srv, welcomeItem, "key-3", "user-2").Code)
}

func TestDisableEnable(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, serverOptions{})
	require.Equal(t, "10+", availability(t, srv, welcomeItem))

	rec := post(srv, "/admin/items/"+welcomeItem+"/disable", `{"reason":"fraud check"}`)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, itemState{Item: welcomeItem, Disabled: true, Reason: "fraud check"}, decode[itemState](t, rec))
	require.Equal(t, "Unavailable", availability(t, srv, welcomeItem), "the cache is dropped on disable")

	rec = redeem(srv, welcomeItem, "key-1", "user-1")
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	secs, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", rec.Header().Get("Retry-After"))
	require.Equal(t, 60, secs)
	require.Equal(t, errorBody{Error: "item unavailable", Reason: "fraud check"}, decode[errorBody](t, rec))

	rec = post(srv, "/admin/items/"+welcomeItem+"/enable", "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "10+", availability(t, srv, welcomeItem))

	// The 503 was not stored: the same key now redeems.
	rec = redeem(srv, welcomeItem, "key-1", "user-1")
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	require.Empty(t, rec.Header().Get(idempotency.HTTPReplayedHeader))

	// Without a body the reason is a default one.
	rec = post(srv, "/admin/items/"+codeItem+"/disable", "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "disabled by an operator", decode[itemState](t, rec).Reason)

	require.Equal(t, http.StatusNotFound, post(srv, "/admin/items/nope/disable", "").Code)
	require.Equal(t, http.StatusNotFound, post(srv, "/admin/items/nope/enable", "").Code)
}

func TestPartnerBreaker(t *testing.T) {
	t.Parallel()
	const failures = 3
	srv := newTestServer(t, serverOptions{BreakerFailures: failures, OpenTimeout: time.Second})
	require.Equal(t, http.StatusOK, post(srv, "/admin/partner/fail", "").Code)

	for i := range failures {
		rec := redeem(srv, welcomeItem, fmt.Sprintf("fail-%d", i), fmt.Sprintf("user-%d", i))
		require.Equal(t, http.StatusBadGateway, rec.Code, rec.Body.String())
	}
	require.EqualValues(t, failures, srv.partner.calls.Load())
	l := level(t, srv.stock, welcomeItem)
	require.Equal(t, welcomeUnits, l.Available, "failed redeems released their units")
	require.True(t, l.Disabled, "the open breaker disabled the item")
	require.Equal(t, "Unavailable", availability(t, srv, welcomeItem))

	rec := redeem(srv, welcomeItem, "blocked", "user-x")
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
	secs, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, secs, 1)
	require.EqualValues(t, failures, srv.partner.calls.Load(), "the partner is not called while the breaker is open")

	require.Equal(t, http.StatusOK, post(srv, "/admin/partner/recover", "").Code)
	// Once the breaker's open timeout has passed, the next redeem is its
	// probe. The 503s were not stored, so the same key is retried.
	require.Eventually(t, func() bool {
		return redeem(srv, welcomeItem, "blocked", "user-x").Code == http.StatusCreated
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "10+", availability(t, srv, welcomeItem))
	require.Equal(t, http.StatusCreated, redeem(srv, welcomeItem, "after", "user-y").Code)
}

func TestRetryAfterPartnerFailure(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, serverOptions{})
	srv.partner.failing.Store(true)
	rec := redeem(srv, welcomeItem, "key-1", "user-1")
	require.Equal(t, http.StatusBadGateway, rec.Code)
	require.Equal(t, "false", rec.Header().Get(idempotency.HTTPStoredHeader))

	// The retry with the same key takes a new reservation: the first one
	// was released.
	srv.partner.failing.Store(false)
	rec = redeem(srv, welcomeItem, "key-1", "user-1")
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	require.Equal(t, reservationID(welcomeItem, "key-1", 1), decode[redemption](t, rec).ReservationID)
	l := level(t, srv.stock, welcomeItem)
	require.Equal(t, 1, l.Confirmed)
	require.Equal(t, welcomeUnits-1, l.Available)
}

func TestPartnerTimeout(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, serverOptions{PartnerLatency: time.Second, PartnerTimeout: 10 * time.Millisecond})
	rec := redeem(srv, welcomeItem, "key-1", "user-1")
	require.Equal(t, http.StatusBadGateway, rec.Code, rec.Body.String())
	require.Equal(t, welcomeUnits, level(t, srv.stock, welcomeItem).Available)
}

func TestAdmission(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, serverOptions{MaxInFlight: 1, MaxWait: 10 * time.Millisecond, PartnerLatency: 500 * time.Millisecond})
	first := make(chan *httptest.ResponseRecorder, 1)
	go func() { first <- redeem(srv, welcomeItem, "key-1", "user-1") }()
	require.Eventually(t, func() bool { return srv.partner.calls.Load() == 1 }, 10*time.Second, time.Millisecond)

	// The one slot is taken: the second redeem is turned away before it
	// claims its key.
	rec := redeem(srv, welcomeItem, "key-2", "user-2")
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
	require.Equal(t, "1", rec.Header().Get("Retry-After"))

	require.Equal(t, http.StatusCreated, (<-first).Code)
	rec = redeem(srv, welcomeItem, "key-2", "user-2")
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	require.Empty(t, rec.Header().Get(idempotency.HTTPReplayedHeader))
}

func TestCodeItem(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, serverOptions{})
	recs := make([]*httptest.ResponseRecorder, codeUnits)
	var wg sync.WaitGroup
	for i := range codeUnits {
		wg.Go(func() { recs[i] = redeem(srv, codeItem, fmt.Sprintf("key-%d", i), fmt.Sprintf("user-%d", i)) })
	}
	wg.Wait()
	codes := map[string]bool{}
	for _, rec := range recs {
		require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
		code := decode[redemption](t, rec).Code
		require.True(t, strings.HasPrefix(code, "PV-"), code)
		codes[code] = true
	}
	require.Len(t, codes, codeUnits, "every code granted once")

	rec := redeem(srv, codeItem, "key-late", "user-late")
	require.Equal(t, http.StatusConflict, rec.Code)
	require.Equal(t, "sold out", decode[errorBody](t, rec).Error)
	require.Equal(t, "Unavailable", availability(t, srv, codeItem))
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, serverOptions{})
	tests := []struct {
		name, path, key, body string
		want                  int
	}{
		{"no key", "/items/" + welcomeItem + "/redeem", "", `{"holder":"u"}`, http.StatusBadRequest},
		{"not JSON", "/items/" + welcomeItem + "/redeem", "k1", `holder=u`, http.StatusBadRequest},
		{"no holder", "/items/" + welcomeItem + "/redeem", "k2", `{}`, http.StatusBadRequest},
		{"blank holder", "/items/" + welcomeItem + "/redeem", "k3", `{"holder":"  "}`, http.StatusBadRequest},
		{"unknown item", "/items/nope/redeem", "k4", `{"holder":"u"}`, http.StatusNotFound},
		{"item name too long", "/items/" + strings.Repeat("x", stock.MaxNameLen+1) + "/redeem", "k5", `{"holder":"u"}`, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, tt.path, strings.NewReader(tt.body))
			if tt.key != "" {
				req.Header.Set("Idempotency-Key", tt.key)
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			require.Equal(t, tt.want, rec.Code, rec.Body.String())
		})
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/items/nope", nil))
	require.Equal(t, http.StatusNotFound, rec.Code)
	require.Equal(t, welcomeUnits, level(t, srv.stock, welcomeItem).Available)
}

func TestSeedTwice(t *testing.T) {
	t.Parallel()
	st := stock.NewMemoryStore()
	require.NoError(t, seed(context.Background(), st))
	require.NoError(t, seed(context.Background(), st))
	require.Equal(t, welcomeUnits, level(t, st, welcomeItem).Available)
	require.Equal(t, codeUnits, level(t, st, codeItem).Available)
}

func TestDemo(t *testing.T) {
	t.Parallel()
	tests := map[string]func(t *testing.T) []string{
		"memory": func(*testing.T) []string { return nil },
		"redis": func(t *testing.T) []string {
			_, prefix := testenv.Redis(t) // removes whatever the demo leaves under prefix
			return []string{"-store", "redis", "-redis-addr", testenv.RedisAddr(), "-redis-prefix", prefix}
		},
		"postgres": func(t *testing.T) []string {
			testenv.Postgres(t) // the demo makes a schema of its own
			return []string{"-store", "postgres", "-postgres-url", testenv.PostgresURL()}
		},
	}
	for name, flags := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var out, errOut strings.Builder
			code := run(context.Background(), append([]string{"-demo"}, flags(t)...), &out, &errOut)
			require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
			require.Contains(t, out.String(), "500 concurrent redeemers -> 100 granted (201), 400 sold out (409), 0 other")
			require.Contains(t, out.String(), "500 replayed, 500 answers identical")
			require.Contains(t, out.String(), "a second later:  availability Unavailable")
			require.Contains(t, out.String(), "ok: no unit granted twice, none lost")
			require.Empty(t, errOut.String())
		})
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-store", "mongo"}, {"extra"}, {"-nope"}} {
		var out, errOut strings.Builder
		require.Equal(t, exitUsage, run(context.Background(), args, &out, &errOut), "%q", args)
		require.NotEmpty(t, errOut.String())
	}
	var out, errOut strings.Builder
	require.Equal(t, exitOK, run(context.Background(), []string{"-h"}, &out, &errOut))
	require.Contains(t, errOut.String(), "usage: redeem")
}

func TestServe(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-seed", "-addr", "127.0.0.1:0"}, &out, &errOut) }()

	var base string
	require.Eventually(t, func() bool {
		_, rest, ok := strings.Cut(out.String(), "serving on ")
		base, _, _ = strings.Cut(rest, " ")
		return ok
	}, 10*time.Second, 10*time.Millisecond)
	resp, err := http.Get(base + "/items/" + welcomeItem)
	require.NoError(t, err)
	var v struct{ Availability string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	resp.Body.Close()
	require.Equal(t, "10+", v.Availability)

	cancel()
	require.Equal(t, exitOK, <-done, errOut.String())
}

// syncBuffer is a strings.Builder safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBreakerRejectionsKeepAttempts: while a half-open breaker's probe is
// in flight, the redeems it turns away take no unit and use up none of
// their key's attempts, so that the key redeems once the breaker closes.
func TestBreakerRejectionsKeepAttempts(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, serverOptions{BreakerFailures: 1, OpenTimeout: 100 * time.Millisecond, PartnerLatency: 300 * time.Millisecond})
	srv.partner.failing.Store(true)
	require.Equal(t, http.StatusBadGateway, redeem(srv, welcomeItem, "first", "user-1").Code)
	srv.partner.failing.Store(false)
	require.Eventually(t, func() bool {
		return srv.itemBreaker(welcomeItem, false).State() == backpressure.StateHalfOpen
	}, 10*time.Second, 10*time.Millisecond)

	probe := make(chan int, 1)
	go func() { probe <- redeem(srv, welcomeItem, "probe", "user-2").Code }()
	require.Eventually(t, func() bool { return srv.partner.calls.Load() == 2 }, 10*time.Second, time.Millisecond)
	for i := range 2 * maxAttempts {
		rec := redeem(srv, welcomeItem, "patient", "user-3")
		require.Equal(t, http.StatusServiceUnavailable, rec.Code, "try %d: %s", i, rec.Body.String())
		require.Equal(t, "half-open probes in flight", decode[errorBody](t, rec).Reason)
	}
	l := level(t, srv.stock, welcomeItem)
	require.Equal(t, welcomeUnits-1, l.Available, "only the probe holds a unit: %+v", l)
	require.Equal(t, http.StatusCreated, <-probe)

	rec := redeem(srv, welcomeItem, "patient", "user-3")
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	require.Equal(t, reservationID(welcomeItem, "patient", 0), decode[redemption](t, rec).ReservationID)
	require.EqualValues(t, 3, srv.partner.calls.Load())
}
