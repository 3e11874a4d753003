package stockpg_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/stock"
	"github.com/idemq/idemq/stock/stockpg"
)

// TestBatchSemantics: the requests of one batch get, each, the answer it
// would have had alone, in the batch's order.
func TestBatchSemantics(t *testing.T) {
	type want struct {
		err   error // nil: granted or answered
		same  int   // the request whose reservation this one answers, from 1
		avail int   // ReservationError.Available, when err is a refusal
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			shardings := []struct {
				name  string
				shard int
			}{{"Exact", stockpg.ExactShard}}
			if m.shards > 1 {
				shardings = append(shardings, struct {
					name  string
					shard int
				}{"OneShard", 3})
			}
			for _, sh := range shardings {
				t.Run(sh.name, func(t *testing.T) {
					t.Parallel()
					for _, tc := range []struct {
						name  string
						cfg   stock.ItemConfig
						units int
						setup func(t *testing.T, s *stockpg.Store, pool *pgxpool.Pool, item string)
						reqs  []stock.ReserveRequest // item "" is the case's item
						want  []want
						held  int
					}{
						{
							name: "Duplicates", units: 5,
							reqs: []stock.ReserveRequest{
								reserveReq("", "a", "r1", 1), reserveReq("", "a", "r1", 1),
								reserveReq("", "b", "r2", 2), reserveReq("", "a", "r1", 1),
							},
							want: []want{{}, {same: 1}, {}, {same: 1}},
							held: 3,
						},
						{
							name: "Conflicts", units: 5,
							reqs: []stock.ReserveRequest{
								reserveReq("", "a", "r1", 1), reserveReq("", "b", "r1", 1), reserveReq("", "a", "r1", 2),
							},
							want: []want{{}, {err: stock.ErrConflict}, {err: stock.ErrConflict}},
							held: 1,
						},
						{
							name: "AgainAfterRefusal", units: 2,
							reqs: []stock.ReserveRequest{
								reserveReq("", "a", "r1", 3), reserveReq("", "a", "r1", 2), reserveReq("", "b", "r2", 1),
							},
							want: []want{{err: stock.ErrSoldOut, avail: 2}, {}, {err: stock.ErrSoldOut}},
							held: 2,
						},
						{
							name: "SoldOutInOrder", units: 3,
							reqs: []stock.ReserveRequest{
								reserveReq("", "a", "r1", 2), reserveReq("", "b", "r2", 2), reserveReq("", "c", "r3", 1),
								reserveReq("", "d", "r4", 1),
							},
							want: []want{{}, {err: stock.ErrSoldOut, avail: 1}, {}, {err: stock.ErrSoldOut, avail: 0}},
							held: 3,
						},
						{
							name: "HolderLimit", cfg: stock.ItemConfig{HolderLimit: 2}, units: 10,
							reqs: []stock.ReserveRequest{
								reserveReq("", "a", "r1", 1), reserveReq("", "b", "r2", 3), reserveReq("", "a", "r3", 1),
								reserveReq("", "a", "r4", 1), reserveReq("", "b", "r5", 2),
							},
							want: []want{{}, {err: stock.ErrHolderLimit}, {}, {err: stock.ErrHolderLimit}, {}},
							held: 4,
						},
						{
							name: "ExpiredHolds", cfg: stock.ItemConfig{HolderLimit: 1}, units: 2,
							setup: func(t *testing.T, s *stockpg.Store, pool *pgxpool.Pool, item string) {
								for _, h := range []string{"a", "b"} {
									_, err := s.Reserve(t.Context(), reserveReq(item, h, item+"-old-"+h, 1))
									require.NoError(t, err)
									expire(t, pool, item+"-old-"+h)
								}
							},
							reqs: []stock.ReserveRequest{
								reserveReq("", "a", "r1", 1), reserveReq("", "a", "r2", 1), reserveReq("", "c", "r3", 1),
								reserveReq("", "d", "r4", 1),
							},
							want: []want{{}, {err: stock.ErrHolderLimit}, {}, {err: stock.ErrSoldOut}},
							held: 2,
						},
						{
							// Holders whose released and expired holds stop
							// counting, with and without new units.
							name: "EndedHolds", units: 3,
							setup: func(t *testing.T, s *stockpg.Store, pool *pgxpool.Pool, item string) {
								for _, h := range []string{"a", "b"} {
									_, err := s.Reserve(t.Context(), reserveReq(item, h, item+"-old-"+h, 1))
									require.NoError(t, err)
								}
								require.NoError(t, s.Release(t.Context(), item+"-old-a"))
								expire(t, pool, item+"-old-b")
							},
							reqs: []stock.ReserveRequest{
								reserveReq("", "a", "r1", 4), reserveReq("", "b", "r2", 2), reserveReq("", "c", "r3", 1),
								reserveReq("", "b", "r4", 1),
							},
							want: []want{{err: stock.ErrSoldOut, avail: 3}, {}, {}, {err: stock.ErrSoldOut, avail: 0}},
							held: 3,
						},
						{
							name: "Disabled", units: 5,
							setup: func(t *testing.T, s *stockpg.Store, pool *pgxpool.Pool, item string) {
								_, err := s.Reserve(t.Context(), reserveReq(item, "a", item+"-r0", 1))
								require.NoError(t, err)
								require.NoError(t, s.Disable(t.Context(), item, "recall"))
							},
							reqs: []stock.ReserveRequest{
								reserveReq("", "b", "r1", 1), reserveReq("", "a", "-r0", 1), reserveReq("", "a", "r1", 1),
							},
							want: []want{{err: stock.ErrDisabled, avail: 4}, {}, {err: stock.ErrDisabled, avail: 4}},
							held: 1,
						},
						{
							name: "Unknown",
							reqs: []stock.ReserveRequest{reserveReq("", "a", "r1", 1), reserveReq("", "a", "r1", 1)},
							want: []want{{err: stock.ErrUnknownItem}, {err: stock.ErrUnknownItem}},
						},
					} {
						t.Run(tc.name, func(t *testing.T) {
							t.Parallel()
							ctx := t.Context()
							s, pool := newStore(t, m.opts())
							item := "item"
							if tc.name != "Unknown" {
								require.NoError(t, s.Define(ctx, item, tc.cfg))
								if tc.units > 0 {
									require.NoError(t, s.Restock(ctx, item, tc.units))
									if sh.shard != stockpg.ExactShard {
										// The batch's shard has every unit, so
										// that it serves the requests in order.
										placeUnits(t, pool, item, map[int]int{sh.shard: tc.units})
									}
								}
							}
							if tc.setup != nil {
								tc.setup(t, s, pool, item)
							}
							reqs := make([]stock.ReserveRequest, len(tc.reqs))
							for i, r := range tc.reqs {
								r.Item, r.ID = item, item+r.ID
								reqs[i] = r
							}
							start := time.Now()
							got, errs := stockpg.RunBatch(s, sh.shard, reqs)
							for i, w := range tc.want {
								r := reqs[i]
								if w.err != nil {
									require.ErrorIs(t, errs[i], w.err, "request %d", i+1)
									var re *stock.ReservationError
									// A request that one shard cannot serve is
									// answered after the shard's batch, by the
									// exact one: its Available is the item's then.
									if errors.As(errs[i], &re) && !errors.Is(w.err, stock.ErrHolderLimit) && sh.shard == stockpg.ExactShard {
										require.Equal(t, w.avail, re.Available, "request %d: %v", i+1, errs[i])
									}
									if errors.Is(w.err, stock.ErrDisabled) {
										require.Equal(t, "recall", re.Reason)
									}
									continue
								}
								require.NoError(t, errs[i], "request %d", i+1)
								require.Equal(t, stock.Reservation{ID: r.ID, Item: item, Holder: r.Holder, Quantity: r.Quantity, State: stock.Held},
									stock.Reservation{ID: got[i].ID, Item: got[i].Item, Holder: got[i].Holder, Quantity: got[i].Quantity, State: got[i].State},
									"request %d", i+1)
								if w.same > 0 {
									require.Equal(t, got[w.same-1].ExpiresAt.UnixMicro(), got[i].ExpiresAt.UnixMicro(), "request %d", i+1)
								}
								stored, err := s.Get(ctx, r.ID)
								require.NoError(t, err)
								require.Equal(t, got[i].ExpiresAt.UnixMicro(), stored.ExpiresAt.UnixMicro(), "request %d", i+1)
								if tc.setup == nil {
									require.WithinDuration(t, start.Add(longHold), got[i].ExpiresAt, time.Minute)
								}
							}
							if tc.name == "Unknown" {
								return
							}
							l := requireConsistent(t, s, pool, item, tc.units)
							require.Equal(t, tc.held, l.Held)
						})
					}
				})
			}
		})
	}
}

