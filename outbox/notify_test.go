package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/internal/testenv"
	"github.com/idemq/idemq/outbox"
)

// TestNotifyWakes: with polling all but off, events still go at once. A
// notification wakes an idle relay; a relay that has just been busy looks
// every NotifyThrottle for a while, and writers do not notify meanwhile;
// once it has gone back to sleep, writers notify again.
func TestNotifyWakes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	opts := outbox.Options{Table: "notify_events", Notify: true, PollInterval: time.Hour}
	pool, schema := testenv.PostgresWithSchema(t)
	require.NoError(t, outbox.Migrate(ctx, pool, opts))
	w, err := outbox.NewWriter(opts)
	require.NoError(t, err)

	// Listen beside the relay, to see what writers send.
	cfg, err := pgx.ParseConfig(testenv.PostgresURL())
	require.NoError(t, err)
	cfg.RuntimeParams["search_path"] = schema
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, `LISTEN "outbox:notify_events"`)
	require.NoError(t, err)
	notified := func(within time.Duration) bool {
		wctx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		_, err := conn.WaitForNotification(wctx)
		return err == nil
	}
	awake := func() bool {
		var yes bool
		require.NoError(t, pool.QueryRow(ctx, `SELECT until > now() + interval '900ms' FROM notify_events_awake`).Scan(&yes))
		return yes
	}
	asleep := func() bool {
		var yes bool
		require.NoError(t, pool.QueryRow(ctx,
			`SELECT until < now() AND until > '-infinity' FROM notify_events_awake`).Scan(&yes))
		return yes
	}

	rec := newRecorder()
	runRelay(t, pool, rec, opts)
	// Its LISTEN session, once connected, wakes the relay once, for what
	// was committed before: it looks, lingers a while and sleeps. (The
	// table has a name of its own: channels are per database, and other
	// tests notify the default table's.)
	require.Eventually(t, asleep, 5*time.Second, 10*time.Millisecond)

	enqueue(t, pool, w, outbox.Message{ID: "1", Key: "k"})
	require.True(t, notified(5*time.Second), "a writer did not notify a sleeping relay")
	rec.waitDistinct(t, 1, 5*time.Second)

	// Busy: the relay promised to look often. Writers rely on it.
	require.Eventually(t, awake, 5*time.Second, time.Millisecond)
	enqueue(t, pool, w, outbox.Message{ID: "2", Key: "k"})
	rec.waitDistinct(t, 2, 5*time.Second)
	require.False(t, notified(50*time.Millisecond), "a writer notified an awake relay")

	// Asleep again: the next writer notifies.
	require.Eventually(t, asleep, 5*time.Second, 10*time.Millisecond)
	enqueue(t, pool, w, outbox.Message{ID: "3"})
	require.True(t, notified(5*time.Second), "a writer did not notify a sleeping relay")
	rec.waitDistinct(t, 3, 5*time.Second)
}
