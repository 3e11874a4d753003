package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/outbox"
)

// TestCommitPublishes is the first acceptance test: a rolled-back
// transaction publishes nothing, a committed one publishes each of its
// events, exactly once with one relay, in order per key.
func TestCommitPublishes(t *testing.T) {
	t.Parallel()
	for _, notify := range []bool{false, true} {
		t.Run(fmt.Sprintf("notify=%v", notify), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			opts := outbox.Options{Notify: notify, PollInterval: 50 * time.Millisecond}
			pool, w := newOutbox(t, opts)

			// Rolled back, with a business row that goes with it.
			_, err := pool.Exec(ctx, `CREATE TABLE orders (id int PRIMARY KEY)`)
			require.NoError(t, err)
			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, `INSERT INTO orders VALUES (1)`)
			require.NoError(t, err)
			require.NoError(t, w.Enqueue(ctx, tx,
				outbox.Message{ID: "rolled-back-1", Key: "order-1", Body: []byte("created")},
				outbox.Message{ID: "rolled-back-2", Body: []byte("no key")},
			))
			require.NoError(t, tx.Rollback(ctx))

			// Committed: keyed and unkeyed events, two destinations.
			tx, err = pool.Begin(ctx)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, `INSERT INTO orders VALUES (2)`)
			require.NoError(t, err)
			require.NoError(t, w.Enqueue(ctx, tx,
				outbox.Message{ID: "o2-created", Key: "order-2", Destination: "orders", Body: []byte("created"),
					Headers: map[string]string{"content-type": "text/plain"}},
				outbox.Message{ID: "o2-paid", Key: "order-2", Destination: "orders", Body: []byte("paid")},
				outbox.Message{ID: "mail", Destination: "emails", Body: []byte("thanks")},
			))
			require.NoError(t, w.Enqueue(ctx, tx,
				outbox.Message{ID: "o2-shipped", Key: "order-2", Destination: "shipping", Body: []byte("shipped")},
				outbox.Message{Key: "order-3", Destination: "orders"}, // random ID, nil body
			))
			require.NoError(t, tx.Commit(ctx))

			rec := newRecorder()
			stop := runRelay(t, pool, rec, opts)
			rec.waitDistinct(t, 5, 10*time.Second)
			waitDrained(t, pool, "idemq_outbox", 10*time.Second)
			stop()

			got, counts := rec.snapshot()
			require.Len(t, got, 5, "published exactly the committed events, once each")
			for id, n := range counts {
				require.Equal(t, 1, n, "message %s published %d times", id, n)
			}
			require.NotContains(t, counts, "rolled-back-1")
			require.NotContains(t, counts, "rolled-back-2")

			var order2 []string
			byID := map[string]published{}
			for _, p := range got {
				byID[p.msg.ID] = p
				if p.msg.Key == "order-2" {
					order2 = append(order2, p.msg.ID)
				}
				require.Equal(t, p.msg.ID, p.msg.Headers[outbox.HeaderID])
				require.False(t, p.msg.EnqueuedAt.IsZero())
			}
			require.Equal(t, []string{"o2-created", "o2-paid", "o2-shipped"}, order2)
			require.Equal(t, "orders", byID["o2-created"].dest)
			require.Equal(t, "shipping", byID["o2-shipped"].dest)
			require.Equal(t, "emails", byID["mail"].dest)
			require.Equal(t, []byte("created"), byID["o2-created"].msg.Body)
			require.Equal(t, "text/plain", byID["o2-created"].msg.Headers["content-type"])
			require.Equal(t, "", byID["mail"].msg.Key)
			for id, p := range byID {
				if p.msg.Key == "order-3" {
					require.Regexp(t, `^[0-9a-f]{32}$`, id)
					require.Nil(t, p.msg.Body)
				}
			}
			requireDrained(t, pool, "idemq_outbox")
			require.Zero(t, rowCount(t, pool, "idemq_outbox_failed"))
		})
	}
}

// A context-free sanity check that the table holds the right seqs: the
// writer's counter, not the relay, decides them.
func TestEnqueueAssignsSeqs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, w := newOutbox(t, outbox.Options{})
	enqueue(t, pool, w,
		outbox.Message{ID: "a1", Key: "a"}, outbox.Message{ID: "b1", Key: "b"},
		outbox.Message{ID: "a2", Key: "a"}, outbox.Message{ID: "u1"})
	enqueue(t, pool, w, outbox.Message{ID: "a3", Key: "a"}, outbox.Message{ID: "b2", Key: "b"})
	rows, err := pool.Query(ctx, `SELECT message_id, key, coalesce(seq, 0) FROM idemq_outbox ORDER BY id`)
	require.NoError(t, err)
	type row struct {
		id, key string
		seq     int64
	}
	var got []row
	for rows.Next() {
		var r row
		require.NoError(t, rows.Scan(&r.id, &r.key, &r.seq))
		got = append(got, r)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []row{{"a1", "a", 1}, {"b1", "b", 1}, {"a2", "a", 2}, {"u1", "", 0}, {"a3", "a", 3}, {"b2", "b", 2}}, got)
	require.Equal(t, 2, rowCount(t, pool, "idemq_outbox_keys"))
	require.Equal(t, 2, rowCount(t, pool, "idemq_outbox_cursors"))
}
