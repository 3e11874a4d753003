package stock

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// MemoryStore is a [Store] in process memory, for tests, examples and
// single-process services. It loses everything when the process exits.
type MemoryStore struct {
	now func() time.Time // for tests

	mu           sync.Mutex
	items        map[string]*memItem
	reservations map[string]*Reservation
}

type memItem struct {
	cfg       ItemConfig
	available int
	held      map[string]*memHold // holds not yet confirmed, released or expired, by ID
	expiries  holdHeap            // the same holds, soonest expiry first
	heldUnits int
	confirmed int
	disabled  bool
	reason    string
	holders   map[string]int // units held or confirmed per holder
	free      []string       // a code item's codes not yet given out
	loaded    map[string]bool
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{now: time.Now, items: map[string]*memItem{}, reservations: map[string]*Reservation{}}
}

func (s *MemoryStore) item(name string) (*memItem, error) {
	it, ok := s.items[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownItem, name)
	}
	return it, nil
}

// memHold is a hold in its item's expiry heap.
type memHold struct {
	r   *Reservation
	idx int
}

type holdHeap []*memHold

func (h holdHeap) Len() int           { return len(h) }
func (h holdHeap) Less(i, j int) bool { return h[i].r.ExpiresAt.Before(h[j].r.ExpiresAt) }
func (h holdHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *holdHeap) Push(x any) {
	m := x.(*memHold)
	m.idx = len(*h)
	*h = append(*h, m)
}
func (h *holdHeap) Pop() any {
	old := *h
	m := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return m
}

// endHoldLocked takes a hold out of its item's books, moving its units to
// available (expired, released) or confirmed.
func (it *memItem) endHoldLocked(m *memHold, to State) {
	r := m.r
	delete(it.held, r.ID)
	heap.Remove(&it.expiries, m.idx)
	it.heldUnits -= r.Quantity
	r.State = to
	if to == Confirmed {
		it.confirmed += r.Quantity
		return
	}
	it.available += r.Quantity
	it.holders[r.Holder] -= r.Quantity
}

// expireLocked returns the units of up to limit holds whose time has
// passed (all of them when limit < 0), soonest first.
func (s *MemoryStore) expireLocked(it *memItem, now time.Time, limit int) int {
	n := 0
	for n != limit && len(it.expiries) > 0 && !it.expiries[0].r.ExpiresAt.After(now) {
		it.endHoldLocked(it.expiries[0], Expired)
		n++
	}
	return n
}

// Define implements [Store].
func (s *MemoryStore) Define(ctx context.Context, item string, cfg ItemConfig) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckName("item name", item); err != nil {
		return err
	}
	if cfg.HolderLimit < 0 {
		return fmt.Errorf("stock: negative HolderLimit %d", cfg.HolderLimit)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if it, ok := s.items[item]; ok {
		if it.cfg.Codes != cfg.Codes {
			return fmt.Errorf("stock: item %q cannot change between counted units and codes", item)
		}
		it.cfg = cfg
		return nil
	}
	s.items[item] = &memItem{cfg: cfg, held: map[string]*memHold{}, holders: map[string]int{}, loaded: map[string]bool{}}
	return nil
}

