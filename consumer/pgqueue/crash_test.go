package pgqueue_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/pgqueue"
	"github.com/idemq/idemq/internal/testenv"
)

// Environment of the crash child: set by TestCrashRedelivers for the copy
// of the test binary it starts.
const (
	envCrashChild  = "IDEMQ_PGQUEUE_CRASH_CHILD" // "1" in the child
	envCrashURL    = "IDEMQ_PGQUEUE_CRASH_URL"
	envCrashSchema = "IDEMQ_PGQUEUE_CRASH_SCHEMA"
	envCrashLease  = "IDEMQ_PGQUEUE_CRASH_LEASE" // a time.Duration
	envCrashHold   = "IDEMQ_PGQUEUE_CRASH_HOLD"  // how many deliveries to hold

	crashHolding = "HOLDING" // the child's line: HOLDING <n>
)

// TestCrashRedelivers kills a consumer process that holds messages, with
// SIGKILL so that nothing in it runs on the way out, and checks that
// another consumer gets every message once its leases run out: the held
// ones as their second delivery, the others as their first, none lost, none
// twice.
func TestCrashRedelivers(t *testing.T) {
	t.Parallel()
	const (
		hold  = 20 // what the child holds when it is killed
		spare = 10 // what it never fetches (its MaxInFlight is hold)
		lease = 2 * time.Second
	)
	ctx := t.Context()
	pool, schema := testenv.PostgresWithSchema(t)
	opts := pgqueue.Options{VisibilityTimeout: lease, PollInterval: 50 * time.Millisecond}
	require.NoError(t, pgqueue.Migrate(ctx, pool, opts))
	pub, err := pgqueue.NewPublisher(pool, opts)
	require.NoError(t, err)
	msgs := make([]consumer.Message, hold+spare)
	for i := range msgs {
		msgs[i] = consumer.Message{ID: fmt.Sprintf("crash-%02d", i), Body: []byte{byte(i)}}
	}
	require.NoError(t, pub.Publish(ctx, msgs...))

	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	child.Env = append(os.Environ(),
		envCrashChild+"=1",
		envCrashURL+"="+testenv.PostgresURL(),
		envCrashSchema+"="+schema,
		envCrashLease+"="+lease.String(),
		envCrashHold+"="+strconv.Itoa(hold),
	)
	stdout, err := child.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	child.Stderr = &stderr
	require.NoError(t, child.Start())
	reaped := false
	defer func() {
		if !reaped {
			_ = child.Process.Kill()
			_ = child.Wait()
		}
	}()

	// Wait for the child to say it holds them, or to end without saying so.
	lines := bufio.NewScanner(stdout)
	var said string
	for lines.Scan() {
		if strings.HasPrefix(lines.Text(), crashHolding) {
			said = lines.Text()
			break
		}
	}
	require.Equal(t, fmt.Sprintf("%s %d", crashHolding, hold), said, "the child ended without holding its messages; stderr:\n%s", stderr.String())
	require.Equal(t, hold, leasedRows(t, pool), "rows leased by the child")

	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	err = child.Wait()
	reaped = true
	require.Error(t, err, "the child should have died of SIGKILL")
	killed := time.Now()

	// A consumer here gets everything: the spares at once, the held ones
	// when the child's leases end.
	src, err := pgqueue.New(pool, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })
	var (
		mu       sync.Mutex
		attempts = map[string][]int{}
		arrived  = map[string]time.Time{}
		done     atomic.Int64
	)
	runCtx, stop := context.WithTimeout(ctx, 10*lease)
	defer stop()
	c, err := consumer.New(src, consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		attempts[m.ID] = append(attempts[m.ID], m.Attempt)
		arrived[m.ID] = time.Now()
		if done.Add(1) == hold+spare {
			stop()
		}
		return nil
	}), consumer.Config{MaxInFlight: 64})
	require.NoError(t, err)
	require.NoError(t, c.Run(runCtx))

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, attempts, hold+spare, "messages lost")
	held := 0
	for _, m := range msgs {
		got := attempts[m.ID]
		require.Len(t, got, 1, "message %s handled %d times", m.ID, len(got))
		switch got[0] {
		case 2:
			held++
			// The child extended each lease at least every half lease,
			// so the last one ended at least half a lease after the kill.
			require.False(t, arrived[m.ID].Before(killed.Add(lease/4)),
				"message %s, held by the killed child, was redelivered %s after the kill, before its lease could end",
				m.ID, arrived[m.ID].Sub(killed))
		case 1:
		default:
			t.Fatalf("message %s delivered with Attempt %d", m.ID, got[0])
		}
	}
	require.Equal(t, hold, held, "messages the child held, redelivered with Attempt 2")
	require.Zero(t, rowCount(t, pool, "idemq_queue"))
}

func leasedRows(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(t.Context(),
		`SELECT count(*) FROM idemq_queue WHERE lease_token IS NOT NULL AND visible_at > statement_timestamp()`).Scan(&n))
	return n
}

// TestCrashChild is the consumer that TestCrashRedelivers kills. It runs
// only in the process started by that test.
func TestCrashChild(t *testing.T) {
	if os.Getenv(envCrashChild) != "1" {
		t.Skip("run by TestCrashRedelivers in a process of its own")
	}
	lease, err := time.ParseDuration(os.Getenv(envCrashLease))
	require.NoError(t, err)
	hold, err := strconv.Atoi(os.Getenv(envCrashHold))
	require.NoError(t, err)
	cfg, err := pgxpool.ParseConfig(os.Getenv(envCrashURL))
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["search_path"] = os.Getenv(envCrashSchema)
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	src, err := pgqueue.New(pool, pgqueue.Options{VisibilityTimeout: lease, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)

	var held atomic.Int64
	c, err := consumer.New(src, consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		if held.Add(1) == int64(hold) {
			fmt.Printf("%s %d\n", crashHolding, hold)
		}
		select {} // until killed
	}), consumer.Config{MaxInFlight: hold})
	require.NoError(t, err)
	require.NoError(t, c.Run(context.Background()))
}
