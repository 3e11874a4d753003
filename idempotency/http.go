package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Response headers set by [HTTPMiddleware].
const (
	// HTTPReplayedHeader is set to "true" on a response replayed from the
	// store rather than produced by the handler.
	HTTPReplayedHeader = "Idempotent-Replayed"

	// HTTPStoredHeader is set to "false" on a response the handler produced
	// but that was not stored (a 5xx, a response over MaxResponseBytes, or
	// a store failure): a retry with the same key runs the handler again.
	HTTPStoredHeader = "Idempotency-Stored"
)

// HTTPOptions configures [HTTPMiddleware]. Zero fields take the documented
// defaults.
type HTTPOptions struct {
	// Store keeps the keys and the stored responses. Required.
	Store Store

	// Header names the request header that carries the key. Default
	// "Idempotency-Key".
	Header string

	// Required answers 400 to a request without a key. Otherwise such a
	// request passes through untouched.
	Required bool

	// Methods lists the request methods the middleware applies to; other
	// requests pass through untouched. Default POST and PATCH, the methods
	// that are not idempotent by definition.
	Methods []string

	// MaxKeyLen is the longest key accepted, in bytes; a longer one is
	// answered 400. Default 255.
	MaxKeyLen int

	// MaxBodyBytes is the largest request body read for the fingerprint; a
	// larger one is answered 413. Default 1 MiB.
	MaxBodyBytes int64

	// MaxResponseBytes is the largest response body stored. A larger
	// response is still sent in full, streamed once it passes the limit,
	// but it is not stored and the key is released. Default 1 MiB.
	MaxResponseBytes int

	// Lease is how long a claim lasts without extension. It is extended
	// every Lease/3 while the handler runs, so it only bounds how long a
	// crashed process blocks the key. Default 60s.
	Lease time.Duration

	// Retention is how long a stored response is replayed. A retry that
	// comes later runs the handler again. Default 24h.
	Retention time.Duration

	// Scope namespaces keys, typically per user or tenant, so that one
	// client cannot replay another's response by guessing its key.
	// Default none: keys are shared by all clients.
	Scope func(*http.Request) string

	// Logger receives store failures. Default slog.Default().
	Logger *slog.Logger
}

