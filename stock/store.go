package stock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

var (
	// ErrSoldOut: fewer units are available than asked for.
	ErrSoldOut = errors.New("stock: sold out")
	// ErrDisabled: the item is disabled by an operator or a breaker.
	ErrDisabled = errors.New("stock: item disabled")
	// ErrHolderLimit: the holder already has as many units as an item allows.
	ErrHolderLimit = errors.New("stock: per-holder limit reached")
	// ErrUnknownItem: no such item was defined.
	ErrUnknownItem = errors.New("stock: unknown item")
	// ErrNotFound: no reservation has the given ID.
	ErrNotFound = errors.New("stock: reservation not found")
	// ErrConflict: a reservation ID was reused for a different request.
	ErrConflict = errors.New("stock: reservation ID reused for a different request")
	// ErrExpired: the hold ran out before it was confirmed; its units
	// went back.
	ErrExpired = errors.New("stock: hold expired")
	// ErrReleased: the reservation was released.
	ErrReleased = errors.New("stock: reservation released")
	// ErrConfirmed: the reservation is confirmed and cannot be released.
	ErrConfirmed = errors.New("stock: reservation already confirmed")
	// ErrNoCodes: a code item's pool has no code left for a confirmation
	// (possible only if codes were removed outside the store).
	ErrNoCodes = errors.New("stock: code pool exhausted")
)

// MaxNameLen is the longest item name, holder, reservation ID or code
// that a store accepts, in bytes: every store can index one that long,
// and a longer one is refused before it reaches the store, where it could
// fail the other Reserves sharing a round trip with it.
const MaxNameLen = 1024

// CheckName returns an error, naming what the string is (such as "item
// name"), if s is empty or longer than MaxNameLen.
func CheckName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("stock: empty %s", what)
	case len(s) > MaxNameLen:
		return fmt.Errorf("stock: %s of %d bytes; the most is %d", what, len(s), MaxNameLen)
	}
	return nil
}

// CheckCodes returns an error if a code is longer than MaxNameLen.
func CheckCodes(codes []string) error {
	for i, c := range codes {
		if len(c) > MaxNameLen {
			return fmt.Errorf("stock: code %d of %d bytes; the most is %d", i, len(c), MaxNameLen)
		}
	}
	return nil
}

// ItemConfig configures an item at Define.
type ItemConfig struct {
	// HolderLimit caps the units one holder may reserve, held and
	// confirmed together (1 for one voucher per user). Zero means no cap.
	HolderLimit int
	// Codes makes the item a pool of unique codes: its units are the codes
	// loaded with LoadCodes, and each confirmed unit yields one code.
	Codes bool
}

// ReserveRequest asks for units of an item.
type ReserveRequest struct {
	Item   string
	Holder string // who the units are for, for the per-holder limit
	// ID makes Reserve idempotent: a retry with the same ID returns the
	// same reservation and takes nothing more. Required.
	ID       string
	Quantity int           // default 1
	Hold     time.Duration // how long the units are held unconfirmed; required
}

// State is a reservation's state.
type State string

const (
	// Held: the units are set aside until ExpiresAt.
	Held State = "held"
	// Confirmed: the units are the holder's for good.
	Confirmed State = "confirmed"
	// Released: the holder gave the units back.
	Released State = "released"
	// Expired: the hold ran out unconfirmed and its units went back.
	Expired State = "expired"
)

// Reservation is units of an item set aside for a holder.
type Reservation struct {
	ID       string
	Item     string
	Holder   string
	Quantity int
	State    State
	// ExpiresAt is when a held reservation's units go back, on the store's
	// clock.
	ExpiresAt time.Time
	// Codes are the codes a confirmed reservation of a code item got.
	Codes []string
}

// Level is an item's stock.
type Level struct {
	Item      string
	Available int // units that can be reserved now
	Held      int // units in unexpired holds
	Confirmed int // units confirmed
	Disabled  bool
	Reason    string // why it is disabled
}

