package backpressure

import (
	"errors"
	"sync"
)

// Breakers holds one [Breaker] per key (per tenant, per downstream host,
// per partition), created on demand, at most maxKeys of them.
//
// When a new key needs room, Breakers evicts, in this order of preference:
//
//  1. the least recently used breaker that is closed with no calls in
//     flight: forgetting it loses only a few counted failures;
//  2. the least recently used closed breaker with calls in flight: their
//     results go to a breaker nobody asks for any more, which is harmless;
//  3. the least recently used open or half-open breaker. This lets calls
//     through to a dependency that was failing, until the new breaker
//     trips again; the alternative, refusing or not tracking new keys,
//     would fail callers that have nothing to do with the failing one.
//     Evicting an open breaker releases its MetricBreakerState gauge.
//
// A key opened with [Breakers.Open] (or whose breaker was opened with
// [Breaker.Open]) is pinned: it is never evicted, until it is closed.
// Pinned breakers count towards maxKeys. If every slot is pinned, Get
// returns a fresh breaker that is not kept, so such a key's failures are
// not remembered; Open of a new key then keeps it anyway, beyond maxKeys,
// since forgetting an operator's Open would silently close the circuit.
//
// Get for a known key is O(1): a map and intrusive LRU lists, one for
// closed breakers and one for open ones. Making room for a new key walks
// the closed list from its least recently used end only past breakers
// with calls in flight, moving each to the front (it is in use), so it is
// O(1) plus the number of such breakers, and amortized O(1).
//
// A Breakers is safe for concurrent use.
type Breakers struct {
	cfg     *breakerConfig
	name    string
	maxKeys int

	mu     sync.Mutex
	m      map[string]*Breaker
	closed breakerLRU // closed, not pinned
	open   breakerLRU // open or half-open, not pinned
}

// breakerPlace says where a breaker of a Breakers is kept.
type breakerPlace uint8

const (
	breakerEvicted breakerPlace = iota // not (any more) in the map
	breakerInClosed
	breakerInOpen
	breakerPinned // in the map, in no list
)

// NewBreakers returns an empty set of per-key breakers, each configured by
// opts and named opts.Name + ":" + key, or key alone when opts.Name is
// empty. maxKeys must be at least 1.
func NewBreakers(opts BreakerOptions, maxKeys int) (*Breakers, error) {
	cfg, err := opts.config()
	if err != nil {
		return nil, err
	}
	if maxKeys < 1 {
		return nil, errBreakersMaxKeys
	}
	return &Breakers{cfg: cfg, name: opts.Name, maxKeys: maxKeys, m: make(map[string]*Breaker)}, nil
}

var errBreakersMaxKeys = errors.New("backpressure: Breakers maxKeys must be at least 1")

// Get returns key's breaker, creating it (closed) if needed, and marks it
// as the most recently used.
func (g *Breakers) Get(key string) *Breaker {
	g.mu.Lock()
	if b, ok := g.m[key]; ok {
		if l := g.listOf(b.where); l != nil {
			l.moveToFront(b)
		}
		g.mu.Unlock()
		return b
	}
	victims := g.makeRoomLocked()
	if len(g.m) >= g.maxKeys { // every slot is pinned
		g.mu.Unlock()
		return newBreaker(g.cfg, g.nameOf(key))
	}
	b := g.addLocked(key)
	g.mu.Unlock()
	reportRetired(victims)
	return b
}

// Open opens key's breaker by hand (see [Breaker.Open]) and pins it, so it
// is never evicted until [Breakers.Close] or [Breaker.Close].
func (g *Breakers) Open(key string) {
	g.mu.Lock()
	b, ok := g.m[key]
	var victims []*Breaker
	if !ok {
		victims = g.makeRoomLocked()
		b = g.addLocked(key) // beyond maxKeys if every slot is pinned
	}
	b.pinHold = true // until b.Open below is seen by reconcile
	g.placeLocked(b, breakerPinned)
	g.mu.Unlock()
	reportRetired(victims)
	b.Open()
}