// TestBatchConcurrentDuplicate: a batch that inserts an ID which a
// concurrent transaction inserted first decides again, with that request
// answered as a retry, and takes nothing for it.
func TestBatchConcurrentDuplicate(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			opts := m.opts()
			s, pool := newStore(t, opts)
			require.NoError(t, s.Define(ctx, "item", stock.ItemConfig{HolderLimit: 1}))
			require.NoError(t, s.Restock(ctx, "item", 16))

			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
			inTx, err := stockpg.New(tx, opts)
			require.NoError(t, err)
			first, err := inTx.Reserve(ctx, reserveReq("item", "alice", "dup", 1))
			require.NoError(t, err)

			type result struct {
				rs   []stock.Reservation
				errs []error
			}
			done := make(chan result, 1)
			go func() {
				rs, errs := stockpg.RunBatch(s, stockpg.ExactShard, []stock.ReserveRequest{
					reserveReq("item", "bob", "b1", 1), reserveReq("item", "alice", "dup", 1),
					reserveReq("item", "carol", "dup", 1), reserveReq("item", "alice", "a2", 1),
				})
				done <- result{rs, errs}
			}()
			waitBlockedBy(t, pool, tx.Conn().PgConn().PID())
			require.NoError(t, tx.Commit(ctx))
			got := <-done
			require.NoError(t, got.errs[0])
			require.NoError(t, got.errs[1], "a retry of the reservation committed first")
			require.Equal(t, first.ExpiresAt.UnixMicro(), got.rs[1].ExpiresAt.UnixMicro())
			require.ErrorIs(t, got.errs[2], stock.ErrConflict)
			require.ErrorIs(t, got.errs[3], stock.ErrHolderLimit, "alice has the unit of the reservation committed first")
			l := requireConsistent(t, s, pool, "item", 16)
			require.Equal(t, 2, l.Held)
		})
	}
}