func (o HTTPOptions) withDefaults() (HTTPOptions, error) {
	if o.Store == nil {
		return o, errors.New("idempotency: HTTPOptions.Store is required")
	}
	switch {
	case o.MaxKeyLen < 0:
		return o, fmt.Errorf("idempotency: negative MaxKeyLen %d", o.MaxKeyLen)
	case o.MaxBodyBytes < 0:
		return o, fmt.Errorf("idempotency: negative MaxBodyBytes %d", o.MaxBodyBytes)
	case o.MaxResponseBytes < 0:
		return o, fmt.Errorf("idempotency: negative MaxResponseBytes %d", o.MaxResponseBytes)
	case o.Lease < 0, o.Retention < 0:
		return o, errors.New("idempotency: negative duration in HTTPOptions")
	}
	if o.Header == "" {
		o.Header = "Idempotency-Key"
	}
	if strings.ContainsAny(o.Header, " \t\r\n:") {
		return o, fmt.Errorf("idempotency: invalid header name %q", o.Header)
	}
	o.Header = http.CanonicalHeaderKey(o.Header)
	if o.Methods == nil {
		o.Methods = []string{http.MethodPost, http.MethodPatch}
	}
	if len(o.Methods) == 0 || slices.Contains(o.Methods, "") {
		return o, errors.New("idempotency: HTTPOptions.Methods has an empty method")
	}
	if o.MaxKeyLen == 0 {
		o.MaxKeyLen = 255
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.MaxResponseBytes == 0 {
		o.MaxResponseBytes = 1 << 20
	}
	if o.Lease == 0 {
		o.Lease = 60 * time.Second
	}
	if o.Retention == 0 {
		o.Retention = 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// HTTPMiddleware implements the Idempotency-Key request header (IETF
// draft-ietf-httpapi-idempotency-key-header, and Stripe's API): a client
// sends a unique key with a POST or PATCH and, when it retries after a
// timeout or a dropped connection, gets the first attempt's response
// instead of a second effect.
//
// For a request whose method is listed in Methods and that carries a key:
//
//   - the key is claimed atomically in the store, under Scope, method,
//     path and key, with a fingerprint of the method, path and body;
//   - a key used before with a different fingerprint is answered 422;
//   - a key whose first request is still running is answered 409 with a
//     Retry-After of the holder's remaining lease: the handler never runs
//     twice at once;
//   - a key completed before is answered with the stored status code,
//     headers and body, and [HTTPReplayedHeader] "true", without running
//     the handler;
//   - otherwise the handler runs with the claim's lease extended, its
//     response is buffered and, if it is stored, sent after the store
//     has kept it.
//
// Which responses are stored: every 2xx, 3xx and 4xx, as Stripe does,
// because the handler ran to completion and a retry must not run it
// again (a 4xx can follow an effect, and one that did not would only fail
// the same way). A 5xx is not stored and releases the key, so that a
// client can retry a server failure; a handler must therefore not answer
// 5xx after it made its effect. A panic releases the key and goes on
// panicking. A response over MaxResponseBytes is sent in full but not
// stored, and the key is released. Each response not stored carries
// [HTTPStoredHeader] "false".
//
// A key may be a bare value (as Stripe's) or a quoted Structured Field
// string (as the draft's); a key that is empty, repeated, malformed or
// longer than MaxKeyLen is answered 400, a body over MaxBodyBytes 413. When
// the store fails the request is answered 503 with Retry-After 1 and the
// handler does not run. If the claim is lost while the handler runs, the
// handler's context is cancelled with a cause matching [ErrStaleToken].
//
// Errors of the middleware itself are JSON objects {"error": "..."}.
//
// What it cannot promise: the handler's effect and the stored response are
// two writes. If the process dies between them, or storing the response
// fails, a retry after the lease runs the handler again. Handlers whose
// effect must happen once whatever fails should also make the effect
// itself idempotent.
func HTTPMiddleware(opts HTTPOptions) (func(http.Handler) http.Handler, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	methods := make(map[string]bool, len(o.Methods))
	for _, m := range o.Methods {
		methods[m] = true
	}
	return func(next http.Handler) http.Handler {
		return &httpHandler{o: o, methods: methods, next: next}
	}, nil
}

type httpHandler struct {
	o       HTTPOptions
	methods map[string]bool
	next    http.Handler
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.methods[r.Method] {
		h.next.ServeHTTP(w, r)
		return
	}
	values := r.Header.Values(h.o.Header)
	if len(values) == 0 {
		if h.o.Required {
			httpError(w, http.StatusBadRequest, "missing "+h.o.Header+" header")
			return
		}
		h.next.ServeHTTP(w, r)
		return
	}
	if len(values) > 1 {
		httpError(w, http.StatusBadRequest, "more than one "+h.o.Header+" header")
		return
	}
	key, ok := parseHTTPKey(values[0])
	switch {
	case !ok:
		httpError(w, http.StatusBadRequest, "malformed "+h.o.Header+" header")
		return
	case key == "":
		httpError(w, http.StatusBadRequest, "empty "+h.o.Header+" header")
		return
	case len(key) > h.o.MaxKeyLen:
		httpError(w, http.StatusBadRequest, fmt.Sprintf("%s longer than %d bytes", h.o.Header, h.o.MaxKeyLen))
		return
	}

	body, status, msg := h.readBody(r)
	if status != 0 {
		httpError(w, status, msg)
		return
	}
	// A handler must not modify the request it is given, so the body is
	// restored on a shallow copy.
	r = r.WithContext(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))

	scope := ""
	if h.o.Scope != nil {
		scope = h.o.Scope(r)
	}
	skey := httpStoreKey(scope, r.Method, r.URL.Path, key)
	ctx := r.Context()
	claim, err := h.o.Store.Claim(ctx, skey, httpFingerprint(r.Method, r.URL.Path, body), h.o.Lease)
	switch {
	case errors.Is(err, ErrFingerprintMismatch):
		httpError(w, http.StatusUnprocessableEntity, h.o.Header+" was used with a different request")
		return
	case errors.Is(err, ErrKeyTooLong):
		httpError(w, http.StatusBadRequest, h.o.Header+" too long")
		return
	case err != nil:
		h.o.Logger.LogAttrs(ctx, slog.LevelError, "idempotency: claim failed",
			slog.String("key", skey), slog.Any("error", err))
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "idempotency store unavailable")
		return
	}

	switch claim.Status {
	case Completed:
		h.replay(w, r, skey, claim.Result)
	case InProgress:
		w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(claim.RetryAfter), 10))
		httpError(w, http.StatusConflict, "a request with this "+h.o.Header+" is in progress")
	case Claimed:
		h.run(w, r, skey, claim.Token)
	default:
		h.o.Logger.LogAttrs(ctx, slog.LevelError, "idempotency: claim returned an unknown status",
			slog.String("key", skey), slog.String("status", claim.Status.String()))
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "idempotency store unavailable")
	}
}

