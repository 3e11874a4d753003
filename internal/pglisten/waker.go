package pglisten

import "sync"

// Waker lets goroutines sleep until the next wake-up: a notification that
// a Listener passes on, or any other reason to look again. The zero value
// is ready to use.
type Waker struct {
	mu sync.Mutex
	ch chan struct{} // nil until someone waits
}

// Wait returns a channel that the next Wake closes. Take it before
// looking for work, so that a Wake that comes while looking is not lost.
func (w *Waker) Wait() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

// Wake wakes everyone who called Wait since the last Wake. With no one
// waiting it does nothing, and a later Wait waits for the next Wake.
func (w *Waker) Wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}
