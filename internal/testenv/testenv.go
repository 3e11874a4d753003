package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Environment variables read by this package, and their defaults.
const (
	EnvPostgresURL     = "IDEMQ_POSTGRES_URL"
	EnvRedisAddr       = "IDEMQ_REDIS_ADDR"
	EnvRequireServices = "IDEMQ_REQUIRE_SERVICES"
	DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test"
	DefaultRedisAddr   = "127.0.0.1:6379"
)

const (
	// Names start with these, so leftovers of a killed test run are easy
	// to recognise and remove by hand.
	postgresSchemaStart = "idemq_test_"
	redisPrefixStart    = "idemq-test:"

	// pingTimeout bounds the reachability check, so a missing server costs
	// each test a few seconds rather than a hang.
	pingTimeout = 3 * time.Second

	// setupTimeout bounds the work done once the server answered: creating
	// or dropping a schema, deleting keys.
	setupTimeout = 30 * time.Second

	// redisScanCount is the COUNT hint for each SCAN, and so roughly the
	// size of each UNLINK batch during cleanup.
	redisScanCount = 500
)

// PostgresURL returns the connection string tests use: the value of
// IDEMQ_POSTGRES_URL, or [DefaultPostgresURL].
func PostgresURL() string { return envOr(EnvPostgresURL, DefaultPostgresURL) }

// RedisAddr returns the Redis address tests use: the value of
// IDEMQ_REDIS_ADDR, or [DefaultRedisAddr].
func RedisAddr() string { return envOr(EnvRedisAddr, DefaultRedisAddr) }

// Postgres is [PostgresWithSchema] for tests that do not need the schema's
// name.
func Postgres(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, _ := PostgresWithSchema(t)
	return pool
}

// PostgresWithSchema creates a schema with a unique name, owned by t, and
// returns a pool whose connections have it as their search_path, along with
// its name. Every call creates a new schema, so two calls in one test are
// isolated from each other too.
//
// When t ends, the pool is closed and the schema dropped with everything in
// it. Closing the pool waits for acquired connections, so a test must not
// leave a transaction open.
//
// It skips t when PostgreSQL is unreachable, or fails it when
// IDEMQ_REQUIRE_SERVICES=1 (see the package documentation).
func PostgresWithSchema(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()

	cfg, err := pgxpool.ParseConfig(PostgresURL())
	if err != nil {
		// A malformed URL is a mistake to fix, not a missing server.
		t.Fatalf("testenv: parse %s: %v", EnvPostgresURL, err)
	}
	addr := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)

	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	// One-off connection: a pool would keep it open with the wrong
	// search_path.
	admin, err := pgx.ConnectConfig(ctx, cfg.ConnConfig.Copy())
	if err != nil {
		unavailable(t, "PostgreSQL", addr, EnvPostgresURL, err)
	}

	schema := postgresSchemaStart + randomHex()
	ident := pgx.Identifier{schema}.Sanitize()
	ctx, cancel = context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	_, err = admin.Exec(ctx, "CREATE SCHEMA "+ident)
	if cerr := admin.Close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("testenv: create schema %s on %s: %v", schema, addr, err)
	}
	// Registered before the pool exists so the schema goes even if the
	// pool cannot be built; cleanups run last-in first-out, so the pool is
	// closed before this runs.
	dropCfg := cfg.ConnConfig.Copy() // before search_path is set below
	t.Cleanup(func() { dropSchema(t, dropCfg, schema) })

	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("testenv: open pool on %s: %v", addr, err)
	}
	t.Cleanup(pool.Close)
	// The pool connects lazily; fail here, not in the middle of the test,
	// if its connections cannot be made.
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("testenv: ping pool on %s: %v", addr, err)
	}
	return pool, schema
}

// dropSchema drops schema over a new connection: the test's pool is already
// closed, and t's context is cancelled by the time cleanups run.
func dropSchema(t testing.TB, cfg *pgx.ConnConfig, schema string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Errorf("testenv: drop schema %s: connect: %v", schema, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		t.Errorf("testenv: drop schema %s: %v", schema, err)
	}
}

// Redis returns a client for the Redis server and a key prefix unique to
// this call, such as "idemq-test:0123456789abcdef:". The test must put the
// prefix in front of every key it writes. The prefix contains no braces, so
// a driver's {hash tag} after it still decides the key's slot.
//
// When t ends, every key under the prefix is deleted and the client closed.
//
// It skips t when Redis is unreachable, or fails it when
// IDEMQ_REQUIRE_SERVICES=1 (see the package documentation).
func Redis(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()

	addr := RedisAddr()
	if err := pingRedis(addr); err != nil {
		unavailable(t, "Redis", addr, EnvRedisAddr, err)
	}

	// The test gets a client with go-redis's default retries, as users
	// configure it; only the probe above gives up at the first failure.
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}})
	prefix := redisPrefixStart + randomHex() + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := deletePrefix(ctx, client, prefix); err != nil {
			t.Errorf("testenv: delete Redis keys %s*: %v", prefix, err)
		}
		if err := client.Close(); err != nil {
			t.Errorf("testenv: close Redis client: %v", err)
		}
	})
	return client, prefix
}

// pingRedis checks that Redis answers at addr. It uses a client of its own
// that does not retry, so a missing server is reported at once instead of
// after go-redis's dial and command retries.
func pingRedis(addr string) error {
	probe := redis.NewClient(&redis.Options{
		Addr:          addr,
		DialTimeout:   pingTimeout,
		MaxRetries:    -1,
		DialerRetries: 1,
		PoolSize:      1,
	})
	defer probe.Close()
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	return probe.Ping(ctx).Err()
}

// deletePrefix deletes every key that starts with prefix, one SCAN page at a
// time, so a test that wrote millions of keys does not block the server.
// prefix must contain no glob characters (*?[\).
func deletePrefix(ctx context.Context, client redis.UniversalClient, prefix string) error {
	var cursor uint64
	for {
		keys, next, err := client.Scan(ctx, cursor, prefix+"*", redisScanCount).Result()
		if err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		if len(keys) > 0 {
			if err := client.Unlink(ctx, keys...).Err(); err != nil {
				return fmt.Errorf("unlink: %w", err)
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// unavailable ends t because server could not be reached at addr: a skip, or
// a failure when IDEMQ_REQUIRE_SERVICES is set. It is the one place that
// makes that choice.
func unavailable(t testing.TB, server, addr, envVar string, err error) {
	t.Helper()
	if requireServices() {
		t.Fatalf("testenv: %s unreachable at %s: %v (set %s, or start it; failing instead of skipping because %s=1)",
			server, addr, err, envVar, EnvRequireServices)
		return // only reached with a fake testing.TB
	}
	t.Skipf("testenv: %s unreachable at %s: %v (set %s, or start it; %s=1 turns this skip into a failure)",
		server, addr, err, envVar, EnvRequireServices)
}

// requireServices reports whether IDEMQ_REQUIRE_SERVICES is set to a true
// value ("1", "true", ...).
func requireServices() bool {
	v, err := strconv.ParseBool(os.Getenv(EnvRequireServices))
	return err == nil && v
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// randomHex returns 16 random hex digits: enough that concurrent tests, in
// one process or many, never pick the same name.
func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return hex.EncodeToString(b)
}
