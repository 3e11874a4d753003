package dlqpg_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqpg"
)

// TestCapConcurrent puts distinct entries from many goroutines at once:
// the count and the insert must act as one, or more than the cap get in.
func TestCapConcurrent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const (
		capacity = 10
		puts     = 32
	)
	s, pool := newStore(t, dlqpg.Options{MaxEntries: capacity})

	for round := range 3 {
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  = make([]error, puts)
		)
		for i := range puts {
			wg.Go(func() {
				<-start
				errs[i] = s.Put(ctx, entry(fmt.Sprintf("r%d-e%02d", round, i), 0))
			})
		}
		close(start)
		wg.Wait()

		stored, full := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				stored++
			case err == dlq.ErrFull:
				full++
			default:
				t.Fatalf("round %d: unexpected error: %v", round, err)
			}
		}
		require.Equal(t, capacity, stored, "round %d", round)
		require.Equal(t, puts-capacity, full, "round %d", round)
		require.Equal(t, capacity, rowCount(t, pool, "idemq_dead_letters"), "round %d", round)

		n, err := s.Purge(ctx, dlq.Filter{})
		require.NoError(t, err)
		require.Equal(t, capacity, n)
	}
}

func TestCapReplaceAndRoom(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := newStore(t, dlqpg.Options{MaxEntries: 2})

	require.NoError(t, s.Put(ctx, entry("a", 0)))
	require.NoError(t, s.Put(ctx, entry("b", 0)))
	require.ErrorIs(t, s.Put(ctx, entry("c", 0)), dlq.ErrFull)
	_, err := s.Get(ctx, "c")
	require.ErrorIs(t, err, dlq.ErrNotFound)

	// Replacing is always allowed, and evicts nothing.
	again := entry("a", 0)
	again.Attempts = 99
	require.NoError(t, s.Put(ctx, again))
	got, err := s.Get(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, 99, got.Attempts)
	require.Equal(t, 2, rowCount(t, pool, "idemq_dead_letters"))

	// Room made by a delete is taken again.
	require.NoError(t, s.Delete(ctx, "b"))
	require.NoError(t, s.Put(ctx, entry("c", 0)))
	require.ErrorIs(t, s.Put(ctx, entry("d", 0)), dlq.ErrFull)

	// A table over the cap (the cap was lowered) refuses new entries but
	// keeps replacing the ones it has.
	lower, err := dlqpg.New(pool, dlqpg.Options{MaxEntries: 1})
	require.NoError(t, err)
	require.ErrorIs(t, lower.Put(ctx, entry("d", 0)), dlq.ErrFull)
	require.NoError(t, lower.Put(ctx, entry("c", 0)))
	require.Equal(t, 2, rowCount(t, pool, "idemq_dead_letters"))
}

// TestCapInTransaction runs a capped store on a pgx.Tx: at READ COMMITTED
// it works, with the cap's lock held to the transaction's end; at a
// stricter level its snapshot could miss entries, so it refuses to guess.
func TestCapInTransaction(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, pool := newStore(t, dlqpg.Options{})

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	s, err := dlqpg.New(tx, dlqpg.Options{MaxEntries: 1})
	require.NoError(t, err)
	require.NoError(t, s.Put(ctx, entry("a", 0)))
	require.ErrorIs(t, s.Put(ctx, entry("b", 0)), dlq.ErrFull)
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 1, rowCount(t, pool, "idemq_dead_letters"))

	tx, err = pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	s, err = dlqpg.New(tx, dlqpg.Options{MaxEntries: 5})
	require.NoError(t, err)
	err = s.Put(ctx, entry("b", 0))
	require.ErrorContains(t, err, "READ COMMITTED")
	require.NotErrorIs(t, err, dlq.ErrFull)
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, 1, rowCount(t, pool, "idemq_dead_letters"))
}

func TestCapOptions(t *testing.T) {
	t.Parallel()
	_, err := dlqpg.New(nopDB{}, dlqpg.Options{MaxEntries: -1})
	require.ErrorContains(t, err, "negative MaxEntries")
	_, err = dlqpg.New(nopDB{}, dlqpg.Options{MaxEntries: 1})
	require.ErrorContains(t, err, "SendBatch")
	_, err = dlqpg.New(nopDB{}, dlqpg.Options{}) // no cap, no batches needed
	require.NoError(t, err)
	_, err = dlqpg.New(nil, dlqpg.Options{})
	require.Error(t, err)
}
