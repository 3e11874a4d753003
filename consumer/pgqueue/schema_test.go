package pgqueue_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/pgqueue"
	"github.com/idemq/idemq/internal/testenv"
)

func TestSchema(t *testing.T) {
	t.Parallel()
	sql, err := pgqueue.Schema(pgqueue.Options{})
	require.NoError(t, err)
	for _, want := range []string{
		`CREATE TABLE IF NOT EXISTS "idemq_queue"`,
		`CREATE SEQUENCE IF NOT EXISTS "idemq_queue_lease_seq"`,
		`CREATE INDEX IF NOT EXISTS "idemq_queue_fetch_idx" ON "idemq_queue" (queue, visible_at, id)`,
	} {
		require.Contains(t, sql, want)
	}

	sql, err = pgqueue.Schema(pgqueue.Options{Table: "ops.jobs", Queue: "ignored"})
	require.NoError(t, err)
	require.Contains(t, sql, `CREATE TABLE IF NOT EXISTS "ops"."jobs"`)
	require.Contains(t, sql, `CREATE SEQUENCE IF NOT EXISTS "ops"."jobs_lease_seq"`)
	require.Contains(t, sql, `CREATE INDEX IF NOT EXISTS "jobs_fetch_idx" ON "ops"."jobs"`)

	// The rules for names are tested in internal/pgschema; these prove
	// pgqueue applies them, with its own suffixes, under its own sentinel.
	for _, bad := range []string{
		"Jobs", "a.b.c",
		strings.Repeat("j", 54), // fits alone, not with "_lease_seq"
	} {
		_, err := pgqueue.Schema(pgqueue.Options{Table: bad})
		require.ErrorIs(t, err, pgqueue.ErrInvalidTable, "table %q", bad)
		_, err = pgqueue.New(nil, pgqueue.Options{Table: bad})
		require.Error(t, err)
	}
	_, err = pgqueue.Schema(pgqueue.Options{Table: strings.Repeat("j", 53)})
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
		wg.Go(func() { errs[i] = pgqueue.Migrate(ctx, pool, pgqueue.Options{}) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, pgqueue.Migrate(ctx, pool, pgqueue.Options{}))

	// A schema-qualified table, used through a pgx.Tx.
	opts := pgqueue.Options{Table: schema + ".jobs", Queue: "emails"}
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, pgqueue.Migrate(ctx, tx, opts))
	require.NoError(t, tx.Commit(ctx))
	src, pub := sourceOn(t, pool, opts)
	require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "welcome"}))
	d := fetchOne(t, src)
	require.Equal(t, "welcome", d.Message().ID)
	require.NoError(t, d.Ack(ctx))
	require.Zero(t, rowCount(t, pool, "jobs"))
	require.Zero(t, rowCount(t, pool, "idemq_queue"))

	require.Error(t, pgqueue.Migrate(ctx, nil, pgqueue.Options{}))
	require.ErrorIs(t, pgqueue.Migrate(ctx, pool, pgqueue.Options{Table: "Bad"}), pgqueue.ErrInvalidTable)
}

func TestOptions(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	for _, tc := range []struct {
		opts pgqueue.Options
		want string
	}{
		{pgqueue.Options{VisibilityTimeout: -time.Second}, "negative VisibilityTimeout"},
		{pgqueue.Options{VisibilityTimeout: time.Microsecond}, "below 1ms"},
		{pgqueue.Options{PollInterval: -time.Second}, "negative PollInterval"},
		{pgqueue.Options{NotifyThrottle: -time.Second}, "negative NotifyThrottle"},
		{pgqueue.Options{Queue: "a\x00b"}, "NUL"},
		{pgqueue.Options{Queue: "\xff"}, "UTF-8"},
	} {
		_, err := pgqueue.New(pool, tc.opts)
		require.ErrorContains(t, err, tc.want, "%+v", tc.opts)
		_, err = pgqueue.NewPublisher(pool, tc.opts)
		require.ErrorContains(t, err, tc.want, "%+v", tc.opts)
	}
	_, err := pgqueue.New(nil, pgqueue.Options{})
	require.ErrorContains(t, err, "nil pool")
	_, err = pgqueue.NewPublisher(nil, pgqueue.Options{})
	require.ErrorContains(t, err, "nil DBTX")

	src, err := pgqueue.New(pool, pgqueue.Options{})
	require.NoError(t, err)
	_, err = src.Fetch(t.Context(), 0)
	require.ErrorContains(t, err, "max must be positive")
	require.NoError(t, src.Close())
	require.NoError(t, src.Close())
}

// TestQueuesShareTable keeps queues in one table apart.
func TestQueuesShareTable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := testenv.Postgres(t)
	require.NoError(t, pgqueue.Migrate(ctx, pool, pgqueue.Options{}))
	fast := pgqueue.Options{PollInterval: 20 * time.Millisecond}
	a, pubA := sourceOn(t, pool, withQueue(fast, "a"))
	b, pubB := sourceOn(t, pool, withQueue(fast, "b"))
	require.NoError(t, pubA.Publish(ctx, consumer.Message{ID: "for-a"}))
	require.NoError(t, pubB.Publish(ctx, consumer.Message{ID: "for-b"}))

	da := fetchOne(t, a)
	require.Equal(t, "for-a", da.Message().ID)
	expectNothing(t, a, 100*time.Millisecond)
	db := fetchOne(t, b)
	require.Equal(t, "for-b", db.Message().ID)
	require.NoError(t, da.Ack(ctx))
	require.NoError(t, db.Ack(ctx))
	require.Zero(t, rowCount(t, pool, "idemq_queue"))
}

