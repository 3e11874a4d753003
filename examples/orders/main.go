// Command orders runs the transactional outbox and the transactional inbox
// end to end: it creates orders and the events that announce them in one
// PostgreSQL transaction, relays the events to a Redis stream with
// outbox.Relay, and consumes them with a consumer.Consumer whose handler
// applies each event's effect through idempotencypg.Inbox. Any part of it
// can be killed at any moment and restarted: no committed event loses its
// effect, and none has it twice.
//
//	go run ./examples/orders -demo                      # the chain, killed and restarted as orders flow; then checks
//	go run ./examples/orders                            # -role all: 200 orders written, relayed, consumed, checked; exits
//	go run ./examples/orders -role writer -orders 1000 -rate 20
//	go run ./examples/orders -role relay                # until interrupted; run as many as you like
//	go run ./examples/orders -role consumer             # likewise
//	go run ./examples/orders -role check                # did every committed event take effect exactly once?
//	go run ./examples/orders -role all -orders 0        # finish what killed processes left, then check
//
// It needs PostgreSQL (-postgres-url, default $IDEMQ_POSTGRES_URL or
// postgres://postgres@127.0.0.1:5432/test) and Redis (-redis-addr, default
// $IDEMQ_REDIS_ADDR or 127.0.0.1:6379); with -broker postgres the events
// go through a pgqueue table instead of Redis, and Redis is not needed.
// This example is about those servers: there is no in-memory mode, and -demo
// too exits with status 2 and says which server it could not reach.
//
// # The chain
//
//	writer    one transaction: INSERT INTO orders + outbox event "order.created"
//	          a later one:     UPDATE orders SET status = 'paid' + event "order.paid"
//	relay     outbox.Relay ──> redisstream.Publisher (stream -stream under -redis-prefix)
//	                           or pgqueue.Publisher (-broker postgres)
//	consumer  consumer.Consumer ──> idempotencypg.Inbox ──> the effect, in the inbox's transaction:
//	          order.created: a pending row in shipments, customers.orders + 1
//	          order.paid:    the shipment ready, customers.paid + 1, customers.spent_cents + amount
//
// The writer creates -orders orders, -rate a second, in bursts (up to ten
// a second). It commits nine in ten; the tenth is inserted, its event
// enqueued, and the transaction rolled back (a declined card), so neither
// the order nor its event ever existed. Half the orders, the even-numbered
// ones (which all commit), are then paid, each in a transaction of its own. An event's ID is "<order>:created" or
// "<order>:paid" and its key the order ID, so the relay publishes an
// order's events in the order they committed.
//
// None of the effects is idempotent by itself: shipments.order_id is not
// unique, and the counters are additions, so an effect applied twice shows
// up as a second shipment or a wrong total. -role check (and the end of
// -role all and -demo) counts, in PostgreSQL: exactly one shipment per
// committed order, its status matching the order's, every customer's
// totals equal to what its orders add up to, one inbox key per committed
// event, and nothing of a rolled-back order.
//
// # The guarantee, and why it holds
//
// Each link delivers at least once, and the inbox turns that into exactly
// one effect:
//
//   - Writer: the order and its event commit together or not at all
//     (outbox.Writer.Enqueue in the order's transaction).
//   - Relay: an event leaves the outbox only once a relay has published it
//     and recorded so. A relay killed between the two loses its keys when
//     its lease (-lease) ends, and the next relay publishes those events
//     again: duplicates, never gaps.
//   - Broker: a message stays in the stream until a consumer acknowledges
//     it. A consumer killed before its acknowledgement loses the message
//     when its lease (-lease again) ends, and another consumer gets it.
//   - Consumer: the inbox inserts the event's ID and the handler writes the
//     effect in one transaction. Killed before the commit, both roll back
//     and the redelivery applies the effect; killed after it, the
//     redelivery finds the ID and is acknowledged without running the
//     handler. A duplicate that arrives while the first delivery runs
//     waits on the ID's unique index, then is skipped.
//
// What it does not give: exactly once for anything outside this database
// (an e-mail sent by the handler would be sent again); effects in commit
// order across a crash (a consumer killed in the middle of an order's
// "created" effect may see its "paid" event first: the handler finds no
// shipment yet and asks for the message again in 200ms, with
// consumer.RetryAfter); and inbox keys are kept forever here, where a
// service deletes them once the broker can no longer redeliver
// (idempotencypg.RunInboxReaper). A message that cannot be decoded is
// retried every 5s forever; a service parks it with package dlq.
//
// # Killing it
//
// Run the roles in separate processes and kill any of them, kill -9
// included, whenever you like:
//
//	go run ./examples/orders -role relay & go run ./examples/orders -role consumer &
//	go run ./examples/orders -role writer -orders 500 -rate 50   # kill -9 the others meanwhile, start them again
//	go run ./examples/orders -role check
//
// A restarted writer writes -orders new orders. A killed relay's keys and a
// killed consumer's messages are taken over by whichever relay and consumer
// run next, once -lease (10s) has passed. The Redis consumer group keeps
// the name of every consumer that ever ran ("<host>-<pid>-<random>"), an
// entry per process; see package redisstream for when one may be deleted.
//
// # -demo
//
// The demonstration works in a schema and a stream of its own (removed at
// the end, so the PostgreSQL user needs the right to create a schema),
// with a 1s lease and effects that take 10ms (unless -work says
// otherwise). It writes -orders orders at -rate per second while one relay
// and one consumer run, and kills each of them three times as it goes, in
// the process, by freezing it at a moment it picks in the middle of a
// batch: a relay after it has handed part of a batch to the broker and
// before it records any of it; a consumer in the middle of an effect's
// transaction (which rolls back), while other messages it holds may have
// committed and will never be acknowledged. A frozen relay or consumer
// never publishes, records or acknowledges anything again, until the end,
// when the relays wake up and find their leases taken. Each is replaced a
// tenth of a second after its death. Once everything has drained, the demo
// checks the counts, prints a summary and exits 0 if every committed event
// had exactly one effect. It takes a few seconds.
//
// Exit status: 0 done (and, for all, check and -demo, every effect exact);
// 1 a failure, or a check that found a missing or doubled effect; 2 bad
// flags, or a server that could not be reached.
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
	"slices"
	"strings"
	"syscall"
	"time"
)