// readBody reads the request body for the fingerprint. A non-zero status
// is the error to answer.
func (h *httpHandler) readBody(r *http.Request) (body []byte, status int, msg string) {
	tooLarge := fmt.Sprintf("request body larger than %d bytes", h.o.MaxBodyBytes)
	if r.ContentLength > h.o.MaxBodyBytes {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	if r.Body == nil {
		return nil, 0, ""
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.o.MaxBodyBytes+1))
	switch {
	case err != nil:
		return nil, http.StatusBadRequest, "reading request body failed"
	case int64(len(body)) > h.o.MaxBodyBytes:
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	return body, 0, ""
}

func (h *httpHandler) replay(w http.ResponseWriter, r *http.Request, skey string, result []byte) {
	resp, err := decodeHTTPResponse(result)
	if err != nil {
		// Running the handler again could repeat the effect: refuse.
		h.o.Logger.LogAttrs(r.Context(), slog.LevelError, "idempotency: stored response unreadable",
			slog.String("key", skey), slog.Any("error", err))
		httpError(w, http.StatusInternalServerError, "stored response unreadable")
		return
	}
	dst := w.Header()
	for k, v := range resp.header {
		dst[k] = v
	}
	dst.Set(HTTPReplayedHeader, "true")
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
}

func (h *httpHandler) run(w http.ResponseWriter, r *http.Request, skey string, token int64) {
	// Settlement must happen even when the client has gone: a claim left
	// behind would block its retry until the lease runs out.
	sctx := context.WithoutCancel(r.Context())
	hctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	ka := h.keepAlive(sctx, cancel, skey, token)

	rec := &httpRecorder{w: w, max: h.o.MaxResponseBytes, header: make(http.Header)}
	finished := false
	defer func() {
		if !finished { // the handler panicked or called runtime.Goexit
			ka.stop()
			h.release(sctx, skey, token)
		}
	}()
	h.next.ServeHTTP(rec, r.WithContext(hctx))
	finished = true
	ka.stop()

	if rec.streaming {
		h.release(sctx, skey, token)
		return
	}
	resp := rec.response()
	if resp.status >= 500 {
		h.release(sctx, skey, token)
		resp.send(w, false)
		return
	}
	if err := h.o.Store.Complete(sctx, skey, token, resp.encode(), h.o.Retention); err != nil {
		h.o.Logger.LogAttrs(sctx, slog.LevelError, "idempotency: storing the response failed; a retry will run the handler again",
			slog.String("key", skey), slog.Any("error", err))
		resp.send(w, false)
		return
	}
	resp.send(w, true)
}

func (h *httpHandler) release(ctx context.Context, skey string, token int64) {
	err := h.o.Store.Release(ctx, skey, token)
	if err != nil && !errors.Is(err, ErrStaleToken) {
		h.o.Logger.LogAttrs(ctx, slog.LevelWarn, "idempotency: release failed; the key stays claimed until its lease runs out",
			slog.String("key", skey), slog.Any("error", err))
	}
}

// httpKeeper extends a claim's lease every Lease/3 until stopped.
type httpKeeper struct {
	stopc chan struct{}
	done  chan struct{}
	once  sync.Once
}

func (h *httpHandler) keepAlive(ctx context.Context, cancel context.CancelCauseFunc, skey string, token int64) *httpKeeper {
	k := &httpKeeper{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(k.done)
		t := time.NewTicker(max(h.o.Lease/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-k.stopc:
				return
			case <-t.C:
			}
			err := h.o.Store.Extend(ctx, skey, token, h.o.Lease)
			switch {
			case err == nil:
			case errors.Is(err, ErrStaleToken):
				h.o.Logger.LogAttrs(ctx, slog.LevelWarn, "idempotency: claim lost; cancelling the handler",
					slog.String("key", skey))
				cancel(fmt.Errorf("idempotency: claim on %q lost: %w", skey, ErrStaleToken))
				return
			default:
				h.o.Logger.LogAttrs(ctx, slog.LevelWarn, "idempotency: extending claim failed; retrying",
					slog.String("key", skey), slog.Any("error", err))
			}
		}
	}()
	return k
}

// stop ends the extensions and waits for one under way, so that none runs
// after the claim is settled.
func (k *httpKeeper) stop() {
	k.once.Do(func() { close(k.stopc) })
	<-k.done
}

// httpRecorder buffers the handler's response so that it can be stored
// before it is sent. Past max body bytes it gives up storing and streams
// to the client instead.
type httpRecorder struct {
	w      http.ResponseWriter
	max    int
	header http.Header // what the handler sets

	status    int         // 0 until the header is written
	sent      http.Header // header as of WriteHeader
	body      bytes.Buffer
	streaming bool
}

func (rec *httpRecorder) Header() http.Header {
	if rec.streaming {
		return rec.w.Header() // for trailers
	}
	return rec.header
}

func (rec *httpRecorder) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code)) // as net/http does
	}
	if rec.status != 0 || code < 200 {
		// Superfluous; or informational, which a buffered response
		// cannot forward ahead of its final status.
		return
	}
	rec.status = code
	rec.sent = rec.header.Clone()
}

