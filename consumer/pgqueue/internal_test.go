package pgqueue

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/internal/testenv"
)

func TestChannelName(t *testing.T) {
	tbl, err := parseTable("idemq_queue")
	require.NoError(t, err)
	require.Equal(t, "pgqueue:idemq_queue:default", channelName(tbl, "default"))
	long := channelName(tbl, strings.Repeat("q", 60))
	require.Len(t, long, len("pgqueue:")+32)
	require.NotEqual(t, long, channelName(tbl, strings.Repeat("q", 61)))
	other, err := parseTable("ops.idemq_queue")
	require.NoError(t, err)
	require.NotEqual(t, channelName(tbl, "default"), channelName(other, "default"))
}

// TestNotifyOnCommit listens on a queue's channel by hand: a Publish
// through a pgx.Tx notifies when the transaction commits, and not at all
// when it rolls back.
func TestNotifyOnCommit(t *testing.T) {
	ctx := t.Context()
	pool := testenv.Postgres(t)
	opts := Options{Notify: true, Queue: "commit-" + t.Name()}
	require.NoError(t, Migrate(ctx, pool, opts))
	tbl, err := opts.table()
	require.NoError(t, err)
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `LISTEN "`+channelName(tbl, opts.Queue)+`"`)
	require.NoError(t, err)
	defer func() { _, _ = conn.Exec(context.Background(), "UNLISTEN *") }()

	publish := func(commit bool) {
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		pub, err := NewPublisher(tx, opts)
		require.NoError(t, err)
		require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "m"}))
		if commit {
			require.NoError(t, tx.Commit(ctx))
		} else {
			require.NoError(t, tx.Rollback(ctx))
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	publish(false)
	_, err = conn.Conn().WaitForNotification(waitCtx)
	cancel()
	require.Error(t, err, "a rolled-back Publish notified")

	publish(true)
	waitCtx, cancel = context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := conn.Conn().WaitForNotification(waitCtx)
	require.NoError(t, err)
	require.Equal(t, channelName(tbl, opts.Queue), n.Channel)
}
