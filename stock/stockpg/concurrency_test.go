package stockpg_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/stock"
	"github.com/idemq/idemq/stock/stockpg"
)

// TestReserveStorm: 5,000 concurrent Reserves of 100 units through 32
// connections grant exactly 100, refuse the rest as sold out, and fail
// none: no serialization failure, deadlock or other error reaches a
// caller.
func TestReserveStorm(t *testing.T) {
	const (
		units    = 100
		requests = 5000
		conns    = 32
	)
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := t.Context()
			s, pool := newWideStore(t, m.opts(), conns)
			require.NoError(t, s.Define(ctx, "drop", stock.ItemConfig{}))
			require.NoError(t, s.Restock(ctx, "drop", units))

			var (
				granted, soldOut atomic.Int64
				mu               sync.Mutex
				others           []error
				wg               sync.WaitGroup
				startGate        = make(chan struct{})
			)
			for i := range requests {
				wg.Go(func() {
					<-startGate
					_, err := s.Reserve(ctx, reserveReq("drop", fmt.Sprintf("h%d", i), fmt.Sprintf("r%d", i), 1))
					switch {
					case err == nil:
						granted.Add(1)
					case errors.Is(err, stock.ErrSoldOut):
						soldOut.Add(1)
					default:
						mu.Lock()
						others = append(others, err)
						mu.Unlock()
					}
				})
			}
			began := time.Now()
			close(startGate)
			wg.Wait()
			t.Logf("%s: %d reserves in %v", m.name, requests, time.Since(began))

			require.Empty(t, others, "errors other than sold out")
			require.EqualValues(t, units, granted.Load())
			require.EqualValues(t, requests-units, soldOut.Load())
			l := requireConsistent(t, s, pool, "drop", units)
			require.Equal(t, stock.Level{Item: "drop", Held: units}, l)
			var rows int
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM idemq_stock_reservations`).Scan(&rows))
			require.Equal(t, units, rows)
		})
	}
}

// TestShardedSoldOutDetection: a sharded store reports sold out only when
// all shards together are short, even when the only units left are in
// one shard that another transaction holds, and serves a request larger
// than any one shard from several.
func TestShardedSoldOutDetection(t *testing.T) {
	for _, m := range shardedModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, pool := newStore(t, m.opts())

			t.Run("OneShardLeft", func(t *testing.T) {
				require.NoError(t, s.Define(ctx, "one", stock.ItemConfig{}))
				require.NoError(t, s.Restock(ctx, "one", 8))
				placeUnits(t, pool, "one", map[int]int{5: 3})
				for i := range 3 {
					_, err := s.Reserve(ctx, reserveReq("one", "h", fmt.Sprintf("one-%d", i), 1))
					require.NoError(t, err, "unit %d of the one shard left", i)
				}
				_, err := s.Reserve(ctx, reserveReq("one", "h", "one-3", 1))
				require.ErrorIs(t, err, stock.ErrSoldOut)
				requireConsistent(t, s, pool, "one", 3)
			})

			t.Run("OneShardLeftAndLocked", func(t *testing.T) {
				require.NoError(t, s.Define(ctx, "locked", stock.ItemConfig{}))
				require.NoError(t, s.Restock(ctx, "locked", 8))
				placeUnits(t, pool, "locked", map[int]int{2: 8})

				tx, err := pool.Begin(ctx)
				require.NoError(t, err)
				defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
				_, err = tx.Exec(ctx, `SELECT FROM idemq_stock_shards WHERE item = 'locked' AND shard = 2 FOR UPDATE`)
				require.NoError(t, err)

				done := make(chan error, 1)
				go func() {
					_, err := s.Reserve(ctx, reserveReq("locked", "h", "locked-0", 1))
					done <- err
				}()
				waitBlockedBy(t, pool, tx.Conn().PgConn().PID())
				select {
				case err := <-done:
					t.Fatalf("Reserve returned %v while the only shard with units was locked; want it to wait", err)
				default:
				}
				require.NoError(t, tx.Commit(ctx))
				require.NoError(t, <-done, "the units were there all along")
				requireConsistent(t, s, pool, "locked", 8)
			})

			t.Run("UnitsTakenWhileWaiting", func(t *testing.T) {
				require.NoError(t, s.Define(ctx, "taken", stock.ItemConfig{}))
				require.NoError(t, s.Restock(ctx, "taken", 8))
				placeUnits(t, pool, "taken", map[int]int{6: 2})

				// A caller's transaction takes the last units and holds them
				// uncommitted while another Reserve arrives.
				tx, err := pool.Begin(ctx)
				require.NoError(t, err)
				defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
				inTx, err := stockpg.New(tx, m.opts())
				require.NoError(t, err)
				_, err = inTx.Reserve(ctx, reserveReq("taken", "a", "taken-a", 2))
				require.NoError(t, err)

				done := make(chan error, 1)
				go func() {
					_, err := s.Reserve(ctx, reserveReq("taken", "b", "taken-b", 1))
					done <- err
				}()
				waitBlockedBy(t, pool, tx.Conn().PgConn().PID())
				require.NoError(t, tx.Commit(ctx))
				require.ErrorIs(t, <-done, stock.ErrSoldOut)
				requireConsistent(t, s, pool, "taken", 2)
			})

			t.Run("AcrossShards", func(t *testing.T) {
				require.NoError(t, s.Define(ctx, "across", stock.ItemConfig{}))
				require.NoError(t, s.Restock(ctx, "across", 8))
				for shard, n := range shardUnits(t, pool, "across") {
					require.Equal(t, 1, n, "shard %d after a restock of 8 over 8 shards", shard)
				}
				_, err := s.Reserve(ctx, reserveReq("across", "h", "across-5", 5))
				require.NoError(t, err, "5 units from shards of 1")
				_, err = s.Reserve(ctx, reserveReq("across", "h", "across-4", 4))
				require.ErrorIs(t, err, stock.ErrSoldOut)
				_, err = s.Reserve(ctx, reserveReq("across", "h", "across-3", 3))
				require.NoError(t, err, "the last 3 units")
				l := requireConsistent(t, s, pool, "across", 8)
				require.Equal(t, 8, l.Held)
			})

			t.Run("ExpiredHoldsInOtherShards", func(t *testing.T) {
				require.NoError(t, s.Define(ctx, "expired", stock.ItemConfig{}))
				require.NoError(t, s.Restock(ctx, "expired", 8))
				for i := range 8 {
					_, err := s.Reserve(ctx, reserveReq("expired", "h", fmt.Sprintf("expired-%d", i), 1))
					require.NoError(t, err)
				}
				for i := range 8 {
					expire(t, pool, fmt.Sprintf("expired-%d", i))
				}
				// Every shard is empty; the units are in expired, unswept holds.
				_, err := s.Reserve(ctx, reserveReq("expired", "h", "expired-all", 8))
				require.NoError(t, err, "the units of expired holds are available before a sweep")
				l := requireConsistent(t, s, pool, "expired", 8)
				require.Equal(t, stock.Level{Item: "expired", Held: 8}, l)
			})
		})
	}
}

// TestHolderLimitAcrossShards: a holder's expired hold stops counting
// against the limit wherever it is, even in a shard the next Reserve does
// not lock.
func TestHolderLimitAcrossShards(t *testing.T) {
	for _, m := range shardedModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, pool := newStore(t, m.opts())
			require.NoError(t, s.Define(ctx, "voucher", stock.ItemConfig{HolderLimit: 1}))
			require.NoError(t, s.Restock(ctx, "voucher", 8))

			first, err := s.Reserve(ctx, reserveReq("voucher", "alice", "first", 1))
			require.NoError(t, err)
			_, err = s.Reserve(ctx, reserveReq("voucher", "alice", "second", 1))
			require.ErrorIs(t, err, stock.ErrHolderLimit)

			var shard int
			require.NoError(t, pool.QueryRow(ctx, `SELECT shard FROM idemq_stock_reservations WHERE id = 'first'`).Scan(&shard))
			expire(t, pool, first.ID)
			placeUnits(t, pool, "voucher", map[int]int{(shard + 1) % 8: 6})

			_, err = s.Reserve(ctx, reserveReq("voucher", "alice", "third", 1))
			require.NoError(t, err, "the expired hold in shard %d no longer counts", shard)
			got, err := s.Get(ctx, first.ID)
			require.NoError(t, err)
			require.Equal(t, stock.Expired, got.State)
			_, err = s.Reserve(ctx, reserveReq("voucher", "alice", "fourth", 1))
			require.ErrorIs(t, err, stock.ErrHolderLimit)
			requireConsistent(t, s, pool, "voucher", 7)
		})
	}
}

// TestShardStepThenExact: a Reserve that no one shard can serve is
// served by the exact step after its first step, on one shard, has taken
// back the holder's expired hold (wherever it is) and committed that
// through a pool; the counts add up after both.
func TestShardStepThenExact(t *testing.T) {
	for _, m := range shardedModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, pool := newStore(t, m.opts())
			require.NoError(t, s.Define(ctx, "item", stock.ItemConfig{HolderLimit: 3}))
			require.NoError(t, s.Restock(ctx, "item", 8))
			old, err := s.Reserve(ctx, reserveReq("item", "alice", "old", 1))
			require.NoError(t, err)
			expire(t, pool, old.ID)
			for shard, n := range shardUnits(t, pool, "item") {
				require.LessOrEqual(t, n, 1, "shard %d", shard)
			}

			// No shard has 3 units, even with the expired hold back: the
			// first step answers "next", and the exact step serves it.
			_, err = s.Reserve(ctx, reserveReq("item", "alice", "new", 3))
			require.NoError(t, err)
			got, err := s.Get(ctx, old.ID)
			require.NoError(t, err)
			require.Equal(t, stock.Expired, got.State)
			var counted bool
			require.NoError(t, pool.QueryRow(ctx, `SELECT counted FROM idemq_stock_reservations WHERE id = 'old'`).Scan(&counted))
			require.False(t, counted, "the expired hold no longer counts against alice")
			l := requireConsistent(t, s, pool, "item", 8)
			require.Equal(t, stock.Level{Item: "item", Available: 5, Held: 3}, l)

			_, err = s.Reserve(ctx, reserveReq("item", "alice", "more", 1))
			require.ErrorIs(t, err, stock.ErrHolderLimit)
			requireConsistent(t, s, pool, "item", 8)
		})
	}
}

// TestConcurrentDuplicate: a Reserve whose ID a concurrent, not yet
// committed Reserve is inserting waits for it, then answers that
// reservation (or ErrConflict for another request) and takes nothing.
func TestConcurrentDuplicate(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range []struct {
				name   string
				holder string
				want   error
			}{
				{"Same", "alice", nil},
				{"Conflict", "bob", stock.ErrConflict},
			} {
				t.Run(tc.name, func(t *testing.T) {
					ctx := t.Context()
					opts := m.opts()
					s, pool := newStore(t, opts)
					require.NoError(t, s.Define(ctx, "item", stock.ItemConfig{}))
					require.NoError(t, s.Restock(ctx, "item", 16))

					tx, err := pool.Begin(ctx)
					require.NoError(t, err)
					defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
					inTx, err := stockpg.New(tx, opts)
					require.NoError(t, err)
					first, err := inTx.Reserve(ctx, reserveReq("item", "alice", "dup", 1))
					require.NoError(t, err)

					type result struct {
						r   stock.Reservation
						err error
					}
					done := make(chan result, 1)
					go func() {
						r, err := s.Reserve(ctx, reserveReq("item", tc.holder, "dup", 1))
						done <- result{r, err}
					}()
					waitBlockedBy(t, pool, tx.Conn().PgConn().PID())
					require.NoError(t, tx.Commit(ctx))
					got := <-done
					if tc.want != nil {
						require.ErrorIs(t, got.err, tc.want)
					} else {
						require.NoError(t, got.err)
						require.Equal(t, first.ExpiresAt.UnixMicro(), got.r.ExpiresAt.UnixMicro())
						require.Equal(t, first.Holder, got.r.Holder)
					}
					l := requireConsistent(t, s, pool, "item", 16)
					require.Equal(t, 1, l.Held, "one unit for one reservation ID")
				})
			}
		})
	}
}

// TestReserveInCallerTransaction: a duplicate that makes Reserve's
// statement fail inside a caller's transaction does not abort it.
func TestReserveInCallerTransaction(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			opts := m.opts()
			s, pool := newStore(t, opts)
			require.NoError(t, s.Define(ctx, "item", stock.ItemConfig{}))
			require.NoError(t, s.Restock(ctx, "item", 4))

			first, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = first.Rollback(context.WithoutCancel(ctx)) }()
			inFirst, err := stockpg.New(first, opts)
			require.NoError(t, err)
			want, err := inFirst.Reserve(ctx, reserveReq("item", "alice", "dup", 1))
			require.NoError(t, err)

			second, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = second.Rollback(context.WithoutCancel(ctx)) }()
			inSecond, err := stockpg.New(second, opts)
			require.NoError(t, err)
			type result struct {
				r   stock.Reservation
				err error
			}
			done := make(chan result, 1)
			go func() {
				r, err := inSecond.Reserve(ctx, reserveReq("item", "alice", "dup", 1))
				done <- result{r, err}
			}()
			waitBlockedBy(t, pool, first.Conn().PgConn().PID())
			require.NoError(t, first.Commit(ctx))
			got := <-done
			require.NoError(t, got.err)
			require.Equal(t, want.ExpiresAt.UnixMicro(), got.r.ExpiresAt.UnixMicro())

			// The transaction is still usable, and commits.
			_, err = inSecond.Reserve(ctx, reserveReq("item", "bob", "other", 1))
			require.NoError(t, err)
			require.NoError(t, second.Commit(ctx))
			l := requireConsistent(t, s, pool, "item", 4)
			require.Equal(t, 2, l.Held)
		})
	}
}

// TestMixedWorkload runs reserves, confirmations, releases, expiries and
// sweeps of one item with a holder limit concurrently, then checks that
// the tables still add up and that no holder got more than the limit.
func TestMixedWorkload(t *testing.T) {
	const (
		units   = 40
		limit   = 2
		holders = 30
		workers = 16
		ops     = 250
	)
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := t.Context()
			s, pool := newWideStore(t, m.opts(), workers)
			require.NoError(t, s.Define(ctx, "mixed", stock.ItemConfig{HolderLimit: limit}))
			require.NoError(t, s.Restock(ctx, "mixed", units))

			var (
				mu   sync.Mutex
				ids  []string
				errs []error
				wg   sync.WaitGroup
				seq  atomic.Int64
			)
			pick := func(r *rand.Rand) (string, bool) {
				mu.Lock()
				defer mu.Unlock()
				if len(ids) == 0 {
					return "", false
				}
				return ids[r.IntN(len(ids))], true
			}
			for w := range workers {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(w), 42))
					for range ops {
						var err error
						switch n := r.IntN(100); {
						case n < 15:
							// IDs shared by the workers: concurrent and
							// later duplicates of one request.
							k := r.IntN(100)
							id := fmt.Sprintf("d%d", k)
							req := stock.ReserveRequest{Item: "mixed", Holder: fmt.Sprintf("h%d", k%holders),
								ID: id, Quantity: 1 + k%2, Hold: time.Duration(1+k%20) * time.Millisecond}
							var got stock.Reservation
							got, err = s.Reserve(ctx, req)
							if err == nil {
								if got.ID != id || got.Holder != req.Holder || got.Quantity != req.Quantity {
									err = fmt.Errorf("reserve %s answered %+v", id, got)
								}
								mu.Lock()
								ids = append(ids, id)
								mu.Unlock()
							}
							if errors.Is(err, stock.ErrSoldOut) || errors.Is(err, stock.ErrHolderLimit) {
								err = nil
							}
						case n < 60:
							hold := longHold
							if r.IntN(2) == 0 {
								hold = time.Duration(1+r.IntN(20)) * time.Millisecond
							}
							id := fmt.Sprintf("r%d", seq.Add(1))
							_, err = s.Reserve(ctx, stock.ReserveRequest{Item: "mixed", Holder: fmt.Sprintf("h%d", r.IntN(holders)),
								ID: id, Quantity: 1 + r.IntN(2), Hold: hold})
							if err == nil {
								mu.Lock()
								ids = append(ids, id)
								mu.Unlock()
							}
							if errors.Is(err, stock.ErrSoldOut) || errors.Is(err, stock.ErrHolderLimit) {
								err = nil
							}
						case n < 75:
							if id, ok := pick(r); ok {
								_, err = s.Confirm(ctx, id)
								if errors.Is(err, stock.ErrExpired) || errors.Is(err, stock.ErrReleased) {
									err = nil
								}
							}
						case n < 95:
							if id, ok := pick(r); ok {
								err = s.Release(ctx, id)
								if errors.Is(err, stock.ErrConfirmed) {
									err = nil
								}
							}
						default:
							_, err = s.Sweep(ctx, 1+r.IntN(10))
						}
						if err != nil {
							mu.Lock()
							errs = append(errs, err)
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
			require.Empty(t, errs)
			requireConsistent(t, s, pool, "mixed", units)

			var over int
			require.NoError(t, pool.QueryRow(ctx, `
SELECT count(*) FROM (
    SELECT holder FROM idemq_stock_reservations
    WHERE state = 'confirmed' OR (state = 'held' AND expires_at > statement_timestamp())
    GROUP BY holder HAVING sum(quantity) > $1) o`, limit).Scan(&over))
			require.Zero(t, over, "holders over the limit")

			// Once every hold is over, all units are free or confirmed.
			_, err := pool.Exec(ctx, `UPDATE idemq_stock_reservations SET expires_at = statement_timestamp() - interval '1 second' WHERE state = 'held'`)
			require.NoError(t, err)
			l := requireConsistent(t, s, pool, "mixed", units)
			require.Zero(t, l.Held)
			for {
				n, err := s.Sweep(ctx, 7)
				require.NoError(t, err)
				if n == 0 {
					break
				}
			}
			l = requireConsistent(t, s, pool, "mixed", units)
			require.Zero(t, l.Held)
			var held int
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM idemq_stock_reservations WHERE state = 'held'`).Scan(&held))
			require.Zero(t, held, "holds left after sweeping")
		})
	}
}

