package idempotency_test

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/idempotency/idempotencypg"
	"github.com/idemq/idemq/idempotency/idempotencyredis"
	"github.com/idemq/idemq/internal/testenv"
)

// benchStore measures claim+complete of distinct keys at parallelism 32,
// the work the middleware does for each new message.
func benchStore(b *testing.B, store idempotency.Store) {
	ctx := context.Background()
	var seq atomic.Int64
	prefix := strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	b.SetParallelism(32 / max(1, testingProcs()))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := prefix + strconv.FormatInt(seq.Add(1), 10)
			c, err := store.Claim(ctx, key, "fp", time.Minute)
			if err != nil {
				b.Error(err)
				return
			}
			if c.Status != idempotency.Claimed {
				b.Errorf("claim %s: %v", key, c.Status)
				return
			}
			if err := store.Complete(ctx, key, c.Token, nil, time.Hour); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkStore(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchStore(b, idempotency.NewMemoryStore()) })
	b.Run("postgres", func(b *testing.B) {
		_, schema := testenv.PostgresWithSchema(b)
		cfg, err := pgxpool.ParseConfig(testenv.PostgresURL())
		if err != nil {
			b.Fatal(err)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = schema
		cfg.MaxConns = 32 // one connection per parallel worker
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer pool.Close()
		if err := idempotencypg.Migrate(context.Background(), pool, idempotencypg.Options{}); err != nil {
			b.Fatal(err)
		}
		store, err := idempotencypg.New(pool, idempotencypg.Options{})
		if err != nil {
			b.Fatal(err)
		}
		benchStore(b, store)
	})
	b.Run("redis", func(b *testing.B) {
		_, prefix := testenv.Redis(b) // for the key prefix and its cleanup
		client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(), PoolSize: 32})
		defer client.Close()
		store, err := idempotencyredis.New(client, idempotencyredis.Options{Prefix: prefix})
		if err != nil {
			b.Fatal(err)
		}
		benchStore(b, store)
	})
}

// testingProcs is GOMAXPROCS, by which RunParallel multiplies SetParallelism.
func testingProcs() int { return runtime.GOMAXPROCS(0) }
