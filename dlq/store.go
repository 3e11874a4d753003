package dlq

import (
	"context"
	"errors"
	"time"
)

var (
	// ErrNotFound reports that no entry has the given ID.
	ErrNotFound = errors.New("dlq: entry not found")

	// ErrFull reports that a store with a cap holds as many entries as it
	// may; Put refuses new entries rather than evicting old ones.
	ErrFull = errors.New("dlq: store full")

	// ErrReserved reports that another Replay holds the entry.
	ErrReserved = errors.New("dlq: entry reserved by another replay")
)

// Filter selects entries. Zero fields match everything.
type Filter struct {
	Reason Reason
	Source string
	// Since and Until bound LastFailedAt: Since <= LastFailedAt < Until.
	Since, Until time.Time
}

// Match reports whether e passes the filter.
func (f Filter) Match(e Entry) bool {
	return (f.Reason == "" || e.Reason == f.Reason) &&
		(f.Source == "" || e.Source == f.Source) &&
		(f.Since.IsZero() || !e.LastFailedAt.Before(f.Since)) &&
		(f.Until.IsZero() || e.LastFailedAt.Before(f.Until))
}

// Page is one page of a listing.
type Page struct {
	Entries []Entry
	// Next is the cursor of the following page, empty on the last one.
	Next string
}

// Store keeps parked messages. A store never drops an entry on its own:
// entries leave only through Delete, Purge or a Replay, and a store with a
// cap refuses new entries with [ErrFull] rather than evicting.
type Store interface {
	// Put parks e. An entry with the same ID is replaced, keeping the
	// earlier FirstFailedAt, so parking a message twice (say, after its ack
	// failed) leaves one entry. Replacing ends any reservation of the
	// entry, so a Replay that is still finishing cannot delete the newer
	// failure. Put fails with ErrFull when the store has a cap, is full,
	// and e.ID is new. e.ID must not be empty.
	Put(ctx context.Context, e Entry) error

	// Get returns the entry with id, or ErrNotFound.
	Get(ctx context.Context, id string) (Entry, error)

	// List returns up to limit entries that match f, oldest LastFailedAt
	// first (ties broken by ID), starting after the cursor (empty for the
	// first page). Entries added while paging may be missed or shown, but
	// no entry present throughout is skipped or shown twice.
	List(ctx context.Context, f Filter, cursor string, limit int) (Page, error)

	// Count returns the number of entries that match f.
	Count(ctx context.Context, f Filter) (int, error)

	// Delete removes the entry with id, or returns ErrNotFound.
	Delete(ctx context.Context, id string) error

	// Purge removes every entry that matches f and returns how many.
	Purge(ctx context.Context, f Filter) (int, error)

	// Reserve marks the entry as being replayed, until lease has passed,
	// and returns a token for Unreserve and DeleteReserved. It fails with
	// ErrReserved while another reservation of it is live, and with
	// ErrNotFound when there is no such entry.
	Reserve(ctx context.Context, id string, lease time.Duration) (token string, err error)

	// Unreserve ends a reservation without deleting the entry. A stale
	// token changes nothing and returns ErrReserved.
	Unreserve(ctx context.Context, id, token string) error

	// DeleteReserved removes the entry if token still reserves it, and
	// returns ErrReserved otherwise.
	DeleteReserved(ctx context.Context, id, token string) error
}
