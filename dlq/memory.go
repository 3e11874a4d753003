package dlq

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/idemq/idemq/internal/keyset"
)

// MemoryOptions configures a [MemoryStore].
type MemoryOptions struct {
	// MaxEntries caps the entries held; Put refuses new ones with ErrFull
	// beyond it. Zero means no cap.
	MaxEntries int
}

// MemoryStore is a [Store] in process memory, for tests and examples. It
// loses everything when the process exits; use a durable store
// (dlq/dlqpg, dlq/dlqredis) in production.
type MemoryStore struct {
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*memEntry
}

type memEntry struct {
	e             Entry
	token         string
	reservedUntil time.Time
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store.
func NewMemoryStore(opts MemoryOptions) (*MemoryStore, error) {
	if opts.MaxEntries < 0 {
		return nil, fmt.Errorf("dlq: negative MaxEntries %d", opts.MaxEntries)
	}
	return &MemoryStore{max: opts.MaxEntries, now: time.Now, entries: map[string]*memEntry{}}, nil
}

func cloneEntry(e Entry) Entry {
	e.Message.Body = slices.Clone(e.Message.Body)
	e.Message.Headers = maps.Clone(e.Message.Headers)
	e.ErrorChain = slices.Clone(e.ErrorChain)
	return e
}

// Put implements [Store].
func (s *MemoryStore) Put(ctx context.Context, e Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if e.ID == "" {
		return errors.New("dlq: Put of an entry without an ID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.entries[e.ID]
	if !ok && s.max > 0 && len(s.entries) >= s.max {
		return ErrFull
	}
	e = cloneEntry(e)
	if ok && !old.e.FirstFailedAt.IsZero() && old.e.FirstFailedAt.Before(e.FirstFailedAt) {
		e.FirstFailedAt = old.e.FirstFailedAt
	}
	s.entries[e.ID] = &memEntry{e: e}
	return nil
}

// Get implements [Store].
func (s *MemoryStore) Get(ctx context.Context, id string) (Entry, error) {
	if err := ctx.Err(); err != nil {
		return Entry{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.entries[id]
	if !ok {
		return Entry{}, ErrNotFound
	}
	return cloneEntry(m.e), nil
}

// before orders entries for listing: by LastFailedAt, then ID.
func before(a, b Entry) bool {
	if !a.LastFailedAt.Equal(b.LastFailedAt) {
		return a.LastFailedAt.Before(b.LastFailedAt)
	}
	return a.ID < b.ID
}

// cursor encodes the position after e, its LastFailedAt in nanoseconds
// since the Unix epoch, the resolution the store keeps.
func cursor(e Entry) string { return keyset.Encode(e.LastFailedAt.UnixNano(), e.ID) }

func parseCursor(c string) (Entry, error) {
	ns, id, ok := keyset.Decode(c)
	if !ok {
		return Entry{}, fmt.Errorf("dlq: invalid cursor %q", c)
	}
	return Entry{LastFailedAt: time.Unix(0, ns), ID: id}, nil
}

// List implements [Store].
func (s *MemoryStore) List(ctx context.Context, f Filter, cur string, limit int) (Page, error) {
	if err := ctx.Err(); err != nil {
		return Page{}, err
	}
	if limit <= 0 {
		return Page{}, fmt.Errorf("dlq: List limit must be positive, got %d", limit)
	}
	var after *Entry
	if cur != "" {
		a, err := parseCursor(cur)
		if err != nil {
			return Page{}, err
		}
		after = &a
	}
	s.mu.Lock()
	matched := make([]Entry, 0, len(s.entries))
	for _, m := range s.entries {
		if f.Match(m.e) && (after == nil || before(*after, m.e)) {
			matched = append(matched, m.e)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(matched, func(a, b Entry) int {
		if before(a, b) {
			return -1
		}
		if before(b, a) {
			return 1
		}
		return 0
	})
	var p Page
	if len(matched) > limit {
		matched = matched[:limit]
		p.Next = cursor(matched[limit-1])
	}
	p.Entries = make([]Entry, len(matched))
	for i, e := range matched {
		p.Entries[i] = cloneEntry(e)
	}
	return p, nil
}

// Count implements [Store].
func (s *MemoryStore) Count(ctx context.Context, f Filter) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.entries {
		if f.Match(m.e) {
			n++
		}
	}
	return n, nil
}

// Delete implements [Store].
func (s *MemoryStore) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[id]; !ok {
		return ErrNotFound
	}
	delete(s.entries, id)
	return nil
}

// Purge implements [Store].
func (s *MemoryStore) Purge(ctx context.Context, f Filter) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, m := range s.entries {
		if f.Match(m.e) {
			delete(s.entries, id)
			n++
		}
	}
	return n, nil
}

// Reserve implements [Store].
func (s *MemoryStore) Reserve(ctx context.Context, id string, lease time.Duration) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.entries[id]
	if !ok {
		return "", ErrNotFound
	}
	if m.token != "" && m.reservedUntil.After(now) {
		return "", ErrReserved
	}
	m.token = rand.Text()
	m.reservedUntil = now.Add(lease)
	return m.token, nil
}

// reservedLocked returns the entry that token reserves, or an error.
func (s *MemoryStore) reservedLocked(id, token string) (*memEntry, error) {
	m, ok := s.entries[id]
	if !ok {
		return nil, ErrNotFound
	}
	if token == "" || m.token != token || !m.reservedUntil.After(s.now()) {
		return nil, ErrReserved
	}
	return m, nil
}

// Unreserve implements [Store].
func (s *MemoryStore) Unreserve(ctx context.Context, id, token string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.reservedLocked(id, token)
	if err != nil {
		return err
	}
	m.token, m.reservedUntil = "", time.Time{}
	return nil
}

// DeleteReserved implements [Store].
func (s *MemoryStore) DeleteReserved(ctx context.Context, id, token string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.reservedLocked(id, token); err != nil {
		return err
	}
	delete(s.entries, id)
	return nil
}
