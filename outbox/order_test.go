package outbox_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/outbox"
)

// TestPerKeyOrder is the second acceptance test: 50 concurrent writers on
// 10 shared keys, some of which hold their transaction open after
// enqueueing (so that transactions commit out of ID order) and some of
// which roll back, and 3 relays side by side. Each key's events must be
// published in the order their transactions committed, every committed
// event exactly once (no relay dies here), and nothing else.
//
// The commit order is recorded independently of the outbox: after
// Enqueue, each transaction bumps a per-key counter of its own and stores
// the value with its event IDs. The counter's row lock is held to commit,
// so its values number each key's committed events in commit order, and a
// rollback undoes its bump.
func TestPerKeyOrder(t *testing.T) {
	const (
		writers = 50
		txs     = 20 // per writer
		relays  = 3
		nkeys   = 10
	)
	ctx := t.Context()
	opts := outbox.Options{
		Notify:       true,
		PollInterval: 50 * time.Millisecond,
		// Small batches, so that the relays take turns on each key.
		BatchKeys:   3,
		BatchPerKey: 4,
		Concurrency: 3,
	}
	base, _ := newOutbox(t, opts)
	w, err := outbox.NewWriter(opts)
	require.NoError(t, err)
	wpool := sizedPool(t, base, writers)
	rpool := sizedPool(t, base, 3*relays)
	_, err = base.Exec(ctx, `
CREATE TABLE counters (key text PRIMARY KEY, n int NOT NULL);
CREATE TABLE commits (message_id text PRIMARY KEY, key text NOT NULL, n int NOT NULL);
CREATE TABLE unkeyed_commits (message_id text PRIMARY KEY);`)
	require.NoError(t, err)
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%02d", i)
		_, err := base.Exec(ctx, `INSERT INTO counters VALUES ($1, 0)`, keys[i])
		require.NoError(t, err)
	}

	rec := newRecorder()
	for range relays {
		runRelay(t, rpool, rec, opts)
	}

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		commits []commit
	)
	errs := make(chan error, writers)
	for wr := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(wr), 42))
			for i := range txs {
				c, err := writeTx(ctx, wpool, w, rng, keys, fmt.Sprintf("w%02d-%02d", wr, i))
				if err != nil {
					errs <- fmt.Errorf("writer %d, tx %d: %w", wr, i, err)
					return
				}
				if c.committed {
					mu.Lock()
					commits = append(commits, c)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// The premise: many transactions committed after others that had got
	// later IDs.
	slices.SortFunc(commits, func(a, b commit) int { return a.at.Compare(b.at) })
	var late int
	var maxID int64
	for _, c := range commits {
		if c.firstID < maxID {
			late++
		}
		maxID = max(maxID, c.firstID)
	}
	t.Logf("%d of %d transactions committed after one with later event IDs", late, len(commits))
	require.Greater(t, late, len(commits)/20)

	// What committed, and each key's commit order.
	rows, err := base.Query(ctx, `SELECT message_id, key, n FROM commits`)
	require.NoError(t, err)
	committed := map[string]struct {
		key string
		n   int
	}{}
	var mid, key string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&mid, &key, &n}, func() error {
		committed[mid] = struct {
			key string
			n   int
		}{key, n}
		return nil
	})
	require.NoError(t, err)
	var unkeyed int
	require.NoError(t, base.QueryRow(ctx, `SELECT count(*) FROM unkeyed_commits`).Scan(&unkeyed))
	total := len(committed) + unkeyed
	t.Logf("%d events committed (%d without a key)", total, unkeyed)

	rec.waitDistinct(t, total, 60*time.Second)
	waitDrained(t, base, "idemq_outbox", 10*time.Second)

	got, counts := rec.snapshot()
	require.Len(t, counts, total, "distinct events published")
	for id, c := range counts {
		require.Equal(t, 1, c, "event %s published %d times", id, c)
	}
	perKey := map[string][]int{}
	for _, p := range got {
		if p.msg.Key == "" {
			continue
		}
		c, ok := committed[p.msg.ID]
		require.True(t, ok, "published %s, which did not commit", p.msg.ID)
		require.Equal(t, c.key, p.msg.Key)
		perKey[c.key] = append(perKey[c.key], c.n)
	}
	for _, k := range keys {
		seen := perKey[k]
		want := make([]int, len(seen))
		for i := range want {
			want[i] = i + 1
		}
		require.Equal(t, want, seen, "key %s published out of commit order", k)
	}
}

// commit is a committed writer transaction: the lowest ID of its events in
// the outbox table, and when its commit returned.
type commit struct {
	committed bool
	firstID   int64
	at        time.Time
}

// writeTx is one writer transaction: one to three keys, maybe two events
// on one key, maybe an event without a key; it may hold the transaction
// open after enqueueing, and may roll back.
func writeTx(ctx context.Context, pool *pgxpool.Pool, w *outbox.Writer, rng *rand.Rand, keys []string, prefix string) (c commit, err error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return c, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	var msgs []outbox.Message
	perKey := map[string][]string{} // key -> its message IDs, in order
	for j := range 1 + rng.IntN(3) {
		k := keys[rng.IntN(len(keys))]
		for range 1 + rng.IntN(2) {
			id := fmt.Sprintf("%s-%d-%d", prefix, j, len(perKey[k]))
			msgs = append(msgs, outbox.Message{ID: id, Key: k, Destination: "events", Body: []byte(id)})
			perKey[k] = append(perKey[k], id)
		}
	}
	var loose []string
	if rng.IntN(5) == 0 {
		id := prefix + "-loose"
		msgs = append(msgs, outbox.Message{ID: id, Destination: "events"})
		loose = append(loose, id)
	}
	// Any order across keys; each key's own events are then put back in
	// their order.
	rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	next := map[string]int{}
	for i := range msgs {
		if k := msgs[i].Key; k != "" {
			id := perKey[k][next[k]]
			next[k]++
			msgs[i] = outbox.Message{ID: id, Key: k, Destination: "events", Body: []byte(id)}
		}
	}
	if err := w.Enqueue(ctx, tx, msgs...); err != nil {
		return c, err
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	if err := tx.QueryRow(ctx, `SELECT min(id) FROM idemq_outbox WHERE message_id = ANY ($1)`, ids).Scan(&c.firstID); err != nil {
		return c, err
	}

	// Number this transaction's events in its keys' commit order.
	sorted := make([]string, 0, len(perKey))
	for k := range perKey {
		sorted = append(sorted, k)
	}
	slices.Sort(sorted)
	for _, k := range sorted {
		var n int
		if err := tx.QueryRow(ctx, `UPDATE counters SET n = n + $2 WHERE key = $1 RETURNING n`, k, len(perKey[k])).Scan(&n); err != nil {
			return c, err
		}
		for i, id := range perKey[k] {
			if _, err := tx.Exec(ctx, `INSERT INTO commits VALUES ($1, $2, $3)`, id, k, n-len(perKey[k])+i+1); err != nil {
				return c, err
			}
		}
	}
	for _, id := range loose {
		if _, err := tx.Exec(ctx, `INSERT INTO unkeyed_commits VALUES ($1)`, id); err != nil {
			return c, err
		}
	}

	if rng.IntN(5) == 0 {
		// Hold the keys while others, on other keys, enqueue and commit
		// events with later IDs.
		time.Sleep(time.Duration(1+rng.IntN(30)) * time.Millisecond)
	}
	if rng.IntN(10) == 0 {
		return c, tx.Rollback(ctx)
	}
	if err := tx.Commit(ctx); err != nil {
		return c, err
	}
	c.committed, c.at = true, time.Now()
	return c, nil
}