// Restock implements [Store].
func (s *MemoryStore) Restock(ctx context.Context, item string, units int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if units <= 0 {
		return fmt.Errorf("stock: Restock units must be positive, got %d", units)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, err := s.item(item)
	if err != nil {
		return err
	}
	if it.cfg.Codes {
		return fmt.Errorf("stock: item %q is a code pool: load codes instead", item)
	}
	it.available += units
	return nil
}

// LoadCodes implements [Store].
func (s *MemoryStore) LoadCodes(ctx context.Context, item string, codes []string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := CheckCodes(codes); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, err := s.item(item)
	if err != nil {
		return 0, err
	}
	if !it.cfg.Codes {
		return 0, fmt.Errorf("stock: item %q counts units: restock it instead", item)
	}
	added := 0
	for _, c := range codes {
		if c == "" || it.loaded[c] {
			continue
		}
		it.loaded[c] = true
		it.free = append(it.free, c)
		it.available++
		added++
	}
	return added, nil
}

func sameRequest(r *Reservation, req ReserveRequest) bool {
	return r.Item == req.Item && r.Holder == req.Holder && r.Quantity == req.Quantity
}

// Reserve implements [Store].
func (s *MemoryStore) Reserve(ctx context.Context, req ReserveRequest) (Reservation, error) {
	if err := ctx.Err(); err != nil {
		return Reservation{}, err
	}
	req, err := req.Validate()
	if err != nil {
		return Reservation{}, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.reservations[req.ID]; ok {
		if !sameRequest(r, req) {
			return Reservation{}, fmt.Errorf("%w: %q", ErrConflict, req.ID)
		}
		s.refreshLocked(r, now)
		return cloneReservation(r), nil
	}
	it, err := s.item(req.Item)
	if err != nil {
		return Reservation{}, err
	}
	s.expireLocked(it, now, -1)
	refuse := func(e error, reason string) (Reservation, error) {
		return Reservation{}, &ReservationError{Item: req.Item, Available: it.available, Err: e, Reason: reason}
	}
	switch {
	case it.disabled:
		return refuse(ErrDisabled, it.reason)
	case it.cfg.HolderLimit > 0 && it.holders[req.Holder]+req.Quantity > it.cfg.HolderLimit:
		return refuse(ErrHolderLimit, "")
	case it.available < req.Quantity:
		return refuse(ErrSoldOut, "")
	}
	it.available -= req.Quantity
	it.holders[req.Holder] += req.Quantity
	r := &Reservation{ID: req.ID, Item: req.Item, Holder: req.Holder, Quantity: req.Quantity,
		State: Held, ExpiresAt: now.Add(req.Hold)}
	m := &memHold{r: r}
	it.held[r.ID] = m
	heap.Push(&it.expiries, m)
	it.heldUnits += r.Quantity
	s.reservations[r.ID] = r
	return cloneReservation(r), nil
}

// refreshLocked expires r if its hold has passed.
func (s *MemoryStore) refreshLocked(r *Reservation, now time.Time) {
	if r.State == Held && !r.ExpiresAt.After(now) {
		s.expireLocked(s.items[r.Item], now, -1)
	}
}

func cloneReservation(r *Reservation) Reservation {
	c := *r
	c.Codes = slices.Clone(r.Codes)
	return c
}

// Confirm implements [Store].
func (s *MemoryStore) Confirm(ctx context.Context, id string) (Reservation, error) {
	if err := ctx.Err(); err != nil {
		return Reservation{}, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.reservations[id]
	if !ok {
		return Reservation{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	s.refreshLocked(r, now)
	switch r.State {
	case Confirmed:
		return cloneReservation(r), nil
	case Expired:
		return Reservation{}, fmt.Errorf("%w: %q", ErrExpired, id)
	case Released:
		return Reservation{}, fmt.Errorf("%w: %q", ErrReleased, id)
	}
	it := s.items[r.Item]
	if it.cfg.Codes {
		if len(it.free) < r.Quantity {
			return Reservation{}, fmt.Errorf("%w: %q", ErrNoCodes, r.Item)
		}
		r.Codes = slices.Clone(it.free[:r.Quantity])
		it.free = it.free[r.Quantity:]
	}
	it.endHoldLocked(it.held[id], Confirmed)
	return cloneReservation(r), nil
}

// Release implements [Store].
func (s *MemoryStore) Release(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.reservations[id]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	s.refreshLocked(r, now)
	switch r.State {
	case Confirmed:
		return fmt.Errorf("%w: %q", ErrConfirmed, id)
	case Released, Expired:
		return nil
	}
	it := s.items[r.Item]
	it.endHoldLocked(it.held[id], Released)
	return nil
}

// Get implements [Store].
func (s *MemoryStore) Get(ctx context.Context, id string) (Reservation, error) {
	if err := ctx.Err(); err != nil {
		return Reservation{}, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.reservations[id]
	if !ok {
		return Reservation{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	s.refreshLocked(r, now)
	return cloneReservation(r), nil
}

// Disable implements [Store].
func (s *MemoryStore) Disable(ctx context.Context, item, reason string) error {
	return s.setDisabled(ctx, item, true, reason)
}

// Enable implements [Store].
func (s *MemoryStore) Enable(ctx context.Context, item string) error {
	return s.setDisabled(ctx, item, false, "")
}

func (s *MemoryStore) setDisabled(ctx context.Context, item string, disabled bool, reason string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, err := s.item(item)
	if err != nil {
		return err
	}
	it.disabled, it.reason = disabled, reason
	return nil
}

// Level implements [Store].
func (s *MemoryStore) Level(ctx context.Context, item string) (Level, error) {
	if err := ctx.Err(); err != nil {
		return Level{}, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	it, err := s.item(item)
	if err != nil {
		return Level{}, err
	}
	s.expireLocked(it, now, -1)
	return Level{Item: item, Available: it.available, Held: it.heldUnits, Confirmed: it.confirmed,
		Disabled: it.disabled, Reason: it.reason}, nil
}

// Sweep implements [Store].
func (s *MemoryStore) Sweep(ctx context.Context, limit int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, fmt.Errorf("stock: Sweep limit must be positive, got %d", limit)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, it := range s.items {
		n += s.expireLocked(it, now, limit-n)
		if n == limit {
			break
		}
	}
	return n, nil
}