// TestReserveStormInTransactions: Reserves each in a caller's transaction
// of their own behave as through a pool: exactly the units there are, and
// no deadlock between steps of a sharded Reserve.
func TestReserveStormInTransactions(t *testing.T) {
	const (
		units    = 50
		requests = 1000
		conns    = 16
	)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			ctx := t.Context()
			opts := m.opts()
			s, pool := newWideStore(t, opts, conns)
			require.NoError(t, s.Define(ctx, "drop", stock.ItemConfig{}))
			require.NoError(t, s.Restock(ctx, "drop", units))

			var (
				granted, soldOut atomic.Int64
				mu               sync.Mutex
				others           []error
				wg               sync.WaitGroup
			)
			for i := range requests {
				wg.Go(func() {
					err := func() error {
						tx, err := pool.Begin(ctx)
						if err != nil {
							return err
						}
						defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
						inTx, err := stockpg.New(tx, opts)
						if err != nil {
							return err
						}
						if _, err := inTx.Reserve(ctx, reserveReq("drop", fmt.Sprintf("h%d", i), fmt.Sprintf("r%d", i), 1+i%2)); err != nil {
							return err
						}
						return tx.Commit(ctx)
					}()
					switch {
					case err == nil:
						granted.Add(1)
					case errors.Is(err, stock.ErrSoldOut):
						soldOut.Add(1)
					default:
						mu.Lock()
						others = append(others, err)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			require.Empty(t, others, "errors other than sold out")
			require.EqualValues(t, requests, granted.Load()+soldOut.Load())
			l := requireConsistent(t, s, pool, "drop", units)
			require.Less(t, l.Available, 2, "sold out with units left: %+v", l)
		})
	}
}

// TestShardStepInTransactionLetsWaitersGo: the first step of a sharded
// Reserve in a caller's transaction, answered 'next' and rolled back to
// its savepoint, releases every row it changed, so that a Reserve that
// holds another shard and waits for one of them goes on, and the exact
// step that follows (which waits for every shard) does not deadlock
// with it.
func TestShardStepInTransactionLetsWaitersGo(t *testing.T) {
	ctx := t.Context()
	opts := stockpg.Options{Shards: 2}
	s, pool := newStore(t, opts)
	perCall, err := stockpg.New(pool, stockpg.Options{Shards: 2, PerCall: true})
	require.NoError(t, err)
	require.NoError(t, s.Define(ctx, "it", stock.ItemConfig{}))
	require.NoError(t, s.Restock(ctx, "it", 3))
	// alice's row still counts a released reservation: the next Reserve
	// of hers takes it off the row.
	_, err = s.Reserve(ctx, reserveReq("it", "alice", "old", 1))
	require.NoError(t, err)
	require.NoError(t, s.Release(ctx, "old"))

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	inTx, err := stockpg.New(tx, opts)
	require.NoError(t, err)
	// The first step, as Reserve runs it: under a savepoint, on one shard,
	// which is short of the 3 units asked for.
	sp, err := tx.Begin(ctx)
	require.NoError(t, err)
	_, next, err := stockpg.ReserveStep(ctx, inTx, sp, reserveReq("it", "alice", "big", 3), 0)
	require.NoError(t, err)
	require.True(t, next, "one shard has too few units, the item may have enough")

	// Another Reserve of alice's locks the other shard and waits for her
	// row, which the first step changed.
	done := make(chan error, 1)
	go func() {
		_, err := perCall.Reserve(ctx, reserveReq("it", "alice", "small", 1))
		done <- err
	}()
	waitBlockedBy(t, pool, tx.Conn().PgConn().PID())
	require.NoError(t, sp.Rollback(ctx))
	// The exact step waits for the other Reserve's shard, which must be
	// able to finish.
	_, _, err = stockpg.ReserveStep(ctx, inTx, tx, reserveReq("it", "alice", "big", 3), stockpg.ExactShard)
	require.NoError(t, <-done, "the other Reserve")
	require.ErrorIs(t, err, stock.ErrSoldOut, "the exact step, once the other Reserve took a unit")
	require.NoError(t, tx.Commit(ctx))
	l := requireConsistent(t, s, pool, "it", 3)
	require.Equal(t, stock.Level{Item: "it", Available: 2, Held: 1}, l)
}

// TestConfirmOfExpiredHoldLocksNothing: a Confirm of an expired hold in a
// transaction that stays open does not keep the hold's units from the
// next Reserve, which would otherwise skip the locked hold and answer
// sold out.
func TestConfirmOfExpiredHoldLocksNothing(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, pool := newStore(t, m.opts())
			require.NoError(t, s.Define(ctx, "it", stock.ItemConfig{}))
			require.NoError(t, s.Restock(ctx, "it", 1))
			_, err := s.Reserve(ctx, reserveReq("it", "alice", "h1", 1))
			require.NoError(t, err)
			expire(t, pool, "h1")

			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
			inTx, err := stockpg.New(tx, m.opts())
			require.NoError(t, err)
			_, err = inTx.Confirm(ctx, "h1")
			require.ErrorIs(t, err, stock.ErrExpired)

			r, err := s.Reserve(ctx, reserveReq("it", "bob", "h2", 1))
			require.NoError(t, err, "the expired hold's unit, while a Confirm of it is uncommitted")
			require.Equal(t, stock.Held, r.State)
			require.NoError(t, tx.Commit(ctx))
			requireConsistent(t, s, pool, "it", 1)
		})
	}
}

