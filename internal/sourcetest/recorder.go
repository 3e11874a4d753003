// Package sourcetest wraps a consumer.Source to count what a consumer does
// with each delivery, and to inject faults, for the module's tests.
package sourcetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemq/idemq/consumer"
)

// Recorder is a consumer.Source that forwards to Src and records every
// fetch, successful ack, nack and extension by message ID. Read the
// recorded fields inside Locked.
type Recorder struct {
	Src consumer.Source

	FailExtend atomic.Bool  // Extend reports ErrLeaseLost
	FailFetch  atomic.Int32 // this many Fetches fail before forwarding

	// OnAck, when set before use, is called after each recorded ack with
	// the total so far.
	OnAck func(total int)

	mu       sync.Mutex
	Held     int // fetched and not yet acked or nacked
	PeakHeld int
	Fetched  map[string]int
	Acks     map[string]int
	Nacks    map[string][]time.Duration // the delays asked for
	Extends  map[string]int
	AckTotal int
}

var _ consumer.Source = (*Recorder)(nil)

// New returns a Recorder of src.
func New(src consumer.Source) *Recorder {
	return &Recorder{
		Src:     src,
		Fetched: map[string]int{},
		Acks:    map[string]int{},
		Nacks:   map[string][]time.Duration{},
		Extends: map[string]int{},
	}
}

// Locked runs f with the recorded fields locked.
func (r *Recorder) Locked(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
}

// Fetch implements consumer.Source.
func (r *Recorder) Fetch(ctx context.Context, n int) ([]consumer.Delivery, error) {
	if r.FailFetch.Load() > 0 {
		r.FailFetch.Add(-1)
		return nil, errors.New("injected fetch failure")
	}
	ds, err := r.Src.Fetch(ctx, n)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, d := range ds {
		r.Fetched[d.Message().ID]++
		ds[i] = &delivery{Delivery: d, r: r}
	}
	r.Held += len(ds)
	r.PeakHeld = max(r.PeakHeld, r.Held)
	return ds, err
}

type delivery struct {
	consumer.Delivery
	r *Recorder
}

func (d *delivery) Ack(ctx context.Context) error {
	if err := d.Delivery.Ack(ctx); err != nil {
		return err
	}
	d.r.mu.Lock()
	d.r.Acks[d.Message().ID]++
	d.r.Held--
	d.r.AckTotal++
	total, on := d.r.AckTotal, d.r.OnAck
	d.r.mu.Unlock()
	if on != nil {
		on(total)
	}
	return nil
}

// Nack records before forwarding: while this delivery holds the lease no
// other delivery of the message can be nacked, so each message's delays are
// recorded in attempt order.
func (d *delivery) Nack(ctx context.Context, delay time.Duration) error {
	id := d.Message().ID
	d.r.mu.Lock()
	d.r.Nacks[id] = append(d.r.Nacks[id], delay)
	d.r.Held--
	d.r.mu.Unlock()
	if err := d.Delivery.Nack(ctx, delay); err != nil {
		d.r.mu.Lock()
		d.r.Nacks[id] = d.r.Nacks[id][:len(d.r.Nacks[id])-1]
		if len(d.r.Nacks[id]) == 0 {
			delete(d.r.Nacks, id)
		}
		d.r.Held++
		d.r.mu.Unlock()
		return err
	}
	return nil
}

func (d *delivery) Extend(ctx context.Context) error {
	if d.r.FailExtend.Load() {
		return fmt.Errorf("injected: %w", consumer.ErrLeaseLost)
	}
	err := d.Delivery.Extend(ctx)
	if err == nil {
		d.r.mu.Lock()
		d.r.Extends[d.Message().ID]++
		d.r.mu.Unlock()
	}
	return err
}
