package pgqueue_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/pgqueue"
)

// TestFetchCancelledMidStatement cancels a Fetch while its statement waits
// for a table lock: the statement is not cut off, and once it has leased
// the row, Fetch puts it back as it was and returns the context's error.
func TestFetchCancelledMidStatement(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src, pub, pool := newQueue(t, pgqueue.Options{PollInterval: 20 * time.Millisecond})
	require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "m"}))
	before := rowOf(t, pool, "m")

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	_, err = tx.Exec(ctx, "LOCK TABLE idemq_queue IN EXCLUSIVE MODE")
	require.NoError(t, err)

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		ds  []consumer.Delivery
		err error
	}
	res := make(chan result, 1)
	go func() {
		ds, err := src.Fetch(fctx, 10)
		res <- result{ds, err}
	}()
	require.Eventually(t, func() bool {
		var waiting bool
		require.NoError(t, pool.QueryRow(ctx,
			`SELECT EXISTS (SELECT FROM pg_locks WHERE relation = 'idemq_queue'::regclass AND NOT granted)`).Scan(&waiting))
		return waiting
	}, 10*time.Second, 5*time.Millisecond, "the Fetch never waited for the lock")

	cancel()
	select {
	case r := <-res:
		t.Fatalf("Fetch returned %v, %v while its statement waited for the lock", r.ds, r.err)
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, tx.Commit(ctx))
	r := <-res
	require.Empty(t, r.ds)
	require.ErrorIs(t, r.err, context.Canceled)
	require.Equal(t, before, rowOf(t, pool, "m"), "the cancelled Fetch left the row changed")
	var leased bool // a token was drawn: the statement ran, and was undone
	require.NoError(t, pool.QueryRow(ctx, "SELECT is_called FROM idemq_queue_lease_seq").Scan(&leased))
	require.True(t, leased, "the Fetch's statement never leased the row")

	d := fetchOne(t, src)
	require.Equal(t, 1, d.Message().Attempt)
	require.NoError(t, d.Ack(ctx))
}
