package idempotencypg_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/idempotency/idempotencypg"
	"github.com/idemq/idemq/internal/testenv"
)

// newInbox returns a pool with the inbox table and a business table,
// counters(name text primary key, n int).
func newInbox(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := testenv.Postgres(t)
	require.NoError(t, idempotencypg.MigrateInbox(t.Context(), pool, idempotencypg.InboxOptions{}))
	_, err := pool.Exec(t.Context(), "CREATE TABLE counters (name text PRIMARY KEY, n int NOT NULL)")
	require.NoError(t, err)
	return pool
}

// bump is the business write: it adds one to counter name through the
// message's transaction.
func bump(ctx context.Context, name string) error {
	tx, ok := idempotencypg.TxFromContext(ctx)
	if !ok {
		return errors.New("no transaction in the context")
	}
	_, err := tx.Exec(ctx, `INSERT INTO counters (name, n) VALUES ($1, 1)
		ON CONFLICT (name) DO UPDATE SET n = counters.n + 1`, name)
	return err
}

func counter(t *testing.T, pool *pgxpool.Pool, name string) int {
	t.Helper()
	var n int
	err := pool.QueryRow(context.Background(), "SELECT n FROM counters WHERE name = $1", name).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	require.NoError(t, err)
	return n
}

func processed(t *testing.T, pool *pgxpool.Pool, key string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, pool.QueryRow(context.Background(),
		"SELECT EXISTS (SELECT 1 FROM idemq_inbox WHERE key = $1)", key).Scan(&ok))
	return ok
}

func inboxHandler(t *testing.T, db idempotencypg.TxBeginner, opts idempotencypg.InboxOptions, h consumer.HandlerFunc) consumer.Handler {
	t.Helper()
	mw, err := idempotencypg.Inbox(db, opts)
	require.NoError(t, err)
	return mw(h)
}

type countingObserver struct{ dups atomic.Int64 }

func (o *countingObserver) Count(name string, delta int64) {
	if name == idempotency.MetricDuplicatesSkipped {
		o.dups.Add(delta)
	}
}
func (o *countingObserver) Observe(string, time.Duration) {}

func TestInboxCommitsTogether(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newInbox(t)
	obs := &countingObserver{}
	var runs atomic.Int32
	h := inboxHandler(t, pool, idempotencypg.InboxOptions{Observer: obs}, func(ctx context.Context, msg *consumer.Message) error {
		runs.Add(1)
		return bump(ctx, "c")
	})

	msg := &consumer.Message{ID: "m1"}
	require.NoError(t, h.Handle(ctx, msg))
	require.Equal(t, 1, counter(t, pool, "c"))
	require.True(t, processed(t, pool, "m1"))

	// A redelivery is acked without running the handler.
	require.NoError(t, h.Handle(ctx, msg))
	require.EqualValues(t, 1, runs.Load())
	require.Equal(t, 1, counter(t, pool, "c"))
	require.EqualValues(t, 1, obs.dups.Load())

	// Outside the inbox there is no transaction.
	_, ok := idempotencypg.TxFromContext(ctx)
	require.False(t, ok)
}

func TestInboxHandlerErrorRollsBack(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newInbox(t)
	boom := errors.New("boom")
	var fail atomic.Bool
	fail.Store(true)
	h := inboxHandler(t, pool, idempotencypg.InboxOptions{}, func(ctx context.Context, msg *consumer.Message) error {
		if err := bump(ctx, "c"); err != nil {
			return err
		}
		if fail.Load() {
			return boom
		}
		return nil
	})

	msg := &consumer.Message{ID: "m1"}
	require.ErrorIs(t, h.Handle(ctx, msg), boom)
	require.Equal(t, 0, counter(t, pool, "c"))
	require.False(t, processed(t, pool, "m1"))

	// The redelivery runs again and commits.
	fail.Store(false)
	require.NoError(t, h.Handle(ctx, msg))
	require.Equal(t, 1, counter(t, pool, "c"))
	require.True(t, processed(t, pool, "m1"))
}

