package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The demonstration's numbers.
const (
	demoRedeemers   = 500
	demoFans        = 17 // redeemers of the code pool
	demoOpenTimeout = 500 * time.Millisecond
	demoTimeout     = time.Minute
)

// demo runs the service on a random local port, with stores of its own,
// and tells on out what happens to a storm of redeemers, their retries, a
// code pool and a partner outage. It fails if any count is off.
func demo(ctx context.Context, cfg config, out io.Writer, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	be, err := openBackend(ctx, cfg, true)
	if err != nil {
		return err
	}
	defer be.close()
	if err := seed(ctx, be.stock); err != nil {
		return err
	}
	srv, err := newServer(be.stock, be.keys, serverOptions{
		OpenTimeout: demoOpenTimeout,
		// Redeems beyond MaxInFlight wait for their turn rather than get
		// a 503 after the default 5s, so that the counts come out the
		// same on a slow machine.
		MaxWait: demoTimeout,
		Logger:  logger,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- listen(sctx, ln, srv, be) }()
	defer func() {
		stop()
		<-served
	}()

	d := &demoRun{
		out:  out,
		srv:  srv,
		be:   be,
		base: "http://" + ln.Addr().String(),
		http: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: demoRedeemers},
		},
	}
	defer d.http.CloseIdleConnections()
	fmt.Fprintf(out, "redeem demo: %s store, server on %s\n", cfg.store, d.base)
	for _, step := range []func(context.Context) error{d.storm, d.codes, d.outage} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	if len(d.problems) > 0 {
		fmt.Fprintf(out, "\nFAILED:\n  %s\n", strings.Join(d.problems, "\n  "))
		return fmt.Errorf("demo: %d checks failed", len(d.problems))
	}
	fmt.Fprintln(out, "\nok: no unit granted twice, none lost")
	return nil
}

// demoRun is one demonstration: its server, its client, and the checks
// that failed.
type demoRun struct {
	out      io.Writer
	srv      *server
	be       *backend
	base     string
	http     *http.Client
	problems []string
}

func (d *demoRun) check(ok bool, format string, args ...any) {
	if !ok {
		d.problems = append(d.problems, fmt.Sprintf(format, args...))
	}
}

// reply is an answer to the demonstration's client.
type reply struct {
	status     int
	body       []byte
	replayed   bool
	retryAfter string
}

func (r reply) redemption() redemption {
	var v redemption
	_ = json.Unmarshal(r.body, &v) // a failed one stays zero, and is counted so
	return v
}

func (r reply) errorText() string {
	var v errorBody
	_ = json.Unmarshal(r.body, &v)
	return v.Error
}

func (d *demoRun) do(ctx context.Context, method, path, key, body string) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, strings.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{
		status:     resp.StatusCode,
		body:       bytes.TrimSpace(b),
		replayed:   resp.Header.Get("Idempotent-Replayed") == "true",
		retryAfter: resp.Header.Get("Retry-After"),
	}, nil
}

func (d *demoRun) redeem(ctx context.Context, item, key, holder string) (reply, error) {
	return d.do(ctx, http.MethodPost, "/items/"+item+"/redeem", key, fmt.Sprintf(`{"holder":%q}`, holder))
}

func (d *demoRun) availability(ctx context.Context, item string) (string, error) {
	r, err := d.do(ctx, http.MethodGet, "/items/"+item, "", "")
	if err != nil {
		return "", err
	}
	var v struct{ Availability string }
	if err := json.Unmarshal(r.body, &v); err != nil || r.status != http.StatusOK {
		return "", fmt.Errorf("GET /items/%s: %d %s", item, r.status, r.body)
	}
	return v.Availability, nil
}

// redeemAll sends n redeems at once, the i-th with key(i) for holder(i).
func (d *demoRun) redeemAll(ctx context.Context, n int, item string, key, holder func(int) string) ([]reply, error) {
	replies := make([]reply, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			replies[i], errs[i] = d.redeem(ctx, item, key(i), holder(i))
		})
	}
	close(start)
	wg.Wait()
	return replies, errors.Join(errs...)
}

