package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestPostgres is the round trip CI relies on to prove PostgreSQL is
// reached: it must fail, not skip, under IDEMQ_REQUIRE_SERVICES=1.
func TestPostgres(t *testing.T) {
	var schemas []string
	t.Run("env", func(t *testing.T) {
		ctx := t.Context()
		pool, schema := PostgresWithSchema(t)
		schemas = append(schemas, schema)
		require.Regexp(t, `^idemq_test_[0-9a-f]{16}$`, schema)

		var current string
		require.NoError(t, pool.QueryRow(ctx, "SELECT current_schema()").Scan(&current))
		require.Equal(t, schema, current)

		_, err := pool.Exec(ctx, "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)")
		require.NoError(t, err)
		_, err = pool.Exec(ctx, "INSERT INTO items (id, name) VALUES ($1, $2)", 1, "widget")
		require.NoError(t, err)
		var name string
		require.NoError(t, pool.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", 1).Scan(&name))
		require.Equal(t, "widget", name)

		var inSchema bool
		require.NoError(t, pool.QueryRow(ctx,
			"SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'items')",
			schema).Scan(&inSchema))
		require.True(t, inSchema, "table items was not created in the test schema")

		other, otherSchema := PostgresWithSchema(t)
		schemas = append(schemas, otherSchema)
		require.NotEqual(t, schema, otherSchema)

		_, err = other.Exec(ctx, "SELECT 1 FROM items")
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "want a PgError from the other schema, got %v", err)
		require.Equal(t, "42P01", pgErr.Code, "want undefined_table, got %v", err) // undefined_table

		// The same table name in the other schema is a different table.
		_, err = other.Exec(ctx, "CREATE TABLE items (id int PRIMARY KEY)")
		require.NoError(t, err)
		_, err = other.Exec(ctx, "INSERT INTO items (id) VALUES (1), (2), (3)")
		require.NoError(t, err)
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n))
		require.Equal(t, 1, n)
		require.NoError(t, other.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n))
		require.Equal(t, 3, n)
	})
	if len(schemas) == 0 {
		t.Skip("testenv: the environment was skipped; nothing to check after cleanup")
	}
	require.Len(t, schemas, 2, "sub-test ended early")

	// The sub-test's cleanups have run: both schemas must be gone.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, PostgresURL())
	require.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx,
		"SELECT schema_name::text FROM information_schema.schemata WHERE schema_name = ANY($1)", schemas)
	require.NoError(t, err)
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, left, "schemas left after cleanup")
}

// TestRedis is the round trip CI relies on to prove Redis is reached: it
// must fail, not skip, under IDEMQ_REQUIRE_SERVICES=1.
func TestRedis(t *testing.T) {
	// More keys than one SCAN page, so cleanup must follow the cursor.
	const bulk = 3 * redisScanCount

	var prefixes []string
	// A key just outside the test's prefix: cleanup must not touch it.
	var outside string
	t.Run("env", func(t *testing.T) {
		ctx := t.Context()
		client, prefix := Redis(t)
		prefixes = append(prefixes, prefix)
		require.Regexp(t, `^idemq-test:[0-9a-f]{16}:$`, prefix)

		require.NoError(t, client.Set(ctx, prefix+"greeting", "hello", 0).Err())
		got, err := client.Get(ctx, prefix+"greeting").Result()
		require.NoError(t, err)
		require.Equal(t, "hello", got)

		pipe := client.Pipeline()
		for i := range bulk {
			pipe.Set(ctx, fmt.Sprintf("%sbulk:{%d}", prefix, i), i, 0)
		}
		_, err = pipe.Exec(ctx)
		require.NoError(t, err)

		_, otherPrefix := Redis(t)
		prefixes = append(prefixes, otherPrefix)
		require.NotEqual(t, prefix, otherPrefix)
		require.NoError(t, client.Set(ctx, otherPrefix+"greeting", "bonjour", 0).Err())

		// Same text as the prefix without its final colon: a prefix match
		// that forgot the separator would delete it.
		outside = prefix[:len(prefix)-1] + "-outside"
		require.NoError(t, client.Set(ctx, outside, "keep", 0).Err())
	})
	if len(prefixes) == 0 {
		t.Skip("testenv: the environment was skipped; nothing to check after cleanup")
	}
	require.Len(t, prefixes, 2, "sub-test ended early")

	// The sub-test's cleanups have run: no key under either prefix is left.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := redis.NewClient(&redis.Options{Addr: RedisAddr()})
	defer client.Close()
	defer client.Del(context.Background(), outside)
	for _, prefix := range prefixes {
		var left []string
		iter := client.Scan(ctx, 0, prefix+"*", redisScanCount).Iterator()
		for iter.Next(ctx) {
			left = append(left, iter.Val())
		}
		require.NoError(t, iter.Err())
		require.Zero(t, len(left), "%d keys left under %s after cleanup, such as %q",
			len(left), prefix, left[:min(len(left), 3)])
	}
	got, err := client.Get(ctx, outside).Result()
	require.NoError(t, err, "cleanup deleted a key outside its prefix")
	require.Equal(t, "keep", got)
}

