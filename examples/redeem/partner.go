package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// errPartnerDown is what the fake partner answers while it is failing.
var errPartnerDown = errors.New("partner: 503 service unavailable")

// partner stands in for the voucher provider that a real service calls
// over the network for each redeem: it activates the voucher of a
// reservation. Like a real partner API it is idempotent by the
// reservation ID, which a real service sends as the partner's own
// idempotency key: a redeem retried after a crash calls it again for the
// same reservation. POST /admin/partner/fail and /recover switch it.
type partner struct {
	latency time.Duration
	failing atomic.Bool
	calls   atomic.Int64 // every call, failed ones included

	mu        sync.Mutex
	activated map[string]bool // by reservation ID
}

func newPartner(latency time.Duration) *partner {
	return &partner{latency: latency, activated: map[string]bool{}}
}

// Activate activates the voucher of reservation id, or fails while the
// partner is failing or when ctx ends first.
func (p *partner) Activate(ctx context.Context, id string) error {
	p.calls.Add(1)
	if p.latency > 0 {
		t := time.NewTimer(p.latency)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if p.failing.Load() {
		return errPartnerDown
	}
	p.mu.Lock()
	p.activated[id] = true
	p.mu.Unlock()
	return nil
}

// activations returns how many reservations have an activated voucher.
func (p *partner) activations() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.activated)
}
