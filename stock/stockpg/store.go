package stockpg

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/jackc/pgx/v5"

	"github.com/idemq/idemq/stock"

	"github.com/idemq/idemq/internal/pgschema"
)

// DefaultPrefix names the store's tables when [Options.Prefix] is empty:
// idemq_stock_items, idemq_stock_shards, idemq_stock_reservations,
// idemq_stock_holders and idemq_stock_codes.
const DefaultPrefix = "idemq_stock"

// MaxShards is the most shards [Options.Shards] may ask for.
const MaxShards = 1024

// Options configures a [Store] and its schema. Zero fields take the
// documented defaults.
type Options struct {
	// Prefix names the store's tables, "prefix" or "schema.prefix":
	// lower-case letters, digits and underscores, not starting with a
	// digit, and short enough (at most 39 bytes) for the names derived
	// from it. The tables are <prefix>_items, <prefix>_shards,
	// <prefix>_reservations, <prefix>_holders and <prefix>_codes; the
	// indexes are named after them. Default [DefaultPrefix].
	Prefix string

	// Shards splits each item's free units across this many rows, so
	// that concurrent batches of reservations of one hot item, from
	// several processes or too many for one batch, lock different rows
	// instead of queueing on one. 0 or 1 keeps one row per item
	// (unsharded); at most [MaxShards]. Per-call Reserves do best with
	// about as many shards as Reserves of one item run at once, so that
	// each finds a shard no one else holds. See the package documentation
	// for the trade-offs. Items get their shards at Define; stores with
	// different Shards may share the tables. [Schema] and [Migrate]
	// ignore it.
	Shards int

	// PerCall makes each Reserve through a pool a statement and a
	// transaction of its own (autocommit), rather than joining a batch
	// with other callers' Reserves of the item (group commit, the
	// default). An unsharded store's Reserve is then one statement that
	// locks the item's row; a sharded store's is one on a random shard,
	// followed, if that shard is short while the item may not be, by a
	// second one that locks every shard. Each Reserve then costs a
	// commit of its own, but starts at once and waits for no one else's
	// batch. See the package documentation for when to choose it. A
	// store on a pgx.Tx runs each Reserve alone anyway; [Schema] and
	// [Migrate] ignore it.
	PerCall bool
}

// withDefaults fills in defaults and returns the validated prefix.
func (o Options) withDefaults() (Options, pgschema.Name, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	p, err := parsePrefix(o.Prefix)
	if err != nil {
		return o, p, err
	}
	switch {
	case o.Shards < 0:
		return o, p, fmt.Errorf("stockpg: negative Shards %d", o.Shards)
	case o.Shards > MaxShards:
		return o, p, fmt.Errorf("stockpg: Shards %d is more than MaxShards (%d)", o.Shards, MaxShards)
	case o.Shards == 0:
		o.Shards = 1
	}
	return o, p, nil
}

// Store is a [stock.Store] in PostgreSQL tables. Its methods are safe for
// concurrent use, by any number of processes sharing the tables.
type Store struct {
	db      DBTX
	shards  int
	perCall bool // Reserve runs alone (Options.PerCall)
	q       queries
	batch   batcher // Reserve's group commit, unless db is a pgx.Tx or perCall
}

var _ stock.Store = (*Store)(nil)

// New returns a store that keeps its items and reservations in the tables
// named by opts.Prefix, through db. Run [Migrate] first, once, to create
// them.
//
// db is normally a *pgxpool.Pool. A pgx.Tx makes every call part of the
// caller's transaction, which must run at READ COMMITTED (the default);
// the rows a call locks then stay locked until the caller commits, and
// Reserve runs alone rather than grouped with other callers' (see the
// package documentation), as it does through a pool with
// [Options.PerCall].
func New(db DBTX, opts Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("stockpg: nil DBTX")
	}
	o, p, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Store{db: db, shards: o.Shards, perCall: o.PerCall, q: queriesFor(p)}, nil
}

// The reservation states, as stored.
const (
	stateHeld      = string(stock.Held)
	stateConfirmed = string(stock.Confirmed)
	stateReleased  = string(stock.Released)
	stateExpired   = string(stock.Expired)
)

func unknownItem(item string) error { return fmt.Errorf("%w: %q", stock.ErrUnknownItem, item) }

func notFound(id string) error { return fmt.Errorf("%w: %q", stock.ErrNotFound, id) }

// Define implements [stock.Store]. It also creates the item's shard rows
// that are missing, up to [Options.Shards].
func (s *Store) Define(ctx context.Context, item string, cfg stock.ItemConfig) error {
	if err := stock.CheckName("item name", item); err != nil {
		return err
	}
	if cfg.HolderLimit < 0 {
		return fmt.Errorf("stockpg: negative HolderLimit %d", cfg.HolderLimit)
	}
	var n int64
	if err := s.db.QueryRow(ctx, s.q.define, item, cfg.Codes, cfg.HolderLimit, s.shards).Scan(&n); err != nil {
		return fmt.Errorf("stockpg: define %q: %w", item, err)
	}
	if n == 0 {
		return fmt.Errorf("stockpg: item %q cannot change between counted units and codes", item)
	}
	return nil
}