func withQueue(o pgqueue.Options, q string) pgqueue.Options {
	o.Queue = q
	return o
}

// TestPublishRefusesText publishes batches with one message that text
// columns cannot keep as it is: nothing of the batch is written.
func TestPublishRefusesText(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, pub, pool := newQueue(t, pgqueue.Options{})
	good := consumer.Message{ID: "good", Body: []byte{0, 0xff}} // bodies may hold any bytes
	for _, bad := range []consumer.Message{
		{ID: "nul\x00id"},
		{ID: "\xffid"},
		{ID: "k", Key: "nul\x00key"},
		{ID: "h", Headers: map[string]string{"name": "bad\xff"}},
		{ID: "h", Headers: map[string]string{"bad\x00": "v"}},
	} {
		err := pub.Publish(ctx, good, bad)
		require.ErrorContains(t, err, "not UTF-8 text without NUL bytes", "%+v", bad)
	}
	require.Zero(t, rowCount(t, pool, "idemq_queue"))
	require.NoError(t, pub.Publish(ctx))
	require.Zero(t, rowCount(t, pool, "idemq_queue"))
}

// TestNackDelayPrompt checks that a Fetch waits for a Nack's delay by
// itself, however long the poll interval.
func TestNackDelayPrompt(t *testing.T) {
	t.Parallel()
	const delay = 600 * time.Millisecond
	ctx := t.Context()
	src, pub, _ := newQueue(t, pgqueue.Options{PollInterval: time.Hour})
	require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "later"}))
	d := fetchOne(t, src)
	nacked := time.Now()
	require.NoError(t, d.Nack(ctx, delay))
	d = fetchOne(t, src)
	took := time.Since(nacked)
	require.Equal(t, 2, d.Message().Attempt)
	require.GreaterOrEqual(t, took, delay)
	require.Less(t, took, delay+500*time.Millisecond, "a Nack's delay of %s was honoured after %s", delay, took)
	require.NoError(t, d.Ack(ctx))
}

// TestQueryExecModes runs a queue on pools configured with each of pgx's
// query modes, which send statements differently (the simple protocol, for
// PgBouncer, inlines arguments).
func TestQueryExecModes(t *testing.T) {
	t.Parallel()
	for _, mode := range []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement,
		pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec,
		pgx.QueryExecModeSimpleProtocol,
	} {
		for _, notify := range []bool{false, true} {
			name := mode.String()
			if notify {
				name += "/Notify"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ctx := t.Context()
				opts := pgqueue.Options{Notify: notify, PollInterval: 20 * time.Millisecond}
				_, _, migrated := newQueue(t, opts)
				cfg := migrated.Config()
				cfg.ConnConfig.DefaultQueryExecMode = mode
				pool, err := pgxpool.NewWithConfig(ctx, cfg)
				require.NoError(t, err)
				t.Cleanup(pool.Close) // before the schema is dropped
				src, pub := sourceOn(t, pool, opts)

				enqueued := time.Date(2024, 2, 29, 12, 0, 0, 123456000, time.UTC)
				want := []consumer.Message{
					{ID: "full", Key: "k'ey", Body: []byte{0, '\'', '\\', 0xff, '"'}, EnqueuedAt: enqueued,
						Headers: map[string]string{"quote": `it's "quoted" \ $1`, "empty": "", "unicode": "héllo, 世界"}},
					{Body: []byte("no id")},
					{ID: "empty-body", Body: []byte{}},
					{ID: "nil-body"},
				}
				require.NoError(t, pub.Publish(ctx, want...))
				got := map[string]consumer.Delivery{}
				for len(got) < len(want) {
					ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
					ds, err := src.Fetch(ctx, 10)
					cancel()
					require.NoError(t, err)
					for _, d := range ds {
						got[string(d.Message().Body)+"|"+d.Message().ID] = d
					}
				}
				var full consumer.Delivery
				for _, d := range got {
					m := d.Message()
					require.Equal(t, 1, m.Attempt)
					switch {
					case m.ID == "full":
						full = d
						require.Equal(t, want[0].Key, m.Key)
						require.Equal(t, want[0].Body, m.Body)
						require.Equal(t, want[0].Headers, m.Headers)
						require.True(t, enqueued.Equal(m.EnqueuedAt), "EnqueuedAt %s", m.EnqueuedAt)
					case string(m.Body) == "no id":
						require.Len(t, m.ID, 32)
						require.Nil(t, m.Headers)
						require.WithinDuration(t, time.Now(), m.EnqueuedAt, time.Minute)
					case m.ID == "empty-body":
						require.NotNil(t, m.Body)
						require.Empty(t, m.Body)
					case m.ID == "nil-body":
						require.Nil(t, m.Body)
					default:
						t.Fatalf("unexpected message %+v", m)
					}
				}
				require.NoError(t, full.Nack(ctx, 0))
				d := fetchOne(t, src)
				require.Equal(t, "full", d.Message().ID)
				require.Equal(t, 2, d.Message().Attempt)
				require.NoError(t, d.Extend(ctx))
				for _, d2 := range got {
					if d2 != full {
						require.NoError(t, d2.Ack(ctx))
					}
				}
				require.NoError(t, d.Ack(ctx))
				require.Zero(t, rowCount(t, pool, "idemq_queue"))
			})
		}
	}
}
