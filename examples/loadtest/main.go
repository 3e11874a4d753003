// Command loadtest drives the consumer stack with an open-model load and
// injected faults, and says whether it stayed in the green zone.
//
//	go run ./examples/loadtest                                    # 20s, no fault
//	go run ./examples/loadtest -duration 20s -fault slow -admission on
//	go run ./examples/loadtest -duration 20s -fault slow -admission off
//	go run ./examples/loadtest -fault errors                      # error bursts
//	go run ./examples/loadtest -fault dead                        # a dead partner
//
// # The load
//
// Messages are published into an in-memory queue ([consumer.MemQueue]) at a
// rate that follows a burst profile scaled to -duration: a baseline of
// -rate messages per second for the first 20%, a ramp, a burst at -burst
// times the baseline from 35% to 55%, a ramp down, and the baseline again
// from 65%. It is an open model: arrivals do not wait for completions, so a
// consumer that falls behind builds a backlog instead of slowing the load
// down, as with real producers. A fraction -dup of the messages is
// published twice, as at-least-once brokers do.
//
// # The stack
//
// Each message runs through the middleware a production consumer would use,
// outermost first: dlq (park after 5 deliveries), consumer.Recover,
// backpressure admission in front of the dependency (-admission on: a
// semaphore of -capacity slots with a 50ms wait; aimd: an adaptive limit;
// off: none), a circuit breaker that opens when the partner refuses
// connections, idempotency, consumer.Retry (3 calls within 100ms) and
// consumer.Timeout (-budget per call). The handler calls a simulated
// dependency that serves -capacity calls at once in 5-15ms each; further
// calls queue inside it, and a call it has started runs to completion even
// when its caller has timed out.
//
// # Faults
//
//   - slow: from 30% to 60% of the run every call takes 200-500ms more.
//   - errors: in three bursts of 5% of the run, half the calls fail.
//   - dead: from 30% to 60% the partner refuses every call after 50ms.
//
// # What is measured
//
// Accepted work is a delivery that the stack let through to the
// dependency; its latency runs from when the delivery became available
// (published, or redelivered after a nack) to the handler's return. A
// delivery put off by admission or the breaker is not accepted work: it is
// nacked with a Retry-After and counted as a deferral. End-to-end latency
// runs from the first publish to the ack and includes every deferral, so
// it shows what admission control cannot do: when the dependency serves
// fewer messages than arrive, the excess waits somewhere. Admission keeps
// that wait out of the dependency and off the accepted calls' latency
// budget.
//
// A line is printed every second, and a report at the end with the
// latency percentiles, queue lag (now - EnqueuedAt at handler start),
// retries, admission rejects, the DLQ rate and a verdict on the green zone:
//
//   - lag not growing: the median lag in the last 20% of the run, or the
//     age of the oldest unfinished message when the load stops if that is
//     larger, is within 1.5 times the median lag of the middle (40-60%),
//     plus 50ms;
//   - p95 stable: the p95 of accepted work in the last 20% is within twice
//     that of the first 20%, plus 20ms;
//   - DLQ rate near zero: fewer than 0.1% of the messages dead-lettered.
//
// It prints GREEN, or NOT GREEN with the failed criteria. After -duration
// the load stops, the consumer gets a short drain (a quarter of the run,
// 1-5s) and the command exits 0 whatever the verdict: the verdict is output,
// not failure.
//
// # Deferrals come back together
//
// The library nacks a deferred message with its Retry-After hint exactly,
// so messages deferred together return together: an open breaker sends
// the whole backlog back at the instant it half-opens, and after an outage
// the backlog keeps returning in waves that admission mostly rejects
// again, while the dependency idles between them. -jitter stretches each
// hint by a random 0-50% to show the difference; compare
// -fault dead with and without it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/idemq/idemq/backpressure"
	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
)