// TestBatchesLockHoldersInOrder: two batches on different shards, each
// for holders A and B of an item without a limit, one taking B's ended
// reservation off B's row and the other A's, lock the holder rows in the
// same order, so that neither deadlocks with the other while a third
// transaction holds B's row.
func TestBatchesLockHoldersInOrder(t *testing.T) {
	ctx := t.Context()
	s, pool := newStore(t, stockpg.Options{Shards: 3})
	require.NoError(t, s.Define(ctx, "it", stock.ItemConfig{}))
	require.NoError(t, s.Restock(ctx, "it", 90))
	_, err := s.Reserve(ctx, reserveReq("it", "B", "rb", 1))
	require.NoError(t, err)
	require.NoError(t, s.Release(ctx, "rb"))
	_, err = s.Reserve(ctx, reserveReq("it", "A", "ra", 1))
	require.NoError(t, err)
	var shard int
	require.NoError(t, pool.QueryRow(ctx, `SELECT shard FROM idemq_stock_reservations WHERE id = 'ra'`).Scan(&shard))

	t0, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = t0.Rollback(context.WithoutCancel(ctx)) }()
	_, err = t0.Exec(ctx, `SELECT FROM idemq_stock_holders WHERE item = 'it' AND holder = 'B' FOR NO KEY UPDATE`)
	require.NoError(t, err)

	batch := func(shard int, a, b string) chan []error {
		done := make(chan []error, 1)
		go func() {
			_, errs := stockpg.RunBatch(s, shard, []stock.ReserveRequest{reserveReq("it", "A", a, 1), reserveReq("it", "B", b, 1)})
			done <- errs
		}()
		return done
	}
	first := batch((shard+1)%3, "a1", "b1") // takes rb off B's row
	waitBlocked(t, pool, t0.Conn().PgConn().PID(), 1)
	require.NoError(t, s.Release(ctx, "ra"))
	second := batch((shard+2)%3, "a2", "b2") // takes ra off A's row
	waitBlocked(t, pool, t0.Conn().PgConn().PID(), 2)
	require.NoError(t, t0.Commit(ctx))
	require.Equal(t, []error{nil, nil}, <-first)
	require.Equal(t, []error{nil, nil}, <-second)
	l := requireConsistent(t, s, pool, "it", 90)
	require.Equal(t, 4, l.Held)
}

