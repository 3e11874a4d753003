package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/pgqueue"
	"github.com/idemq/idemq/consumer/redisstream"
	"github.com/idemq/idemq/idempotency/idempotencypg"
	"github.com/idemq/idemq/outbox"
)

// Names of the tables and of the Redis consumer group.
const (
	outboxTable = "orders_outbox"
	inboxTable  = "orders_inbox"
	queueTable  = "orders_queue" // -broker postgres
	group       = "shipping"
)

const (
	// pingTimeout bounds the first contact with a server, so that one that
	// is not there is reported within seconds.
	pingTimeout = 3 * time.Second

	// pollInterval bounds how long an idle relay, and a consumer on
	// -broker postgres, sleeps before it looks again when no notification
	// came.
	pollInterval = 200 * time.Millisecond

	// concurrency is the number of handlers a consumer runs at once: each
	// holds a connection for its transaction.
	concurrency = 8
)

// unreachableError is a server that did not answer at start.
type unreachableError struct {
	server, addr, hint string
	err                error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("%s unreachable at %s: %v (%s)", e.server, e.addr, e.err, e.hint)
}

func (e *unreachableError) Unwrap() error { return e.err }

// app is the program's connections, options and counters, shared by its
// roles.
type app struct {
	cfg   config
	pool  *pgxpool.Pool
	rdb   redis.UniversalClient // nil with -broker postgres
	log   *slog.Logger
	stats *stats

	outbox outbox.Options
	inbox  idempotencypg.InboxOptions
	queue  pgqueue.Options // -broker postgres
	writer *outbox.Writer

	close func()
}

// openApp connects to the servers cfg names and creates the tables if they
// do not exist. With schema, the tables live in that schema, which must
// exist. Servers that do not answer are reported as *unreachableError.
func openApp(ctx context.Context, cfg config, schema string, log *slog.Logger) (*app, error) {
	pool, err := connectPostgres(ctx, cfg.postgresURL, schema)
	if err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, pool: pool, log: log, stats: newStats()}
	a.close = pool.Close
	if cfg.broker == "redis" {
		if a.rdb, err = connectRedis(ctx, cfg.redisAddr); err != nil {
			pool.Close()
			return nil, err
		}
		a.close = func() {
			_ = a.rdb.Close()
			pool.Close()
		}
	}
	a.outbox = outbox.Options{
		Table:         outboxTable,
		Notify:        true,
		Lease:         cfg.lease,
		PollInterval:  pollInterval,
		StatsInterval: -1, // nobody reads the gauges here
		Observer:      a.stats,
		Logger:        log,
	}
	a.inbox = idempotencypg.InboxOptions{
		Table:    inboxTable,
		Observer: a.stats,
		Logger:   log,
	}
	a.queue = pgqueue.Options{
		Table:             queueTable,
		Queue:             cfg.stream,
		VisibilityTimeout: cfg.lease,
		PollInterval:      pollInterval,
		Notify:            true,
		Logger:            log,
	}
	if a.writer, err = outbox.NewWriter(a.outbox); err == nil {
		// Migrations take locks that live writers hold too: one of them
		// can be aborted as a deadlock victim, and tried again.
		err = retryTx(ctx, func() error { return a.migrate(ctx) })
	}
	if err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

// connectPostgres opens a pool on url, with schema as the search_path if it
// is not empty, and checks that the server answers.
func connectPostgres(ctx context.Context, url, schema string) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("-postgres-url: %w", err)
	}
	// The handlers' transactions, the relay, the writer and the checks.
	pcfg.MaxConns = max(pcfg.MaxConns, concurrency+6)
	if schema != "" {
		pcfg.ConnConfig.RuntimeParams["search_path"] = schema
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, &unreachableError{server: "PostgreSQL", addr: postgresAddr(pcfg), hint: "set -postgres-url or $" + envPostgresURL, err: err}
	}
	return pool, nil
}

func postgresAddr(c *pgxpool.Config) string {
	return fmt.Sprintf("%s:%d/%s", c.ConnConfig.Host, c.ConnConfig.Port, c.ConnConfig.Database)
}

// connectRedis makes a client for -redis-addr and checks that the server
// answers.
func connectRedis(ctx context.Context, addr string) (redis.UniversalClient, error) {
	var addrs []string
	for a := range strings.SplitSeq(addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("-redis-addr is empty")
	}
	// A probe that gives up at the first failure, rather than after
	// go-redis's dial retries, each of which it logs.
	probe := redis.NewClient(&redis.Options{Addr: addrs[0], DialTimeout: pingTimeout, MaxRetries: -1, DialerRetries: 1, PoolSize: 1})
	defer probe.Close()
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := probe.Ping(pctx).Err(); err != nil {
		return nil, &unreachableError{server: "Redis", addr: addr, hint: "set -redis-addr or $" + envRedisAddr, err: err}
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs}), nil
}