func main() {
	var cfg config
	flag.DurationVar(&cfg.duration, "duration", 20*time.Second, "how long to publish; the run stops by itself")
	flag.Float64Var(&cfg.rate, "rate", 200, "baseline arrivals per second")
	flag.Float64Var(&cfg.burst, "burst", 4, "burst rate as a multiple of the baseline")
	flag.StringVar(&cfg.fault, "fault", "none", "fault to inject: none, slow, errors or dead")
	flag.StringVar(&cfg.admission, "admission", "on", "admission control in front of the dependency: on, off or aimd")
	flag.IntVar(&cfg.inflight, "inflight", 64, "deliveries the consumer holds at once")
	flag.IntVar(&cfg.capacity, "capacity", 16, "calls the dependency serves at once (and the admission limit)")
	flag.DurationVar(&cfg.budget, "budget", time.Second, "latency budget of one dependency call")
	flag.Float64Var(&cfg.dup, "dup", 0.01, "fraction of messages published twice")
	flag.BoolVar(&cfg.jitter, "jitter", false, "stretch each deferral's Retry-After by a random 0-50% (see stack.go)")
	flag.BoolVar(&cfg.verbose, "v", false, "log warnings from the stack to stderr")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

type config struct {
	duration  time.Duration
	rate      float64
	burst     float64
	fault     string
	admission string
	inflight  int
	capacity  int
	budget    time.Duration
	dup       float64
	jitter    bool
	verbose   bool
}

// Settings of the load that are not flags.
const (
	dupDistance  = 100 // a duplicate copies the message published this many before
	publishEvery = 5 * time.Millisecond
)

func (c config) validate() (fault, error) {
	f, err := parseFault(c.fault)
	switch {
	case err != nil:
		return "", err
	case c.duration <= 0:
		return "", fmt.Errorf("-duration must be positive, got %s", c.duration)
	case !(c.rate > 0):
		return "", fmt.Errorf("-rate must be positive, got %g", c.rate)
	case !(c.burst >= 1):
		return "", fmt.Errorf("-burst must be at least 1, got %g", c.burst)
	case c.admission != "on" && c.admission != "off" && c.admission != "aimd":
		return "", fmt.Errorf("unknown -admission %q: want on, off or aimd", c.admission)
	case c.inflight < 1:
		return "", fmt.Errorf("-inflight must be at least 1, got %d", c.inflight)
	case c.capacity < 1:
		return "", fmt.Errorf("-capacity must be at least 1, got %d", c.capacity)
	case c.budget <= 0:
		return "", fmt.Errorf("-budget must be positive, got %s", c.budget)
	case !(c.dup >= 0 && c.dup < 1):
		return "", fmt.Errorf("-dup must lie in [0, 1), got %g", c.dup)
	}
	return f, nil
}

// run publishes for cfg.duration, drains briefly, prints the report to out
// and returns it. A verdict of NOT GREEN is not an error; ctx ends the run
// early.
func run(ctx context.Context, out io.Writer, cfg config) (*report, error) {
	flt, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	level := slog.LevelError
	if cfg.verbose {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	queue, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	if err != nil {
		return nil, err
	}
	start := time.Now()
	clk := clock{start: start, duration: cfg.duration}
	rec := newRecorder(start, cfg.duration)
	dep := newDependency(cfg.capacity, clk, flt)

	handler, stack, err := buildStack(cfg, rec, dep, logger)
	if err != nil {
		return nil, err
	}
	c, err := consumer.New(tracedSource{src: queue, rec: rec}, handler, consumer.Config{
		MaxInFlight:  cfg.inflight,
		Backoff:      consumer.Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second},
		DrainTimeout: 2 * time.Second,
		Logger:       logger,
		Observer:     rec,
	})
	if err != nil {
		return nil, err
	}

	prof := profile{base: cfg.rate, burst: cfg.burst}
	at := func(f float64) time.Duration { return instant(cfg.duration, f) }
	header := []string{
		fmt.Sprintf("load        open model for %s: %g msg/s, bursting to %g msg/s from %s to %s; %g%% duplicates",
			cfg.duration, cfg.rate, cfg.rate*cfg.burst, at(burstAt), at(burstEnd), 100*cfg.dup),
		"fault       " + flt.window(cfg.duration),
		"stack       " + stack,
		fmt.Sprintf("dependency  %d calls at once, %s-%s each; latency budget %s per call",
			cfg.capacity, baseLatency, baseLatency+baseJitter, cfg.budget),
	}
	for _, h := range header {
		fmt.Fprintln(out, h)
	}

	consumed := make(chan error, 1)
	cctx, stopConsumer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConsumer()
	go func() { consumed <- c.Run(cctx) }()

	loadEnd := start.Add(cfg.duration)
	lctx, stopLoad := context.WithDeadline(ctx, loadEnd)
	defer stopLoad()
	published := make(chan struct{})
	go func() {
		defer close(published)
		generate(lctx, queue, rec, prof, clk, cfg.dup)
	}()

	// A line a second while the load runs.
	ticker := time.NewTicker(time.Second)
	last := start
load:
	for {
		select {
		case now := <-ticker.C:
			printProgress(out, rec, now.Sub(start), now.Sub(last))
			last = now
		case <-published:
			break load
		}
	}
	ticker.Stop()
	<-published
	loaded := time.Now()
	if d := loaded.Sub(last); d > 100*time.Millisecond {
		printProgress(out, rec, loaded.Sub(start), d)
	}
	_, oldestAtEnd := rec.backlog(loaded)

	// A short drain: the backlog gets a quarter of the run, 1-5s, to clear.
	if ctx.Err() == nil {
		drain := min(max(cfg.duration/4, time.Second), 5*time.Second)
		deadline := time.NewTimer(drain)
		poll := time.NewTicker(10 * time.Millisecond)
	drained:
		for {
			if n, _ := rec.backlog(time.Now()); n == 0 {
				break
			}
			select {
			case <-poll.C:
			case <-deadline.C:
				break drained
			case <-ctx.Done():
				break drained
			}
		}
		deadline.Stop()
		poll.Stop()
	}
	stopConsumer()
	if err := <-consumed; err != nil && !errors.Is(err, consumer.ErrDrainTimeout) {
		return nil, err
	}
	elapsed := time.Since(start)

	rep := rec.report(loaded.Sub(start), elapsed, oldestAtEnd)
	rep.Header = header
	if ctx.Err() != nil {
		rep.Header = append(rep.Header, fmt.Sprintf("interrupted after %s: the windows after it are empty", round(rep.Load)))
	}
	rep.print(out)
	return rep, nil
}

// generate publishes at the profile's rate until ctx is done. It never
// waits for the consumer: that is what makes the model open.
func generate(ctx context.Context, q consumer.Publisher, rec *recorder, prof profile, clk clock, dup float64) {
	t := time.NewTicker(publishEvery)
	defer t.Stop()
	var (
		due   float64 // arrivals owed, fractional
		n     int     // messages made so far, duplicates not included
		last  = clk.start
		batch []consumer.Message
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		mid := last.Add(now.Sub(last) / 2)
		due += prof.rate(clk.frac(mid)) * now.Sub(last).Seconds()
		last = now
		batch = batch[:0]
		dups := 0
		for ; due >= 1; due-- {
			n++
			batch = append(batch, message(n, now))
			if n > dupDistance && rand.Float64() < dup {
				batch = append(batch, message(n-dupDistance, now))
				dups++
			}
		}
		if len(batch) == 0 {
			continue
		}
		first := rec.register(now, len(batch), dups)
		for i := range batch {
			batch[i].Headers = map[string]string{seqHeader: strconv.Itoa(first + i)}
		}
		if err := q.Publish(ctx, batch...); err != nil {
			rec.unregister(now, first, len(batch), dups)
			return
		}
	}
}

// message returns the n-th message; a duplicate is the same message again.
func message(n int, now time.Time) consumer.Message {
	return consumer.Message{
		ID:         "msg-" + strconv.Itoa(n),
		Body:       fmt.Appendf(nil, `{"order":%d}`, n),
		EnqueuedAt: now,
	}
}

func printProgress(out io.Writer, rec *recorder, at, span time.Duration) {
	tick, backlog, oldest := rec.progress(time.Now())
	per := func(n int64) float64 { return float64(n) / span.Seconds() }
	fmt.Fprintf(out, "%6.1fs  in %4.0f/s  acked %4.0f/s  accepted p95 %-7s p99 %-7s  lag max %-7s  backlog %5d (oldest %s)  rejects %d  nacks %d  dlq %d\n",
		at.Seconds(), per(tick.counts[cntPublished]), per(tick.counts[consumer.MetricProcessed]),
		round(tick.accepted.quantile(0.95)), round(tick.accepted.quantile(0.99)), round(tick.lag.max),
		backlog, round(oldest), tick.counts[backpressure.MetricAdmissionRejects]+tick.counts[backpressure.MetricBreakerRejects],
		tick.counts[consumer.MetricRetries], tick.counts[dlq.MetricDeadLettered])
}
