package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/internal/testenv"
)

// backends are the -queue modes. Redis and Postgres get a key prefix or a
// schema of their own per test, from testenv, which skips them without
// the servers (or fails, with IDEMQ_REQUIRE_SERVICES=1).
var backends = []struct {
	name string
	cfg  func(t *testing.T) config
}{
	{"memory", func(*testing.T) config { return testConfig("memory") }},
	{"redis", func(t *testing.T) config {
		_, prefix := testenv.Redis(t)
		cfg := testConfig("redis")
		cfg.redisAddr, cfg.redisPrefix = testenv.RedisAddr(), prefix
		return cfg
	}},
	{"postgres", func(t *testing.T) config {
		_, schema := testenv.PostgresWithSchema(t)
		cfg := testConfig("postgres")
		cfg.postgresURL = postgresURL(t, schema)
		return cfg
	}},
}

func testConfig(queue string) config {
	return config{queue: queue, retries: 3, maxAttempts: 3, concurrency: 4, dedupeWindow: time.Hour, poll: 50 * time.Millisecond}
}

// postgresURL is the test server's URL with schema as the search_path.
func postgresURL(t *testing.T, schema string) string {
	t.Helper()
	u, err := url.Parse(testenv.PostgresURL())
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// eachBackend runs test in parallel subtests, one per backend.
func eachBackend(t *testing.T, test func(t *testing.T, cfg config)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			test(t, b.cfg(t))
		})
	}
}

// inbox is a running app behind an httptest server, whose effect counts
// calls and applications per event and behaves as the test says.
type inbox struct {
	a   *app
	url string

	// behave decides the outcome of call number call (from 1) of the
	// effect for ev; nil succeeds.
	behave func(ctx context.Context, ev event, call int) error

	mu      sync.Mutex
	calls   map[string]int
	applied map[string]int
}

