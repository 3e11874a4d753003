package stock_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/internal/testenv"
	"github.com/idemq/idemq/stock"
	"github.com/idemq/idemq/stock/stockpg"
	"github.com/idemq/idemq/stock/stockredis"
)

// benchPool opens a 32-connection pool on a fresh schema.
func benchPool(b *testing.B) *pgxpool.Pool {
	_, schema := testenv.PostgresWithSchema(b)
	cfg, err := pgxpool.ParseConfig(testenv.PostgresURL())
	if err != nil {
		b.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = 32
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool
}

// benchReserve reserves one unit of one hot item per op at parallelism 32
// (16 goroutines per GOMAXPROCS on 2 cores), each with its own ID and
// holder, and reports ops/s.
func benchReserve(b *testing.B, store stock.Store) {
	ctx := context.Background()
	item := "hot-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := store.Define(ctx, item, stock.ItemConfig{}); err != nil {
		b.Fatal(err)
	}
	if err := store.Restock(ctx, item, b.N+1000); err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := strconv.FormatInt(seq.Add(1), 10)
			if _, err := store.Reserve(ctx, stock.ReserveRequest{Item: item, Holder: "h" + id, ID: item + id, Hold: time.Hour}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}

// BenchmarkReserve: one hot item at parallelism 32 on every store. The
// sharded PostgreSQL store has as many shards as callers, so that each
// per-call Reserve can find a shard no one else holds.
func BenchmarkReserve(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchReserve(b, stock.NewMemoryStore()) })
	b.Run("redis", func(b *testing.B) {
		_, prefix := testenv.Redis(b)
		client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(), PoolSize: 32})
		b.Cleanup(func() { client.Close() })
		s, err := stockredis.New(client, stockredis.Options{Prefix: prefix})
		if err != nil {
			b.Fatal(err)
		}
		benchReserve(b, s)
	})
	b.Run("redis-lua-decrement", benchRedisDecr)
	for _, pg := range []struct {
		name   string
		shards int
	}{{"postgres", 0}, {"postgres-sharded", 32}} {
		b.Run(pg.name, func(b *testing.B) {
			for _, mode := range []struct {
				name    string
				perCall bool
			}{{"per-call", true}, {"group-commit", false}} {
				b.Run(mode.name, func(b *testing.B) {
					pool := benchPool(b)
					opts := stockpg.Options{Shards: pg.shards, PerCall: mode.perCall}
					if err := stockpg.Migrate(context.Background(), pool, opts); err != nil {
						b.Fatal(err)
					}
					s, err := stockpg.New(pool, opts)
					if err != nil {
						b.Fatal(err)
					}
					c := &failureCounter{Store: s}
					benchReserve(b, c)
					b.ReportMetric(float64(c.failures.Load()), "serialization-failures")
				})
			}
			b.Run("in-transaction", func(b *testing.B) {
				pool := benchPool(b)
				opts := stockpg.Options{Shards: pg.shards}
				if err := stockpg.Migrate(context.Background(), pool, opts); err != nil {
					b.Fatal(err)
				}
				if _, err := pool.Exec(context.Background(), "CREATE TABLE redemptions (id text PRIMARY KEY)"); err != nil {
					b.Fatal(err)
				}
				s, err := stockpg.New(pool, opts)
				if err != nil {
					b.Fatal(err)
				}
				c := &failureCounter{Store: &txStore{Store: s, pool: pool, opts: opts}}
				benchReserve(b, c)
				b.ReportMetric(float64(c.failures.Load()), "serialization-failures")
			})
		})
	}
	b.Run("postgres-serializable-baseline", benchSerializable)
}

// failureCounter counts the Reserves of a store that fail with a
// serialization failure or a deadlock (SQLSTATE 40001 or 40P01), which
// the PostgreSQL store never causes: it takes its row locks in one order
// at READ COMMITTED.
type failureCounter struct {
	stock.Store
	failures atomic.Int64
}

func (c *failureCounter) Reserve(ctx context.Context, req stock.ReserveRequest) (stock.Reservation, error) {
	r, err := c.Store.Reserve(ctx, req)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01") {
		c.failures.Add(1)
	}
	return r, err
}

// txStore makes each Reserve in a transaction of its own, which also
// writes a row of the caller's (as a service recording the redemption
// would), committed after the Reserve: the item's row, or the shard the
// Reserve took units from, stays locked until then.
type txStore struct {
	*stockpg.Store
	pool *pgxpool.Pool
	opts stockpg.Options
}

func (s *txStore) Reserve(ctx context.Context, req stock.ReserveRequest) (stock.Reservation, error) {
	var r stock.Reservation
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		inTx, err := stockpg.New(tx, s.opts)
		if err != nil {
			return err
		}
		if r, err = inTx.Reserve(ctx, req); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO redemptions VALUES ($1)", req.ID)
		return err
	})
	return r, err
}

// benchSerializable is the approach the stores avoid: read the count,
// then update it, in a SERIALIZABLE transaction retried on serialization
// failures. It reports ops/s and the share of attempts that failed.
func benchSerializable(b *testing.B) {
	ctx := context.Background()
	pool := benchPool(b)
	if _, err := pool.Exec(ctx, `
		CREATE TABLE items (item text PRIMARY KEY, available int NOT NULL);
		CREATE TABLE reservations (id text PRIMARY KEY, item text NOT NULL, holder text NOT NULL);`); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO items VALUES ('hot', $1)", b.N+1000); err != nil {
		b.Fatal(err)
	}
	var seq, attempts, failures atomic.Int64
	reserve := func(id string) error {
		for {
			attempts.Add(1)
			err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.Serializable}, func(tx pgx.Tx) error {
				var available int
				if err := tx.QueryRow(ctx, "SELECT available FROM items WHERE item = 'hot'").Scan(&available); err != nil {
					return err
				}
				if available < 1 {
					return stock.ErrSoldOut
				}
				if _, err := tx.Exec(ctx, "UPDATE items SET available = $1 WHERE item = 'hot'", available-1); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "INSERT INTO reservations VALUES ($1, 'hot', $1)", id)
				return err
			})
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01") {
				failures.Add(1)
				continue
			}
			return err
		}
	}
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := reserve(strconv.FormatInt(seq.Add(1), 10)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
	b.ReportMetric(100*float64(failures.Load())/float64(max(1, attempts.Load())), "failed-%")
}
