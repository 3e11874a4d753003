package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/outbox"
)

// fastRetries retries at once, more or less: tests wait for attempts, not
// for the backoff.
var fastRetries = consumer.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}

// failing makes the calls that carry one of the given IDs fail: each ID
// fails times calls (forever when times < 0) until healed.
type failing struct {
	mu     sync.Mutex
	left   map[string]int
	healed bool
	err    func(id string) error
}

func newFailing(times int, ids ...string) *failing {
	f := &failing{left: map[string]int{}, err: func(id string) error { return fmt.Errorf("broker refused %s", id) }}
	for _, id := range ids {
		f.left[id] = times
	}
	return f
}

func (f *failing) check(_ string, msgs []consumer.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.healed {
		return nil
	}
	for _, m := range msgs {
		if n, ok := f.left[m.ID]; ok && n != 0 {
			f.left[m.ID] = n - 1
			return f.err(m.ID)
		}
	}
	return nil
}

func (f *failing) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.healed = true
}

// keyOrder returns the IDs published for key, in order.
func keyOrder(got []published, key string) []string {
	var out []string
	for _, p := range got {
		if p.msg.Key == key {
			out = append(out, p.msg.ID)
		}
	}
	return out
}

// TestRetries is the fourth acceptance test, first half: a publisher that
// fails a few times then succeeds gets every event published, and a key
// waits for its failing event, so its order holds.
func TestRetries(t *testing.T) {
	t.Parallel()
	opts := outbox.Options{PollInterval: 20 * time.Millisecond, Backoff: fastRetries, MaxAttempts: 10}
	pool, w := newOutbox(t, opts)
	enqueue(t, pool, w,
		outbox.Message{ID: "k-0", Key: "k"}, outbox.Message{ID: "k-1", Key: "k"},
		outbox.Message{ID: "k-2", Key: "k"}, outbox.Message{ID: "k-3", Key: "k"},
		outbox.Message{ID: "u-0"}, outbox.Message{ID: "u-1"}, outbox.Message{ID: "u-2"},
	)
	rec := newRecorder()
	rec.fail = newFailing(3, "k-1", "u-1").check
	obs := newCounter()
	opts.Observer = obs
	stop := runRelay(t, pool, rec, opts)
	rec.waitDistinct(t, 7, 10*time.Second)
	waitDrained(t, pool, "idemq_outbox", 10*time.Second)
	stop()

	got, counts := rec.snapshot()
	require.Len(t, counts, 7)
	require.Equal(t, []string{"k-0", "k-1", "k-2", "k-3"}, keyOrder(got, "k"))
	require.Equal(t, int64(6), obs.get(outbox.MetricPublishErrors), "3 failed calls for each of two events")
	require.Equal(t, int64(len(got)), obs.get(outbox.MetricPublished))
	require.Zero(t, obs.get(outbox.MetricFailures))
	require.Zero(t, rowCount(t, pool, "idemq_outbox_failed"))
}