// TestUnreachableSkips checks that a missing server skips the test when
// IDEMQ_REQUIRE_SERVICES is not set, promptly and without failing it.
func TestUnreachableSkips(t *testing.T) {
	closed := closedAddr(t)
	tests := []struct {
		name  string
		env   string
		value string
		open  func(t *testing.T)
	}{
		{"postgres", EnvPostgresURL, "postgres://postgres@" + closed + "/test", func(t *testing.T) { Postgres(t) }},
		{"redis", EnvRedisAddr, closed, func(t *testing.T) { Redis(t) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvRequireServices, "")
			t.Setenv(tt.env, tt.value)

			var skipped, returned bool
			start := time.Now()
			ok := t.Run("open", func(t *testing.T) {
				defer func() { skipped = t.Skipped() }()
				tt.open(t)
				returned = true
			})
			require.True(t, ok, "an unreachable server failed the test instead of skipping it")
			require.False(t, returned, "an unreachable server did not end the test")
			require.True(t, skipped, "an unreachable server did not skip the test")
			require.Less(t, time.Since(start), 2*pingTimeout)
		})
	}
}

// TestUnavailable checks the skip-or-fail decision and its messages.
func TestUnavailable(t *testing.T) {
	tests := []struct {
		require  string
		wantFail bool
		wantText string
	}{
		{"", false, "IDEMQ_REQUIRE_SERVICES=1 turns this skip into a failure"},
		{"0", false, "IDEMQ_REQUIRE_SERVICES=1 turns this skip into a failure"},
		{"1", true, "failing instead of skipping because IDEMQ_REQUIRE_SERVICES=1"},
		{"true", true, "failing instead of skipping because IDEMQ_REQUIRE_SERVICES=1"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("require=%q", tt.require), func(t *testing.T) {
			t.Setenv(EnvRequireServices, tt.require)
			rec := &recordingTB{TB: t}
			unavailable(rec, "Redis", "127.0.0.1:1", EnvRedisAddr, errors.New("connection refused"))

			require.Equal(t, tt.wantFail, rec.failed)
			require.Equal(t, !tt.wantFail, rec.skipped)
			require.Contains(t, rec.msg, "testenv: Redis unreachable at 127.0.0.1:1: connection refused")
			require.Contains(t, rec.msg, "set IDEMQ_REDIS_ADDR")
			require.Contains(t, rec.msg, tt.wantText)
		})
	}
}

// recordingTB records Skipf and Fatalf instead of ending the test, so the
// test can look at what unavailable decided.
type recordingTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Skipf(format string, args ...any) {
	r.skipped = true
	r.msg = fmt.Sprintf(format, args...)
}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.failed = true
	r.msg = fmt.Sprintf(format, args...)
}

// closedAddr returns a loopback address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}