// TestConfirmWaitsForConfirmingTransaction: a hold that a transaction
// confirmed while it was live, and that passed its time before that
// transaction committed, ends up confirmed; a Confirm or Release of it
// meanwhile waits for that transaction and answers accordingly, rather
// than calling it expired.
func TestConfirmWaitsForConfirmingTransaction(t *testing.T) {
	ctx := t.Context()
	s, pool := newStore(t, stockpg.Options{})
	require.NoError(t, s.Define(ctx, "it", stock.ItemConfig{}))
	require.NoError(t, s.Restock(ctx, "it", 1))
	req := reserveReq("it", "alice", "h", 1)
	req.Hold = 200 * time.Millisecond
	_, err := s.Reserve(ctx, req)
	require.NoError(t, err)

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	inTx, err := stockpg.New(tx, stockpg.Options{})
	require.NoError(t, err)
	c, err := inTx.Confirm(ctx, "h")
	require.NoError(t, err)
	require.Equal(t, stock.Confirmed, c.State)
	require.Eventually(t, func() bool {
		r, err := s.Get(ctx, "h")
		require.NoError(t, err)
		return r.State == stock.Expired // as the others see it, until tx commits
	}, 10*time.Second, 10*time.Millisecond)

	confirmed := make(chan error, 1)
	go func() {
		r, err := s.Confirm(ctx, "h")
		if err == nil && r.State != stock.Confirmed {
			err = fmt.Errorf("Confirm answered %s", r.State)
		}
		confirmed <- err
	}()
	released := make(chan error, 1)
	go func() { released <- s.Release(ctx, "h") }()
	waitBlocked(t, pool, tx.Conn().PgConn().PID(), 2)
	require.NoError(t, tx.Commit(ctx))
	require.NoError(t, <-confirmed)
	require.ErrorIs(t, <-released, stock.ErrConfirmed)
	require.Equal(t, stock.Level{Item: "it", Confirmed: 1}, requireConsistent(t, s, pool, "it", 1))
}

