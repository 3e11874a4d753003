package idempotencypg_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/idempotency"
)

func TestDeleteExpired(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := newStore(t)

	// 5 expired rows (leases and retentions), 3 live ones.
	for i := range 8 {
		key := fmt.Sprint("k", i)
		c, err := s.Claim(ctx, key, "", time.Minute)
		require.NoError(t, err)
		switch {
		case i < 3:
			expire(t, pool, key) // lease ran out
		case i < 5:
			require.NoError(t, s.Complete(ctx, key, c.Token, nil, time.Minute))
			expire(t, pool, key) // retention ran out
		case i < 6:
			require.NoError(t, s.Complete(ctx, key, c.Token, nil, time.Hour)) // live, completed
		}
	}

	var counts []int64
	for range 4 {
		n, err := s.DeleteExpired(ctx, 2)
		require.NoError(t, err)
		counts = append(counts, n)
	}
	require.Equal(t, []int64{2, 2, 1, 0}, counts)

	rows, err := pool.Query(ctx, "SELECT key FROM idemq_idempotency_keys ORDER BY key")
	require.NoError(t, err)
	var left []string
	for rows.Next() {
		var k string
		require.NoError(t, rows.Scan(&k))
		left = append(left, k)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"k5", "k6", "k7"}, left)

	// The live claims still hold.
	for _, key := range []string{"k6", "k7"} {
		c, err := s.Claim(ctx, key, "", time.Minute)
		require.NoError(t, err)
		require.Equal(t, idempotency.InProgress, c.Status)
	}
}

func TestRunReaper(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := newStore(t)

	// More expired rows than one batch: the reaper must loop at once,
	// not wait an interval between full batches.
	for i := range 10 {
		key := fmt.Sprint("old", i)
		_, err := s.Claim(ctx, key, "", time.Minute)
		require.NoError(t, err)
		expire(t, pool, key)
	}
	_, err := s.Claim(ctx, "live", "", time.Hour)
	require.NoError(t, err)

	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.RunReaper(rctx, time.Hour, 3) }()

	require.Eventually(t, func() bool {
		return rowCount(t, pool, "idemq_idempotency_keys") == 1
	}, 10*time.Second, 10*time.Millisecond)

	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	c, err := s.Claim(ctx, "live", "", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.InProgress, c.Status)
}
