package idempotency

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const httpTestKey = "8e03978e-40d5-43e8-bc93-6894a57f9324"

// httpWrap builds the middleware around h with a quiet logger.
func httpWrap(t *testing.T, opts HTTPOptions, h http.HandlerFunc) http.Handler {
	t.Helper()
	if opts.Store == nil {
		opts.Store = NewMemoryStore()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	mw, err := HTTPMiddleware(opts)
	require.NoError(t, err)
	return mw(h)
}

// httpDo sends one request with key (none if empty) and body.
func httpDo(h http.Handler, method, key, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "/orders", strings.NewReader(body))
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// httpCreated is a handler that counts its runs and answers 201 with the
// run number and the request body.
func httpCreated(runs *atomic.Int32) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n := runs.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Location", "/orders/"+strconv.Itoa(int(n)))
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "order "+strconv.Itoa(int(n))+" for "+string(body))
	}
}

// httpRecv receives from ch, failing the test if nothing comes for long
// enough that something must be stuck.
func httpRecv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting")
		panic("unreachable")
	}
}

// requireHTTPError checks an error answer of the middleware itself.
func requireHTTPError(t *testing.T, rec *httptest.ResponseRecorder, status int) {
	t.Helper()
	require.Equal(t, status, rec.Code, rec.Body.String())
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var body struct {
		Error string `json:"error"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	require.NotEmpty(t, body.Error)
}

func TestHTTPMiddlewareOptions(t *testing.T) {
	t.Parallel()
	store := NewMemoryStore()
	for name, o := range map[string]HTTPOptions{
		"no store":               {},
		"negative MaxKeyLen":     {Store: store, MaxKeyLen: -1},
		"negative MaxBodyBytes":  {Store: store, MaxBodyBytes: -1},
		"negative MaxResponse":   {Store: store, MaxResponseBytes: -1},
		"negative Lease":         {Store: store, Lease: -time.Second},
		"negative Retention":     {Store: store, Retention: -time.Second},
		"bad header name":        {Store: store, Header: "Idempotency Key"},
		"no methods":             {Store: store, Methods: []string{}},
		"empty method in a list": {Store: store, Methods: []string{"POST", ""}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := HTTPMiddleware(o)
			require.Error(t, err)
		})
	}
	_, err := HTTPMiddleware(HTTPOptions{Store: store})
	require.NoError(t, err)
}

func TestHTTPMiddlewareRejectsBadRequests(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		opts   HTTPOptions
		req    func() *http.Request
		status int
	}{{
		name: "missing key when required",
		opts: HTTPOptions{Required: true},
		req: func() *http.Request {
			return httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader("{}"))
		},
		status: http.StatusBadRequest,
	}, {
		name: "key too long",
		opts: HTTPOptions{MaxKeyLen: 8},
		req: func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader("{}"))
			r.Header.Set("Idempotency-Key", "123456789")
			return r
		},
		status: http.StatusBadRequest,
	}, {
		name: "empty key",
		req: func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader("{}"))
			r.Header.Set("Idempotency-Key", " ")
			return r
		},
		status: http.StatusBadRequest,
	}, {
		name: "two keys",
		req: func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader("{}"))
			r.Header.Add("Idempotency-Key", "a")
			r.Header.Add("Idempotency-Key", "b")
			return r
		},
		status: http.StatusBadRequest,
	}, {
		name: "malformed quoted key",
		req: func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader("{}"))
			r.Header.Set("Idempotency-Key", `"a\x"`)
			return r
		},
		status: http.StatusBadRequest,
	}, {
		name: "body over MaxBodyBytes",
		opts: HTTPOptions{MaxBodyBytes: 4},
		req: func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader("12345"))
			r.Header.Set("Idempotency-Key", httpTestKey)
			return r
		},
		status: http.StatusRequestEntityTooLarge,
	}, {
		name: "body of unknown length over MaxBodyBytes",
		opts: HTTPOptions{MaxBodyBytes: 4},
		req: func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/orders", io.MultiReader(strings.NewReader("123"), strings.NewReader("45")))
			r.ContentLength = -1
			r.Header.Set("Idempotency-Key", httpTestKey)
			return r
		},
		status: http.StatusRequestEntityTooLarge,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var runs atomic.Int32
			h := httpWrap(t, tc.opts, httpCreated(&runs))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, tc.req())
			requireHTTPError(t, rec, tc.status)
			require.Zero(t, runs.Load())
		})
	}
}

func TestHTTPMiddlewarePassesThrough(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := httpWrap(t, HTTPOptions{}, httpCreated(&runs))

	// Methods not listed run every time, key or not.
	for range 2 {
		rec := httpDo(h, http.MethodGet, httpTestKey, "")
		require.Equal(t, http.StatusCreated, rec.Code)
		require.Empty(t, rec.Header().Get(HTTPReplayedHeader))
	}
	// Without a key, when a key is not required.
	for range 2 {
		rec := httpDo(h, http.MethodPost, "", "a")
		require.Equal(t, http.StatusCreated, rec.Code)
		require.Empty(t, rec.Header().Get(HTTPReplayedHeader))
	}
	require.EqualValues(t, 4, runs.Load())
}

func TestHTTPMiddlewareReplaysCompleted(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := httpWrap(t, HTTPOptions{}, func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		body, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		require.Equal(t, `{"item":"book"}`, string(body), "the handler reads the body the middleware read")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Add("X-Multi", "one")
		w.Header().Add("X-Multi", "two")
		w.Header().Set("Set-Cookie", "session=abc")
		w.WriteHeader(http.StatusCreated)
		w.Header().Set("X-Too-Late", "ignored") // after WriteHeader: not sent
		_, _ = io.WriteString(w, `{"id":`)
		_, _ = io.WriteString(w, `1}`)
	})

	first := httpDo(h, http.MethodPost, httpTestKey, `{"item":"book"}`)
	require.Equal(t, http.StatusCreated, first.Code)
	require.Equal(t, `{"id":1}`, first.Body.String())
	require.Empty(t, first.Header().Get(HTTPReplayedHeader))
	require.Empty(t, first.Header().Get(HTTPStoredHeader))
	require.Empty(t, first.Header().Get("X-Too-Late"))

	for range 2 {
		again := httpDo(h, http.MethodPost, httpTestKey, `{"item":"book"}`)
		require.Equal(t, first.Code, again.Code)
		require.Equal(t, first.Body.String(), again.Body.String())
		require.Equal(t, "true", again.Header().Get(HTTPReplayedHeader))
		hdr := again.Result().Header.Clone()
		hdr.Del(HTTPReplayedHeader)
		require.Equal(t, first.Result().Header, hdr)
	}
	require.EqualValues(t, 1, runs.Load())

	// The same key elsewhere is another request.
	req := httptest.NewRequest(http.MethodPost, "/refunds", strings.NewReader(`{"item":"book"}`))
	req.Header.Set("Idempotency-Key", httpTestKey)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Empty(t, rec.Header().Get(HTTPReplayedHeader))
	require.EqualValues(t, 2, runs.Load())
}

func TestHTTPMiddlewareStores4xx(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := httpWrap(t, HTTPOptions{}, func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		http.Error(w, "card declined", http.StatusPaymentRequired)
	})
	first := httpDo(h, http.MethodPost, httpTestKey, "a")
	require.Equal(t, http.StatusPaymentRequired, first.Code)
	again := httpDo(h, http.MethodPost, httpTestKey, "a")
	require.Equal(t, http.StatusPaymentRequired, again.Code)
	require.Equal(t, first.Body.String(), again.Body.String())
	require.Equal(t, "true", again.Header().Get(HTTPReplayedHeader))
	require.EqualValues(t, 1, runs.Load())
}

func TestHTTPMiddlewareStoresEmptyResponse(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := httpWrap(t, HTTPOptions{}, func(http.ResponseWriter, *http.Request) { runs.Add(1) })
	for range 2 {
		rec := httpDo(h, http.MethodPatch, httpTestKey, "a")
		require.Equal(t, http.StatusOK, rec.Code)
		require.Empty(t, rec.Body.String())
	}
	require.EqualValues(t, 1, runs.Load())
}

func TestHTTPMiddlewareQuotedKey(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := httpWrap(t, HTTPOptions{}, httpCreated(&runs))
	httpDo(h, http.MethodPost, `"`+httpTestKey+`"`, "a")
	rec := httpDo(h, http.MethodPost, httpTestKey, "a")
	require.Equal(t, "true", rec.Header().Get(HTTPReplayedHeader), "a Structured Field string is the key it quotes")
	require.EqualValues(t, 1, runs.Load())
}

func TestHTTPMiddlewareFingerprintMismatch(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := httpWrap(t, HTTPOptions{}, httpCreated(&runs))
	require.Equal(t, http.StatusCreated, httpDo(h, http.MethodPost, httpTestKey, "a").Code)
	requireHTTPError(t, httpDo(h, http.MethodPost, httpTestKey, "b"), http.StatusUnprocessableEntity)
	require.EqualValues(t, 1, runs.Load())
}

func TestHTTPMiddlewareScope(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := httpWrap(t, HTTPOptions{
		Scope: func(r *http.Request) string { return r.Header.Get("X-User") },
	}, httpCreated(&runs))
	do := func(user string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader("a"))
		req.Header.Set("Idempotency-Key", httpTestKey)
		req.Header.Set("X-User", user)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	require.Equal(t, "order 1 for a", do("alice").Body.String())
	require.Equal(t, "order 2 for a", do("bob").Body.String(), "another user's key is another key")
	require.Equal(t, "order 1 for a", do("alice").Body.String())
	require.EqualValues(t, 2, runs.Load())
}

func TestHTTPMiddlewareInProgress(t *testing.T) {
	t.Parallel()
	started, proceed := make(chan struct{}), make(chan struct{})
	var runs atomic.Int32
	created := httpCreated(&runs)
	h := httpWrap(t, HTTPOptions{Lease: 1500 * time.Millisecond}, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-proceed
		created(w, r)
	})

	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- httpDo(h, http.MethodPost, httpTestKey, "a") }()
	httpRecv(t, started)

	rec := httpDo(h, http.MethodPost, httpTestKey, "a")
	requireHTTPError(t, rec, http.StatusConflict)
	require.Equal(t, "2", rec.Header().Get("Retry-After"), "the holder's lease, rounded up to whole seconds")

	close(proceed)
	require.Equal(t, http.StatusCreated, httpRecv(t, done).Code)
	require.EqualValues(t, 1, runs.Load())
}

func TestHTTPMiddlewareReleases5xx(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := httpWrap(t, HTTPOptions{}, func(w http.ResponseWriter, r *http.Request) {
		if runs.Add(1) == 1 {
			http.Error(w, "database down", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	first := httpDo(h, http.MethodPost, httpTestKey, "a")
	require.Equal(t, http.StatusInternalServerError, first.Code)
	require.Equal(t, "false", first.Header().Get(HTTPStoredHeader))

	again := httpDo(h, http.MethodPost, httpTestKey, "a")
	require.Equal(t, http.StatusCreated, again.Code, "a server failure is retried")
	require.Empty(t, again.Header().Get(HTTPReplayedHeader))
	require.EqualValues(t, 2, runs.Load())
}

func TestHTTPMiddlewareReleasesOnPanic(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	created := httpCreated(&runs)
	var panicked atomic.Bool
	h := httpWrap(t, HTTPOptions{}, func(w http.ResponseWriter, r *http.Request) {
		if panicked.CompareAndSwap(false, true) {
			panic("boom")
		}
		created(w, r)
	})
	require.PanicsWithValue(t, "boom", func() { httpDo(h, http.MethodPost, httpTestKey, "a") })
	rec := httpDo(h, http.MethodPost, httpTestKey, "a")
	require.Equal(t, http.StatusCreated, rec.Code)
	require.EqualValues(t, 1, runs.Load())
}

func TestHTTPMiddlewareLargeResponse(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	chunk := strings.Repeat("x", 10)
	h := httpWrap(t, HTTPOptions{MaxResponseBytes: 25}, func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		w.Header().Set("X-Report", "big")
		w.WriteHeader(http.StatusCreated)
		for range 4 {
			_, err := io.WriteString(w, chunk)
			require.NoError(t, err)
		}
	})
	for i := range 2 {
		rec := httpDo(h, http.MethodPost, httpTestKey, "a")
		require.Equal(t, http.StatusCreated, rec.Code)
		require.Equal(t, strings.Repeat(chunk, 4), rec.Body.String(), "sent in full")
		require.Equal(t, "big", rec.Header().Get("X-Report"))
		require.Equal(t, "false", rec.Header().Get(HTTPStoredHeader))
		require.Empty(t, rec.Header().Get(HTTPReplayedHeader))
		require.EqualValues(t, i+1, runs.Load(), "not stored: the next request runs again")
	}

	// A response of exactly MaxResponseBytes is stored.
	var runs2 atomic.Int32
	h = httpWrap(t, HTTPOptions{MaxResponseBytes: 20}, func(w http.ResponseWriter, r *http.Request) {
		runs2.Add(1)
		_, _ = io.WriteString(w, chunk+chunk)
	})
	httpDo(h, http.MethodPost, httpTestKey, "a")
	rec := httpDo(h, http.MethodPost, httpTestKey, "a")
	require.Equal(t, chunk+chunk, rec.Body.String())
	require.Equal(t, "true", rec.Header().Get(HTTPReplayedHeader))
	require.EqualValues(t, 1, runs2.Load())
}

func TestHTTPMiddlewareLargeResponseOverTheWire(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("0123456789", 1000)
	h := httpWrap(t, HTTPOptions{MaxResponseBytes: 1000}, func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < len(body); i += 300 {
			_, _ = io.WriteString(w, body[i:min(i+300, len(body))])
			http.NewResponseController(w).Flush()
		}
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	req, err := http.NewRequest(http.MethodPost, srv.URL+"/export", strings.NewReader("a"))
	require.NoError(t, err)
	req.Header.Set("Idempotency-Key", httpTestKey)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, body, string(got))
	require.Equal(t, "false", resp.Header.Get(HTTPStoredHeader))
}

func TestHTTPMiddlewareConcurrentRequestsRunOnce(t *testing.T) {
	t.Parallel()
	const n = 10
	var runs atomic.Int32
	var issued sync.WaitGroup
	issued.Add(n)
	created := httpCreated(&runs)
	h := httpWrap(t, HTTPOptions{}, func(w http.ResponseWriter, r *http.Request) {
		issued.Wait() // hold the claim until every request is under way
		created(w, r)
	})

	recs := make([]*httptest.ResponseRecorder, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader("a"))
			req.Header.Set("Idempotency-Key", httpTestKey)
			recs[i] = httptest.NewRecorder()
			issued.Done()
			h.ServeHTTP(recs[i], req)
		})
	}
	wg.Wait()

	require.EqualValues(t, 1, runs.Load())
	ran := 0
	for _, rec := range recs {
		switch {
		case rec.Code == http.StatusConflict:
			require.NotEmpty(t, rec.Header().Get("Retry-After"))
		case rec.Code == http.StatusCreated && rec.Header().Get(HTTPReplayedHeader) == "true":
			require.Equal(t, "order 1 for a", rec.Body.String())
		case rec.Code == http.StatusCreated:
			ran++
			require.Equal(t, "order 1 for a", rec.Body.String())
		default:
			t.Fatalf("unexpected answer %d %s", rec.Code, rec.Body)
		}
	}
	require.Equal(t, 1, ran)
}

// httpFailingStore fails the calls whose error is set.
type httpFailingStore struct {
	Store
	claim, complete error
}

func (s httpFailingStore) Claim(ctx context.Context, key, fp string, lease time.Duration) (Claim, error) {
	if s.claim != nil {
		return Claim{}, s.claim
	}
	return s.Store.Claim(ctx, key, fp, lease)
}

func (s httpFailingStore) Complete(ctx context.Context, key string, token int64, result []byte, retention time.Duration) error {
	if s.complete != nil {
		return s.complete
	}
	return s.Store.Complete(ctx, key, token, result, retention)
}

func TestHTTPMiddlewareStoreUnavailable(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := httpWrap(t, HTTPOptions{
		Store: httpFailingStore{Store: NewMemoryStore(), claim: errors.New("connection refused")},
	}, httpCreated(&runs))
	rec := httpDo(h, http.MethodPost, httpTestKey, "a")
	requireHTTPError(t, rec, http.StatusServiceUnavailable)
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Zero(t, runs.Load())
}

func TestHTTPMiddlewareCompleteFails(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := httpWrap(t, HTTPOptions{
		Store: httpFailingStore{Store: NewMemoryStore(), complete: errors.New("connection reset")},
	}, httpCreated(&runs))
	rec := httpDo(h, http.MethodPost, httpTestKey, "a")
	require.Equal(t, http.StatusCreated, rec.Code, "the handler ran: its response is sent")
	require.Equal(t, "order 1 for a", rec.Body.String())
	require.Equal(t, "false", rec.Header().Get(HTTPStoredHeader))
}

func TestHTTPMiddlewareUnreadableStoredResponse(t *testing.T) {
	t.Parallel()
	store := NewMemoryStore()
	var runs atomic.Int32
	h := httpWrap(t, HTTPOptions{Store: store}, httpCreated(&runs))

	ctx := t.Context()
	key := httpStoreKey("", http.MethodPost, "/orders", httpTestKey)
	c, err := store.Claim(ctx, key, httpFingerprint(http.MethodPost, "/orders", []byte("a")), time.Minute)
	require.NoError(t, err)
	require.NoError(t, store.Complete(ctx, key, c.Token, []byte("garbage"), time.Minute))

	requireHTTPError(t, httpDo(h, http.MethodPost, httpTestKey, "a"), http.StatusInternalServerError)
	require.Zero(t, runs.Load(), "the handler never runs for a completed key")
}

// httpSignalStore reports each Extend that succeeded on extended, until
// quit is closed.
type httpSignalStore struct {
	Store
	extended chan struct{}
	quit     chan struct{}
}

func (s httpSignalStore) Extend(ctx context.Context, key string, token int64, lease time.Duration) error {
	err := s.Store.Extend(ctx, key, token, lease)
	if err == nil {
		select {
		case s.extended <- struct{}{}:
		case <-s.quit:
		}
	}
	return err
}

func TestHTTPMiddlewareExtendsTheClaim(t *testing.T) {
	t.Parallel()
	const lease = 30 * time.Millisecond
	mem := NewMemoryStore()
	var clock atomic.Int64 // the store's clock, in nanoseconds since start
	start := time.Now()
	mem.now = func() time.Time { return start.Add(time.Duration(clock.Load())) }
	store := httpSignalStore{Store: mem, extended: make(chan struct{}), quit: make(chan struct{})}

	var h http.Handler
	var runs atomic.Int32
	created := httpCreated(&runs)
	h = httpWrap(t, HTTPOptions{Store: store, Lease: lease}, func(w http.ResponseWriter, r *http.Request) {
		// Move the store's clock past the first lease in steps, each after
		// an extension that certainly read the previous step's time.
		for range 3 {
			httpRecv(t, store.extended)
			httpRecv(t, store.extended)
			clock.Add(int64(lease * 9 / 10))
		}
		close(store.quit)
		rec := httpDo(h, http.MethodPost, httpTestKey, "a")
		require.Equal(t, http.StatusConflict, rec.Code, "the claim outlived its first lease")
		require.NoError(t, r.Context().Err())
		created(w, r)
	})
	require.Equal(t, http.StatusCreated, httpDo(h, http.MethodPost, httpTestKey, "a").Code)
	require.Equal(t, "true", httpDo(h, http.MethodPost, httpTestKey, "a").Header().Get(HTTPReplayedHeader))
}

// httpLosingStore loses every claim at its first extension, as if its
// lease had run out and another request had taken the key.
type httpLosingStore struct{ Store }

func (s httpLosingStore) Extend(ctx context.Context, key string, token int64, _ time.Duration) error {
	if err := s.Release(ctx, key, token); err != nil {
		return err
	}
	return ErrStaleToken
}

func TestHTTPMiddlewareLostClaimCancelsHandler(t *testing.T) {
	t.Parallel()
	h := httpWrap(t, HTTPOptions{Store: httpLosingStore{NewMemoryStore()}, Lease: 3 * time.Millisecond},
		func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
			require.ErrorIs(t, context.Cause(r.Context()), ErrStaleToken)
			w.WriteHeader(http.StatusCreated)
		})
	rec := httpDo(h, http.MethodPost, httpTestKey, "a")
	require.Equal(t, http.StatusCreated, rec.Code)
	require.Equal(t, "false", rec.Header().Get(HTTPStoredHeader), "a lost claim cannot be completed")
}

func TestHTTPResponseEncoding(t *testing.T) {
	t.Parallel()
	resp := httpResponse{
		status: http.StatusAccepted,
		header: http.Header{"Content-Type": {"application/json"}, "X-Multi": {"a", "", "b"}},
		body:   []byte(`{"ok":true}`),
	}
	b := resp.encode()
	got, err := decodeHTTPResponse(b)
	require.NoError(t, err)
	require.Equal(t, resp, got)

	got, err = decodeHTTPResponse(httpResponse{status: 204, header: http.Header{}}.encode())
	require.NoError(t, err)
	require.Equal(t, 204, got.status)
	require.Empty(t, got.header)
	require.Empty(t, got.body)

	// Every truncation short of the body is caught.
	bodyAt := len(b) - len(resp.body)
	for i := range bodyAt {
		_, err := decodeHTTPResponse(b[:i])
		require.ErrorIs(t, err, errBadHTTPResponse, "prefix of %d bytes", i)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]int64{
		0:                       1,
		-time.Second:            1,
		time.Millisecond:        1,
		time.Second:             1,
		time.Second + 1:         2,
		59*time.Second + 999999: 60,
	} {
		require.Equal(t, want, retryAfterSeconds(d), "%s", d)
	}
}