// Restock implements [stock.Store]. It spreads all the item's free units
// evenly over its shards, the new ones included.
func (s *Store) Restock(ctx context.Context, item string, units int) error {
	if units <= 0 {
		return fmt.Errorf("stockpg: Restock units must be positive, got %d", units)
	}
	var (
		codes  *bool
		shards int64
	)
	err := s.db.QueryRow(ctx, s.q.restock, item, int64(units), rand.Int32N(MaxShards)).Scan(&codes, &shards)
	if err != nil {
		return fmt.Errorf("stockpg: restock %q: %w", item, err)
	}
	switch {
	case codes == nil:
		return unknownItem(item)
	case *codes:
		return fmt.Errorf("stockpg: item %q is a code pool: load codes instead", item)
	case shards == 0:
		return fmt.Errorf("stockpg: item %q has no shard rows: Define it again", item)
	}
	return nil
}

// LoadCodes implements [stock.Store]. Empty codes are ignored, like codes
// already loaded.
func (s *Store) LoadCodes(ctx context.Context, item string, codes []string) (int, error) {
	if err := stock.CheckCodes(codes); err != nil {
		return 0, err
	}
	if codes == nil {
		codes = []string{}
	}
	var (
		isCodes       *bool
		shards, added int64
	)
	err := s.db.QueryRow(ctx, s.q.loadCodes, item, codes, rand.Int32N(MaxShards)).Scan(&isCodes, &shards, &added)
	if err != nil {
		return 0, fmt.Errorf("stockpg: load codes of %q: %w", item, err)
	}
	switch {
	case isCodes == nil:
		return 0, unknownItem(item)
	case !*isCodes:
		return 0, fmt.Errorf("stockpg: item %q counts units: restock it instead", item)
	case shards == 0:
		return 0, fmt.Errorf("stockpg: item %q has no shard rows: Define it again", item)
	}
	return int(added), nil
}

// Disable implements [stock.Store].
func (s *Store) Disable(ctx context.Context, item, reason string) error {
	return s.setDisabled(ctx, item, true, reason)
}

// Enable implements [stock.Store].
func (s *Store) Enable(ctx context.Context, item string) error {
	return s.setDisabled(ctx, item, false, "")
}

func (s *Store) setDisabled(ctx context.Context, item string, disabled bool, reason string) error {
	tag, err := s.db.Exec(ctx, s.q.setDisabled, item, disabled, reason)
	if err != nil {
		return fmt.Errorf("stockpg: disable %q: %w", item, err)
	}
	if tag.RowsAffected() == 0 {
		return unknownItem(item)
	}
	return nil
}

// Level implements [stock.Store]. It is one snapshot read and locks
// nothing. The units of holds whose time has passed count as available,
// swept or not.
func (s *Store) Level(ctx context.Context, item string) (stock.Level, error) {
	var (
		l                            = stock.Level{Item: item}
		available, added, due, alive int64
	)
	err := s.db.QueryRow(ctx, s.q.level, item).Scan(&l.Disabled, &l.Reason, &available, &added, &due, &alive)
	if errors.Is(err, pgx.ErrNoRows) {
		return stock.Level{}, unknownItem(item)
	}
	if err != nil {
		return stock.Level{}, fmt.Errorf("stockpg: level of %q: %w", item, err)
	}
	l.Available = int(available + due)
	l.Held = int(alive)
	l.Confirmed = int(added - available - due - alive)
	return l, nil
}

// Get implements [stock.Store]. A hold whose time has passed is reported
// expired, swept or not.
func (s *Store) Get(ctx context.Context, id string) (stock.Reservation, error) {
	r := stock.Reservation{ID: id}
	var (
		state    string
		quantity int32
		due      bool
	)
	err := s.db.QueryRow(ctx, s.q.get, id).Scan(&r.Item, &r.Holder, &quantity, &state, &r.ExpiresAt, &r.Codes, &due)
	if errors.Is(err, pgx.ErrNoRows) {
		return stock.Reservation{}, notFound(id)
	}
	if err != nil {
		return stock.Reservation{}, fmt.Errorf("stockpg: get %q: %w", id, err)
	}
	r.Quantity = int(quantity)
	r.State = effectiveState(state, due)
	return r, nil
}

// effectiveState is a stored state as of now: a hold past its time is
// expired.
func effectiveState(state string, due bool) stock.State {
	if state == stateHeld && due {
		return stock.Expired
	}
	return stock.State(state)
}

// confirmAttempts bounds Confirm's statements when a code item's free
// codes fall short, which only a code loaded after a statement's snapshot
// (or codes deleted by hand) can cause.
const confirmAttempts = 3