// TestSettleInTransactionDoesNotWait: in a caller's transaction that holds
// a holder's row, a Release or Confirm of the holder's hold past its time
// does not wait for a Reserve that took the hold back and waits for that
// row: the two would deadlock.
func TestSettleInTransactionDoesNotWait(t *testing.T) {
	for _, op := range []string{"Release", "Confirm"} {
		t.Run(op, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			opts := stockpg.Options{Shards: 2}
			s, pool := newStore(t, opts)
			require.NoError(t, s.Define(ctx, "it", stock.ItemConfig{}))
			require.NoError(t, s.Restock(ctx, "it", 100))
			_, err := s.Reserve(ctx, reserveReq("it", "alice", "old", 1))
			require.NoError(t, err)

			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
			inTx, err := stockpg.New(tx, opts)
			require.NoError(t, err)
			_, err = inTx.Reserve(ctx, reserveReq("it", "alice", "new", 1)) // holds alice's row
			require.NoError(t, err)
			expire(t, pool, "old")

			// A Reserve of alice's takes the expired hold back and waits
			// for her row.
			done := make(chan error, 1)
			go func() {
				_, err := s.Reserve(ctx, reserveReq("it", "alice", "other", 1))
				done <- err
			}()
			waitBlockedBy(t, pool, tx.Conn().PgConn().PID())
			if op == "Release" {
				require.NoError(t, inTx.Release(ctx, "old"), "releasing a hold past its time")
			} else {
				_, err = inTx.Confirm(ctx, "old")
				require.ErrorIs(t, err, stock.ErrExpired)
			}
			require.NoError(t, tx.Commit(ctx))
			require.NoError(t, <-done, "the other Reserve")
			requireConsistent(t, s, pool, "it", 100)
		})
	}
}
