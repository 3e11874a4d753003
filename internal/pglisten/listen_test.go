package pglisten_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/internal/pglisten"
	"github.com/idemq/idemq/internal/testenv"
)

// start starts a Listener on a channel of the test's own and returns it
// with its wake count.
func start(t *testing.T, throttle time.Duration, logs *logBuffer) (*pgxpool.Pool, string, *atomic.Int64) {
	t.Helper()
	pool, schema := testenv.PostgresWithSchema(t)
	channel := "pglisten:" + schema
	var wakes atomic.Int64
	l := pglisten.Start(pool, pglisten.Config{
		Channel:  channel,
		Throttle: throttle,
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
		Name:     "pglistentest",
		Owner:    "test",
		Wake:     func() { wakes.Add(1) },
	})
	t.Cleanup(func() {
		l.Stop()
		require.Zero(t, listeners(t, pool, channel), "Stop left the LISTEN connection open")
	})
	// The first wake-up comes once LISTEN took effect.
	require.Eventually(t, func() bool { return wakes.Load() == 1 }, 10*time.Second, time.Millisecond)
	return pool, channel, &wakes
}

func notify(t *testing.T, pool *pgxpool.Pool, channel string) {
	t.Helper()
	_, err := pool.Exec(t.Context(), "SELECT pg_notify($1, '')", channel)
	require.NoError(t, err)
}

func TestWakesOnNotify(t *testing.T) {
	t.Parallel()
	pool, channel, wakes := start(t, time.Millisecond, &logBuffer{})
	for want := int64(2); want < 5; want++ {
		notify(t, pool, channel)
		require.Eventually(t, func() bool { return wakes.Load() == want }, 10*time.Second, time.Millisecond)
	}
}

// TestThrottle folds a burst of notifications into one wake-up at the end
// of the throttle, or two when the first of them comes after it.
func TestThrottle(t *testing.T) {
	t.Parallel()
	const throttle = 300 * time.Millisecond
	pool, channel, wakes := start(t, throttle, &logBuffer{})
	for range 20 {
		notify(t, pool, channel)
	}
	require.Eventually(t, func() bool { return wakes.Load() >= 2 }, 10*time.Second, time.Millisecond)
	require.Never(t, func() bool { return wakes.Load() > 3 }, 2*throttle, 10*time.Millisecond)
}

// TestReconnects kills the LISTEN connection on the server: the loop logs
// it, connects again, and wakes on connecting and for notifications again.
func TestReconnects(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	pool, channel, wakes := start(t, time.Millisecond, logs)
	pid := listenerPID(t, pool, channel, 0)

	var killed bool
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT pg_terminate_backend($1)", pid).Scan(&killed))
	require.True(t, killed)
	require.NotEqual(t, pid, listenerPID(t, pool, channel, pid))
	require.Contains(t, logs.String(), `msg="pglistentest: LISTEN connection failed`)
	require.Eventually(t, func() bool { return wakes.Load() == 2 }, 10*time.Second, time.Millisecond,
		"no wake-up on reconnecting")

	notify(t, pool, channel)
	require.Eventually(t, func() bool { return wakes.Load() == 3 }, 10*time.Second, time.Millisecond)
}

// listenerPID waits for the backend that listens on channel, other than
// not, and returns its pid.
func listenerPID(t *testing.T, pool *pgxpool.Pool, channel string, not int) int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		err := pool.QueryRow(t.Context(), `
SELECT pid FROM pg_stat_activity WHERE query = $1 AND pid <> $2`, listenSQL(channel), not).Scan(&pid)
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "no backend LISTENs on %s", channel)
	return pid
}

func listeners(t *testing.T, pool *pgxpool.Pool, channel string) int {
	var n int
	require.Eventually(t, func() bool {
		err := pool.QueryRow(context.Background(),
			`SELECT count(*) FROM pg_stat_activity WHERE query = $1`, listenSQL(channel)).Scan(&n)
		return err == nil && n == 0
	}, 10*time.Second, 10*time.Millisecond)
	return n
}

func listenSQL(channel string) string { return "LISTEN " + pgx.Identifier{channel}.Sanitize() }

// logBuffer keeps what a slog.TextHandler writes, for the goroutines of
// the loop and of the test at once.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
