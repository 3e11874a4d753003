package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/pgqueue"
	"github.com/idemq/idemq/consumer/redisstream"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqpg"
	"github.com/idemq/idemq/dlq/dlqredis"
	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/idempotency/idempotencypg"
	"github.com/idemq/idemq/idempotency/idempotencyredis"
)

// queueName names the stream (redis), the queue (postgres) and the
// dead-letter source and store the events go through.
const queueName = "webhooks"

// app is the inbox: the HTTP side that accepts events and the consumer
// side that processes them, over one set of backends.
type app struct {
	cfg config
	log *slog.Logger

	src    consumer.Source
	pub    *countingPublisher
	idem   idempotency.Store // receipt claims and the consumer's dedupe keys
	dlq    dlq.Store
	status statusStore
	obs    *counters

	// effect is the handler's business effect, called once per try of a
	// valid event. It is the simulator's by default; tests replace it
	// before the consumer starts.
	effect func(ctx context.Context, ev event) error
	sim    *simulator

	// acceptWait is inProgressWait, shorter in tests.
	acceptWait time.Duration

	closers []func()
}

// newApp opens the backends cfg.queue names.
func newApp(ctx context.Context, cfg config, log *slog.Logger) (*app, error) {
	sim := newSimulator(cfg.latency, cfg.failRate)
	a := &app{cfg: cfg, log: log, obs: &counters{}, sim: sim, effect: sim.apply, acceptWait: inProgressWait}
	if err := a.open(ctx); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

// close releases the backends, last opened first. Stop the consumer and
// the HTTP server first.
func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

func (a *app) open(ctx context.Context) error {
	switch a.cfg.queue {
	case "memory":
		q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
		if err != nil {
			return err
		}
		store, err := dlq.NewMemoryStore(dlq.MemoryOptions{})
		if err != nil {
			return err
		}
		a.src, a.pub = q, &countingPublisher{next: q}
		a.idem, a.dlq, a.status = idempotency.NewMemoryStore(), store, newMemStatus()
		return nil
	case "redis":
		return a.openRedis(ctx)
	case "postgres":
		return a.openPostgres(ctx)
	}
	return fmt.Errorf("unknown -queue %q: want memory, redis or postgres", a.cfg.queue)
}

// openRedis puts everything under cfg.redisPrefix: the stream, the
// idempotency keys, the dead-letter store and the statuses.
func (a *app) openRedis(ctx context.Context) error {
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{a.cfg.redisAddr}})
	a.closers = append(a.closers, func() { _ = client.Close() })
	if err := client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis at %s: %w", a.cfg.redisAddr, err)
	}
	p := a.cfg.redisPrefix
	src, err := redisstream.New(client, redisstream.Options{Stream: queueName, Prefix: p + "queue:", Block: a.cfg.poll})
	if err != nil {
		return err
	}
	if err := src.Setup(ctx); err != nil {
		return err
	}
	pub, err := redisstream.NewPublisher(client, redisstream.PublisherOptions{Stream: queueName, Prefix: p + "queue:"})
	if err != nil {
		return err
	}
	idem, err := idempotencyredis.New(client, idempotencyredis.Options{Prefix: p + "idem:"})
	if err != nil {
		return err
	}
	store, err := dlqredis.New(client, dlqredis.Options{Prefix: p + "dlq:", Name: queueName})
	if err != nil {
		return err
	}
	a.src, a.pub, a.idem, a.dlq = src, &countingPublisher{next: pub}, idem, store
	a.status = &redisStatus{client: client, prefix: p + "event:", ttl: a.cfg.dedupeWindow}
	return nil
}

// openPostgres migrates and uses the drivers' default tables, and one of
// its own for the statuses, in the connection's search_path.
func (a *app) openPostgres(ctx context.Context) error {
	pcfg, err := pgxpool.ParseConfig(a.cfg.postgresURL)
	if err != nil {
		return fmt.Errorf("-postgres-url: %w", err)
	}
	// Each running handler uses a connection at a time, plus the LISTEN
	// connection and the HTTP side.
	pcfg.MaxConns = max(pcfg.MaxConns, int32(a.cfg.concurrency)+4)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	a.closers = append(a.closers, pool.Close)
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres at %s:%d: %w", pcfg.ConnConfig.Host, pcfg.ConnConfig.Port, err)
	}
	opts := pgqueue.Options{Queue: queueName, PollInterval: a.cfg.poll, Notify: true, Logger: a.log}
	if err := pgqueue.Migrate(ctx, pool, opts); err != nil {
		return err
	}
	if err := idempotencypg.Migrate(ctx, pool, idempotencypg.Options{}); err != nil {
		return err
	}
	if err := dlqpg.Migrate(ctx, pool, dlqpg.Options{}); err != nil {
		return err
	}
	if err := migrateStatus(ctx, pool); err != nil {
		return err
	}
	src, err := pgqueue.New(pool, opts)
	if err != nil {
		return err
	}
	a.closers = append(a.closers, func() { _ = src.Close() })
	pub, err := pgqueue.NewPublisher(pool, opts)
	if err != nil {
		return err
	}
	idem, err := idempotencypg.New(pool, idempotencypg.Options{Logger: a.log})
	if err != nil {
		return err
	}
	store, err := dlqpg.New(pool, dlqpg.Options{})
	if err != nil {
		return err
	}
	a.src, a.pub, a.idem, a.dlq, a.status = src, &countingPublisher{next: pub}, idem, store, &pgStatus{pool: pool}
	return nil
}

// countingPublisher counts the messages published through it, so the demo
// and the tests can tell that a duplicate POST enqueued nothing.
type countingPublisher struct {
	next      consumer.Publisher
	published atomic.Int64
}

func (p *countingPublisher) Publish(ctx context.Context, msgs ...consumer.Message) error {
	if err := p.next.Publish(ctx, msgs...); err != nil {
		return err
	}
	p.published.Add(int64(len(msgs)))
	return nil
}

// counters is a consumer.Observer that keeps the counts it is given.
type counters struct {
	mu sync.Mutex
	m  map[string]int64
}

func (c *counters) Count(name string, delta int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int64{}
	}
	c.m[name] += delta
}

func (c *counters) Observe(string, time.Duration) {}

func (c *counters) get(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[name]
}
