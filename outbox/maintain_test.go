package outbox_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/outbox"
)

// TestStats: the relay reports the pending count and the oldest pending
// event's age, and takes its count back when it stops.
func TestStats(t *testing.T) {
	t.Parallel()
	obs := newCounter()
	opts := outbox.Options{PollInterval: 20 * time.Millisecond, StatsInterval: 10 * time.Millisecond, Observer: obs}
	pool, w := newOutbox(t, opts)
	enqueue(t, pool, w, outbox.Message{ID: "a", Key: "k"}, outbox.Message{ID: "b"}, outbox.Message{ID: "c", Key: "j"})
	rec := newRecorder()
	rec.fail = func(string, []consumer.Message) error {
		return consumer.RetryAfter(time.Hour, errorString("broker down"))
	}
	stop := runRelay(t, pool, rec, opts)
	require.Eventually(t, func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.counts[outbox.MetricPending] == 3 && obs.last[outbox.MetricLag] >= 20*time.Millisecond
	}, 10*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return obs.get(outbox.MetricPublishErrors) == 3 }, 10*time.Second, 5*time.Millisecond)
	require.Zero(t, obs.get(outbox.MetricPublished))
	stop()
	require.Zero(t, obs.get(outbox.MetricPending), "a stopped relay takes its count back")
}

type errorString string

func (e errorString) Error() string { return string(e) }

// TestRetention: published events stay, marked, for the retention, while
// their keys are drained and start again; then they are deleted.
func TestRetention(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	opts := outbox.Options{PollInterval: 20 * time.Millisecond, Retention: time.Hour}
	pool, w := newOutbox(t, opts)
	enqueue(t, pool, w, outbox.Message{ID: "a1", Key: "a"}, outbox.Message{ID: "a2", Key: "a"}, outbox.Message{ID: "u"})
	rec := newRecorder()
	stop := runRelay(t, pool, rec, opts)
	rec.waitDistinct(t, 3, 10*time.Second)
	require.Eventually(t, func() bool {
		return rowCount(t, pool, "idemq_outbox_keys")+rowCount(t, pool, "idemq_outbox_cursors") == 0
	}, 10*time.Second, 5*time.Millisecond)
	// The key starts again at seq 1, beside its kept events.
	enqueue(t, pool, w, outbox.Message{ID: "a3", Key: "a"})
	rec.waitDistinct(t, 4, 10*time.Second)
	require.Eventually(t, func() bool {
		var pending int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM idemq_outbox WHERE published_at IS NULL`).Scan(&pending))
		return pending == 0
	}, 10*time.Second, 5*time.Millisecond)
	stop()
	got, counts := rec.snapshot()
	require.Len(t, got, 4)
	require.Len(t, counts, 4)
	require.Equal(t, []string{"a1", "a2", "a3"}, keyOrder(got, "a"))
	var seqs []int64
	rows, err := pool.Query(ctx, `SELECT seq FROM idemq_outbox WHERE key = 'a' ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		var s int64
		require.NoError(t, rows.Scan(&s))
		seqs = append(seqs, s)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []int64{1, 2, 1}, seqs)

	// A short retention: the cleanup deletes them.
	opts.Retention = time.Millisecond
	opts.CleanupInterval = 10 * time.Millisecond
	stop = runRelay(t, pool, newRecorder(), opts)
	waitDrained(t, pool, "idemq_outbox", 10*time.Second)
	stop()
}
