package pgqueue_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/pgqueue"
)

// TestPublishInTransaction publishes through a pgx.Tx: a rollback
// publishes nothing, a commit publishes. With Notify and a poll interval
// longer than the test, a Fetch that was waiting before the commit can only
// wake from the notification, so it also shows the notification is sent on
// commit.
func TestPublishInTransaction(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts pgqueue.Options
	}{
		{"Poll", pgqueue.Options{PollInterval: 50 * time.Millisecond}},
		{"Notify", pgqueue.Options{Notify: true, PollInterval: time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			src, _, pool := newQueue(t, tc.opts)

			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			pub, err := pgqueue.NewPublisher(tx, tc.opts)
			require.NoError(t, err)
			require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "rolled-back"}))
			require.NoError(t, tx.Rollback(ctx))
			expectNothing(t, src, 300*time.Millisecond)
			require.Zero(t, rowCount(t, pool, "idemq_queue"))

			tx, err = pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(context.Background()) }()
			pub, err = pgqueue.NewPublisher(tx, tc.opts)
			require.NoError(t, err)
			require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "committed", Body: []byte("x")}))
			expectNothing(t, src, 300*time.Millisecond) // not yet committed

			type result struct {
				ds  []consumer.Delivery
				err error
			}
			res := make(chan result, 1)
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			go func() {
				ds, err := src.Fetch(fctx, 10)
				res <- result{ds, err}
			}()
			time.Sleep(100 * time.Millisecond) // let the Fetch start waiting
			committed := time.Now()
			require.NoError(t, tx.Commit(ctx))
			r := <-res
			require.NoError(t, r.err)
			require.Len(t, r.ds, 1)
			require.Equal(t, "committed", r.ds[0].Message().ID)
			require.Equal(t, 1, r.ds[0].Message().Attempt)
			if tc.opts.Notify {
				require.Less(t, time.Since(committed), 5*time.Second, "the waiting Fetch did not wake on the commit's notification")
			}
			require.NoError(t, r.ds[0].Ack(ctx))
			require.Zero(t, rowCount(t, pool, "idemq_queue"))
		})
	}
}

// expectNothing checks that a Fetch within d gets nothing.
func expectNothing(t *testing.T, src consumer.Source, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	ds, err := src.Fetch(ctx, 10)
	require.Empty(t, ds)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
