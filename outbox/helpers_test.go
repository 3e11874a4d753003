package outbox_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/internal/testenv"
	"github.com/idemq/idemq/outbox"
)

// newOutbox migrates opts.Table on a schema of its own and returns the pool
// and a Writer.
func newOutbox(t testing.TB, opts outbox.Options) (*pgxpool.Pool, *outbox.Writer) {
	t.Helper()
	pool := testenv.Postgres(t)
	require.NoError(t, outbox.Migrate(context.Background(), pool, opts))
	w, err := outbox.NewWriter(opts)
	require.NoError(t, err)
	return pool, w
}

// sizedPool returns a pool on the same schema as pool with room for conns
// connections, closed when t ends (before the schema is dropped).
func sizedPool(t testing.TB, pool *pgxpool.Pool, conns int32) *pgxpool.Pool {
	t.Helper()
	cfg := pool.Config()
	cfg.MaxConns = conns
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

// enqueue enqueues msgs in a transaction of their own and commits it.
func enqueue(t testing.TB, pool *pgxpool.Pool, w *outbox.Writer, msgs ...outbox.Message) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	require.NoError(t, w.Enqueue(ctx, tx, msgs...))
	require.NoError(t, tx.Commit(ctx))
}

// published is one message as a Publisher received it.
type published struct {
	dest string
	msg  consumer.Message
	at   time.Time
}

// recorder is an in-memory Publisher that records every message it is
// given, in order, and lets a test wait until it has seen enough.
type recorder struct {
	// fail, when set, is asked before each call; an error it returns is
	// the call's.
	fail func(dest string, msgs []consumer.Message) error

	mu      sync.Mutex
	got     []published
	ids     map[string]int // publishes per message ID
	changed chan struct{}  // closed at the next publish
}

var _ outbox.Publisher = (*recorder)(nil)

func newRecorder() *recorder {
	return &recorder{ids: map[string]int{}, changed: make(chan struct{})}
}

func (r *recorder) Publish(_ context.Context, dest string, msgs ...consumer.Message) error {
	if r.fail != nil {
		if err := r.fail(dest, msgs); err != nil {
			return err
		}
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.got = append(r.got, published{dest: dest, msg: m, at: now})
		r.ids[m.ID]++
	}
	close(r.changed)
	r.changed = make(chan struct{})
	return nil
}

// waitDistinct waits until n distinct message IDs were published.
func (r *recorder) waitDistinct(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		have, ch := len(r.ids), r.changed
		r.mu.Unlock()
		if have >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("after %s, %d distinct messages published, want %d", timeout, have, n)
		}
	}
}

func (r *recorder) snapshot() ([]published, map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make(map[string]int, len(r.ids))
	for k, v := range r.ids {
		ids[k] = v
	}
	return append([]published(nil), r.got...), ids
}

// runRelay runs a relay until the test ends (or stop is called) and fails
// the test if Run returns an error.
func runRelay(t testing.TB, pool *pgxpool.Pool, pub outbox.Publisher, opts outbox.Options) (stop func()) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	r, err := outbox.NewRelay(pool, pub, opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return stop
}

// rowCount counts the rows of table.
func rowCount(t testing.TB, pool *pgxpool.Pool, table string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n))
	return n
}

// requireDrained checks that the outbox holds nothing: no event, no key.
func requireDrained(t testing.TB, pool *pgxpool.Pool, table string) {
	t.Helper()
	for _, tb := range []string{table, table + "_keys", table + "_cursors"} {
		require.Zero(t, rowCount(t, pool, tb), "rows left in %s", tb)
	}
}

// waitDrained waits until the outbox holds nothing, polling: the relay's
// last writes are not visible to the Publisher.
func waitDrained(t testing.TB, pool *pgxpool.Pool, table string, timeout time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		n := 0
		for _, tb := range []string{table, table + "_keys", table + "_cursors"} {
			n += rowCount(t, pool, tb)
		}
		return n == 0
	}, timeout, 10*time.Millisecond)
}

// quietLogger drops the relay's logs of planned failures.
func quietLogger() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

// counter is an Observer that keeps its counts.
type counter struct {
	mu     sync.Mutex
	counts map[string]int64
	last   map[string]time.Duration
}

func newCounter() *counter {
	return &counter{counts: map[string]int64{}, last: map[string]time.Duration{}}
}

func (c *counter) Count(name string, delta int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[name] += delta
}

func (c *counter) Observe(name string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last[name] = d
}

func (c *counter) get(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[name]
}

// nopDB is a DBTX that must not be called: for checks that fail before
// any statement.
type nopDB struct{ outbox.DBTX }

// testPoolPlaceholder is a pool that is never connected: NewRelay only
// keeps it.
var testPoolPlaceholder = func() *pgxpool.Pool {
	p, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none")
	if err != nil {
		panic(err)
	}
	return p
}()
