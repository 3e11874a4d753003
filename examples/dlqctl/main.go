// Command dlqctl is the operator's tool for an idemq dead-letter queue: it
// lists, counts and shows parked messages, replays them to a queue, and
// deletes or purges them, in a [dlq/dlqpg] table or a [dlq/dlqredis] store.
//
//	dlqctl [connection flags] <command> [flags] [args]
//
// Connection flags come before the command:
//
//	-store postgres|redis  which store holds the entries (default postgres)
//	-postgres-url URL      default $IDEMQ_POSTGRES_URL or postgres://postgres@127.0.0.1:5432/test
//	-table NAME            the dlqpg table, "table" or "schema.table" (default idemq_dead_letters)
//	-redis-addr ADDR       host:port, several comma-separated for a cluster, or a redis:// URL;
//	                       default $IDEMQ_REDIS_ADDR or 127.0.0.1:6379
//	-redis-prefix P        dlqredis key prefix (default idemq:dlq:)
//	-name N                dlqredis store name (default "default")
//
// Commands:
//
//	list    [filters] [-limit N] [-cursor C] [-json]   entries, oldest failure first, a page at a time
//	count   [filters]                                  how many entries match
//	show    <entry-id> [-json]                         one entry whole: body, headers, error chain
//	replay  [filters] -to TARGET [-dry-run]            publish entries back and remove them
//	purge   [filters] -yes                             remove every entry that matches
//	delete  <entry-id>                                 remove one entry
//
// The filters, shared by list, count, replay and purge, are -reason R,
// -source S, -since T and -until T, where T is an RFC 3339 time or a
// duration ago (90m, 2h, 7d); -since is inclusive and -until exclusive,
// both on the time the entry last failed. Replay's -to is
// redis-stream:<stream>[?prefix=...] or pgqueue:<queue>[?table=...&notify=true]
// (notify=true for a queue whose consumers LISTEN, see pgqueue.Options.Notify);
// a pgqueue target uses the -postgres-url database and a redis-stream
// target the -redis-addr server, whichever store the entries come from.
//
// A session:
//
//	$ dlqctl list -reason permanent -since 24h
//	ID                                SOURCE  REASON     ATTEMPTS  LAST FAILED           MESSAGE ID  ERROR
//	3f0c9e5b0f7d4a8e9c1b2a3d4e5f6a7b  orders  permanent  1         2025-01-07T09:12:44Z  order-17    charge order-17: card declined
//	$ dlqctl show 3f0c9e5b0f7d4a8e9c1b2a3d4e5f6a7b
//	$ dlqctl replay -reason permanent -since 24h -to redis-stream:orders -dry-run
//	$ dlqctl replay -reason permanent -since 24h -to redis-stream:orders
//	replayed 1, skipped 0
//	$ dlqctl -store redis -name payments purge -until 720h -yes
//	purged 42
//
// Replay goes through [dlq.Replay]: each entry is reserved, published and
// then removed, so two replays running at once, or one run twice, publish
// an entry once; only a replay killed between publishing an entry and
// removing it publishes that entry again later, and consumers deduplicate
// it by message ID. Purge counts and refuses without -yes, so the filter
// can be checked first.
//
// Exit status is 0 on success, 2 for a usage error (unknown command or
// flag, a missing or malformed argument, purge without -yes) and 1 when
// the work itself failed (a server unreachable, an entry not found).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqpg"
	"github.com/idemq/idemq/dlq/dlqredis"
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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a mistake in the command line: it exits with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// command is one of dlqctl's subcommands.
type command struct {
	name, args, summary string
	// flags registers the command's flags on fs and returns what runs it
	// once they are parsed, with the positional arguments.
	flags func(fs *flag.FlagSet) func(ctx context.Context, a *app, args []string) error
}

var commands = []command{
	{"list", "[filters] [-limit N] [-cursor C] [-json]", "list entries, oldest failure first", listFlags},
	{"count", "[filters]", "count the entries that match", countFlags},
	{"show", "<entry-id> [-json]", "show one entry: body, headers, error chain", showFlags},
	{"replay", "[filters] -to TARGET [-dry-run]", "publish entries back to a queue and remove them", replayFlags},
	{"purge", "[filters] -yes", "remove every entry that matches", purgeFlags},
	{"delete", "<entry-id>", "remove one entry", deleteFlags},
}

