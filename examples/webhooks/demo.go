package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/idempotency"
)

// The demo's traffic.
const (
	demoValid       = 175 // distinct valid events
	demoResends     = 20  // second POSTs of valid events
	demoInvalid     = 5   // distinct events whose payload the handler rejects
	demoSenders     = 8   // POSTs in flight at once
	demoTimeout     = 30 * time.Second
	demoPollEvery   = 20 * time.Millisecond
	demoHTTPTimeout = 5 * time.Second
)

type postKind int

const (
	postValid postKind = iota
	postResend
	postInvalid
)

// demoPost is one POST the demo sends.
type demoPost struct {
	kind     postKind
	id       string
	source   string
	body     string
	inHeader bool // the ID goes in Webhook-Id rather than in the body
}

// demoPosts returns the demo's 200 POSTs in random order. run makes the
// event IDs unique to this run, so that a demo on Redis or Postgres does
// not meet the events of an earlier one.
func demoPosts(run string) []demoPost {
	sources := []string{"stripe", "github", "shopify"}
	types := []string{"invoice.paid", "push", "orders/create"}
	posts := make([]demoPost, 0, demoValid+demoResends+demoInvalid)
	for i := range demoValid {
		p := demoPost{kind: postValid, id: fmt.Sprintf("evt-%s-%03d", run, i+1), source: sources[i%3]}
		if i%2 == 0 {
			p.inHeader = true
			p.body = fmt.Sprintf(`{"type":%q,"data":{"n":%d}}`, types[i%3], i+1)
		} else {
			p.body = fmt.Sprintf(`{"id":%q,"type":%q,"data":{"n":%d}}`, p.id, types[i%3], i+1)
		}
		posts = append(posts, p)
	}
	for i := range demoResends {
		p := posts[i*demoValid/demoResends]
		p.kind = postResend
		posts = append(posts, p)
	}
	invalid := []string{`not json`, `{"data":{"n":1}}`, `[1,2,3]`, `{"type":42}`, `{"type":""}`}
	for i, body := range invalid[:demoInvalid] {
		posts = append(posts, demoPost{kind: postInvalid, id: fmt.Sprintf("bad-%s-%d", run, i+1), source: "stripe", body: body, inHeader: true})
	}
	mrand.Shuffle(len(posts), func(i, j int) { posts[i], posts[j] = posts[j], posts[i] })
	return posts
}

// postResult is what the inbox answered to one POST.
type postResult struct {
	code     int
	accepted accepted
	took     time.Duration
	err      error
}

// runDemo starts the inbox on a random local port, sends it the demo's
// POSTs over HTTP, polls every event's status URL until all have settled,
// and prints what happened. It fails if an event did not settle, was
// queued twice, had its effect applied other than once when done (or at
// all when failed), or if an invalid payload did not fail.
func runDemo(ctx context.Context, cfg config, out io.Writer, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- a.serve(sctx, ln) }()

	base := "http://" + ln.Addr().String()
	fmt.Fprintf(out, "webhooks demo: inbox at %s on the %s queue; handler latency %s, fail rate %.2f, %d calls per delivery, %d deliveries\n",
		base, cfg.queue, cfg.latency, cfg.failRate, cfg.retries, cfg.maxAttempts)
	r := demoRun{a: a, base: base, client: &http.Client{Timeout: demoHTTPTimeout}, out: out}
	err = r.run(ctx)

	stop()
	if serr := <-served; serr != nil && err == nil {
		err = serr
	}
	return err
}

type demoRun struct {
	a      *app
	base   string
	client *http.Client
	out    io.Writer
}

