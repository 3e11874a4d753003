package outbox_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/internal/testenv"
	"github.com/idemq/idemq/outbox"
)

func TestSchema(t *testing.T) {
	t.Parallel()
	sql, err := outbox.Schema(outbox.Options{})
	require.NoError(t, err)
	for _, want := range []string{
		`CREATE TABLE IF NOT EXISTS "idemq_outbox" (`,
		`CREATE TABLE IF NOT EXISTS "idemq_outbox_keys" (`,
		`CREATE TABLE IF NOT EXISTS "idemq_outbox_cursors" (`,
		`CREATE TABLE IF NOT EXISTS "idemq_outbox_failed" (`,
		`CREATE SEQUENCE IF NOT EXISTS "idemq_outbox_token_seq"`,
		`CREATE UNIQUE INDEX IF NOT EXISTS "idemq_outbox_pending_idx" ON "idemq_outbox" (key, seq)`,
	} {
		require.Contains(t, sql, want)
	}

	sql, err = outbox.Schema(outbox.Options{Table: "ops.events", Notify: true})
	require.NoError(t, err)
	require.Contains(t, sql, `CREATE TABLE IF NOT EXISTS "ops"."events" (`)
	require.Contains(t, sql, `CREATE TABLE IF NOT EXISTS "ops"."events_keys" (`)
	require.Contains(t, sql, `CREATE INDEX IF NOT EXISTS "events_ready_idx" ON "ops"."events_cursors" (ready_at)`)

	// The rules for names are tested in internal/pgschema; these prove
	// outbox applies them, with its own suffixes, under its own sentinel.
	for _, bad := range []string{
		"Events", "a.b.c",
		strings.Repeat("e", 50), // fits alone, not with "_published_idx"
	} {
		_, err := outbox.Schema(outbox.Options{Table: bad})
		require.ErrorIs(t, err, outbox.ErrInvalidTable, "table %q", bad)
		_, err = outbox.NewWriter(outbox.Options{Table: bad})
		require.ErrorIs(t, err, outbox.ErrInvalidTable)
		require.ErrorIs(t, outbox.Migrate(context.Background(), nopDB{}, outbox.Options{Table: bad}), outbox.ErrInvalidTable)
	}
	_, err = outbox.Schema(outbox.Options{Table: strings.Repeat("e", 63-len("_published_idx"))})
	require.NoError(t, err)
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, schema := testenv.PostgresWithSchema(t)

	// Concurrently, and again: both fine.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = outbox.Migrate(ctx, pool, outbox.Options{}) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, outbox.Migrate(ctx, pool, outbox.Options{}))

	// A schema-qualified table, migrated through a pgx.Tx, used end to
	// end.
	opts := outbox.Options{Table: schema + ".events", Notify: true, PollInterval: 20 * time.Millisecond}
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, outbox.Migrate(ctx, tx, opts))
	require.NoError(t, tx.Commit(ctx))
	w, err := outbox.NewWriter(opts)
	require.NoError(t, err)
	enqueue(t, pool, w, outbox.Message{ID: "hello", Key: "k"})
	rec := newRecorder()
	stop := runRelay(t, pool, rec, opts)
	rec.waitDistinct(t, 1, 10*time.Second)
	waitDrained(t, pool, "events", 10*time.Second)
	stop()
	require.Zero(t, rowCount(t, pool, "idemq_outbox"))
}

func TestValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w, err := outbox.NewWriter(outbox.Options{})
	require.NoError(t, err)
	for name, m := range map[string]outbox.Message{
		"id":           {ID: "bad\x00"},
		"key":          {Key: "\xff"},
		"destination":  {Destination: "a\x00b"},
		"header name":  {Headers: map[string]string{"\xfe": "v"}},
		"header value": {Headers: map[string]string{"h": "\x00"}},
	} {
		err := w.Enqueue(ctx, nopDB{}, m)
		require.ErrorContains(t, err, "not UTF-8 text without NUL bytes", name)
	}
	require.Error(t, w.Enqueue(ctx, nil, outbox.Message{}))
	require.NoError(t, w.Enqueue(ctx, nopDB{}), "nothing to enqueue, nothing run")
	_, err = w.Requeue(ctx, nil, "x")
	require.Error(t, err)

	pub := outbox.To(&consumer.MemQueue{})
	for _, opts := range []outbox.Options{
		{Lease: -time.Second},
		{Lease: time.Millisecond},
		{PollInterval: -1},
		{BatchKeys: -1},
		{Concurrency: -1},
		{MaxAttempts: -1},
		{OnFailure: 7},
		{Retention: -time.Hour},
		{Backoff: consumer.Backoff{Initial: -1}},
		{Backoff: consumer.Backoff{Initial: time.Minute, Max: time.Second}},
	} {
		_, err := outbox.NewRelay(testPoolPlaceholder, pub, opts)
		require.Error(t, err, "%+v", opts)
	}
	_, err = outbox.NewRelay(nil, pub, outbox.Options{})
	require.Error(t, err)
	_, err = outbox.NewRelay(testPoolPlaceholder, nil, outbox.Options{})
	require.Error(t, err)
}

func TestRunTwice(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	require.NoError(t, outbox.Migrate(t.Context(), pool, outbox.Options{}))
	r, err := outbox.NewRelay(pool, newRecorder(), outbox.Options{Logger: quietLogger()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	// A Run on a done context returns at once: nil when it could have
	// run, ErrRunning while the other runs.
	ended, endProbe := context.WithCancel(t.Context())
	endProbe()
	require.Eventually(t, func() bool { return r.Run(ended) == outbox.ErrRunning }, 5*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.NoError(t, r.Run(ended), "once stopped, it may run again")
}
