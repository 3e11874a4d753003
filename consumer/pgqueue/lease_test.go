package pgqueue_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/pgqueue"
)

// rowState is what the lease conditions read and write of a row.
type rowState struct {
	Attempts   int
	LeaseToken pgtype.Int8
	VisibleAt  time.Time
}

func rowOf(t *testing.T, db pgqueue.DBTX, messageID string) rowState {
	t.Helper()
	var r rowState
	require.NoError(t, db.QueryRow(context.Background(),
		`SELECT attempts, lease_token, visible_at FROM idemq_queue WHERE message_id = $1`, messageID,
	).Scan(&r.Attempts, &r.LeaseToken, &r.VisibleAt))
	return r
}

func fetchOne(t *testing.T, src consumer.Source) consumer.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ds, err := src.Fetch(ctx, 1)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	return ds[0]
}

func requireStale(t *testing.T, db pgqueue.DBTX, d consumer.Delivery, why string) {
	t.Helper()
	ctx := t.Context()
	id := d.Message().ID
	before := rowOf(t, db, id)
	require.ErrorIs(t, d.Extend(ctx), consumer.ErrLeaseLost, "Extend %s", why)
	require.ErrorIs(t, d.Nack(ctx, 0), consumer.ErrLeaseLost, "Nack %s", why)
	require.ErrorIs(t, d.Ack(ctx), consumer.ErrLeaseLost, "Ack %s", why)
	require.Equal(t, before, rowOf(t, db, id), "a stale holder's calls changed the row (%s)", why)
}

// TestStaleHolder checks the lease conditions in the database: once a
// lease has ended, its holder's Ack, Nack and Extend fail with
// ErrLeaseLost and leave the row as it is, whether or not another consumer
// has taken it since.
func TestStaleHolder(t *testing.T) {
	t.Parallel()
	const lease = 300 * time.Millisecond
	src, pub, pool := newQueue(t, pgqueue.Options{VisibilityTimeout: lease, PollInterval: 20 * time.Millisecond})
	require.NoError(t, pub.Publish(t.Context(), consumer.Message{ID: "m", Body: []byte("x")}))

	d1 := fetchOne(t, src)
	require.Equal(t, 1, d1.Message().Attempt)

	// The lease ends; nobody has fetched the row again yet. Wait on the
	// database's clock, since that is the one that decides.
	require.Eventually(t, func() bool {
		var ended bool
		require.NoError(t, pool.QueryRow(t.Context(),
			`SELECT visible_at <= statement_timestamp() FROM idemq_queue WHERE message_id = 'm'`).Scan(&ended))
		return ended
	}, 10*time.Second, 10*time.Millisecond)
	requireStale(t, pool, d1, "after the lease ended")
	r := rowOf(t, pool, "m")
	require.Equal(t, 1, r.Attempts)

	// Another consumer takes it.
	d2 := fetchOne(t, src)
	require.Equal(t, 2, d2.Message().Attempt)
	require.Equal(t, "m", d2.Message().ID)
	requireStale(t, pool, d1, "after the message was redelivered")

	// The holder is undisturbed.
	require.NoError(t, d2.Extend(t.Context()))
	require.NoError(t, d2.Ack(t.Context()))
	require.Zero(t, rowCount(t, pool, "idemq_queue"))
	require.ErrorIs(t, d2.Ack(t.Context()), consumer.ErrLeaseLost, "second Ack")
}

// TestAckOnce acknowledges every delivery twice at once, so that the
// grouped acks carry both copies, often in one statement: each delivery
// is acknowledged exactly once, and the other Ack learns it lost.
func TestAckOnce(t *testing.T) {
	t.Parallel()
	const n = 300
	src, pub, pool := newQueue(t, pgqueue.Options{})
	msgs := make([]consumer.Message, n)
	for i := range msgs {
		msgs[i] = consumer.Message{ID: fmt.Sprintf("m%03d", i)}
	}
	require.NoError(t, pub.Publish(t.Context(), msgs...))

	var held []consumer.Delivery
	for len(held) < n {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		ds, err := src.Fetch(ctx, n)
		cancel()
		require.NoError(t, err)
		held = append(held, ds...)
	}

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		acked    = map[string]int{}
		lost     int
		failures []error
	)
	start := make(chan struct{})
	for _, d := range held {
		for range 2 {
			wg.Go(func() {
				<-start
				err := d.Ack(t.Context())
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					acked[d.Message().ID]++
				case errors.Is(err, consumer.ErrLeaseLost):
					lost++
				default:
					failures = append(failures, err)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	require.Empty(t, failures)
	require.Len(t, acked, n)
	for id, c := range acked {
		require.Equal(t, 1, c, "message %s acknowledged %d times", id, c)
	}
	require.Equal(t, n, lost)
	require.Zero(t, rowCount(t, pool, "idemq_queue"))
}
