package stockpg

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idemq/idemq/stock"
)

// Expired holds of other holders that one Reserve takes back at most: a
// few on the fast paths, which only need their own units, and many more
// on the exact path, which runs again while it finds a full batch and
// still too few units.
const (
	reclaimOne = 16
	reclaimAll = 1000
)

// reserveRow is the answer of Reserve's statement.
type reserveRow struct {
	// The reservation that already has the ID, as of the snapshot.
	priorItem, priorHolder, priorState *string
	priorQuantity                      *int32
	priorExpires                       *time.Time
	priorCodes                         []string
	priorDue                           *bool

	// The item; nil when it is unknown.
	limit    *int32
	disabled *bool
	reason   *string

	// Snapshot reads: the item's free units (expired holds included) and
	// the holder's live units.
	snapTotal, snapMine int64

	// The locked shards: how many, and their free units with the expired
	// holds taken back.
	locked, lockedTotal int64
	// moreDue says the statement took back a full batch of expired holds.
	moreDue bool

	// The holder row after the statement, when it was written.
	holderUnits *int64
	granted     bool

	// The new reservation's deadline, when it was inserted.
	expires *time.Time
}

// errDuplicate reports that a concurrent Reserve with the same ID
// committed first.
var errDuplicate = errors.New("stockpg: duplicate reservation")

// Reserve implements [stock.Store].
//
// An unsharded store runs one statement, which waits for the item's shard
// row. A sharded one first tries one random shard with enough units that
// no one else holds (SKIP LOCKED), then, if every such shard was busy,
// waits for one of them, and only then, when no single shard has enough,
// waits for every shard in order: sold out is reported only when all of
// them together, with the expired holds, are short, or when a snapshot
// read says so. Each step is one statement that takes the units, checks
// the holder's limit and records the reservation atomically.
func (s *Store) Reserve(ctx context.Context, req stock.ReserveRequest) (stock.Reservation, error) {
	req, err := req.Validate()
	if err != nil {
		return stock.Reservation{}, err
	}
	start := 0
	if s.shards > 1 {
		start = rand.IntN(s.shards)
		for _, sql := range []string{s.q.reserveSkip, s.q.reserveWait} {
			res, next, err := s.reserveStep(ctx, sql, req, start, reclaimOne)
			if !next {
				return res, err
			}
		}
	}
	for {
		res, next, err := s.reserveStep(ctx, s.q.reserveAll, req, start, reclaimAll)
		if !next {
			return res, err
		}
		if err := ctx.Err(); err != nil {
			return stock.Reservation{}, err
		}
	}
}