// TestInboxCrashAfterWrite: a panic after the business write is a crash
// before commit: nothing is kept, and the redelivery runs once.
func TestInboxCrashAfterWrite(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newInbox(t)
	var crash atomic.Bool
	crash.Store(true)
	h := inboxHandler(t, pool, idempotencypg.InboxOptions{}, func(ctx context.Context, msg *consumer.Message) error {
		if err := bump(ctx, "c"); err != nil {
			return err
		}
		if crash.Load() {
			panic("crash after the business write")
		}
		return nil
	})

	msg := &consumer.Message{ID: "m1"}
	require.PanicsWithValue(t, "crash after the business write", func() { _ = h.Handle(ctx, msg) })
	require.Equal(t, 0, counter(t, pool, "c"))
	require.False(t, processed(t, pool, "m1"))
	// The connection went back to the pool clean: no open transaction.
	require.Zero(t, pool.Stat().AcquiredConns())

	crash.Store(false)
	require.NoError(t, h.Handle(ctx, msg))
	require.NoError(t, h.Handle(ctx, msg))
	require.Equal(t, 1, counter(t, pool, "c"))
}

// TestInboxConcurrentDuplicates delivers one message to many consumers at
// once: the duplicates wait on the key and are skipped.
func TestInboxConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	const workers = 16
	ctx := t.Context()
	pool := newInbox(t)
	var runs atomic.Int32
	h := inboxHandler(t, pool, idempotencypg.InboxOptions{}, func(ctx context.Context, msg *consumer.Message) error {
		runs.Add(1)
		return bump(ctx, "c")
	})

	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			<-start
			errs <- h.Handle(ctx, &consumer.Message{ID: "same"})
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, runs.Load())
	require.Equal(t, 1, counter(t, pool, "c"))
}

// TestInboxDuplicateWaitsForRollback: a duplicate that waited on a
// delivery which then failed runs the handler itself.
func TestInboxDuplicateWaitsForRollback(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newInbox(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	h := inboxHandler(t, pool, idempotencypg.InboxOptions{}, func(ctx context.Context, msg *consumer.Message) error {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
			return errors.New("first delivery fails")
		}
		return bump(ctx, "c")
	})

	first := make(chan error, 1)
	go func() { first <- h.Handle(ctx, &consumer.Message{ID: "m"}) }()
	<-entered
	second := make(chan error, 1)
	go func() { second <- h.Handle(ctx, &consumer.Message{ID: "m"}) }()

	// The second delivery is blocked on the first's key until it ends.
	require.Eventually(t, func() bool {
		var waiting bool
		require.NoError(t, pool.QueryRow(ctx,
			`SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			 WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO "idemq_inbox"%')`).Scan(&waiting))
		return waiting
	}, 10*time.Second, 5*time.Millisecond)
	close(release)
	require.Error(t, <-first)
	require.NoError(t, <-second)
	require.EqualValues(t, 2, calls.Load())
	require.Equal(t, 1, counter(t, pool, "c"))
}

// TestInboxCommitFailure: a handler that swallows a failed statement
// cannot commit; the error is returned and nothing is kept.
func TestInboxCommitFailure(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newInbox(t)
	h := inboxHandler(t, pool, idempotencypg.InboxOptions{}, func(ctx context.Context, msg *consumer.Message) error {
		if err := bump(ctx, "c"); err != nil {
			return err
		}
		tx, _ := idempotencypg.TxFromContext(ctx)
		_, _ = tx.Exec(ctx, "SELECT 1/0") // aborts the transaction; error ignored
		return nil
	})
	err := h.Handle(ctx, &consumer.Message{ID: "m"})
	require.ErrorIs(t, err, pgx.ErrTxCommitRollback)
	require.False(t, consumer.IsPermanent(err))
	require.Equal(t, 0, counter(t, pool, "c"))
	require.False(t, processed(t, pool, "m"))
}

func TestInboxKeys(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newInbox(t)
	var runs atomic.Int32
	run := func(ctx context.Context, msg *consumer.Message) error { runs.Add(1); return nil }

	h := inboxHandler(t, pool, idempotencypg.InboxOptions{MaxKeyLen: 8}, run)
	err := h.Handle(ctx, &consumer.Message{ID: "123456789"})
	require.True(t, consumer.IsPermanent(err))
	require.ErrorIs(t, err, idempotency.ErrKeyTooLong)
	require.True(t, consumer.IsPermanent(h.Handle(ctx, &consumer.Message{})), "a message without ID")
	require.NoError(t, h.Handle(ctx, &consumer.Message{ID: "12345678"}))
	for _, id := range []string{"nul\x00", "bad\xff"} {
		require.True(t, consumer.IsPermanent(h.Handle(ctx, &consumer.Message{ID: id})), "key %q", id)
	}

	// A key from a header: two IDs, one key, one run.
	h = inboxHandler(t, pool, idempotencypg.InboxOptions{Key: idempotency.KeyFromHeader("Idempotency-Key")}, run)
	hdr := map[string]string{"Idempotency-Key": "op-1"}
	require.NoError(t, h.Handle(ctx, &consumer.Message{ID: "a", Headers: hdr}))
	require.NoError(t, h.Handle(ctx, &consumer.Message{ID: "b", Headers: hdr}))
	require.True(t, consumer.IsPermanent(h.Handle(ctx, &consumer.Message{ID: "c"})))
	require.EqualValues(t, 2, runs.Load())
	require.Zero(t, pool.Stat().AcquiredConns())

	// The default limit is 256 bytes.
	h = inboxHandler(t, pool, idempotencypg.InboxOptions{}, run)
	require.NoError(t, h.Handle(ctx, &consumer.Message{ID: strings.Repeat("x", 256)}))
	require.ErrorIs(t, h.Handle(ctx, &consumer.Message{ID: strings.Repeat("x", 257)}), idempotency.ErrKeyTooLong)
}