// Confirm implements [stock.Store]. It is one statement: the reservation
// is locked if it is a live hold, then, for a code item, as many free
// codes as it has units (in the order they were loaded), and it is
// confirmed with all of them or not at all. A hold past its time is
// answered as expired once no other transaction holds it (see settle).
func (s *Store) Confirm(ctx context.Context, id string) (stock.Reservation, error) {
	settled := false
	for range confirmAttempts + 1 {
		r := stock.Reservation{ID: id}
		var (
			state           string
			quantity        int32
			live, confirmed bool
		)
		err := s.db.QueryRow(ctx, s.q.confirm, id).Scan(
			&r.Item, &r.Holder, &quantity, &state, &r.ExpiresAt, &live, &r.Codes, &confirmed)
		if errors.Is(err, pgx.ErrNoRows) {
			return stock.Reservation{}, notFound(id)
		}
		if err != nil {
			return stock.Reservation{}, fmt.Errorf("stockpg: confirm %q: %w", id, err)
		}
		r.Quantity = int(quantity)
		switch {
		case confirmed || state == stateConfirmed:
			r.State = stock.Confirmed
			return r, nil
		case state == stateReleased:
			return stock.Reservation{}, fmt.Errorf("%w: %q", stock.ErrReleased, id)
		case state == stateHeld && !live && !settled:
			if err := s.settle(ctx, id); err != nil {
				return stock.Reservation{}, fmt.Errorf("stockpg: confirm %q: %w", id, err)
			}
			settled = true
			continue
		case state == stateExpired || !live:
			return stock.Reservation{}, fmt.Errorf("%w: %q", stock.ErrExpired, id)
		}
		// Held and live, but its item's free codes fell short: try
		// again with a new snapshot.
	}
	return stock.Reservation{}, fmt.Errorf("%w: reservation %q", stock.ErrNoCodes, id)
}

// settle waits until no other transaction holds reservation id, without
// keeping a lock on it: it locks the row in a transaction of its own and
// rolls that back at once. A hold past its time that a transaction
// confirmed or released while it was live ends up so when that
// transaction commits; once none holds it, nothing can change its state
// any more, and a new snapshot tells it. Confirm and Release do not keep
// the lock, so that a hold past its time that they looked at is still
// taken back by the next Reserve.
//
// In a caller's transaction it does nothing, and the snapshot is the
// answer: that transaction may hold a holder row or a shard that the
// transaction holding the hold waits for (a Reserve taking the hold back),
// and waiting for it would deadlock. A transaction of its own holds
// nothing else while it waits.
func (s *Store) settle(ctx context.Context, id string) error {
	if _, inTx := s.db.(pgx.Tx); inTx {
		return nil
	}
	b, ok := s.db.(interface {
		Begin(context.Context) (pgx.Tx, error)
	})
	if !ok {
		return nil // a DBTX that cannot begin one: the snapshot is the answer
	}
	tx, err := b.Begin(ctx)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, s.q.settle, id)
	return errors.Join(err, tx.Rollback(ctx))
}

// releaseAttempts bounds Release's statements: a second one is needed
// only when the hold committed after the first one's snapshot.
const releaseAttempts = 3

// Release implements [stock.Store]. It is one statement that locks the
// hold's shard, then the hold, and gives the units back; when it changes
// nothing, a read tells why.
func (s *Store) Release(ctx context.Context, id string) error {
	settled := false
	for range releaseAttempts + 1 {
		var n int64
		if err := s.db.QueryRow(ctx, s.q.release, id).Scan(&n); err != nil {
			return fmt.Errorf("stockpg: release %q: %w", id, err)
		}
		if n > 0 {
			return nil
		}
		r, err := s.Get(ctx, id)
		if err != nil {
			return err
		}
		switch {
		case r.State == stock.Confirmed:
			return fmt.Errorf("%w: %q", stock.ErrConfirmed, id)
		case r.State == stock.Expired && !settled:
			if err := s.settle(ctx, id); err != nil {
				return fmt.Errorf("stockpg: release %q: %w", id, err)
			}
			settled = true
		case r.State == stock.Released, r.State == stock.Expired:
			return nil
		}
	}
	return fmt.Errorf("stockpg: release %q: the hold kept changing", id)
}

// Sweep implements [stock.Store]. It expires up to limit holds whose time
// has passed, oldest first, in one statement, skipping those whose shard
// another statement holds at that moment: it may report fewer than limit
// while more are due, so a sweeper should call it again after a pause
// rather than stop for good.
func (s *Store) Sweep(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("stockpg: Sweep limit must be positive, got %d", limit)
	}
	var n int64
	if err := s.db.QueryRow(ctx, s.q.sweep, limit).Scan(&n); err != nil {
		return 0, fmt.Errorf("stockpg: sweep: %w", err)
	}
	return int(n), nil
}
