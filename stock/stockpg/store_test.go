package stockpg_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/stock"
	"github.com/idemq/idemq/stock/stockpg"
)

func TestDefine(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newStore(t, stockpg.Options{})
	require.Error(t, s.Define(ctx, "", stock.ItemConfig{}))
	require.Error(t, s.Define(ctx, "x", stock.ItemConfig{HolderLimit: -1}))
	require.NoError(t, s.Define(ctx, "units", stock.ItemConfig{}))
	require.ErrorContains(t, s.Define(ctx, "units", stock.ItemConfig{Codes: true}), "cannot change")
	require.NoError(t, s.Define(ctx, "codes", stock.ItemConfig{Codes: true}))
	require.ErrorContains(t, s.Define(ctx, "codes", stock.ItemConfig{}), "cannot change")
	require.ErrorContains(t, s.Restock(ctx, "codes", 1), "code pool")
	_, err := s.LoadCodes(ctx, "units", []string{"A"})
	require.ErrorContains(t, err, "counts units")
	require.Error(t, s.Restock(ctx, "units", 0))
	require.ErrorIs(t, s.Restock(ctx, "nope", 1), stock.ErrUnknownItem)
	_, err = s.LoadCodes(ctx, "nope", []string{"A"})
	require.ErrorIs(t, err, stock.ErrUnknownItem)
	require.ErrorIs(t, s.Disable(ctx, "nope", "why"), stock.ErrUnknownItem)
	require.ErrorIs(t, s.Enable(ctx, "nope"), stock.ErrUnknownItem)
	_, err = s.Sweep(ctx, 0)
	require.Error(t, err)
}

// TestShardsGrow: an item defined by an unsharded store gets more shard
// rows when a sharded store defines it again, and its units spread over
// them at the next restock.
func TestShardsGrow(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	one, pool := newStore(t, stockpg.Options{})
	require.NoError(t, one.Define(ctx, "item", stock.ItemConfig{}))
	require.NoError(t, one.Restock(ctx, "item", 5))
	_, err := one.Reserve(ctx, reserveReq("item", "h", "r1", 2))
	require.NoError(t, err)

	four, err := stockpg.New(pool, stockpg.Options{Shards: 4})
	require.NoError(t, err)
	require.NoError(t, four.Define(ctx, "item", stock.ItemConfig{}))
	require.Len(t, shardUnits(t, pool, "item"), 4)
	require.NoError(t, four.Restock(ctx, "item", 5))
	units := shardUnits(t, pool, "item")
	for shard, n := range units {
		require.Equal(t, 2, n, "shard %d of 8 units over 4 shards: %v", shard, units)
	}
	// Both stores serve the item, whatever its shards.
	_, err = one.Reserve(ctx, reserveReq("item", "h", "r2", 7))
	require.NoError(t, err)
	_, err = four.Reserve(ctx, reserveReq("item", "h", "r3", 1))
	require.NoError(t, err)
	_, err = four.Reserve(ctx, reserveReq("item", "h", "r4", 1))
	require.ErrorIs(t, err, stock.ErrSoldOut)
	requireConsistent(t, one, pool, "item", 10)
}

func TestRefusals(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, pool := newStore(t, m.opts())
			require.NoError(t, s.Define(ctx, "item", stock.ItemConfig{HolderLimit: 2}))
			require.NoError(t, s.Restock(ctx, "item", 3))

			_, err := s.Reserve(ctx, reserveReq("item", "a", "a1", 2))
			require.NoError(t, err)
			// Over the limit and sold out: the limit is reported.
			_, err = s.Reserve(ctx, reserveReq("item", "a", "a2", 2))
			require.ErrorIs(t, err, stock.ErrHolderLimit)
			var re *stock.ReservationError
			require.ErrorAs(t, err, &re)
			require.Equal(t, 1, re.Available)
			_, err = s.Reserve(ctx, reserveReq("item", "b", "b1", 2))
			require.ErrorIs(t, err, stock.ErrSoldOut)
			require.ErrorAs(t, err, &re)
			require.Equal(t, stock.ReservationError{Item: "item", Available: 1, Err: stock.ErrSoldOut}, *re)

			require.NoError(t, s.Disable(ctx, "item", "partner down"))
			_, err = s.Reserve(ctx, reserveReq("item", "b", "b2", 1))
			require.ErrorIs(t, err, stock.ErrDisabled)
			require.ErrorAs(t, err, &re)
			require.Equal(t, "partner down", re.Reason)
			require.NoError(t, s.Enable(ctx, "item"))

			_, err = s.Reserve(ctx, reserveReq("nope", "b", "b3", 1))
			require.ErrorIs(t, err, stock.ErrUnknownItem)
			requireConsistent(t, s, pool, "item", 3)
		})
	}
}

