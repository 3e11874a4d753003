// Package observetest provides a consumer.Observer that keeps what it is
// told, for the module's tests.
package observetest

import (
	"sync"
	"time"

	"github.com/idemq/idemq/consumer"
)

// Counts sums Count deltas and counts Observe samples by name. The zero
// value is ready to use and safe for concurrent use.
type Counts struct {
	mu      sync.Mutex
	counts  map[string]int64
	samples map[string]int64
	waits   []wait
}

type wait struct {
	name string
	n    int64
	done chan struct{}
}

var _ consumer.Observer = (*Counts)(nil)

// Count adds delta to name.
func (c *Counts) Count(name string, delta int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int64{}
	}
	c.counts[name] += delta
	kept := c.waits[:0]
	for _, w := range c.waits {
		if w.name == name && c.counts[name] == w.n {
			close(w.done)
			continue
		}
		kept = append(kept, w)
	}
	c.waits = kept
}

// Observe counts one sample of name.
func (c *Counts) Observe(name string, _ time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.samples == nil {
		c.samples = map[string]int64{}
	}
	c.samples[name]++
}

// Get returns the sum of name's deltas.
func (c *Counts) Get(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[name]
}

// Samples returns how many durations were observed for name.
func (c *Counts) Samples(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.samples[name]
}

// Reached returns a channel closed once name's sum equals n.
func (c *Counts) Reached(name string, n int64) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	done := make(chan struct{})
	if c.counts[name] == n {
		close(done)
		return done
	}
	c.waits = append(c.waits, wait{name: name, n: n, done: done})
	return done
}