func (r *demoRun) run(ctx context.Context) error {
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	posts := demoPosts(randomHex(4))
	start := time.Now()
	results := r.postAll(ctx, posts)
	postTime := time.Since(start)

	var fresh, dups int
	var took []time.Duration
	for i, res := range results {
		p := posts[i]
		switch {
		case res.err != nil:
			problem("POST of %s: %v", p.id, res.err)
			continue
		case res.code != http.StatusAccepted:
			problem("POST of %s: status %d, want 202", p.id, res.code)
			continue
		case res.accepted.StatusURL != statusURL(p.id):
			problem("POST of %s: status URL %q, want %q", p.id, res.accepted.StatusURL, statusURL(p.id))
		}
		took = append(took, res.took)
		if res.accepted.Duplicate {
			dups++
		} else {
			fresh++
		}
	}
	slices.Sort(took)
	fmt.Fprintf(r.out, "POST %d webhooks, %d at a time: %d answered 202 Accepted in %s (per request p50 %s, p99 %s)\n",
		len(posts), demoSenders, len(took), postTime.Round(time.Millisecond), percentile(took, 50), percentile(took, 99))
	published := r.a.pub.published.Load()
	fmt.Fprintf(r.out, "  %d new events, %d re-sends answered with their event's status URL; %d messages queued\n", fresh, dups, published)
	if want := demoValid + demoInvalid; fresh != want || dups != demoResends || published != int64(want) {
		problem("want %d new events, %d re-sends and %d messages queued", want, demoResends, want)
	}

	// Every distinct event, by ID.
	kinds := map[string]postKind{}
	for _, p := range posts {
		if p.kind != postResend {
			kinds[p.id] = p.kind
		}
	}
	start = time.Now()
	statuses, err := r.settle(ctx, kinds)
	if err != nil {
		problem("%v", err)
	}
	counts := map[string]int{}
	reasons := map[string]int{}
	applied, once := 0, true
	for id, st := range statuses {
		counts[st.Status]++
		n := r.a.sim.timesApplied(id)
		switch st.Status {
		case statusDone:
			applied++
			if n != 1 {
				once = false
				problem("event %s is done with its effect applied %d times", id, n)
			}
		case statusFailed:
			reasons[st.Reason]++
			if n != 0 {
				once = false
				problem("event %s failed with its effect applied %d times", id, n)
			}
			if _, err := r.a.dlq.Get(ctx, st.DLQEntry); err != nil {
				problem("event %s failed, but its dead-letter entry %q: %v", id, st.DLQEntry, err)
			}
		}
		if kinds[id] == postInvalid && (st.Status != statusFailed || st.Reason != string(dlq.ReasonUndecodable)) {
			problem("invalid event %s is %s (%s), want failed (undecodable)", id, st.Status, st.Reason)
		}
	}
	fmt.Fprintf(r.out, "settled in %s: done %d, failed %d, processing %d\n",
		time.Since(start).Round(time.Millisecond), counts[statusDone], counts[statusFailed], len(kinds)-counts[statusDone]-counts[statusFailed])
	fmt.Fprintf(r.out, "  failed: %d undecodable (the invalid payloads), %d after %d deliveries (%s)\n",
		reasons[string(dlq.ReasonUndecodable)], reasons[string(dlq.ReasonAttemptsExhausted)], r.a.cfg.maxAttempts, dlq.ReasonAttemptsExhausted)
	fmt.Fprintf(r.out, "  effects: %d events, each applied exactly once: %t\n", applied, once)
	fmt.Fprintf(r.out, "  handler calls: %d, of which %d simulated failures retried in process or redelivered\n",
		r.a.sim.calls.Load(), r.a.sim.failures.Load())
	obs := r.a.obs
	fmt.Fprintf(r.out, "  consumer: %d messages acked, %d redelivered, %d duplicates skipped, %d dead-lettered\n",
		obs.get(consumer.MetricProcessed), obs.get(consumer.MetricRetries), obs.get(idempotency.MetricDuplicatesSkipped), obs.get(dlq.MetricDeadLettered))

	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(r.out, "PROBLEM:", p)
		}
		return fmt.Errorf("demo: %d problems", len(problems))
	}
	fmt.Fprintln(r.out, "ok: every event queued once and settled, every done event's effect applied exactly once")
	return nil
}

// postAll sends posts, demoSenders at a time, and returns the answers in
// the same order.
func (r *demoRun) postAll(ctx context.Context, posts []demoPost) []postResult {
	results := make([]postResult, len(posts))
	next := make(chan int)
	var wg sync.WaitGroup
	for range demoSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = r.post(ctx, posts[i])
			}
		}()
	}
	for i := range posts {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

func (r *demoRun) post(ctx context.Context, p demoPost) postResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+"/webhooks/"+p.source, strings.NewReader(p.body))
	if err != nil {
		return postResult{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	if p.inHeader {
		req.Header.Set(headerEventID, p.id)
	}
	start := time.Now()
	resp, err := r.client.Do(req)
	if err != nil {
		return postResult{err: err}
	}
	defer resp.Body.Close()
	res := postResult{code: resp.StatusCode, took: time.Since(start)}
	if resp.StatusCode == http.StatusAccepted {
		res.err = json.NewDecoder(resp.Body).Decode(&res.accepted)
	}
	return res
}

// settle polls the status URL of each event until all have settled or
// ctx ends, and returns the last status of each.
func (r *demoRun) settle(ctx context.Context, ids map[string]postKind) (map[string]eventStatus, error) {
	statuses := make(map[string]eventStatus, len(ids))
	pending := make([]string, 0, len(ids))
	for id := range ids {
		pending = append(pending, id)
	}
	tick := time.NewTicker(demoPollEvery)
	defer tick.Stop()
	for {
		still := pending[:0]
		for _, id := range pending {
			st, err := r.get(ctx, id)
			if err != nil {
				return statuses, err
			}
			statuses[id] = st
			if !st.settled() {
				still = append(still, id)
			}
		}
		pending = still
		if len(pending) == 0 {
			return statuses, nil
		}
		select {
		case <-ctx.Done():
			return statuses, fmt.Errorf("%d events still processing: %w", len(pending), ctx.Err())
		case <-tick.C:
		}
	}
}

func (r *demoRun) get(ctx context.Context, id string) (eventStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+statusURL(id), nil)
	if err != nil {
		return eventStatus{}, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return eventStatus{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return eventStatus{}, fmt.Errorf("GET %s: status %d", statusURL(id), resp.StatusCode)
	}
	var st eventStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return eventStatus{}, fmt.Errorf("GET %s: %w", statusURL(id), err)
	}
	return st, nil
}

// percentile returns the p-th percentile of sorted, rounded for printing.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)*p/100, len(sorted)-1)].Round(10 * time.Microsecond)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return hex.EncodeToString(b)
}
