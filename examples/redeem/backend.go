package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/idempotency/idempotencypg"
	"github.com/idemq/idemq/idempotency/idempotencyredis"
	"github.com/idemq/idemq/stock"
	"github.com/idemq/idemq/stock/stockpg"
	"github.com/idemq/idemq/stock/stockredis"
)

// pgShards is how many rows stockpg splits each item's free units over,
// so that hundreds of concurrent redeems of one item do not all queue on
// one row lock.
const pgShards = 8

// backend is the pair of stores -store names, with what else it needs
// while the service runs and when it stops.
type backend struct {
	stock stock.Store
	keys  idempotency.Store
	// maintain, if set, runs beside the service until its ctx is done.
	maintain func(ctx context.Context)
	close    func()
}

// openBackend connects to the stores cfg names, creating the Postgres
// tables if needed. With isolate, the stores live under a key prefix or in
// a schema of their own, removed by close: for the demonstration, which
// must find its items new.
func openBackend(ctx context.Context, cfg config, isolate bool) (*backend, error) {
	switch cfg.store {
	case "memory":
		return &backend{stock: stock.NewMemoryStore(), keys: idempotency.NewMemoryStore(), close: func() {}}, nil
	case "redis":
		client, err := redisClient(cfg.redisAddr)
		if err != nil {
			return nil, err
		}
		if err := client.Ping(ctx).Err(); err != nil {
			_ = client.Close()
			return nil, fmt.Errorf("redis at %s: %w", cfg.redisAddr, err)
		}
		prefix := cfg.redisPrefix
		if isolate {
			prefix += "demo-" + strings.ToLower(rand.Text()[:12]) + ":"
		}
		b, err := redisBackend(client, prefix)
		if err != nil {
			_ = client.Close()
			return nil, err
		}
		b.close = func() {
			if isolate {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_ = deletePrefix(ctx, client, prefix) // best effort: a demo's leftovers
			}
			_ = client.Close()
		}
		return b, nil
	case "postgres":
		pool, err := pgxpool.New(ctx, cfg.postgresURL)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		if err := pool.Ping(ctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("postgres: %w", err)
		}
		schema := ""
		if isolate {
			schema = "idemq_redeem_demo_" + strings.ToLower(rand.Text()[:12])
			if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
				pool.Close()
				return nil, fmt.Errorf("postgres: create the demonstration's schema: %w", err)
			}
		}
		b, err := postgresBackend(ctx, pool, schema)
		if err == nil && isolate {
			b.close = func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_, _ = pool.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE") // best effort
				pool.Close()
			}
		}
		if err != nil {
			pool.Close()
			return nil, err
		}
		return b, nil
	}
	return nil, fmt.Errorf("unknown store %q", cfg.store) // run admits none
}

// redisBackend keeps the stock under prefix+"stock:" and the keys under
// prefix+"keys:". It leaves client open.
func redisBackend(client redis.UniversalClient, prefix string) (*backend, error) {
	st, err := stockredis.New(client, stockredis.Options{Prefix: prefix + "stock:"})
	if err != nil {
		return nil, err
	}
	keys, err := idempotencyredis.New(client, idempotencyredis.Options{Prefix: prefix + "keys:"})
	if err != nil {
		return nil, err
	}
	return &backend{stock: st, keys: keys, close: func() {}}, nil
}

// postgresBackend creates the tables, in schema if it is not empty, and
// returns the stores on them, with the reaper of expired keys. It leaves
// pool open.
func postgresBackend(ctx context.Context, pool *pgxpool.Pool, schema string) (*backend, error) {
	stockOpts := stockpg.Options{Shards: pgShards}
	keyOpts := idempotencypg.Options{}
	if schema != "" {
		stockOpts.Prefix = schema + "." + stockpg.DefaultPrefix
		keyOpts.Table = schema + "." + idempotencypg.DefaultTable
	}
	if err := stockpg.Migrate(ctx, pool, stockOpts); err != nil {
		return nil, err
	}
	if err := idempotencypg.Migrate(ctx, pool, keyOpts); err != nil {
		return nil, err
	}
	st, err := stockpg.New(pool, stockOpts)
	if err != nil {
		return nil, err
	}
	keys, err := idempotencypg.New(pool, keyOpts)
	if err != nil {
		return nil, err
	}
	return &backend{
		stock: st,
		keys:  keys,
		maintain: func(ctx context.Context) {
			_ = keys.RunReaper(ctx, 0, 0) // returns when ctx is done; logs its failures
		},
		close: func() {},
	}, nil
}

// redisClient makes a client for -redis-addr: a redis:// URL, or one or
// more comma-separated host:port.
func redisClient(addr string) (redis.UniversalClient, error) {
	if strings.HasPrefix(addr, "redis://") || strings.HasPrefix(addr, "rediss://") {
		opts, err := redis.ParseURL(addr)
		if err != nil {
			return nil, fmt.Errorf("-redis-addr: %w", err)
		}
		return redis.NewClient(opts), nil
	}
	var addrs []string
	for a := range strings.SplitSeq(addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("-redis-addr is empty")
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs}), nil
}

// deletePrefix deletes every key under prefix, a SCAN page at a time.
func deletePrefix(ctx context.Context, client redis.UniversalClient, prefix string) error {
	match := globEscaper.Replace(prefix) + "*"
	var cursor uint64
	for {
		keys, next, err := client.Scan(ctx, cursor, match, 500).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := client.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

var globEscaper = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)

// The items -seed defines.
const (
	welcomeItem  = "welcome-voucher"
	welcomeUnits = 100
	codeItem     = "partner-voucher"
	codeUnits    = 20
)

// seed defines the two items, one unit per holder, and stocks each one
// that has never had any units: restarting with -seed adds nothing. (Two
// processes seeding the same new item at the same moment could both stock
// it; seed one first.)
func seed(ctx context.Context, st stock.Store) error {
	err := seedItem(ctx, st, welcomeItem, stock.ItemConfig{HolderLimit: 1}, func() error {
		return st.Restock(ctx, welcomeItem, welcomeUnits)
	})
	if err != nil {
		return err
	}
	return seedItem(ctx, st, codeItem, stock.ItemConfig{HolderLimit: 1, Codes: true}, func() error {
		codes := make([]string, codeUnits)
		for i := range codes {
			codes[i] = "PV-" + rand.Text()[:12] // 60 random bits: not guessable
		}
		_, err := st.LoadCodes(ctx, codeItem, codes)
		return err
	})
}

// seedItem defines item and, if it never had units, stocks it.
func seedItem(ctx context.Context, st stock.Store, item string, cfg stock.ItemConfig, stockUp func() error) error {
	if err := st.Define(ctx, item, cfg); err != nil {
		return fmt.Errorf("seed %s: %w", item, err)
	}
	l, err := st.Level(ctx, item)
	if err != nil {
		return fmt.Errorf("seed %s: %w", item, err)
	}
	if l.Available+l.Held+l.Confirmed > 0 {
		return nil
	}
	if err := stockUp(); err != nil {
		return fmt.Errorf("seed %s: %w", item, err)
	}
	return nil
}
