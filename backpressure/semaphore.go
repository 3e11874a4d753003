package backpressure

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Semaphore is a counting semaphore whose limit can change while it is in
// use. Waiters are served first come, first served. The zero value has a
// limit of 0 and admits nobody until SetLimit.
//
// Acquiring without waiting and releasing allocate nothing.
type Semaphore struct {
	mu      sync.Mutex
	limit   int
	held    int
	head    *waiter // FIFO of blocked Acquires
	tail    *waiter
	waiting int
}

type waiter struct {
	ready chan struct{} // closed when the slot is granted
	next  *waiter
	prev  *waiter
}

// NewSemaphore returns a semaphore admitting limit holders at once.
func NewSemaphore(limit int) (*Semaphore, error) {
	if limit < 1 {
		return nil, fmt.Errorf("backpressure: semaphore limit %d is below 1", limit)
	}
	return &Semaphore{limit: limit}, nil
}

// TryAcquire takes a slot if one is free and nobody is waiting.
func (s *Semaphore) TryAcquire() bool {
	s.mu.Lock()
	ok := s.held < s.limit && s.head == nil
	if ok {
		s.held++
	}
	s.mu.Unlock()
	return ok
}

// Acquire takes a slot, waiting for one if necessary. If ctx is done first
// it returns ctx's error and leaves the semaphore as it was, even when a
// slot was granted at that very moment.
func (s *Semaphore) Acquire(ctx context.Context) error {
	return s.acquire(ctx, -1)
}

// errQueueFull is returned by acquire when maxQueue callers already wait.
var errQueueFull = errors.New("backpressure: queue full")

// acquire is Acquire with at most maxQueue waiters (no bound when
// negative); the check and the enqueueing happen under one lock, so the
// bound is exact.
func (s *Semaphore) acquire(ctx context.Context, maxQueue int) error {
	s.mu.Lock()
	if s.held < s.limit && s.head == nil {
		s.held++
		s.mu.Unlock()
		return nil
	}
	if err := ctx.Err(); err != nil {
		s.mu.Unlock()
		return err
	}
	if maxQueue >= 0 && s.waiting >= maxQueue {
		s.mu.Unlock()
		return errQueueFull
	}
	w := &waiter{ready: make(chan struct{})}
	s.pushLocked(w)
	s.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		select {
		case <-w.ready:
			// Granted while we gave up: hand the slot on.
			s.held--
			s.grantLocked()
		default:
			s.removeLocked(w)
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

// Release gives a slot back. Releasing more than was acquired panics.
func (s *Semaphore) Release() { s.releaseHeld() }

// releaseHeld is Release that also returns the slots held before it.
func (s *Semaphore) releaseHeld() int {
	s.mu.Lock()
	held := s.held
	if held == 0 {
		s.mu.Unlock()
		panic("backpressure: Semaphore.Release without Acquire")
	}
	s.held--
	s.grantLocked()
	s.mu.Unlock()
	return held
}

// SetLimit changes the limit. Lowering it below the slots held makes new
// callers wait until enough are released; raising it admits waiters.
func (s *Semaphore) SetLimit(limit int) {
	if limit < 0 {
		limit = 0
	}
	s.mu.Lock()
	s.limit = limit
	s.grantLocked()
	s.mu.Unlock()
}

// Limit returns the current limit.
func (s *Semaphore) Limit() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limit
}

// Held returns the number of slots taken.
func (s *Semaphore) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// Waiting returns the number of blocked Acquire calls.
func (s *Semaphore) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

func (s *Semaphore) grantLocked() {
	for s.head != nil && s.held < s.limit {
		w := s.head
		s.removeLocked(w)
		s.held++
		close(w.ready)
	}
}

func (s *Semaphore) pushLocked(w *waiter) {
	w.prev = s.tail
	if s.tail != nil {
		s.tail.next = w
	} else {
		s.head = w
	}
	s.tail = w
	s.waiting++
}

func (s *Semaphore) removeLocked(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		s.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		s.tail = w.prev
	}
	w.next, w.prev = nil, nil
	s.waiting--
}