// Store keeps items and reservations. Every method is one atomic step in
// the store, on the store's clock: no unit is ever granted twice and none
// is lost.
//
// A hold's expiry is a predicate on the store's clock: a hold whose time
// has passed is expired whether or not it has been swept; its units are
// available to the next Reserve, and it can no longer be confirmed.
// Sweep returns the units of expired holds in the background, so that
// Level and listings stay accurate when no one reserves.
type Store interface {
	// Define creates the item if it does not exist (with no units) and
	// sets its configuration. A code item cannot become a counted one or
	// back.
	Define(ctx context.Context, item string, cfg ItemConfig) error

	// Restock adds units to a counted item.
	Restock(ctx context.Context, item string, units int) error

	// LoadCodes adds codes to a code item's pool; each new code is one
	// more unit. It returns how many were new (a code already loaded,
	// given out or not, is ignored).
	LoadCodes(ctx context.Context, item string, codes []string) (int, error)

	// Reserve holds units for a holder, or fails with ErrSoldOut,
	// ErrDisabled, ErrHolderLimit or ErrUnknownItem. Retried with the same
	// ID it returns the existing reservation, whatever its state, or
	// ErrConflict if the request differs.
	Reserve(ctx context.Context, r ReserveRequest) (Reservation, error)

	// Confirm makes a held reservation permanent; for a code item it hands
	// out one code per unit. Confirming again returns the same
	// reservation. It fails with ErrExpired, ErrReleased or ErrNotFound.
	Confirm(ctx context.Context, id string) (Reservation, error)

	// Release gives a held reservation's units back. Releasing again, or
	// releasing an expired hold, succeeds and changes nothing; releasing a
	// confirmed reservation fails with ErrConfirmed.
	Release(ctx context.Context, id string) error

	// Get returns a reservation, its state as of now.
	Get(ctx context.Context, id string) (Reservation, error)

	// Disable makes every Reserve of the item fail with ErrDisabled from
	// the moment it returns; Enable undoes it. Existing holds can still be
	// confirmed.
	Disable(ctx context.Context, item, reason string) error
	Enable(ctx context.Context, item string) error

	// Level returns the item's stock now.
	Level(ctx context.Context, item string) (Level, error)

	// Sweep returns the units of up to limit expired holds and reports how
	// many holds it expired.
	Sweep(ctx context.Context, limit int) (int, error)
}

// ReservationError is a refused Reserve with the item's state at that
// moment.
type ReservationError struct {
	Item      string
	Available int
	Err       error // ErrSoldOut, ErrDisabled, ErrHolderLimit
	Reason    string
}

// Error names the item and why the reservation was refused.
func (e *ReservationError) Error() string {
	why := strings.TrimPrefix(e.Err.Error(), "stock: ")
	if e.Reason != "" {
		return fmt.Sprintf("stock: %s: %s (%s)", e.Item, why, e.Reason)
	}
	return fmt.Sprintf("stock: %s: %s", e.Item, why)
}

// Unwrap returns the sentinel: ErrSoldOut, ErrDisabled or ErrHolderLimit.
func (e *ReservationError) Unwrap() error { return e.Err }

// Validate checks a request and fills in its defaults.
func (r ReserveRequest) Validate() (ReserveRequest, error) {
	if r.Quantity == 0 {
		r.Quantity = 1
	}
	for _, f := range [...]struct{ what, s string }{
		{"ReserveRequest.Item", r.Item}, {"ReserveRequest.ID", r.ID}, {"ReserveRequest.Holder", r.Holder},
	} {
		if err := CheckName(f.what, f.s); err != nil {
			return r, err
		}
	}
	switch {
	case r.Quantity < 0:
		return r, fmt.Errorf("stock: negative Quantity %d", r.Quantity)
	case r.Hold <= 0:
		return r, fmt.Errorf("stock: Hold must be positive, got %s", r.Hold)
	}
	return r, nil
}