// storm: 500 redeemers at once for 100 units, then each one's retry.
func (d *demoRun) storm(ctx context.Context) error {
	key := func(i int) string { return fmt.Sprintf("storm-%03d", i) }
	holder := func(i int) string { return fmt.Sprintf("customer-%03d", i) }

	fmt.Fprintf(d.out, "\n%s: %d units, one per holder\n", welcomeItem, welcomeUnits)
	shown, err := d.availability(ctx, welcomeItem)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  before:          availability %s\n", shown)

	start := time.Now()
	first, err := d.redeemAll(ctx, demoRedeemers, welcomeItem, key, holder)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	granted, soldOut, other := 0, 0, 0
	ids := map[string]bool{}
	for _, r := range first {
		switch {
		case r.status == http.StatusCreated:
			granted++
			ids[r.redemption().ReservationID] = true
		case r.status == http.StatusConflict && r.errorText() == "sold out":
			soldOut++
		default:
			other++
		}
	}
	fmt.Fprintf(d.out, "  storm:           %d concurrent redeemers -> %d granted (201), %d sold out (409), %d other, in %s\n",
		demoRedeemers, granted, soldOut, other, elapsed.Round(time.Millisecond))
	d.check(granted == welcomeUnits && soldOut == demoRedeemers-welcomeUnits && other == 0,
		"storm: want %d granted and %d sold out, got %d and %d (%d other)", welcomeUnits, demoRedeemers-welcomeUnits, granted, soldOut, other)
	d.check(len(ids) == granted, "storm: %d reservation IDs for %d grants", len(ids), granted)

	// Each client sends its request again, as one whose connection
	// dropped before the answer came would.
	again, err := d.redeemAll(ctx, demoRedeemers, welcomeItem, key, holder)
	if err != nil {
		return err
	}
	replayed, same := 0, 0
	for i, r := range again {
		if r.replayed {
			replayed++
		}
		if r.status == first[i].status && bytes.Equal(r.body, first[i].body) {
			same++
		}
	}
	fmt.Fprintf(d.out, "  duplicates:      the %d requests sent again with their keys -> %d replayed, %d answers identical\n",
		demoRedeemers, replayed, same)
	d.check(replayed == demoRedeemers && same == demoRedeemers, "retries: want all %d replayed and identical, got %d and %d", demoRedeemers, replayed, same)

	l, err := d.be.stock.Level(ctx, welcomeItem)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  store:           %d confirmed, %d held, %d available; partner activated %d vouchers\n",
		l.Confirmed, l.Held, l.Available, d.srv.partner.activations())
	d.check(l.Confirmed == welcomeUnits && l.Held == 0 && l.Available == 0, "store level: %+v", l)
	d.check(d.srv.partner.activations() == welcomeUnits, "partner activated %d vouchers", d.srv.partner.activations())

	if shown, err = d.availability(ctx, welcomeItem); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  right after:     availability %s (the display may be up to %s stale)\n", shown, d.srv.o.CacheTTL)
	time.Sleep(d.srv.o.CacheTTL + 50*time.Millisecond)
	if shown, err = d.availability(ctx, welcomeItem); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  a second later:  availability %s\n", shown)
	d.check(shown == "Unavailable", "availability after the storm: %s", shown)
	return nil
}