func (rec *httpRecorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.streaming {
		return rec.w.Write(p)
	}
	if rec.status == http.StatusNoContent || rec.status == http.StatusNotModified {
		return 0, http.ErrBodyNotAllowed
	}
	if rec.body.Len()+len(p) <= rec.max {
		return rec.body.Write(p)
	}
	rec.streaming = true
	resp := rec.response()
	rec.body = bytes.Buffer{}
	if err := resp.send(rec.w, false); err != nil {
		return 0, err
	}
	return rec.w.Write(p)
}

// Flush flushes a streamed response; a buffered one is sent when the
// handler returns.
func (rec *httpRecorder) Flush() {
	if rec.streaming {
		_ = http.NewResponseController(rec.w).Flush()
	}
}

// Unwrap lets [http.ResponseController] reach the connection's deadlines.
func (rec *httpRecorder) Unwrap() http.ResponseWriter { return rec.w }

// response returns the response buffered so far.
func (rec *httpRecorder) response() httpResponse {
	if rec.status == 0 {
		return httpResponse{status: http.StatusOK, header: rec.header, body: rec.body.Bytes()}
	}
	return httpResponse{status: rec.status, header: rec.sent, body: rec.body.Bytes()}
}

// httpResponse is a response as stored.
type httpResponse struct {
	status int
	header http.Header
	body   []byte
}