// reserveStep runs one variant of Reserve's statement and decides. next
// says that the statement found no shard it could use, or that the exact
// variant should run again because it took back a full batch of expired
// holds and still had too few units.
func (s *Store) reserveStep(ctx context.Context, sql string, req stock.ReserveRequest, start, reclaim int) (res stock.Reservation, next bool, err error) {
	row, err := s.reserveQuery(ctx, sql, req.Item, req.Holder, req.ID, int64(req.Quantity), micros(req.Hold), start, reclaim)
	if errors.Is(err, errDuplicate) {
		r, err := s.Get(ctx, req.ID)
		if err != nil {
			return stock.Reservation{}, false, fmt.Errorf("stockpg: reserve %q: read the concurrent reservation: %w", req.ID, err)
		}
		if r.Item != req.Item || r.Holder != req.Holder || r.Quantity != req.Quantity {
			return stock.Reservation{}, false, fmt.Errorf("%w: %q", stock.ErrConflict, req.ID)
		}
		return r, false, nil
	}
	if err != nil {
		return stock.Reservation{}, false, fmt.Errorf("stockpg: reserve %q: %w", req.ID, err)
	}

	if row.priorItem != nil {
		if *row.priorItem != req.Item || *row.priorHolder != req.Holder || int(*row.priorQuantity) != req.Quantity {
			return stock.Reservation{}, false, fmt.Errorf("%w: %q", stock.ErrConflict, req.ID)
		}
		return stock.Reservation{
			ID: req.ID, Item: req.Item, Holder: req.Holder, Quantity: req.Quantity,
			State:     effectiveState(*row.priorState, *row.priorDue),
			ExpiresAt: *row.priorExpires,
			Codes:     row.priorCodes,
		}, false, nil
	}
	if row.limit == nil {
		return stock.Reservation{}, false, unknownItem(req.Item)
	}
	refuse := func(available int64, e error, reason string) (stock.Reservation, bool, error) {
		return stock.Reservation{}, false, &stock.ReservationError{Item: req.Item, Available: int(available), Err: e, Reason: reason}
	}
	limit := int64(*row.limit)
	q := int64(req.Quantity)
	switch {
	case *row.disabled:
		return refuse(row.snapTotal, stock.ErrDisabled, *row.reason)
	case row.expires != nil:
		return stock.Reservation{
			ID: req.ID, Item: req.Item, Holder: req.Holder, Quantity: req.Quantity,
			State: stock.Held, ExpiresAt: *row.expires,
		}, false, nil
	case row.granted:
		// The insert follows the grant in the same statement.
		return stock.Reservation{}, false, fmt.Errorf("stockpg: reserve %q: units granted without a reservation", req.ID)

	case row.locked == 0:
		// The snapshot read refused, or no shard could be used.
		switch {
		case limit > 0 && row.snapMine+q > limit:
			return refuse(row.snapTotal, stock.ErrHolderLimit, "")
		case row.snapTotal < q:
			return refuse(row.snapTotal, stock.ErrSoldOut, "")
		case sql == s.q.reserveAll:
			// The item has no shard rows.
			return refuse(0, stock.ErrSoldOut, "")
		}
		return stock.Reservation{}, true, nil

	case limit > 0 && row.holderUnits != nil && *row.holderUnits+q > limit:
		if sql != s.q.reserveAll {
			// The locked shard holds only part of the item's units.
			return refuse(row.snapTotal, stock.ErrHolderLimit, "")
		}
		return refuse(row.lockedTotal, stock.ErrHolderLimit, "")
	case sql != s.q.reserveAll:
		// A locked shard had enough units: only the limit can refuse.
		return stock.Reservation{}, true, nil
	case row.moreDue:
		return stock.Reservation{}, true, nil
	}
	return refuse(row.lockedTotal, stock.ErrSoldOut, "")
}

// reserveQuery runs Reserve's statement. In a caller's transaction it
// runs under a savepoint, so that the unique violation of a concurrent
// duplicate does not abort the transaction; and a statement that locked
// no shard, and so wrote nothing, is rolled back to its savepoint, which
// releases the rows it locked only to find them short, so that the next
// step does not wait for other rows while holding them.
func (s *Store) reserveQuery(ctx context.Context, sql string, args ...any) (reserveRow, error) {
	tx, ok := s.db.(pgx.Tx)
	if !ok {
		return s.scanReserve(s.db.QueryRow(ctx, sql, args...))
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return reserveRow{}, err
	}
	row, err := s.scanReserve(sp.QueryRow(ctx, sql, args...))
	if err != nil || row.locked == 0 {
		if rerr := sp.Rollback(ctx); rerr != nil {
			return reserveRow{}, errors.Join(err, rerr)
		}
		return row, err
	}
	return row, sp.Commit(ctx)
}

func (s *Store) scanReserve(r pgx.Row) (reserveRow, error) {
	var row reserveRow
	err := r.Scan(
		&row.priorItem, &row.priorHolder, &row.priorQuantity, &row.priorState, &row.priorExpires, &row.priorCodes, &row.priorDue,
		&row.limit, &row.disabled, &row.reason,
		&row.snapTotal, &row.snapMine,
		&row.locked, &row.lockedTotal, &row.moreDue,
		&row.holderUnits, &row.granted,
		&row.expires,
	)
	if isUniqueViolation(err, s.q.reservationsKey) {
		return row, errDuplicate
	}
	return row, err
}