// app is one invocation: where its results go, its clock for durations
// ago, and its connections. Errors go to run's stderr.
type app struct {
	stdout io.Writer
	now    func() time.Time
	conns  *conns
}

// run runs dlqctl with args (without the program name) and returns its
// exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, now: time.Now}
	err := a.run(ctx, args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(stderr, "dlqctl: %v\n", err)
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	return exitFailure
}

func (a *app) run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dlqctl", flag.ContinueOnError)
	cf := addConnFlags(fs)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.usage(fs)
			return err
		}
		return usageError{fmt.Errorf("%w\nrun 'dlqctl -h' for usage", err)}
	}
	if fs.NArg() == 0 {
		return usagef("no command given\nrun 'dlqctl -h' for usage")
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	if name == "help" {
		a.usage(fs)
		return nil
	}
	i := commandIndex(name)
	if i < 0 {
		return usagef("unknown command %q\nrun 'dlqctl -h' for usage", name)
	}
	if err := cf.validate(); err != nil {
		return usageError{err}
	}
	cmd := commands[i]

	cfs := flag.NewFlagSet("dlqctl "+cmd.name, flag.ContinueOnError)
	cfs.SetOutput(io.Discard)
	do := cmd.flags(cfs)
	positional, err := parseInterspersed(cfs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(a.stdout, "usage: dlqctl [connection flags] %s %s\n\n%s.\n\nflags:\n", cmd.name, cmd.args, capitalise(cmd.summary))
			cfs.SetOutput(a.stdout)
			cfs.PrintDefaults()
			return err
		}
		return usageError{fmt.Errorf("%s: %w\nusage: dlqctl [connection flags] %s %s; run 'dlqctl %s -h' for its flags", cmd.name, err, cmd.name, cmd.args, cmd.name)}
	}

	a.conns = &conns{flags: cf}
	defer a.conns.close()
	if err := do(ctx, a, positional); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			return usageError{fmt.Errorf("%s: %w", cmd.name, ue.err)}
		}
		return fmt.Errorf("%s: %w", cmd.name, err)
	}
	return nil
}

func (a *app) usage(fs *flag.FlagSet) {
	w := a.stdout
	fmt.Fprint(w, `usage: dlqctl [connection flags] <command> [flags] [args]

Inspect, replay and purge the entries of an idemq dead-letter queue.

commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-7s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
filters (list, count, replay, purge):
  -reason R   -source S   -since T   -until T
  T is an RFC 3339 time or a duration ago: 90m, 2h, 7d

replay targets (-to):
  redis-stream:<stream>[?prefix=...]   a consumer/redisstream stream on -redis-addr
  pgqueue:<queue>[?table=...&notify=true]
                                       a consumer/pgqueue queue in -postgres-url

connection flags:
`)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprint(w, "\nrun 'dlqctl <command> -h' for a command's flags.\n")
}

func commandIndex(name string) int {
	for i, c := range commands {
		if c.name == name {
			return i
		}
	}
	return -1
}

// parseInterspersed parses fs's flags wherever they stand among the
// positional arguments, so that "show <id> -json" works as well as
// "show -json <id>". Everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// connFlags are the flags that say where the store is.
type connFlags struct {
	store       string
	postgresURL string
	table       string
	redisAddr   string
	redisPrefix string
	name        string
}

func addConnFlags(fs *flag.FlagSet) *connFlags {
	c := &connFlags{}
	fs.StringVar(&c.store, "store", "postgres", "the `kind` of store that holds the entries: postgres or redis")
	fs.StringVar(&c.postgresURL, "postgres-url", envOr(envPostgresURL, defaultPostgresURL),
		"PostgreSQL connection `URL`, for the postgres store and pgqueue targets; $"+envPostgresURL+" sets the default")
	fs.StringVar(&c.table, "table", dlqpg.DefaultTable, "the dlqpg `table`, table or schema.table")
	fs.StringVar(&c.redisAddr, "redis-addr", envOr(envRedisAddr, defaultRedisAddr),
		"Redis `address`: host:port, several comma-separated for a cluster, or a redis:// URL; for the redis store and redis-stream targets; $"+envRedisAddr+" sets the default")
	fs.StringVar(&c.redisPrefix, "redis-prefix", dlqredis.DefaultPrefix, "the dlqredis key `prefix`")
	fs.StringVar(&c.name, "name", dlqredis.DefaultName, "the dlqredis store `name`")
	return c
}