// TestGiveUp is the fourth acceptance test, second half: an event that
// always fails is moved to the failed table after MaxAttempts and counted,
// and its key's later events still flow. A permanent error gives up at
// once. Requeue brings the failed events back.
func TestGiveUp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	obs := newCounter()
	opts := outbox.Options{PollInterval: 20 * time.Millisecond, Backoff: fastRetries, MaxAttempts: 3, Observer: obs}
	pool, w := newOutbox(t, opts)
	enqueue(t, pool, w,
		outbox.Message{ID: "k-0", Key: "k", Destination: "d"},
		outbox.Message{ID: "k-poison", Key: "k", Destination: "d", Body: []byte("bad"), Headers: map[string]string{"h": "v"}},
		outbox.Message{ID: "k-2", Key: "k", Destination: "d"},
		outbox.Message{ID: "k-3", Key: "k", Destination: "d"},
		outbox.Message{ID: "j-0", Key: "j"},
		outbox.Message{ID: "j-permanent", Key: "j"},
		outbox.Message{ID: "j-2", Key: "j"},
		outbox.Message{ID: "u-poison"},
		outbox.Message{ID: "u-1"},
	)
	fail := newFailing(-1, "k-poison", "u-poison", "j-permanent")
	fail.err = func(id string) error {
		if id == "j-permanent" {
			return consumer.Permanent(errors.New("does not encode"))
		}
		return fmt.Errorf("broker refused %s", id)
	}
	rec := newRecorder()
	rec.fail = fail.check
	stop := runRelay(t, pool, rec, opts)
	rec.waitDistinct(t, 6, 10*time.Second)
	waitDrained(t, pool, "idemq_outbox", 10*time.Second)
	stop()

	got, counts := rec.snapshot()
	require.Len(t, counts, 6)
	require.Equal(t, []string{"k-0", "k-2", "k-3"}, keyOrder(got, "k"))
	require.Equal(t, []string{"j-0", "j-2"}, keyOrder(got, "j"))
	require.Equal(t, int64(3), obs.get(outbox.MetricFailures))

	type failedRow struct {
		id, key, dest, lastError string
		seq                      int64
		attempts                 int
		body                     []byte
		headers                  map[string]string
	}
	rows, err := pool.Query(ctx, `
SELECT message_id, key, coalesce(seq, 0), destination, attempts, last_error, body, headers
FROM idemq_outbox_failed ORDER BY message_id`)
	require.NoError(t, err)
	var failed []failedRow
	for rows.Next() {
		var f failedRow
		require.NoError(t, rows.Scan(&f.id, &f.key, &f.seq, &f.dest, &f.attempts, &f.lastError, &f.body, &f.headers))
		failed = append(failed, f)
	}
	require.NoError(t, rows.Err())
	require.Len(t, failed, 3)
	require.Equal(t, "j-permanent", failed[0].id)
	require.Equal(t, 1, failed[0].attempts, "a permanent error gives up at once")
	require.Contains(t, failed[0].lastError, "does not encode")
	require.Equal(t, failedRow{id: "k-poison", key: "k", seq: 2, dest: "d", attempts: 3,
		lastError: "broker refused k-poison", body: []byte("bad"), headers: map[string]string{"h": "v"}}, failed[1])
	require.Equal(t, "u-poison", failed[2].id)
	require.Equal(t, 3, failed[2].attempts)

	// Fixed: requeue them, behind what their keys have now.
	fail.heal()
	enqueue(t, pool, w, outbox.Message{ID: "k-4", Key: "k"})
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	n, err := w.Requeue(ctx, tx, "k-poison", "u-poison", "j-permanent", "not-failed")
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.NoError(t, tx.Commit(ctx))
	rec2 := newRecorder()
	stop = runRelay(t, pool, rec2, opts)
	rec2.waitDistinct(t, 4, 10*time.Second)
	waitDrained(t, pool, "idemq_outbox", 10*time.Second)
	stop()
	got, counts = rec2.snapshot()
	require.Len(t, counts, 4)
	require.Equal(t, []string{"k-4", "k-poison"}, keyOrder(got, "k"))
	for _, p := range got {
		if p.msg.ID == "k-poison" {
			require.Equal(t, "d", p.dest)
			require.Equal(t, []byte("bad"), p.msg.Body)
			require.Equal(t, "v", p.msg.Headers["h"])
		}
	}
	require.Zero(t, rowCount(t, pool, "idemq_outbox_failed"))
}

// TestBlock checks the Block policy: the failing event holds its key,
// whose later events wait, other keys flow, and everything goes once the
// publisher heals.
func TestBlock(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	obs := newCounter()
	opts := outbox.Options{PollInterval: 20 * time.Millisecond, Backoff: fastRetries, MaxAttempts: 2,
		OnFailure: outbox.Block, Observer: obs}
	pool, w := newOutbox(t, opts)
	enqueue(t, pool, w,
		outbox.Message{ID: "k-0", Key: "k"}, outbox.Message{ID: "k-poison", Key: "k"}, outbox.Message{ID: "k-2", Key: "k"},
		outbox.Message{ID: "j-0", Key: "j"}, outbox.Message{ID: "u-poison"},
	)
	fail := newFailing(-1, "k-poison", "u-poison")
	rec := newRecorder()
	rec.fail = fail.check
	stop := runRelay(t, pool, rec, opts)
	rec.waitDistinct(t, 2, 10*time.Second)
	require.Eventually(t, func() bool {
		var a int
		require.NoError(t, pool.QueryRow(ctx, `SELECT min(attempts) FROM idemq_outbox WHERE message_id LIKE '%poison'`).Scan(&a))
		return a >= 5
	}, 10*time.Second, 5*time.Millisecond)
	got, _ := rec.snapshot()
	require.Equal(t, []string{"k-0"}, keyOrder(got, "k"), "k-2 must wait for k-poison")
	require.Equal(t, []string{"j-0"}, keyOrder(got, "j"))
	require.Equal(t, int64(2), obs.get(outbox.MetricFailures), "each counted once, at MaxAttempts")
	require.Zero(t, rowCount(t, pool, "idemq_outbox_failed"))

	fail.heal()
	rec.waitDistinct(t, 5, 10*time.Second)
	waitDrained(t, pool, "idemq_outbox", 10*time.Second)
	stop()
	got, _ = rec.snapshot()
	require.Equal(t, []string{"k-0", "k-poison", "k-2"}, keyOrder(got, "k"))
}