// Close closes key's breaker by hand (see [Breaker.Close]) and unpins it.
// An unknown key has nothing to close.
func (g *Breakers) Close(key string) {
	g.mu.Lock()
	b, ok := g.m[key]
	if ok {
		b.pinHold = false
	}
	g.mu.Unlock()
	if ok {
		b.Close()
	}
}

// Len returns how many breakers are kept.
func (g *Breakers) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.m)
}

func (g *Breakers) nameOf(key string) string {
	if g.name == "" {
		return key
	}
	return g.name + ":" + key
}

func (g *Breakers) addLocked(key string) *Breaker {
	b := newBreaker(g.cfg, g.nameOf(key))
	b.group, b.key = g, key
	g.m[key] = b
	b.where = breakerInClosed
	g.closed.pushFront(b)
	return b
}

// makeRoomLocked evicts until a new key fits or only pinned breakers are
// left, and returns the evicted breakers, whose gauge events must be
// reported once g.mu is released.
func (g *Breakers) makeRoomLocked() []*Breaker {
	var victims []*Breaker
	for len(g.m) >= g.maxKeys {
		b := g.victimLocked()
		if b == nil {
			break
		}
		g.placeLocked(b, breakerEvicted)
		delete(g.m, b.key)
		b.mu.Lock()
		b.retireLocked()
		b.mu.Unlock()
		victims = append(victims, b)
	}
	return victims
}

// victimLocked picks the breaker to evict, in the order of preference
// documented on Breakers.
func (g *Breakers) victimLocked() *Breaker {
	for n := g.closed.n; n > 0; n-- {
		b := g.closed.tail
		b.mu.Lock()
		idle := b.state == StateClosed && b.inflight == 0 && !b.manual
		b.mu.Unlock()
		if idle {
			return b
		}
		g.closed.moveToFront(b) // in use; after a full walk the order is as before
	}
	if g.closed.tail != nil {
		return g.closed.tail
	}
	return g.open.tail
}

// reconcile files b under what its state is now. It is called after every
// transition and manual Open or Close; since it reads the current state
// rather than the event, calls that arrive late or twice do no harm.
func (g *Breakers) reconcile(b *Breaker) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b.where == breakerEvicted {
		return
	}
	b.mu.Lock()
	state, manual := b.state, b.manual
	b.mu.Unlock()
	if manual {
		b.pinHold = false // the manual flag pins it from now on
	}
	switch {
	case manual || b.pinHold:
		g.placeLocked(b, breakerPinned)
	case state == StateClosed:
		g.placeLocked(b, breakerInClosed)
	default:
		g.placeLocked(b, breakerInOpen)
	}
}

// placeLocked moves b to place p, at the front of its list.
func (g *Breakers) placeLocked(b *Breaker, p breakerPlace) {
	if b.where == p {
		return
	}
	if l := g.listOf(b.where); l != nil {
		l.remove(b)
	}
	b.where = p
	if l := g.listOf(p); l != nil {
		l.pushFront(b)
	}
}

func (g *Breakers) listOf(p breakerPlace) *breakerLRU {
	switch p {
	case breakerInClosed:
		return &g.closed
	case breakerInOpen:
		return &g.open
	}
	return nil
}

// reportRetired reports the gauge releases of evicted breakers.
func reportRetired(victims []*Breaker) {
	for _, b := range victims {
		b.mu.Lock()
		b.unlockAndNotify()
	}
}

// breakerLRU is an intrusive doubly linked list of breakers, most recently
// used at head.
type breakerLRU struct {
	head, tail *Breaker
	n          int
}

func (l *breakerLRU) pushFront(b *Breaker) {
	b.prev, b.next = nil, l.head
	if l.head != nil {
		l.head.prev = b
	} else {
		l.tail = b
	}
	l.head = b
	l.n++
}

func (l *breakerLRU) remove(b *Breaker) {
	if b.prev != nil {
		b.prev.next = b.next
	} else {
		l.head = b.next
	}
	if b.next != nil {
		b.next.prev = b.prev
	} else {
		l.tail = b.prev
	}
	b.prev, b.next = nil, nil
	l.n--
}

func (l *breakerLRU) moveToFront(b *Breaker) {
	if l.head == b {
		return
	}
	l.remove(b)
	l.pushFront(b)
}