// codes: a pool of unique codes, and the per-holder limit.
func (d *demoRun) codes(ctx context.Context) error {
	fmt.Fprintf(d.out, "\n%s: %d unique codes, one per holder\n", codeItem, codeUnits)
	replies, err := d.redeemAll(ctx, demoFans, codeItem,
		func(i int) string { return fmt.Sprintf("code-%02d", i) },
		func(i int) string { return fmt.Sprintf("fan-%02d", i) })
	if err != nil {
		return err
	}
	granted, codes := 0, map[string]bool{}
	example := ""
	for _, r := range replies {
		if r.status == http.StatusCreated {
			granted++
			c := r.redemption().Code
			codes[c] = true
			example = c
		}
	}
	fmt.Fprintf(d.out, "  %d redeemers:    %d granted, %d distinct codes (one is %s)\n", demoFans, granted, len(codes), example)
	d.check(granted == demoFans && len(codes) == demoFans && !codes[""], "codes: %d granted, %d distinct", granted, len(codes))

	shown, err := d.availability(ctx, codeItem)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  availability:    %s\n", shown)
	d.check(shown == strconv.Itoa(codeUnits-demoFans), "availability of the codes: %s", shown)

	r, err := d.redeem(ctx, codeItem, "code-again", "fan-00")
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  fan-00 again:    %d %s (a new key, the same holder)\n", r.status, r.body)
	d.check(r.status == http.StatusConflict && r.errorText() == "holder limit reached", "second redeem of a holder: %d %s", r.status, r.body)
	return nil
}

// outage: the partner fails, the breaker opens and disables the item;
// the partner recovers and the breaker's probe brings the item back.
func (d *demoRun) outage(ctx context.Context) error {
	fmt.Fprintf(d.out, "\npartner outage (%d failures in a row open the item's breaker for %s)\n",
		d.srv.o.BreakerFailures, d.srv.o.OpenTimeout)
	if _, err := d.do(ctx, http.MethodPost, "/admin/partner/fail", "", ""); err != nil {
		return err
	}
	var statuses []string
	for i := range d.srv.o.BreakerFailures {
		r, err := d.redeem(ctx, codeItem, fmt.Sprintf("late-%d", i), fmt.Sprintf("late-%d", i))
		if err != nil {
			return err
		}
		statuses = append(statuses, strconv.Itoa(r.status))
		d.check(r.status == http.StatusBadGateway, "redeem while the partner fails: %d %s", r.status, r.body)
	}
	l, err := d.be.stock.Level(ctx, codeItem)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  partner failing: %d redeems -> %s; their units released (%d available)\n",
		len(statuses), strings.Join(statuses, " "), l.Available)
	d.check(l.Available == codeUnits-demoFans && l.Held == 0, "level after the failures: %+v", l)

	shown, err := d.availability(ctx, codeItem)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  availability:    %s (the breaker opened and disabled the item)\n", shown)
	d.check(shown == "Unavailable", "availability with the breaker open: %s", shown)

	calls := d.srv.partner.calls.Load()
	r, err := d.redeem(ctx, codeItem, "latecomer", "latecomer")
	if err != nil {
		return err
	}
	notCalled := d.srv.partner.calls.Load() == calls
	fmt.Fprintf(d.out, "  next redeem:     %d, Retry-After %s, partner not called: %t\n", r.status, r.retryAfter, notCalled)
	d.check(r.status == http.StatusServiceUnavailable && r.retryAfter != "" && notCalled,
		"redeem with the breaker open: %d %s (partner called: %t)", r.status, r.body, !notCalled)

	if _, err := d.do(ctx, http.MethodPost, "/admin/partner/recover", "", ""); err != nil {
		return err
	}
	// A well-behaved client: the same key again after Retry-After. The
	// 503 was not stored, so the retry runs.
	tries := 1
	for r.status == http.StatusServiceUnavailable && tries < 5 {
		secs, _ := strconv.Atoi(r.retryAfter)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(min(max(secs, 1), 5)) * time.Second):
		}
		if r, err = d.redeem(ctx, codeItem, "latecomer", "latecomer"); err != nil {
			return err
		}
		tries++
	}
	fmt.Fprintf(d.out, "  partner back:    the same request after Retry-After -> %d (the breaker's probe), code %s\n",
		r.status, r.redemption().Code)
	d.check(r.status == http.StatusCreated, "redeem after the recovery: %d %s", r.status, r.body)

	if shown, err = d.availability(ctx, codeItem); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  availability:    %s\n", shown)
	d.check(shown == strconv.Itoa(codeUnits-demoFans-1), "availability after the recovery: %s", shown)
	return nil
}