// Exit statuses.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitUnreachable = 2 // as for usage: the command could not start
)

// Defaults of the connection flags, overridden by these variables.
const (
	envPostgresURL     = "IDEMQ_POSTGRES_URL"
	envRedisAddr       = "IDEMQ_REDIS_ADDR"
	defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test"
	defaultRedisAddr   = "127.0.0.1:6379"
)

// Roles.
const (
	roleWriter   = "writer"
	roleRelay    = "relay"
	roleConsumer = "consumer"
	roleCheck    = "check"
	roleAll      = "all"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is the command line.
type config struct {
	roles       []string // writer, relay, consumer, or check alone
	orders      int
	rate        float64
	postgresURL string
	redisAddr   string
	redisPrefix string
	stream      string
	broker      string
	lease       time.Duration
	work        time.Duration
	demo        bool
}

func (c config) has(role string) bool { return slices.Contains(c.roles, role) }

// flagError is a parse error that the flag package has printed already.
type flagError struct{ error }

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var (
		cfg   config
		roles string
	)
	fs := flag.NewFlagSet("orders", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: orders [-demo] [-role all|writer|relay|consumer|check] [flags]\n\n"+
			"Orders and their events in one transaction, relayed by the outbox, consumed through the inbox:\n"+
			"exactly one effect per committed event, however often it is killed. See the package documentation.\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&roles, "role", roleAll, "what this process runs: all (writer, relay and consumer, then check), check, or any of writer,relay,consumer comma-separated")
	fs.IntVar(&cfg.orders, "orders", 200, "orders the writer creates")
	fs.Float64Var(&cfg.rate, "rate", 100, "orders per second the writer creates; 0 for as fast as it can")
	fs.StringVar(&cfg.postgresURL, "postgres-url", envOr(envPostgresURL, defaultPostgresURL), "PostgreSQL connection `URL`; $"+envPostgresURL+" sets the default")
	fs.StringVar(&cfg.redisAddr, "redis-addr", envOr(envRedisAddr, defaultRedisAddr), "Redis `address`, host:port (several comma-separated for a cluster); $"+envRedisAddr+" sets the default")
	fs.StringVar(&cfg.redisPrefix, "redis-prefix", "idemq:orders:", "`prefix` of the stream's Redis keys")
	fs.StringVar(&cfg.stream, "stream", "orders", "`name` of the stream (with -broker postgres, of the queue) the events go through")
	fs.StringVar(&cfg.broker, "broker", "redis", "where the relay publishes and the consumer reads: redis (Redis Streams) or postgres (a pgqueue table)")
	fs.DurationVar(&cfg.lease, "lease", 10*time.Second, "lease of a relay on its keys and of a consumer on its messages: how long the work of a killed one waits to be taken over")
	fs.DurationVar(&cfg.work, "work", 0, "time each effect spends inside its transaction, as a slower handler would")
	fs.BoolVar(&cfg.demo, "demo", false, "run the demonstration: write orders while killing and restarting the relay and the consumer, then check; needs PostgreSQL and Redis")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, flagError{err}
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	var err error
	if cfg.roles, err = parseRoles(roles); err != nil {
		return cfg, err
	}
	switch {
	case cfg.orders < 0:
		return cfg, fmt.Errorf("-orders %d is negative", cfg.orders)
	case cfg.rate < 0:
		return cfg, fmt.Errorf("-rate %g is negative", cfg.rate)
	case cfg.broker != "redis" && cfg.broker != "postgres":
		return cfg, fmt.Errorf("-broker %q: want redis or postgres", cfg.broker)
	case cfg.lease < 100*time.Millisecond:
		return cfg, fmt.Errorf("-lease %s: want at least 100ms", cfg.lease)
	case cfg.work < 0:
		return cfg, fmt.Errorf("-work %s is negative", cfg.work)
	case cfg.stream == "" || strings.ContainsAny(cfg.stream, "{}"):
		return cfg, fmt.Errorf("-stream %q: want a name without braces", cfg.stream)
	case strings.ContainsAny(cfg.redisPrefix, "{}"):
		return cfg, fmt.Errorf("-redis-prefix %q: braces are the stream's hash tag", cfg.redisPrefix)
	}
	return cfg, nil
}

// parseRoles reads -role.
func parseRoles(s string) ([]string, error) {
	switch s {
	case roleAll:
		return []string{roleWriter, roleRelay, roleConsumer}, nil
	case roleCheck:
		return []string{roleCheck}, nil
	}
	var roles []string
	for r := range strings.SplitSeq(s, ",") {
		r = strings.TrimSpace(r)
		switch r {
		case roleWriter, roleRelay, roleConsumer:
			if !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		default:
			return nil, fmt.Errorf("-role %q: want all, check, or writer, relay and consumer, comma-separated", s)
		}
	}
	return roles, nil
}

// run runs the command with args (without the program name) until its
// roles are done or ctx is, and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case err != nil:
		if !errors.As(err, new(flagError)) {
			fmt.Fprintf(stderr, "orders: %v\nrun 'orders -h' for usage\n", err)
		}
		return exitUsage
	}
	level := slog.LevelInfo
	if cfg.demo {
		// The demonstration's failures are planned, and its summary says
		// what happened.
		level = slog.LevelError
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if cfg.demo {
		err = demo(ctx, cfg, stdout, log)
	} else {
		err = runRoles(ctx, cfg, stdout, log)
	}
	var unreachable *unreachableError
	switch {
	case errors.As(err, &unreachable):
		fmt.Fprintf(stderr, "orders: %v\n", err)
		if cfg.demo {
			fmt.Fprintln(stderr, "orders: -demo needs PostgreSQL and Redis (with -broker postgres, PostgreSQL only); start them or point -postgres-url and -redis-addr at them")
		}
		return exitUnreachable
	case err != nil:
		fmt.Fprintf(stderr, "orders: %v\n", err)
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
