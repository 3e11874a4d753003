// Command webhooks is an HTTP inbox for webhooks: it answers each POST with
// 202 Accepted as soon as the event is queued, processes events in the
// background on an idemq consumer (deduplication, in-process retries,
// redelivery with backoff, a dead-letter queue), and reports each event's
// progress at a status URL.
//
//	go run ./examples/webhooks                   # listen on :8080, in-memory queue and stores
//	go run ./examples/webhooks -queue redis      # Redis Streams and Redis stores at -redis-addr
//	go run ./examples/webhooks -queue postgres   # a Postgres queue and tables at -postgres-url
//	go run ./examples/webhooks -demo             # self-contained run: 200 POSTs, then counts; exits
//
// # API
//
// POST /webhooks/{source} takes one event. Its ID is the Webhook-Id header
// or, without one, the body's "id". The body is queued as sent; it is
// checked later, by the handler, which wants a JSON object with a "type".
//
//	$ curl -i localhost:8080/webhooks/stripe -H 'Webhook-Id: evt_1' -d '{"type":"invoice.paid","data":{"amount":4200}}'
//	HTTP/1.1 202 Accepted
//	Location: /webhooks/events/evt_1
//
//	{"id":"evt_1","status_url":"/webhooks/events/evt_1"}
//
//	$ curl localhost:8080/webhooks/github -d '{"id":"delivery-77","type":"push"}'
//	{"id":"delivery-77","status_url":"/webhooks/events/delivery-77"}
//
// Sending an event again, as senders do when they time out, answers 202
// with the same status URL (and Idempotent-Replayed: true) and queues
// nothing:
//
//	$ curl localhost:8080/webhooks/stripe -H 'Webhook-Id: evt_1' -d '{"type":"invoice.paid","data":{"amount":4200}}'
//	{"id":"evt_1","status_url":"/webhooks/events/evt_1","duplicate":true}
//
// GET /webhooks/events/{id} reports the event: processing (queued, running
// or waiting for a retry), done, or failed (parked in the dead-letter
// queue, with the reason and the entry's ID for dlqctl). Attempts counts
// handler calls, in-process retries included; deliveries counts deliveries
// by the queue.
//
//	$ curl localhost:8080/webhooks/events/evt_1
//	{"id":"evt_1","source":"stripe","status":"done","attempts":1,"deliveries":1,"error":"",...}
//
//	$ curl localhost:8080/webhooks/stripe -H 'Webhook-Id: evt_2' -d 'not json'
//	$ curl localhost:8080/webhooks/events/evt_2
//	{"id":"evt_2","source":"stripe","status":"failed","attempts":1,"deliveries":1,
//	 "error":"permanent: undecodable message: event \"evt_2\": payload is not a JSON object ...",
//	 "reason":"undecodable","dlq_entry":"5d1c...",...}
//
//	$ curl -i localhost:8080/webhooks/events/nope
//	HTTP/1.1 404 Not Found
//
// Other answers: 400 for a request without a usable event ID or with a bad
// source, 413 for a body over 1 MiB, 409 for an event ID already received
// with a different payload (or, with Retry-After, while another POST of
// the same event is still being queued), 503 with Retry-After when the
// event could not be queued; a sender retries those.
//
// # Processing
//
// The handler takes -latency and fails with probability -fail-rate, like a
// slow, flaky partner API. A failed call is retried in process up to
// -retries calls per delivery; a delivery that still fails is redelivered
// with backoff, and the delivery numbered -max-attempts that fails parks
// the event in the dead-letter queue. A payload that is not a JSON object
// with a "type" is parked at once (reason undecodable).
//
// # Once per event ID
//
// Duplicates are stopped at both ends, by claims in an idempotency store
// (memory, idempotencyredis or idempotencypg, following -queue):
//
//   - On receipt, the event ID is claimed atomically before anything is
//     written. Only the claim's holder records the status and publishes the
//     message, and it completes the claim once the message is published; a
//     later POST of the ID finds the claim completed and publishes nothing.
//     If recording or publishing fails, the claim is released and the
//     sender, answered 503, retries from scratch. A concurrent POST of the
//     same ID waits for the holder (up to 2s).
//   - On processing, idempotency.Middleware claims the ID again before the
//     handler runs and completes it on success, so a message the queue
//     delivers twice (a lost lease, a lost ack) runs to success once. It
//     also covers the one gap on receipt: a process that dies between
//     publishing and completing the receipt claim publishes the event again
//     when the sender retries, and that second message is skipped.
//
// Neither marks an ID before its work succeeded, so a failure never loses
// an event. What this does not give: the handler's effect and the
// completion of its key are two writes, so a crash between them runs the
// effect again (see idempotency.Middleware); a POST that comes after the
// dedupe window (-dedupe-window) is a new event; and -queue memory keeps
// nothing when the process exits, so there a 202 is not durable.
//
// # Operating it
//
// The dead-letter queue is examples/dlqctl's: with -queue postgres,
//
//	go run ./examples/dlqctl list -source webhooks
//	go run ./examples/dlqctl replay -source webhooks -to 'pgqueue:webhooks?notify=true'
//
// and with -queue redis,
//
//	go run ./examples/dlqctl -store redis -redis-prefix idemq:webhooks:dlq: -name webhooks \
//		replay -to 'redis-stream:webhooks?prefix=idemq:webhooks:queue:'
//
// A replayed event runs again and its status goes back to processing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is the command line.
type config struct {
	addr         string
	queue        string
	redisAddr    string
	redisPrefix  string
	postgresURL  string
	failRate     float64
	latency      time.Duration
	retries      int
	maxAttempts  int
	concurrency  int
	dedupeWindow time.Duration
	demo         bool

	// poll bounds how long a Redis or Postgres fetch waits before it looks
	// again, and so how long shutdown waits for it.
	poll time.Duration
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// flagError is a parse error that the flag package has printed already,
// with the usage.
type flagError struct{ error }

// parseFlags parses and checks args.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg := config{poll: 500 * time.Millisecond}
	fs := flag.NewFlagSet("webhooks", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", ":8080", "address to listen on")
	fs.StringVar(&cfg.queue, "queue", "memory", "queue and stores: memory, redis or postgres")
	fs.StringVar(&cfg.redisAddr, "redis-addr", envOr("IDEMQ_REDIS_ADDR", "127.0.0.1:6379"), "Redis address for -queue redis")
	fs.StringVar(&cfg.redisPrefix, "redis-prefix", "idemq:webhooks:", "prefix of every Redis key, for -queue redis")
	fs.StringVar(&cfg.postgresURL, "postgres-url", envOr("IDEMQ_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"), "Postgres URL for -queue postgres")
	fs.Float64Var(&cfg.failRate, "fail-rate", 0.1, "probability that a handler call fails (transiently), 0 to 1")
	fs.DurationVar(&cfg.latency, "latency", 20*time.Millisecond, "time each handler call takes")
	fs.IntVar(&cfg.retries, "retries", 3, "handler calls per delivery (in-process retries)")
	fs.IntVar(&cfg.maxAttempts, "max-attempts", 3, "deliveries before an event is parked in the dead-letter queue")
	fs.IntVar(&cfg.concurrency, "concurrency", 16, "events handled at once")
	fs.DurationVar(&cfg.dedupeWindow, "dedupe-window", 7*24*time.Hour, "how long an event ID is remembered")
	fs.BoolVar(&cfg.demo, "demo", false, "start on a random port, POST 200 events (20 duplicates, 5 invalid), print the outcome and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: webhooks [flags]\n\nAn HTTP inbox for webhooks: POST /webhooks/{source}, GET /webhooks/events/{id}.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, flagError{err}
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	switch {
	case cfg.failRate < 0 || cfg.failRate > 1:
		return cfg, fmt.Errorf("-fail-rate %g: want 0 to 1", cfg.failRate)
	case cfg.latency < 0:
		return cfg, fmt.Errorf("-latency %s is negative", cfg.latency)
	case cfg.retries < 1:
		return cfg, fmt.Errorf("-retries %d: want at least 1", cfg.retries)
	case cfg.maxAttempts < 1:
		return cfg, fmt.Errorf("-max-attempts %d: want at least 1", cfg.maxAttempts)
	case cfg.concurrency < 1:
		return cfg, fmt.Errorf("-concurrency %d: want at least 1", cfg.concurrency)
	case cfg.dedupeWindow < time.Minute:
		return cfg, fmt.Errorf("-dedupe-window %s: want at least a minute", cfg.dedupeWindow)
	case cfg.queue != "memory" && cfg.queue != "redis" && cfg.queue != "postgres":
		return cfg, fmt.Errorf("-queue %q: want memory, redis or postgres", cfg.queue)
	case strings.ContainsAny(cfg.redisPrefix, "{}"):
		return cfg, fmt.Errorf("-redis-prefix %q: braces are the drivers' hash tags", cfg.redisPrefix)
	}
	return cfg, nil
}

// run runs the command with args (without the program name) and returns
// its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case err != nil:
		if !errors.As(err, new(flagError)) {
			fmt.Fprintf(stderr, "webhooks: %v\n", err)
		}
		return exitUsage
	}
	level := slog.LevelInfo
	if cfg.demo {
		// The demo's failures are planned; its report says what happened.
		level = slog.LevelError
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if cfg.demo {
		err = runDemo(ctx, cfg, stdout, log)
	} else {
		err = runServer(ctx, cfg, stdout, log)
	}
	if err != nil {
		fmt.Fprintf(stderr, "webhooks: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func runServer(ctx context.Context, cfg config, stdout io.Writer, log *slog.Logger) error {
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.close()
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "webhooks: listening on %s, queue %s; POST /webhooks/{source}, GET /webhooks/events/{id}\n", ln.Addr(), cfg.queue)
	return a.serve(ctx, ln)
}

// serve runs the HTTP server on ln and the consumer until ctx is done.
// Then it stops taking events first, and lets the consumer finish what it
// holds.
func (a *app) serve(ctx context.Context, ln net.Listener) error {
	c, err := a.newConsumer()
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           a.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	cctx, stopConsumer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConsumer()
	consumed := make(chan error, 1)
	go func() { consumed <- c.Run(cctx) }()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case <-ctx.Done():
		err = nil
	case err = <-served: // the listener failed
		served = nil
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	if served != nil {
		<-served // http.ErrServerClosed
	}
	stopConsumer()
	if cerr := <-consumed; cerr != nil && err == nil {
		err = cerr
	}
	return err
}