// TestBatchFailureFindsCulprit: when a call of several events fails, they
// are tried one by one, so only the failing one counts an attempt.
func TestBatchFailureFindsCulprit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	opts := outbox.Options{PollInterval: 20 * time.Millisecond, Backoff: consumer.Backoff{Initial: time.Hour}}
	pool, w := newOutbox(t, opts)
	var msgs []outbox.Message
	for i := range 10 {
		msgs = append(msgs, outbox.Message{ID: fmt.Sprintf("k-%d", i), Key: "k"})
	}
	enqueue(t, pool, w, msgs...)
	rec := newRecorder()
	rec.fail = newFailing(-1, "k-6").check
	stop := runRelay(t, pool, rec, opts)
	rec.waitDistinct(t, 6, 10*time.Second)
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM idemq_outbox`).Scan(&n))
		return n == 4
	}, 10*time.Second, 5*time.Millisecond)
	stop()
	got, _ := rec.snapshot()
	require.Equal(t, []string{"k-0", "k-1", "k-2", "k-3", "k-4", "k-5"}, keyOrder(got, "k"))
	var attempts []int
	var lastError string
	rows, err := pool.Query(ctx, `SELECT attempts FROM idemq_outbox ORDER BY seq`)
	require.NoError(t, err)
	for rows.Next() {
		var a int
		require.NoError(t, rows.Scan(&a))
		attempts = append(attempts, a)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []int{1, 0, 0, 0}, attempts)
	require.NoError(t, pool.QueryRow(ctx, `SELECT last_error FROM idemq_outbox WHERE message_id = 'k-6'`).Scan(&lastError))
	require.True(t, strings.Contains(lastError, "broker refused k-6"), lastError)
	var readyIn float64
	require.NoError(t, pool.QueryRow(ctx,
		`SELECT extract(epoch FROM ready_at - now()) FROM idemq_outbox_cursors WHERE key = 'k'`).Scan(&readyIn))
	require.Greater(t, readyIn, 60.0, "the key waits for its backoff")
}

// TestPublisherPanic: a panicking Publisher counts as a failed publish;
// the relay goes on.
func TestPublisherPanic(t *testing.T) {
	t.Parallel()
	opts := outbox.Options{PollInterval: 20 * time.Millisecond, Backoff: fastRetries}
	pool, w := newOutbox(t, opts)
	enqueue(t, pool, w, outbox.Message{ID: "a", Key: "k"})
	var once sync.Once
	rec := newRecorder()
	rec.fail = func(string, []consumer.Message) error {
		once.Do(func() { panic("boom") })
		return nil
	}
	stop := runRelay(t, pool, rec, opts)
	rec.waitDistinct(t, 1, 10*time.Second)
	stop()
}

// TestPublishDeadline: a Publish call that hangs is cut off before the
// relay's lease ends, counts as a failed attempt, and is retried; nothing
// is published twice, since the lease was never lost.
func TestPublishDeadline(t *testing.T) {
	t.Parallel()
	opts := outbox.Options{PollInterval: 20 * time.Millisecond, Backoff: fastRetries, Lease: 400 * time.Millisecond}
	pool, w := newOutbox(t, opts)
	enqueue(t, pool, w, outbox.Message{ID: "k-0", Key: "k"}, outbox.Message{ID: "k-1", Key: "k"}, outbox.Message{ID: "u"})
	var (
		mu   sync.Mutex
		hung = map[string]bool{}
	)
	pub := outbox.PublisherFunc(func(ctx context.Context, dest string, msgs ...consumer.Message) error {
		mu.Lock()
		first := !hung[msgs[0].ID]
		hung[msgs[0].ID] = true
		mu.Unlock()
		if first {
			<-ctx.Done() // hangs until the relay gives up on it
			return ctx.Err()
		}
		return nil
	})
	rec := newRecorder()
	stop := runRelay(t, pool, outbox.PublisherFunc(func(ctx context.Context, dest string, msgs ...consumer.Message) error {
		if err := pub(ctx, dest, msgs...); err != nil {
			return err
		}
		return rec.Publish(ctx, dest, msgs...)
	}), opts)
	rec.waitDistinct(t, 3, 10*time.Second)
	waitDrained(t, pool, "idemq_outbox", 10*time.Second)
	stop()
	got, counts := rec.snapshot()
	require.Len(t, got, 3)
	require.Len(t, counts, 3)
	require.Equal(t, []string{"k-0", "k-1"}, keyOrder(got, "k"))
}