// startInbox opens cfg's backends, lets setup adjust the app, and starts
// the consumer and the HTTP server; all stop when t ends.
func startInbox(t *testing.T, cfg config, behave func(ctx context.Context, ev event, call int) error, setup ...func(a *app)) *inbox {
	t.Helper()
	in := &inbox{behave: behave, calls: map[string]int{}, applied: map[string]int{}}
	a, err := newApp(context.Background(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(a.close)
	a.effect = in.effect
	for _, f := range setup {
		f(a)
	}
	c, err := a.newConsumer()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	srv := httptest.NewServer(a.routes())
	t.Cleanup(srv.Close)
	in.a, in.url = a, srv.URL
	return in
}

func (in *inbox) effect(ctx context.Context, ev event) error {
	in.mu.Lock()
	in.calls[ev.ID]++
	call := in.calls[ev.ID]
	in.mu.Unlock()
	if in.behave != nil {
		if err := in.behave(ctx, ev, call); err != nil {
			return err
		}
	}
	in.mu.Lock()
	in.applied[ev.ID]++
	in.mu.Unlock()
	return nil
}

// counts returns the effect's calls and applications for id.
func (in *inbox) counts(id string) (calls, applied int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.calls[id], in.applied[id]
}

// answer is an HTTP response, read.
type answer struct {
	code   int
	header http.Header
	body   string
}

func (r answer) accepted(t *testing.T) accepted {
	t.Helper()
	require.Equal(t, http.StatusAccepted, r.code, r.body)
	var acc accepted
	require.NoError(t, json.Unmarshal([]byte(r.body), &acc))
	return acc
}

// send makes a request; it is safe to call from any goroutine.
func (in *inbox) send(method, path string, header http.Header, body string) (answer, error) {
	req, err := http.NewRequest(method, in.url+path, strings.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, header: resp.Header, body: string(b)}, err
}

func (in *inbox) do(t *testing.T, method, path string, header http.Header, body string) answer {
	t.Helper()
	r, err := in.send(method, path, header, body)
	require.NoError(t, err)
	return r
}

// postHeader is the header of a POST of event id: Webhook-Id unless empty.
func postHeader(id string) http.Header {
	h := http.Header{}
	if id != "" {
		h.Set(headerEventID, id)
	}
	return h
}

// post POSTs body to /webhooks/source, with id in Webhook-Id unless empty.
func (in *inbox) post(t *testing.T, source, id, body string) answer {
	t.Helper()
	return in.do(t, http.MethodPost, "/webhooks/"+source, postHeader(id), body)
}

// status GETs id's status URL and returns the code and the status.
func (in *inbox) status(t *testing.T, id string) (int, eventStatus) {
	t.Helper()
	r := in.do(t, http.MethodGet, statusURL(id), nil, "")
	var st eventStatus
	if r.code == http.StatusOK {
		require.NoError(t, json.Unmarshal([]byte(r.body), &st))
	}
	return r.code, st
}

// waitFor polls id's status until cond holds, and returns it.
func (in *inbox) waitFor(t *testing.T, id string, what string, cond func(st eventStatus) bool) eventStatus {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, st := in.status(t, id)
		if code == http.StatusOK && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("event %q: not %s after 15s; last answer %d, %+v", id, what, code, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (in *inbox) waitSettled(t *testing.T, id string) eventStatus {
	t.Helper()
	return in.waitFor(t, id, "settled", eventStatus.settled)
}

func TestAccepted(t *testing.T) {
	eachBackend(t, func(t *testing.T, cfg config) {
		in := startInbox(t, cfg, nil)
		posts := []struct {
			name, source, header, body, id string
		}{
			{"id in header", "stripe", "evt_1", `{"type":"invoice.paid","data":{"amount":4200}}`, "evt_1"},
			{"id in body", "github", "", `{"id":"delivery-77","type":"push"}`, "delivery-77"},
			{"numeric id in body", "shopify", "", `{"id":1234567890123,"type":"orders/create"}`, "1234567890123"},
			{"header wins over body", "stripe", "evt_2", `{"id":"ignored","type":"invoice.paid"}`, "evt_2"},
			{"id that needs escaping", "stripe", "a/b c?", `{"type":"x"}`, "a/b c?"},
		}
		for _, p := range posts {
			r := in.post(t, p.source, p.header, p.body)
			acc := r.accepted(t)
			require.Equal(t, accepted{ID: p.id, StatusURL: statusURL(p.id)}, acc, p.name)
			require.Equal(t, statusURL(p.id), r.header.Get("Location"), p.name)
			require.Empty(t, r.header.Get(idempotency.HTTPReplayedHeader), p.name)
		}
		require.Equal(t, "/webhooks/events/a%2Fb%20c%3F", statusURL("a/b c?"))
		for _, p := range posts {
			st := in.waitSettled(t, p.id)
			require.Equal(t, statusDone, st.Status, p.name)
			require.Equal(t, p.id, st.ID)
			require.Equal(t, p.source, st.Source)
			require.Equal(t, 1, st.Attempts)
			require.Equal(t, 1, st.Deliveries)
			require.Empty(t, st.Error)
			require.False(t, st.ReceivedAt.IsZero())
			require.False(t, st.UpdatedAt.Before(st.ReceivedAt))
			calls, applied := in.counts(p.id)
			require.Equal(t, 1, calls, p.name)
			require.Equal(t, 1, applied, p.name)
		}
		require.EqualValues(t, len(posts), in.a.pub.published.Load())
	})
}

func TestProcessingThenDone(t *testing.T) {
	eachBackend(t, func(t *testing.T, cfg config) {
		release := make(chan struct{})
		var once sync.Once
		t.Cleanup(func() { once.Do(func() { close(release) }) })
		in := startInbox(t, cfg, func(ctx context.Context, ev event, call int) error {
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		in.post(t, "stripe", "evt_slow", `{"type":"invoice.paid"}`).accepted(t)

		// Accepted means recorded: the status exists as soon as the 202 does.
		code, st := in.status(t, "evt_slow")
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, statusProcessing, st.Status)

		st = in.waitFor(t, "evt_slow", "running", func(st eventStatus) bool { return st.Attempts == 1 })
		require.Equal(t, statusProcessing, st.Status)
		require.Equal(t, 1, st.Deliveries)

		once.Do(func() { close(release) })
		st = in.waitSettled(t, "evt_slow")
		require.Equal(t, statusDone, st.Status)
		require.Equal(t, 1, st.Attempts)
	})
}

func TestDuplicatePost(t *testing.T) {
	eachBackend(t, func(t *testing.T, cfg config) {
		in := startInbox(t, cfg, nil)
		const id, body = "evt_dup", `{"type":"invoice.paid","data":{"amount":4200}}`

		// A sender that retries before its first POST was answered.
		const concurrent = 10
		answers := make([]answer, concurrent)
		errs := make([]error, concurrent)
		var wg sync.WaitGroup
		for i := range concurrent {
			wg.Go(func() { answers[i], errs[i] = in.send(http.MethodPost, "/webhooks/stripe", postHeader(id), body) })
		}
		wg.Wait()
		fresh := 0
		for i, r := range answers {
			require.NoError(t, errs[i])
			acc := r.accepted(t)
			require.Equal(t, statusURL(id), acc.StatusURL)
			require.Equal(t, statusURL(id), r.header.Get("Location"))
			if !acc.Duplicate {
				fresh++
				require.Empty(t, r.header.Get(idempotency.HTTPReplayedHeader))
			} else {
				require.Equal(t, "true", r.header.Get(idempotency.HTTPReplayedHeader))
			}
		}
		require.Equal(t, 1, fresh, "exactly one of the concurrent POSTs queues the event")

		st := in.waitSettled(t, id)
		require.Equal(t, statusDone, st.Status)

		// And one long after, once the event is done.
		acc := in.post(t, "stripe", id, body).accepted(t)
		require.Equal(t, accepted{ID: id, StatusURL: statusURL(id), Duplicate: true}, acc)
		_, st = in.status(t, id)
		require.Equal(t, statusDone, st.Status)
		require.Equal(t, 1, st.Attempts)

		require.EqualValues(t, 1, in.a.pub.published.Load(), "duplicates enqueue nothing")
		calls, applied := in.counts(id)
		require.Equal(t, 1, calls)
		require.Equal(t, 1, applied, "processed once")
	})
}

// A message delivered twice by the queue (here: published twice, as when
// the process dies between publishing and completing the receipt claim)
// is processed once.
func TestDuplicateMessage(t *testing.T) {
	eachBackend(t, func(t *testing.T, cfg config) {
		in := startInbox(t, cfg, nil)
		in.post(t, "stripe", "evt_twice", `{"type":"invoice.paid"}`).accepted(t)
		require.Equal(t, statusDone, in.waitSettled(t, "evt_twice").Status)

		msg := consumer.Message{ID: "evt_twice", Body: []byte(`{"type":"invoice.paid"}`), Headers: map[string]string{msgHeaderSource: "stripe"}}
		require.NoError(t, in.a.pub.Publish(context.Background(), msg))
		require.Eventually(t, func() bool { return in.a.obs.get(idempotency.MetricDuplicatesSkipped) == 1 }, 15*time.Second, 5*time.Millisecond)
		_, st := in.status(t, "evt_twice")
		require.Equal(t, statusDone, st.Status)
		require.Equal(t, 1, st.Attempts)
		_, applied := in.counts("evt_twice")
		require.Equal(t, 1, applied)
	})
}

func TestInvalidPayload(t *testing.T) {
	eachBackend(t, func(t *testing.T, cfg config) {
		in := startInbox(t, cfg, nil)
		payloads := map[string]string{
			"bad-text":       `not json`,
			"bad-no-type":    `{"data":{"amount":1}}`,
			"bad-array":      `[1,2,3]`,
			"bad-type-int":   `{"type":42}`,
			"bad-type-empty": `{"type":""}`,
		}
		for id, body := range payloads {
			in.post(t, "stripe", id, body).accepted(t)
		}
		for id := range payloads {
			st := in.waitSettled(t, id)
			require.Equal(t, statusFailed, st.Status, id)
			require.Equal(t, string(dlq.ReasonUndecodable), st.Reason, id)
			require.Contains(t, st.Error, "undecodable message: event \""+id+"\"", id)
			require.Equal(t, 1, st.Attempts, "a permanent error is not retried")
			require.Equal(t, 1, st.Deliveries)
			calls, _ := in.counts(id)
			require.Zero(t, calls, "the effect never runs for a bad payload")

			e, err := in.a.dlq.Get(context.Background(), st.DLQEntry)
			require.NoError(t, err, id)
			require.Equal(t, id, e.Message.ID)
			require.Equal(t, dlq.ReasonUndecodable, e.Reason)
			require.Equal(t, payloads[id], string(e.Message.Body))
			require.Equal(t, "stripe", e.Message.Headers[msgHeaderSource])
		}
	})
}

func TestTransientFailures(t *testing.T) {
	eachBackend(t, func(t *testing.T, cfg config) {
		in := startInbox(t, cfg, func(_ context.Context, ev event, call int) error {
			if call <= 2 {
				return fmt.Errorf("partner: connection reset (call %d)", call)
			}
			return nil
		})
		in.post(t, "stripe", "evt_flaky", `{"type":"invoice.paid"}`).accepted(t)
		st := in.waitSettled(t, "evt_flaky")
		require.Equal(t, statusDone, st.Status)
		require.Equal(t, 3, st.Attempts)
		require.Equal(t, 1, st.Deliveries, "retried in process")
		require.Empty(t, st.Error, "done clears the error")
		_, applied := in.counts("evt_flaky")
		require.Equal(t, 1, applied)
	})
}

func TestRedelivered(t *testing.T) {
	eachBackend(t, func(t *testing.T, cfg config) {
		in := startInbox(t, cfg, func(_ context.Context, ev event, call int) error {
			if call <= cfg.retries { // the whole first delivery
				return errors.New("partner: 503")
			}
			return nil
		})
		in.post(t, "stripe", "evt_later", `{"type":"invoice.paid"}`).accepted(t)
		st := in.waitSettled(t, "evt_later")
		require.Equal(t, statusDone, st.Status)
		require.Equal(t, cfg.retries+1, st.Attempts)
		require.Equal(t, 2, st.Deliveries)
		_, applied := in.counts("evt_later")
		require.Equal(t, 1, applied)
	})
}

func TestAlwaysFailing(t *testing.T) {
	eachBackend(t, func(t *testing.T, cfg config) {
		in := startInbox(t, cfg, func(context.Context, event, int) error {
			return errors.New("partner: down for maintenance")
		})
		in.post(t, "stripe", "evt_doomed", `{"type":"invoice.paid"}`).accepted(t)
		st := in.waitSettled(t, "evt_doomed")
		require.Equal(t, statusFailed, st.Status)
		require.Equal(t, string(dlq.ReasonAttemptsExhausted), st.Reason)
		require.Equal(t, cfg.maxAttempts, st.Deliveries)
		require.Equal(t, cfg.maxAttempts*cfg.retries, st.Attempts)
		require.Contains(t, st.Error, "partner: down for maintenance")

		e, err := in.a.dlq.Get(context.Background(), st.DLQEntry)
		require.NoError(t, err)
		require.Equal(t, cfg.maxAttempts, e.Attempts)
		require.Equal(t, dlq.ReasonAttemptsExhausted, e.Reason)
		calls, applied := in.counts("evt_doomed")
		require.Equal(t, cfg.maxAttempts*cfg.retries, calls)
		require.Zero(t, applied)
	})
}

// A replayed dead letter runs again, and its status follows.
func TestReplay(t *testing.T) {
	eachBackend(t, func(t *testing.T, cfg config) {
		var down sync.Mutex
		broken := true
		in := startInbox(t, cfg, func(context.Context, event, int) error {
			down.Lock()
			defer down.Unlock()
			if broken {
				return errors.New("partner: down")
			}
			return nil
		})
		in.post(t, "stripe", "evt_replayed", `{"type":"invoice.paid"}`).accepted(t)
		st := in.waitSettled(t, "evt_replayed")
		require.Equal(t, statusFailed, st.Status)

		down.Lock()
		broken = false
		down.Unlock()
		res, err := dlq.Replay(context.Background(), in.a.dlq, in.a.pub, dlq.Filter{Source: queueName})
		require.NoError(t, err)
		require.Equal(t, 1, res.Replayed)
		st = in.waitFor(t, "evt_replayed", "done", func(st eventStatus) bool { return st.Status == statusDone })
		require.Equal(t, cfg.maxAttempts*cfg.retries+1, st.Attempts)
		require.Empty(t, st.Reason)
		require.Empty(t, st.DLQEntry)
	})
}

// failingPublisher fails its first n publishes.
type failingPublisher struct {
	next consumer.Publisher
	mu   sync.Mutex
	n    int
}

func (p *failingPublisher) Publish(ctx context.Context, msgs ...consumer.Message) error {
	p.mu.Lock()
	fail := p.n > 0
	p.n--
	p.mu.Unlock()
	if fail {
		return errors.New("broker: connection refused")
	}
	return p.next.Publish(ctx, msgs...)
}

// An event that could not be queued is answered 503 and left unclaimed,
// so the sender's retry queues it.
func TestPublishFailure(t *testing.T) {
	in := startInbox(t, testConfig("memory"), nil, func(a *app) {
		a.pub.next = &failingPublisher{next: a.pub.next, n: 1}
	})
	r := in.post(t, "stripe", "evt_unlucky", `{"type":"invoice.paid"}`)
	require.Equal(t, http.StatusServiceUnavailable, r.code, r.body)
	require.Equal(t, "1", r.header.Get("Retry-After"))
	code, _ := in.status(t, "evt_unlucky")
	require.Equal(t, http.StatusNotFound, code, "no status for an event that was not queued")

	acc := in.post(t, "stripe", "evt_unlucky", `{"type":"invoice.paid"}`).accepted(t)
	require.False(t, acc.Duplicate)
	require.Equal(t, statusDone, in.waitSettled(t, "evt_unlucky").Status)
	_, applied := in.counts("evt_unlucky")
	require.Equal(t, 1, applied)
}

func TestReceiveErrors(t *testing.T) {
	in := startInbox(t, testConfig("memory"), nil)
	in.post(t, "stripe", "evt_known", `{"type":"invoice.paid"}`).accepted(t)

	tests := []struct {
		name   string
		method string
		path   string
		id     string
		body   string
		code   int
		errMsg string
	}{
		{"no id", "POST", "/webhooks/stripe", "", `{"type":"x"}`, http.StatusBadRequest, "no event ID"},
		{"no id, not json", "POST", "/webhooks/stripe", "", `not json`, http.StatusBadRequest, "no event ID"},
		{"id of the wrong type", "POST", "/webhooks/stripe", "", `{"id":{"a":1}}`, http.StatusBadRequest, "no event ID"},
		{"id too long", "POST", "/webhooks/stripe", strings.Repeat("x", maxIDLen+1), `{}`, http.StatusBadRequest, "limit 200"},
		{"control character", "POST", "/webhooks/stripe", "", `{"id":"a\u0001b"}`, http.StatusBadRequest, "control character"},
		{"bad source", "POST", "/webhooks/no%20spaces", "evt_x", `{}`, http.StatusBadRequest, "source"},
		{"body too large", "POST", "/webhooks/stripe", "evt_big", strings.Repeat("x", maxBodyBytes+1), http.StatusRequestEntityTooLarge, "body over"},
		{"same id, other payload", "POST", "/webhooks/stripe", "evt_known", `{"type":"invoice.voided"}`, http.StatusConflict, "different payload"},
		{"same id, other source", "POST", "/webhooks/github", "evt_known", `{"type":"invoice.paid"}`, http.StatusConflict, "different payload"},
		{"unknown event", "GET", "/webhooks/events/evt_nope", "", "", http.StatusNotFound, "unknown event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := in.do(t, tt.method, tt.path, postHeader(tt.id), tt.body)
			require.Equal(t, tt.code, r.code, r.body)
			require.Equal(t, "application/json", r.header.Get("Content-Type"))
			var e struct{ Error string }
			require.NoError(t, json.Unmarshal([]byte(r.body), &e))
			require.Contains(t, e.Error, tt.errMsg)
		})
	}
	r := in.do(t, "GET", "/webhooks/stripe", nil, "")
	require.Equal(t, http.StatusMethodNotAllowed, r.code)
	require.EqualValues(t, 1, in.a.pub.published.Load(), "refused POSTs queue nothing")
}

// A POST that meets another POST of the same event still being queued
// waits for it, and answers 409 with Retry-After if it takes too long.
func TestAcceptInProgress(t *testing.T) {
	in := startInbox(t, testConfig("memory"), nil, func(a *app) { a.acceptWait = 50 * time.Millisecond })
	// A receipt claim held elsewhere, by a process that died, say.
	fp := fingerprint("stripe", []byte(`{"type":"x"}`))
	c, err := in.a.idem.Claim(context.Background(), "receipt:evt_stuck", fp, time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claimed, c.Status)

	start := time.Now()
	r := in.post(t, "stripe", "evt_stuck", `{"type":"x"}`)
	require.Equal(t, http.StatusConflict, r.code, r.body)
	require.Equal(t, "1", r.header.Get("Retry-After"))
	require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond, "it waited for the claim")
	require.Zero(t, in.a.pub.published.Load())
}

func TestStatusStore(t *testing.T) {
	eachBackend(t, func(t *testing.T, cfg config) {
		a, err := newApp(context.Background(), cfg, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		t.Cleanup(a.close)
		s, ctx := a.status, context.Background()
		get := func(id string) eventStatus {
			t.Helper()
			st, err := s.Get(ctx, id)
			require.NoError(t, err)
			return st
		}

		_, err = s.Get(ctx, "e1")
		require.ErrorIs(t, err, errUnknownEvent)
		created, err := s.Accept(ctx, "e1", "stripe")
		require.NoError(t, err)
		require.True(t, created)
		created, err = s.Accept(ctx, "e1", "github")
		require.NoError(t, err)
		require.False(t, created, "Accept never overwrites")
		st := get("e1")
		require.Equal(t, eventStatus{ID: "e1", Source: "stripe", Status: statusProcessing, ReceivedAt: st.ReceivedAt, UpdatedAt: st.UpdatedAt}, st)
		require.WithinDuration(t, time.Now(), st.ReceivedAt, time.Minute)

		require.NoError(t, s.Attempt(ctx, "e1", "stripe", 1))
		require.NoError(t, s.Retrying(ctx, "e1", "boom"))
		require.NoError(t, s.Attempt(ctx, "e1", "stripe", 1))
		require.NoError(t, s.Attempt(ctx, "e1", "stripe", 2))
		st = get("e1")
		require.Equal(t, statusProcessing, st.Status)
		require.Equal(t, 3, st.Attempts)
		require.Equal(t, 2, st.Deliveries)
		require.Equal(t, "boom", st.Error)

		require.NoError(t, s.Failed(ctx, "e1", "attempts_exhausted", "boom again", "entry-1"))
		st = get("e1")
		require.Equal(t, statusFailed, st.Status)
		require.Equal(t, "attempts_exhausted", st.Reason)
		require.Equal(t, "boom again", st.Error)
		require.Equal(t, "entry-1", st.DLQEntry)

		// A replay: delivery numbers start again from 1.
		require.NoError(t, s.Attempt(ctx, "e1", "stripe", 1))
		st = get("e1")
		require.Equal(t, statusProcessing, st.Status)
		require.Equal(t, 4, st.Attempts)
		require.Equal(t, 2, st.Deliveries)
		require.Empty(t, st.Reason)
		require.Empty(t, st.DLQEntry)

		require.NoError(t, s.Done(ctx, "e1"))
		st = get("e1")
		require.Equal(t, statusDone, st.Status)
		require.Empty(t, st.Error)
		require.False(t, st.UpdatedAt.Before(st.ReceivedAt))

		// Updates of unknown events change nothing; Attempt creates one.
		require.NoError(t, s.Done(ctx, "e2"))
		_, err = s.Get(ctx, "e2")
		require.ErrorIs(t, err, errUnknownEvent)
		require.NoError(t, s.Attempt(ctx, "e2", "github", 3))
		st = get("e2")
		require.Equal(t, "github", st.Source)
		require.Equal(t, 1, st.Attempts)
		require.Equal(t, 3, st.Deliveries)

		require.NoError(t, s.Delete(ctx, "e1"))
		_, err = s.Get(ctx, "e1")
		require.ErrorIs(t, err, errUnknownEvent)

		// Any text survives.
		odd := "évènement {x} \"q\" ✓"
		_, err = s.Accept(ctx, odd, "stripe")
		require.NoError(t, err)
		require.NoError(t, s.Attempt(ctx, odd, "stripe", 1))
		require.NoError(t, s.Retrying(ctx, odd, errorText(errors.New("bad \x00 byte \xff"))))
		st = get(odd)
		require.Equal(t, odd, st.ID)
		require.Equal(t, "bad \uFFFD byte \uFFFD", st.Error)
	})
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes a second")
	}
	eachBackend(t, func(t *testing.T, cfg config) {
		args := []string{"-demo", "-queue", cfg.queue}
		switch cfg.queue {
		case "redis":
			args = append(args, "-redis-addr", cfg.redisAddr, "-redis-prefix", cfg.redisPrefix)
		case "postgres":
			args = append(args, "-postgres-url", cfg.postgresURL)
		}
		var out, errOut bytes.Buffer
		start := time.Now()
		code := run(context.Background(), args, &out, &errOut)
		require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
		if cfg.queue == "memory" {
			require.Less(t, time.Since(start), 10*time.Second, "CI runs it")
		}
		got := out.String()
		require.Contains(t, got, "POST 200 webhooks")
		require.Contains(t, got, "200 answered 202 Accepted")
		require.Contains(t, got, "180 new events, 20 re-sends answered with their event's status URL; 180 messages queued")
		require.Contains(t, got, "done 175, failed 5, processing 0")
		require.Contains(t, got, "5 undecodable")
		require.Contains(t, got, "175 events, each applied exactly once: true")
		require.Contains(t, got, "ok: every event queued once")
		require.NotContains(t, got, "PROBLEM")
	})
}

func TestFlags(t *testing.T) {
	tests := []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"-h"}, exitOK, "usage: webhooks"},
		{[]string{"-nope"}, exitUsage, "flag provided but not defined"},
		{[]string{"extra"}, exitUsage, "unexpected arguments: extra"},
		{[]string{"-queue", "kafka"}, exitUsage, `-queue "kafka"`},
		{[]string{"-fail-rate", "1.5"}, exitUsage, "-fail-rate 1.5"},
		{[]string{"-latency", "-1s"}, exitUsage, "-latency"},
		{[]string{"-retries", "0"}, exitUsage, "-retries 0"},
		{[]string{"-max-attempts", "0"}, exitUsage, "-max-attempts 0"},
		{[]string{"-redis-prefix", "a{b}:"}, exitUsage, "braces"},
		{[]string{"-addr", "256.0.0.1:http"}, exitFailure, "webhooks:"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tt.args, &out, &errOut)
			require.Equal(t, tt.code, code, errOut.String())
			require.Contains(t, errOut.String(), tt.err)
		})
	}
}
