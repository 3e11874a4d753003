// Command redeem is an HTTP service that hands out limited vouchers: 100
// "welcome" vouchers, one per customer, and a pool of unique partner
// codes. Hundreds of customers may redeem at once, and retry as often as
// their networks make them; no voucher is granted twice and none is lost.
//
//	go run ./examples/redeem -seed                   # in memory, on 127.0.0.1:8080
//	go run ./examples/redeem -seed -store redis      # Redis at -redis-addr
//	go run ./examples/redeem -seed -store postgres   # PostgreSQL at -postgres-url
//	go run ./examples/redeem -demo                   # a self-contained run, then exit
//
// It shows four parts of idemq working together:
//
//   - stock: a reservation per redeem (Reserve, then Confirm or Release),
//     per-customer limits, a pool of unique codes, the availability shown
//     to customers through a [stock.LevelCache];
//   - idempotency: the Idempotency-Key HTTP middleware, so that a retried
//     request gets the first response replayed instead of a second voucher;
//   - backpressure: an Admission limit on the redeems in flight, and a
//     circuit breaker around the partner whose OnStateChange is
//     [stock.DisableWhileOpen], so a failing partner makes the item
//     "Unavailable" at once and its half-open probe brings it back;
//   - a background loop that calls Store.Sweep every second, returning
//     the units of holds that were never confirmed.
//
// # Endpoints
//
//	POST /items/{item}/redeem          Idempotency-Key header (required), body {"holder": "user-42"}
//	GET  /items/{item}                 {"item": ..., "availability": "10+" | "7" | "Unavailable"}
//	POST /admin/items/{item}/disable   body {"reason": "..."} (optional)
//	POST /admin/items/{item}/enable
//	POST /admin/partner/fail           make the fake partner fail every call
//	POST /admin/partner/recover        make it succeed again
//
// A redeem answers:
//
//	201  the reservation, confirmed: {"reservation_id", "item", "holder", "quantity", "state"},
//	     and "code" for a code item
//	400  no Idempotency-Key, or a body without a holder
//	404  no such item
//	409  {"error": "sold out"}, or {"error": "holder limit reached"} for a second voucher
//	422  the key was used before for this item with another body
//	502  the partner failed: the unit was released; retry with the same key
//	503  the item is disabled or the partner's breaker is open, with Retry-After;
//	     or too many redeems are in flight, or a store failed
//
// Every 2xx and 4xx answer is stored under its Idempotency-Key for 24
// hours: the same key sent again gets it back with the header
// Idempotent-Replayed: true, without running the redeem. A 5xx answer is
// not stored, so a retry with the same key runs again.
//
// GET /items/{item} reads the level through a [stock.LevelCache] with a
// TTL of one second: what it shows may be up to a second stale (a sold-out
// item can show "3" for that long). It is for display only; a redeem
// always asks the store, so a stale count never grants a unit the store
// does not have.
//
// The admin endpoints have no authentication in this example, which is
// why the service binds to 127.0.0.1 by default. A real service puts them
// behind an operator's login, and scopes Idempotency-Keys per
// authenticated customer (idempotency.HTTPOptions.Scope) so that one
// customer cannot replay another's answer by guessing its key.
//
// # A session
//
//	$ go run ./examples/redeem -seed &
//	redeem: serving on http://127.0.0.1:8080 with the memory store
//	$ curl -s localhost:8080/items/welcome-voucher
//	{"item":"welcome-voucher","availability":"10+"}
//	$ curl -si -X POST localhost:8080/items/welcome-voucher/redeem \
//	    -H 'Idempotency-Key: 5f1c2a' -d '{"holder":"user-42"}'
//	HTTP/1.1 201 Created
//	Content-Type: application/json
//
//	{"reservation_id":"rdm_0615560e559c767e5ac25f74eda41e76","item":"welcome-voucher","holder":"user-42","quantity":1,"state":"confirmed"}
//
// The same request again, as a client whose connection dropped before the
// answer came would send it, gets the same answer and no second voucher:
//
//	$ curl -si -X POST localhost:8080/items/welcome-voucher/redeem \
//	    -H 'Idempotency-Key: 5f1c2a' -d '{"holder":"user-42"}'
//	HTTP/1.1 201 Created
//	Content-Type: application/json
//	Idempotent-Replayed: true
//
//	{"reservation_id":"rdm_0615560e559c767e5ac25f74eda41e76","item":"welcome-voucher","holder":"user-42","quantity":1,"state":"confirmed"}
//
// A second voucher for the same customer, with a new key; and a code:
//
//	$ curl -s -X POST localhost:8080/items/welcome-voucher/redeem \
//	    -H 'Idempotency-Key: 77ab01' -d '{"holder":"user-42"}'
//	{"error":"holder limit reached"}
//	$ curl -s -X POST localhost:8080/items/partner-voucher/redeem \
//	    -H 'Idempotency-Key: 90d3e4' -d '{"holder":"user-42"}'
//	{"reservation_id":"rdm_dcacd170323b644694f512d5e7eea7b5","item":"partner-voucher","holder":"user-42","quantity":1,"state":"confirmed","code":"PV-TYWUXKRN2OJS"}
//
// An operator disables the item; a 503 is not stored, so once the item is
// enabled again the same key redeems:
//
//	$ curl -s -X POST localhost:8080/admin/items/welcome-voucher/disable -d '{"reason":"fraud check"}'
//	{"item":"welcome-voucher","disabled":true,"reason":"fraud check"}
//	$ curl -si -X POST localhost:8080/items/welcome-voucher/redeem \
//	    -H 'Idempotency-Key: c0ffee' -d '{"holder":"user-7"}'
//	HTTP/1.1 503 Service Unavailable
//	Idempotency-Stored: false
//	Retry-After: 60
//
//	{"error":"item unavailable","reason":"fraud check"}
//	$ curl -s -X POST localhost:8080/admin/items/welcome-voucher/enable
//	{"item":"welcome-voucher","disabled":false}
//	$ curl -s -X POST localhost:8080/items/welcome-voucher/redeem \
//	    -H 'Idempotency-Key: c0ffee' -d '{"holder":"user-7"}'
//	{"reservation_id":"rdm_113ec3f737de823fd34b300b1849b7f8","item":"welcome-voucher","holder":"user-7","quantity":1,"state":"confirmed"}
//
// The partner fails: five redeems in a row get 502 (their units released),
// the item's breaker opens and disables the item, and redeems get 503
// with the breaker's remaining open time, without calling the partner:
//
//	$ curl -s -X POST localhost:8080/admin/partner/fail
//	{"partner":"failing"}
//	$ for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{http_code} ' -X POST localhost:8080/items/welcome-voucher/redeem \
//	    -H "Idempotency-Key: out-$i" -d "{\"holder\":\"late-$i\"}"; done
//	502 502 502 502 502
//	$ curl -s localhost:8080/items/welcome-voucher
//	{"item":"welcome-voucher","availability":"Unavailable"}
//	$ curl -si -X POST localhost:8080/items/welcome-voucher/redeem \
//	    -H 'Idempotency-Key: out-6' -d '{"holder":"late-6"}'
//	HTTP/1.1 503 Service Unavailable
//	Idempotency-Stored: false
//	Retry-After: 30
//
//	{"error":"partner unavailable","reason":"circuit open"}
//	$ curl -s -X POST localhost:8080/admin/partner/recover
//	{"partner":"ok"}
//
// Thirty seconds after it opened, the breaker half-opens and enables the
// item; the next redeem is its probe, which succeeds and closes it. A key
// whose redeem got 502 redeems on its retry:
//
//	$ curl -s localhost:8080/items/welcome-voucher
//	{"item":"welcome-voucher","availability":"10+"}
//	$ curl -s -X POST localhost:8080/items/welcome-voucher/redeem \
//	    -H 'Idempotency-Key: out-1' -d '{"holder":"late-1"}'
//	{"reservation_id":"rdm_a18dad68e8890be5e1a228e920563a40","item":"welcome-voucher","holder":"late-1","quantity":1,"state":"confirmed"}
//
// # Stores
//
// -store picks where the stock and the Idempotency-Keys live:
//
//	memory    stock.MemoryStore and idempotency.MemoryStore: one process, lost on exit
//	redis     stockredis and idempotencyredis under -redis-prefix, at -redis-addr
//	          (host:port, several comma-separated for a cluster, or a redis:// URL;
//	          default $IDEMQ_REDIS_ADDR or 127.0.0.1:6379)
//	postgres  stockpg and idempotencypg tables, created at start, at -postgres-url
//	          (default $IDEMQ_POSTGRES_URL or postgres://postgres@127.0.0.1:5432/test)
//
// With redis or postgres, several processes behind a load balancer share
// the stock and the keys. -seed defines welcome-voucher (100 units, one
// per holder) and partner-voucher (20 generated codes, one per holder),
// and stocks each only if it has never had any units, so restarting with
// -seed does not add more.
//
// -demo runs the whole story against a server of its own on a random
// port: 500 concurrent redeemers for the 100 welcome vouchers, their 500
// retries, the code pool, the holder limit and a partner outage. On redis
// or postgres it works in a key prefix or schema of its own, removed when
// it ends (the postgres user needs the right to create a schema). It
// exits 0 when every count came out right.
//
// # What a redeem does
//
// The reservation ID is derived from the item and the Idempotency-Key, so
// the redeem is idempotent on its own, not only through the stored
// answer: if the process dies after confirming but before the answer is
// stored, or storing it fails, the retry finds the same reservation and
// takes nothing more.
//
//  1. Ask the item's breaker whether the partner may be called; if not,
//     answer 503 having taken nothing.
//  2. Reserve one unit for the holder, held for a minute. The store checks
//     the stock, the per-holder limit and the disabled flag in one step.
//  3. Ask the partner to activate the voucher, with the reservation ID as
//     the partner's own idempotency key: a retry that finds the
//     reservation still held calls the partner again for the same
//     reservation.
//  4. Confirm; a code item hands out its code here.
//
// When the partner fails the unit is released and the answer is 502. The
// key's next attempt then derives the next reservation ID, since a
// released reservation is never reused; after eight failed attempts a key
// is refused with 422 and the client must start over with a new one.
//
// What it does not promise: if the partner activated a voucher and the
// hold then expired before Confirm (the partner and the store together
// took longer than the hold, which the partner's 5s timeout makes
// unlikely), the unit has gone back to the stock and the answer is 503;
// the retry takes a new unit and activates again. A real service cancels
// the orphaned activation with the partner. Each process has its own
// breakers: an item disabled by a breaker in a process that then stops
// stays disabled until an operator enables it. (A breaker that half-opens
// enables only an item that it disabled itself, so an operator's Disable
// stays.)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// Defaults of the connection flags, overridden by these variables.
const (
	envPostgresURL     = "IDEMQ_POSTGRES_URL"
	envRedisAddr       = "IDEMQ_REDIS_ADDR"
	defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test"
	defaultRedisAddr   = "127.0.0.1:6379"
	defaultRedisPrefix = "idemq:redeem:"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is the command line.
type config struct {
	addr        string
	store       string
	redisAddr   string
	redisPrefix string
	postgresURL string
	seed        bool
	demo        bool
}

// run runs the command with args (without the program name) until ctx is
// done, or until the demonstration ends, and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("redeem", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: redeem [-seed] [-demo] [-addr host:port] [-store memory|redis|postgres] [connection flags]\n\n"+
			"An HTTP service that redeems limited vouchers; see the package documentation.\n\nflags:\n")
		fs.PrintDefaults()
	}
	var cfg config
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "`address` to listen on; the admin endpoints have no authentication, so keep it local")
	fs.StringVar(&cfg.store, "store", "memory", "where the stock and the Idempotency-Keys live: memory, redis or postgres")
	fs.StringVar(&cfg.redisAddr, "redis-addr", envOr(envRedisAddr, defaultRedisAddr),
		"Redis `address`: host:port, several comma-separated for a cluster, or a redis:// URL; $"+envRedisAddr+" sets the default")
	fs.StringVar(&cfg.redisPrefix, "redis-prefix", defaultRedisPrefix, "`prefix` of every Redis key the service writes")
	fs.StringVar(&cfg.postgresURL, "postgres-url", envOr(envPostgresURL, defaultPostgresURL),
		"PostgreSQL connection `URL`; $"+envPostgresURL+" sets the default")
	fs.BoolVar(&cfg.seed, "seed", false, "define "+welcomeItem+" and "+codeItem+" at start, and stock them if they never had units")
	fs.BoolVar(&cfg.demo, "demo", false, "run the demonstration against a server of its own on a random port, then exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "redeem: unexpected argument %q\nrun 'redeem -h' for usage\n", fs.Arg(0))
		return exitUsage
	}
	switch cfg.store {
	case "memory", "redis", "postgres":
	default:
		fmt.Fprintf(stderr, "redeem: unknown -store %q: want memory, redis or postgres\n", cfg.store)
		return exitUsage
	}

	var err error
	if cfg.demo {
		// The demonstration tells its own story on stdout; only failures
		// are logged.
		logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		err = demo(ctx, cfg, stdout, logger)
	} else {
		err = serve(ctx, cfg, stdout, slog.New(slog.NewTextHandler(stderr, nil)))
	}
	if err != nil {
		fmt.Fprintf(stderr, "redeem: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