// migrate creates the business tables, the outbox, the inbox and, with
// -broker postgres, the queue table.
func (a *app) migrate(ctx context.Context) error {
	if err := migrateOrders(ctx, a.pool); err != nil {
		return err
	}
	if err := outbox.Migrate(ctx, a.pool, a.outbox); err != nil {
		return err
	}
	if err := idempotencypg.MigrateInbox(ctx, a.pool, a.inbox); err != nil {
		return err
	}
	if a.cfg.broker == "postgres" {
		return pgqueue.Migrate(ctx, a.pool, a.queue)
	}
	return nil
}

// brokerPublisher returns the publisher of -broker, which counts the
// messages the broker took.
func (a *app) brokerPublisher() (consumer.Publisher, error) {
	var (
		pub consumer.Publisher
		err error
	)
	if a.cfg.broker == "redis" {
		pub, err = redisstream.NewPublisher(a.rdb, redisstream.PublisherOptions{Stream: a.cfg.stream, Prefix: a.cfg.redisPrefix})
	} else {
		pub, err = pgqueue.NewPublisher(a.pool, a.queue)
	}
	if err != nil {
		return nil, err
	}
	return countingPublisher{pub, a.stats}, nil
}

// countingPublisher counts the messages its publisher took.
type countingPublisher struct {
	next  consumer.Publisher
	stats *stats
}

func (p countingPublisher) Publish(ctx context.Context, msgs ...consumer.Message) error {
	if err := p.next.Publish(ctx, msgs...); err != nil {
		return err
	}
	p.stats.Count(metricBrokerPublished, int64(len(msgs)))
	return nil
}

// newSource returns a Source on -broker and the function that closes it.
func (a *app) newSource(ctx context.Context) (consumer.Source, func(), error) {
	if a.cfg.broker == "redis" {
		src, err := redisstream.New(a.rdb, a.streamOptions())
		if err != nil {
			return nil, nil, err
		}
		// The group starts at the stream's beginning, so messages the relay
		// published before any consumer ran are read too.
		if err := src.Setup(ctx); err != nil {
			return nil, nil, err
		}
		return src, func() {}, nil
	}
	src, err := pgqueue.New(a.pool, a.queue)
	if err != nil {
		return nil, nil, err
	}
	return src, func() { _ = src.Close() }, nil
}

func (a *app) streamOptions() redisstream.Options {
	return redisstream.Options{
		Stream:            a.cfg.stream,
		Prefix:            a.cfg.redisPrefix,
		Group:             group,
		VisibilityTimeout: a.cfg.lease,
		Block:             min(500*time.Millisecond, a.cfg.lease/4),
	}
}

// streamKeys returns the Redis keys of the stream: the stream and the set
// of messages waiting out a Nack's delay.
func (a *app) streamKeys() []string {
	src, err := redisstream.New(a.rdb, a.streamOptions())
	if err != nil { // parseFlags refused what New refuses
		panic(err)
	}
	return []string{src.StreamKey(), src.DelayedKey()}
}

// brokerNoun is what the broker holds the events in.
func (a *app) brokerNoun() string {
	if a.cfg.broker == "redis" {
		return "stream"
	}
	return "queue"
}

// brokerName describes where the events go, for people.
func (a *app) brokerName() string {
	if a.cfg.broker == "redis" {
		return "Redis stream " + a.streamKeys()[0]
	}
	return fmt.Sprintf("PostgreSQL queue %q in table %s", a.cfg.stream, queueTable)
}

// queued counts the messages in the broker: waiting, held by a consumer
// (a killed one's included) or waiting out a Nack's delay.
func (a *app) queued(ctx context.Context) (int64, error) {
	if a.cfg.broker == "redis" {
		keys := a.streamKeys()
		n, err := a.rdb.XLen(ctx, keys[0]).Result()
		if err != nil {
			return 0, err
		}
		d, err := a.rdb.ZCard(ctx, keys[1]).Result()
		return n + d, err
	}
	var n int64
	err := a.pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{queueTable}.Sanitize()+` WHERE queue = $1`, a.cfg.stream).Scan(&n)
	return n, err
}

// Counters of the program's own, beside those of the consumer, the relay
// and the inbox.
const (
	metricBrokerPublished  = "orders_broker_published"  // messages the broker took from a relay
	metricEffectsTried     = "orders_effects_tried"     // effects written in an inbox transaction
	metricEffectsCommitted = "orders_effects_committed" // those whose commit the consumer saw succeed
)

// stats is a consumer.Observer that keeps the counts, for the summaries.
type stats struct {
	mu     sync.Mutex
	counts map[string]int64
}

var _ consumer.Observer = (*stats)(nil)

func newStats() *stats { return &stats{counts: map[string]int64{}} }

func (s *stats) Count(name string, delta int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[name] += delta
}

func (s *stats) Observe(string, time.Duration) {}

func (s *stats) get(name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[name]
}
