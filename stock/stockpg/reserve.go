package stockpg

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/idemq/idemq/stock"
)

// Expired holds of other holders that a batch takes back at first, per
// request and at most; it takes back more, a thousand at a time, while it
// asks for more units than it has.
const (
	reclaimOne = 16
	reclaimAll = 1000
)

// Reserve implements [stock.Store].
//
// Through a pool, concurrent Reserves of one item are grouped: each batch
// is one call of the reserve_batch function, one round trip and one
// transaction, and each caller gets its own answer, the one it would have
// had alone (see the package documentation). In a caller's transaction (a
// pgx.Tx) a Reserve cannot share a transaction with other callers' and
// runs alone, as a batch of one in that transaction.
func (s *Store) Reserve(ctx context.Context, req stock.ReserveRequest) (stock.Reservation, error) {
	req, err := req.Validate()
	if err != nil {
		return stock.Reservation{}, err
	}
	if err := checkRequest(req); err != nil {
		return stock.Reservation{}, err
	}
	if tx, ok := s.db.(pgx.Tx); ok {
		return s.reserveInTx(ctx, tx, req)
	}
	return s.reserveBatched(ctx, req)
}

// checkRequest refuses what PostgreSQL would refuse, so that one such
// request cannot fail the batch it would share with others.
func checkRequest(req stock.ReserveRequest) error {
	if req.Quantity > math.MaxInt32 {
		return fmt.Errorf("stockpg: Quantity %d is more than %d", req.Quantity, math.MaxInt32)
	}
	for _, f := range []struct{ name, s string }{{"Item", req.Item}, {"Holder", req.Holder}, {"ID", req.ID}} {
		if !utf8.ValidString(f.s) || strings.ContainsRune(f.s, 0) {
			return fmt.Errorf("stockpg: ReserveRequest.%s %q is not UTF-8 text without NUL bytes", f.name, f.s)
		}
	}
	return nil
}

// reserveInTx reserves alone in the caller's transaction. A sharded store
// first tries one shard, under a savepoint: when that shard is short, the
// savepoint is rolled back, which releases it, so that the exact step,
// which waits for every shard in order, does not wait while holding one.
func (s *Store) reserveInTx(ctx context.Context, tx pgx.Tx, req stock.ReserveRequest) (stock.Reservation, error) {
	reqs := []stock.ReserveRequest{req}
	if s.shards > 1 {
		shard := rand.IntN(s.shards)
		sp, err := tx.Begin(ctx)
		if err != nil {
			return stock.Reservation{}, fmt.Errorf("stockpg: reserve %q: %w", req.ID, err)
		}
		answers, err := s.queryBatch(ctx, sp, req.Item, shard, reqs)
		if err != nil {
			// The savepoint keeps the caller's transaction usable.
			return stock.Reservation{}, fmt.Errorf("stockpg: reserve %q: %w", req.ID, errors.Join(err, sp.Rollback(ctx)))
		}
		r, next, err := batchOutcome(req, shard, answers[0])
		if !next {
			if cerr := sp.Commit(ctx); cerr != nil {
				return stock.Reservation{}, fmt.Errorf("stockpg: reserve %q: %w", req.ID, cerr)
			}
			return r, err
		}
		if err := sp.Rollback(ctx); err != nil {
			return stock.Reservation{}, fmt.Errorf("stockpg: reserve %q: %w", req.ID, err)
		}
	}
	answers, err := s.queryBatch(ctx, tx, req.Item, exactShard, reqs)
	if err != nil {
		return stock.Reservation{}, fmt.Errorf("stockpg: reserve %q: %w", req.ID, err)
	}
	r, _, err := batchOutcome(req, exactShard, answers[0])
	return r, err
}