// send writes the response to w, marked as not stored unless stored.
func (resp httpResponse) send(w http.ResponseWriter, stored bool) error {
	dst := w.Header()
	for k, v := range resp.header {
		dst[k] = v
	}
	if !stored {
		dst.Set(HTTPStoredHeader, "false")
	}
	w.WriteHeader(resp.status)
	_, err := w.Write(resp.body)
	return err
}

// httpResponseVersion leads the stored encoding, so that it can change.
const httpResponseVersion = 1

// encode packs the response as:
//
//	version byte
//	uvarint status
//	uvarint number of header fields, then for each field
//	  uvarint len, name, uvarint number of values, then uvarint len, value
//	body, to the end
//
// Fields are sorted by name so that equal responses encode equally.
func (resp httpResponse) encode() []byte {
	n := 16 + len(resp.body)
	for k, vs := range resp.header {
		n += len(k) + 2*binary.MaxVarintLen16
		for _, v := range vs {
			n += len(v) + binary.MaxVarintLen16
		}
	}
	b := make([]byte, 0, n)
	b = append(b, httpResponseVersion)
	b = binary.AppendUvarint(b, uint64(resp.status))
	b = binary.AppendUvarint(b, uint64(len(resp.header)))
	for _, k := range slices.Sorted(maps.Keys(resp.header)) {
		vs := resp.header[k]
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	return append(b, resp.body...)
}

var errBadHTTPResponse = errors.New("idempotency: malformed stored HTTP response")

func decodeHTTPResponse(b []byte) (httpResponse, error) {
	if len(b) == 0 || b[0] != httpResponseVersion {
		return httpResponse{}, errBadHTTPResponse
	}
	b = b[1:]
	bad := false
	uvarint := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	str := func() string {
		l := uvarint()
		if bad || l > uint64(len(b)) {
			bad = true
			return ""
		}
		s := string(b[:l])
		b = b[l:]
		return s
	}
	status := uvarint()
	nfields := uvarint()
	if bad || status < 200 || status > 999 || nfields > uint64(len(b)) {
		return httpResponse{}, errBadHTTPResponse
	}
	header := make(http.Header, nfields)
	for range nfields {
		k := str()
		nvals := uvarint()
		if bad || nvals > uint64(len(b)) {
			return httpResponse{}, errBadHTTPResponse
		}
		vs := make([]string, 0, nvals)
		for range nvals {
			vs = append(vs, str())
		}
		if bad {
			return httpResponse{}, errBadHTTPResponse
		}
		header[k] = vs
	}
	return httpResponse{status: int(status), header: header, body: b}, nil
}

// parseHTTPKey returns the key of a header value: a Structured Field
// string ("..." with \" and \\ escapes, RFC 9651) is unquoted, anything
// else is taken as it is, trimmed. ok is false for a malformed string.
func parseHTTPKey(v string) (key string, ok bool) {
	v = strings.TrimSpace(v)
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return v, true
	}
	var b strings.Builder
	in := v[1 : len(v)-1]
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch {
		case c == '\\':
			i++
			if i == len(in) || (in[i] != '"' && in[i] != '\\') {
				return "", false
			}
			b.WriteByte(in[i])
		case c == '"' || c < 0x20 || c > 0x7e:
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// httpStoreKey joins the parts with their lengths, so that no two
// different requests share a key whatever their parts contain.
func httpStoreKey(scope, method, path, key string) string {
	var b strings.Builder
	b.WriteString("http")
	for _, s := range [...]string{scope, method, path, key} {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	return b.String()
}

// httpFingerprint is a SHA-256 hash of the method, path and body, each
// length-prefixed so that the boundaries between them count.
func httpFingerprint(method, path string, body []byte) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range [...][]byte{[]byte(method), []byte(path), body} {
		binary.LittleEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// retryAfterSeconds rounds d up to whole seconds, at least one.
func retryAfterSeconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return max(1, s)
}

// httpError answers status with a JSON body {"error": msg}.
func httpError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