func (c *connFlags) validate() error {
	switch c.store {
	case "postgres", "redis":
		return nil
	}
	return fmt.Errorf("unknown -store %q: want postgres or redis", c.store)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// conns opens connections when first needed, so that a redis store with
// a pgqueue target connects to both, and a postgres store alone to one.
type conns struct {
	flags *connFlags
	pool  *pgxpool.Pool
	redis redis.UniversalClient
}

func (c *conns) postgresPool(ctx context.Context) (*pgxpool.Pool, error) {
	if c.pool != nil {
		return c.pool, nil
	}
	cfg, err := pgxpool.ParseConfig(c.flags.postgresURL)
	if err != nil {
		return nil, usageError{fmt.Errorf("-postgres-url: %w", err)}
	}
	cfg.MaxConns = 2 // one command at a time needs no more
	// The pool connects on first use, so a server that is down shows up
	// as the failure of the command's first query.
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	c.pool = pool
	return pool, nil
}

func (c *conns) redisClient() (redis.UniversalClient, error) {
	if c.redis != nil {
		return c.redis, nil
	}
	addr := c.flags.redisAddr
	if strings.HasPrefix(addr, "redis://") || strings.HasPrefix(addr, "rediss://") {
		opts, err := redis.ParseURL(addr)
		if err != nil {
			return nil, usageError{fmt.Errorf("-redis-addr: %w", err)}
		}
		c.redis = redis.NewClient(opts)
		return c.redis, nil
	}
	var addrs []string
	for a := range strings.SplitSeq(addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, usagef("-redis-addr is empty")
	}
	c.redis = redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs})
	return c.redis, nil
}

// store returns the dead-letter store the connection flags name. Its
// constructors validate the names they are given; they do not connect.
func (c *conns) store(ctx context.Context) (dlq.Store, error) {
	switch c.flags.store {
	case "postgres":
		pool, err := c.postgresPool(ctx)
		if err != nil {
			return nil, err
		}
		s, err := dlqpg.New(pool, dlqpg.Options{Table: c.flags.table})
		if err != nil {
			return nil, usageError{fmt.Errorf("-table: %w", err)}
		}
		return pgStore{s, c.flags.table}, nil
	case "redis":
		client, err := c.redisClient()
		if err != nil {
			return nil, err
		}
		s, err := dlqredis.New(client, dlqredis.Options{Prefix: c.flags.redisPrefix, Name: c.flags.name})
		if err != nil {
			return nil, usageError{err}
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown store %q", c.flags.store) // validate admits none
}

func (c *conns) close() {
	if c.pool != nil {
		c.pool.Close()
	}
	if c.redis != nil {
		_ = c.redis.Close() // nothing left to do with it, or to report
	}
}

// pgStore is a dlqpg store whose errors name a missing table, the mistake
// an operator makes most with it.
type pgStore struct {
	*dlqpg.Store
	table string
}

func (s pgStore) hint(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return fmt.Errorf("%w (is -table %q right, and is it on the search_path of -postgres-url? dlqpg.Migrate creates it)", err, s.table)
	}
	return err
}

func (s pgStore) Get(ctx context.Context, id string) (dlq.Entry, error) {
	e, err := s.Store.Get(ctx, id)
	return e, s.hint(err)
}

func (s pgStore) List(ctx context.Context, f dlq.Filter, cursor string, limit int) (dlq.Page, error) {
	p, err := s.Store.List(ctx, f, cursor, limit)
	return p, s.hint(err)
}

func (s pgStore) Count(ctx context.Context, f dlq.Filter) (int, error) {
	n, err := s.Store.Count(ctx, f)
	return n, s.hint(err)
}

func (s pgStore) Delete(ctx context.Context, id string) error {
	return s.hint(s.Store.Delete(ctx, id))
}

func (s pgStore) Purge(ctx context.Context, f dlq.Filter) (int, error) {
	n, err := s.Store.Purge(ctx, f)
	return n, s.hint(err)
}