// TestGroupCommit: Reserves that arrive while a batch of their item runs
// go together in the next one, each with its own answer; one whose caller
// gives up before it is taken is dropped and takes nothing.
func TestGroupCommit(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			// The Reserves that wait for the first batch, and the units. As
			// many as ParallelPending would start a second batch of a
			// sharded item (see TestParallelBatches).
			waiting, units := 49, 40
			if m.shards > 1 {
				waiting, units = stockpg.ParallelPending-1, 5
			}
			ctx := t.Context()
			s, pool := newStore(t, m.opts())
			require.NoError(t, s.Define(ctx, "item", stock.ItemConfig{}))
			require.NoError(t, s.Restock(ctx, "item", units))
			if m.shards > 1 {
				// One shard has every unit, so that one batch serves them.
				placeUnits(t, pool, "item", map[int]int{0: units})
			}

			// Every shard of the item is held: the first batch waits.
			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
			_, err = tx.Exec(ctx, `SELECT FROM idemq_stock_shards WHERE item = 'item' FOR UPDATE`)
			require.NoError(t, err)

			var wg sync.WaitGroup
			errs := make([]error, waiting+1)
			wg.Go(func() {
				_, errs[0] = s.Reserve(ctx, reserveReq("item", "h0", "r0", 1))
			})
			waitBlockedBy(t, pool, tx.Conn().PgConn().PID())

			gaveUp, cancel := context.WithCancel(ctx)
			for i := 1; i <= waiting; i++ {
				wg.Go(func() {
					c := ctx
					if i == waiting {
						c = gaveUp
					}
					_, errs[i] = s.Reserve(c, reserveReq("item", fmt.Sprintf("h%d", i), fmt.Sprintf("r%d", i), 1))
				})
			}
			deadline := time.Now().Add(30 * time.Second)
			for stockpg.PendingReserves(s) < waiting {
				require.True(t, time.Now().Before(deadline), "%d Reserves pending, want %d", stockpg.PendingReserves(s), waiting)
				time.Sleep(time.Millisecond)
			}
			cancel()
			for stockpg.PendingReserves(s) > waiting-1 {
				time.Sleep(time.Millisecond)
			}
			require.NoError(t, tx.Commit(ctx))
			wg.Wait()

			granted := 0
			for i, err := range errs {
				switch {
				case i == waiting:
					require.ErrorIs(t, err, context.Canceled)
				case errors.Is(err, stock.ErrSoldOut):
				default:
					require.NoError(t, err, "Reserve %d", i)
					granted++
				}
			}
			require.Equal(t, units, granted, "%d units for %d requests", units, waiting)
			_, err = s.Get(ctx, fmt.Sprintf("r%d", waiting))
			require.ErrorIs(t, err, stock.ErrNotFound, "the Reserve given up before its batch")
			var commits int
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(DISTINCT created_at) FROM idemq_stock_reservations`).Scan(&commits))
			require.Equal(t, 2, commits, "the first Reserve alone, then the others together")
			l := requireConsistent(t, s, pool, "item", units)
			require.Equal(t, stock.Level{Item: "item", Held: units}, l)
		})
	}
}

// TestParallelBatches: while a batch of a sharded item runs, as many as
// ParallelPending waiting Reserves go in a second batch at once, on
// another shard; up to ParallelBatches run, and later Reserves wait for
// one of them to end.
func TestParallelBatches(t *testing.T) {
	t.Parallel()
	require.Equal(t, 2, stockpg.ParallelBatches, "the test starts as many batches as run at once")
	const later = 10
	ctx := t.Context()
	s, pool := newStore(t, stockpg.Options{Shards: 8})
	require.NoError(t, s.Define(ctx, "item", stock.ItemConfig{}))
	require.NoError(t, s.Restock(ctx, "item", 40))
	placeUnits(t, pool, "item", map[int]int{0: 40})

	// Every shard of the item is held: the batches wait.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	_, err = tx.Exec(ctx, `SELECT FROM idemq_stock_shards WHERE item = 'item' FOR UPDATE`)
	require.NoError(t, err)
	pid := tx.Conn().PgConn().PID()

	n := 1 + stockpg.ParallelPending + later
	var wg sync.WaitGroup
	errs := make([]error, n)
	reserve := func(i int) {
		wg.Go(func() {
			_, errs[i] = s.Reserve(ctx, reserveReq("item", fmt.Sprintf("h%d", i), fmt.Sprintf("r%d", i), 1))
		})
	}
	waitPending := func(want int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for stockpg.PendingReserves(s) != want {
			require.True(t, time.Now().Before(deadline), "%d Reserves pending, want %d", stockpg.PendingReserves(s), want)
			time.Sleep(time.Millisecond)
		}
	}

	reserve(0)
	waitBlocked(t, pool, pid, 1)
	for i := 1; i <= stockpg.ParallelPending; i++ {
		reserve(i)
	}
	waitBlocked(t, pool, pid, 2)
	waitPending(0)
	for i := 1 + stockpg.ParallelPending; i < n; i++ {
		reserve(i)
	}
	waitPending(later)
	require.NoError(t, tx.Commit(ctx))
	wg.Wait()

	for i, err := range errs {
		require.NoError(t, err, "Reserve %d", i)
	}
	l := requireConsistent(t, s, pool, "item", 40)
	require.Equal(t, stock.Level{Item: "item", Available: 40 - n, Held: n}, l)
}
