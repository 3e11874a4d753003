package pglisten

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestWaker(t *testing.T) {
	var w Waker
	w.Wake() // no one waits: nothing is kept for later
	a := w.Wait()
	require.False(t, closed(a), "a Wake before Wait must not wake it")
	b := w.Wait()
	w.Wake()
	require.True(t, closed(a))
	require.True(t, closed(b))
	c := w.Wait()
	require.False(t, closed(c), "each Wake wakes only those already waiting")
	w.Wake()
	require.True(t, closed(c))
}

// TestWakerConcurrent: every goroutine that took its channel before a
// Wake is woken by it.
func TestWakerConcurrent(t *testing.T) {
	const waiters = 64
	var (
		w     Waker
		ready sync.WaitGroup
		woken sync.WaitGroup
	)
	ready.Add(waiters)
	woken.Add(waiters)
	for range waiters {
		go func() {
			ch := w.Wait()
			ready.Done()
			<-ch
			woken.Done()
		}()
	}
	ready.Wait()
	w.Wake()
	done := make(chan struct{})
	go func() { woken.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a waiter was not woken")
	}
}