// TestExpiredBeforeSweep: a hold past its time is expired at once: Get
// says so, Confirm refuses it, Level counts its units as available and
// the next Reserve takes them; Sweep then has nothing to do for it.
func TestExpiredBeforeSweep(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, pool := newStore(t, m.opts())
			require.NoError(t, s.Define(ctx, "item", stock.ItemConfig{HolderLimit: 1}))
			require.NoError(t, s.Restock(ctx, "item", 1))
			r, err := s.Reserve(ctx, reserveReq("item", "a", "a1", 1))
			require.NoError(t, err)
			expire(t, pool, r.ID)

			got, err := s.Get(ctx, r.ID)
			require.NoError(t, err)
			require.Equal(t, stock.Expired, got.State)
			_, err = s.Confirm(ctx, r.ID)
			require.ErrorIs(t, err, stock.ErrExpired)
			require.NoError(t, s.Release(ctx, r.ID), "releasing an expired hold succeeds")
			l := requireConsistent(t, s, pool, "item", 1)
			require.Equal(t, stock.Level{Item: "item", Available: 1}, l)

			retried, err := s.Reserve(ctx, reserveReq("item", "a", "a1", 1))
			require.NoError(t, err)
			require.Equal(t, stock.Expired, retried.State, "a retry answers the reservation as it is now")

			_, err = s.Reserve(ctx, reserveReq("item", "a", "a2", 1))
			require.NoError(t, err, "the same holder, within the limit again")
			n, err := s.Sweep(ctx, 10)
			require.NoError(t, err)
			require.Zero(t, n, "Reserve already took the expired hold back")
			l = requireConsistent(t, s, pool, "item", 1)
			require.Equal(t, stock.Level{Item: "item", Held: 1}, l)
		})
	}
}

// TestNoCodes: a code item whose free codes were deleted by hand cannot
// be confirmed; the hold is left as it was.
func TestNoCodes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := newStore(t, stockpg.Options{})
	require.NoError(t, s.Define(ctx, "codes", stock.ItemConfig{Codes: true}))
	n, err := s.LoadCodes(ctx, "codes", []string{"A", "B", "", "A"})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	r, err := s.Reserve(ctx, reserveReq("codes", "h", "r1", 2))
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `DELETE FROM idemq_stock_codes WHERE code = 'B'`)
	require.NoError(t, err)
	_, err = s.Confirm(ctx, r.ID)
	require.ErrorIs(t, err, stock.ErrNoCodes)
	got, err := s.Get(ctx, r.ID)
	require.NoError(t, err)
	require.Equal(t, stock.Held, got.State)
	var given int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM idemq_stock_codes WHERE reservation_id IS NOT NULL`).Scan(&given))
	require.Zero(t, given)
}

// TestCallerTransactionRollsBack: a reservation made in a caller's
// transaction goes with it.
func TestCallerTransactionRollsBack(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := newStore(t, stockpg.Options{Shards: 4})
	require.NoError(t, s.Define(ctx, "item", stock.ItemConfig{}))
	require.NoError(t, s.Restock(ctx, "item", 4))
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	inTx, err := stockpg.New(tx, stockpg.Options{Shards: 4})
	require.NoError(t, err)
	_, err = inTx.Reserve(ctx, reserveReq("item", "h", "r1", 3))
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	_, err = s.Get(ctx, "r1")
	require.ErrorIs(t, err, stock.ErrNotFound)
	l := requireConsistent(t, s, pool, "item", 4)
	require.Equal(t, 4, l.Available)
}

// TestCancelledContext: a call with a cancelled context fails and changes
// nothing.
func TestCancelledContext(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			s, pool := newStore(t, m.opts())
			require.NoError(t, s.Define(t.Context(), "item", stock.ItemConfig{}))
			require.NoError(t, s.Restock(t.Context(), "item", 1))
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			_, err := s.Reserve(ctx, reserveReq("item", "h", "r1", 1))
			require.True(t, errors.Is(err, context.Canceled), "got %v", err)
			requireConsistent(t, s, pool, "item", 1)
		})
	}
}
