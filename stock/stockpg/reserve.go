package stockpg

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/idemq/idemq/internal/pgschema"
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
// had alone (see the package documentation). With [Options.PerCall], and
// in a caller's transaction (a pgx.Tx), which cannot be shared with other
// callers, a Reserve runs alone instead, as a batch of one.
func (s *Store) Reserve(ctx context.Context, req stock.ReserveRequest) (stock.Reservation, error) {
	req, err := req.Validate()
	if err != nil {
		return stock.Reservation{}, err
	}
	if err := checkRequest(req); err != nil {
		return stock.Reservation{}, err
	}
	if _, inTx := s.db.(pgx.Tx); inTx || s.perCall {
		return s.reserveAlone(ctx, req)
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
		if !pgschema.IsText(f.s) {
			return fmt.Errorf("stockpg: ReserveRequest.%s %q is not UTF-8 text without NUL bytes", f.name, f.s)
		}
	}
	return nil
}

// reserveAlone reserves without group commit: in the caller's
// transaction when db is a pgx.Tx, or else with each statement a
// transaction of its own, and then first with reserveOne, which settles
// the common case in one short statement. What that hands back, and every
// Reserve in a caller's transaction, is made as a batch of one. A sharded
// store first tries one random shard,
// and only if that shard is short while the item may not be, the exact
// step, which waits for every shard in order. The first step must not
// hold its shard while the exact one waits: on its own it has committed,
// and in a caller's transaction it runs under a savepoint that is rolled
// back first.
//
// On its own, a first step answered "next" commits what it did before
// the exact step runs. That is safe: it grants nothing and inserts no
// reservation, and everything else that it may do is bookkeeping that is
// right whatever comes next, the same that a Sweep or any Reserve of the
// item does. It may take back holds whose time has passed (of its shard,
// and the holder's in any shard), marking them expired and adding their
// units to its shard's free count in the same statement; it may stop
// counting the holder's ended reservations, taking their units off the
// holder's row in the same statement; and with a holder limit, it may
// create the holder's row with no units. Every unit is thus still in
// exactly one place, and every holder row still counts exactly its
// counted reservations. A sharded group-commit batch likewise commits such
// changes before it passes its short requests on.
func (s *Store) reserveAlone(ctx context.Context, req stock.ReserveRequest) (stock.Reservation, error) {
	if err := ctx.Err(); err != nil {
		return stock.Reservation{}, err
	}
	_, inTx := s.db.(pgx.Tx)
	if !inTx {
		if r, done, err := s.reserveOne(ctx, req); done {
			return r, err
		}
	}
	if s.shards > 1 {
		r, next, err := s.reserveOnShard(ctx, req, rand.IntN(s.shards))
		if !next {
			return r, err
		}
	}
	answers, err := s.queryBatch(ctx, s.db, req.Item, exactShard, []stock.ReserveRequest{req})
	if err != nil {
		return stock.Reservation{}, fmt.Errorf("stockpg: reserve %q: %w", req.ID, err)
	}
	r, _, err := batchOutcome(req, exactShard, answers[0])
	return r, err
}

// reserveOne is a Reserve on its own in one short statement, the
// reserve_one function, which handles the common case: no reservation
// with the ID yet, and a shard, preferably a random one, with units for
// it (and, with a holder limit, room left in the holder's count). It also
// answers what needs no lock: the reservation the ID has, an unknown or
// disabled item, and an item that a snapshot shows sold out. done is false
// when it handed the request back, having changed nothing; the caller then
// makes the request with reserve_batch, which also takes back expired
// holds and discounts the holder's ended reservations.
//
// It runs only as a statement of its own: in a caller's transaction, a
// shard it locked before handing the request back would stay locked while
// reserve_batch waited for the others.
func (s *Store) reserveOne(ctx context.Context, req stock.ReserveRequest) (r stock.Reservation, done bool, err error) {
	shard := 0
	if s.shards > 1 {
		shard = rand.IntN(s.shards)
	}
	var a batchRow
	err = s.db.QueryRow(ctx, s.q.reserveOne, req.Item, int32(shard), req.Holder, req.ID, int32(req.Quantity),
		pgschema.Micros(req.Hold)).Scan(&a.outcome, &a.item, &a.holder, &a.quantity, &a.state, &a.expires,
		&a.codes, &a.due, &a.available, &a.reason)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "23505" && // unique_violation
		pgErr.ConstraintName == s.q.reservationsKey:
		// A concurrent Reserve inserted the ID first: nothing was done.
		return stock.Reservation{}, false, nil
	case err != nil:
		return stock.Reservation{}, true, fmt.Errorf("stockpg: reserve %q: %w", req.ID, err)
	case a.outcome == "full":
		return stock.Reservation{}, false, nil
	}
	r, _, err = batchOutcome(req, exactShard, a)
	return r, true, err
}

// reserveOnShard is the first step of a sharded reserveAlone, on shard.
// next says that the exact step must follow.
func (s *Store) reserveOnShard(ctx context.Context, req stock.ReserveRequest, shard int) (stock.Reservation, bool, error) {
	reqs := []stock.ReserveRequest{req}
	tx, inTx := s.db.(pgx.Tx)
	if !inTx {
		answers, err := s.queryBatch(ctx, s.db, req.Item, shard, reqs)
		if err != nil {
			return stock.Reservation{}, false, fmt.Errorf("stockpg: reserve %q: %w", req.ID, err)
		}
		return batchOutcome(req, shard, answers[0])
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return stock.Reservation{}, false, fmt.Errorf("stockpg: reserve %q: %w", req.ID, err)
	}
	answers, err := s.queryBatch(ctx, sp, req.Item, shard, reqs)
	if err != nil {
		// The savepoint keeps the caller's transaction usable.
		return stock.Reservation{}, false, fmt.Errorf("stockpg: reserve %q: %w", req.ID, errors.Join(err, sp.Rollback(ctx)))
	}
	r, next, err := batchOutcome(req, shard, answers[0])
	if next {
		if err := sp.Rollback(ctx); err != nil {
			return stock.Reservation{}, false, fmt.Errorf("stockpg: reserve %q: %w", req.ID, err)
		}
		return r, true, nil
	}
	if cerr := sp.Commit(ctx); cerr != nil {
		return stock.Reservation{}, false, fmt.Errorf("stockpg: reserve %q: %w", req.ID, cerr)
	}
	return r, false, err
}