func TestInboxOptions(t *testing.T) {
	t.Parallel()
	for _, opts := range []idempotencypg.InboxOptions{
		{MaxKeyLen: -1},
		{MaxKeyLen: 4096},
	} {
		_, err := idempotencypg.Inbox(nopBeginner{}, opts)
		require.Error(t, err, "%+v", opts)
	}
	_, err := idempotencypg.Inbox(nil, idempotencypg.InboxOptions{})
	require.Error(t, err)
	// TxOptions need BeginTx, which a plain Begin cannot provide.
	_, err = idempotencypg.Inbox(nopBeginner{}, idempotencypg.InboxOptions{TxOptions: pgx.TxOptions{IsoLevel: pgx.Serializable}})
	require.Error(t, err)
}

func TestInboxTxOptions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newInbox(t)
	var level string
	h := inboxHandler(t, pool, idempotencypg.InboxOptions{TxOptions: pgx.TxOptions{IsoLevel: pgx.Serializable}},
		func(ctx context.Context, msg *consumer.Message) error {
			tx, _ := idempotencypg.TxFromContext(ctx)
			return tx.QueryRow(ctx, "SHOW transaction_isolation").Scan(&level)
		})
	require.NoError(t, h.Handle(ctx, &consumer.Message{ID: "m"}))
	require.Equal(t, "serializable", level)
}

// TestInboxCancelledContext: a handler whose context is cancelled fails;
// the rollback still runs and the connection is reused, not closed.
func TestInboxCancelledContext(t *testing.T) {
	t.Parallel()
	pool := newInbox(t)
	hctx, cancel := context.WithCancel(t.Context())
	h := inboxHandler(t, pool, idempotencypg.InboxOptions{}, func(ctx context.Context, msg *consumer.Message) error {
		if err := bump(ctx, "c"); err != nil {
			return err
		}
		cancel()
		return ctx.Err()
	})
	require.ErrorIs(t, h.Handle(hctx, &consumer.Message{ID: "m"}), context.Canceled)
	require.Equal(t, 0, counter(t, pool, "c"))
	require.False(t, processed(t, pool, "m"))
	require.Zero(t, pool.Stat().AcquiredConns())
}

func TestDeleteInboxOlderThan(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newInbox(t)
	opts := idempotencypg.InboxOptions{}
	_, err := pool.Exec(ctx, `INSERT INTO idemq_inbox (key, processed_at) VALUES
		('old1', now() - interval '8 days'), ('old2', now() - interval '8 days'), ('old3', now() - interval '10 days'),
		('new1', now() - interval '6 days'), ('new2', now())`)
	require.NoError(t, err)

	var counts []int64
	for range 3 {
		n, err := idempotencypg.DeleteInboxOlderThan(ctx, pool, opts, 7*24*time.Hour, 2)
		require.NoError(t, err)
		counts = append(counts, n)
	}
	require.Equal(t, []int64{2, 1, 0}, counts)
	require.Equal(t, 2, rowCount(t, pool, "idemq_inbox"))
	require.True(t, processed(t, pool, "new1"))
	require.True(t, processed(t, pool, "new2"))

	_, err = idempotencypg.DeleteInboxOlderThan(ctx, pool, opts, 0, 2)
	require.Error(t, err, "age 0 would delete every key")

	// RunInboxReaper deletes the rest once they are old enough.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- idempotencypg.RunInboxReaper(rctx, pool, opts, 5*24*time.Hour, time.Hour, 1) }()
	require.Eventually(t, func() bool { return !processed(t, pool, "new1") }, 10*time.Second, 10*time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.True(t, processed(t, pool, "new2"))
}
