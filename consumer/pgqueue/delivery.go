package pgqueue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemq/idemq/consumer"

	"github.com/idemq/idemq/internal/pgschema"
)

// delivery is one leased row: its id and the token of the lease.
type delivery struct {
	s         *Source
	id, token int64
	msg       consumer.Message

	// ended is set once an Ack or Nack succeeded: the token is spent,
	// and later calls fail without asking the database.
	ended atomic.Bool

	mu       sync.Mutex
	deadline time.Time
}

var _ consumer.Delivery = (*delivery)(nil)

func (d *delivery) Message() *consumer.Message { return &d.msg }

// Deadline is the local time of the Fetch or last Extend plus the
// visibility timeout. It is taken before the statement was sent, so it
// comes no later than the lease end the database keeps.
func (d *delivery) Deadline() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.deadline
}

func (d *delivery) lost(op string) error {
	return fmt.Errorf("pgqueue: %s message %q (row %d): %w", op, d.msg.ID, d.id, consumer.ErrLeaseLost)
}

// Ack deletes the row if the lease is live. Acks from all the deliveries
// of a Source are grouped: those that arrive while earlier ones are being
// written go together in the next statement, and each learns its own
// result. If ctx ends before the Ack is sent, nothing changes; if it ends
// while the statement runs, Ack returns ctx's error and the row may or may
// not be gone.
func (d *delivery) Ack(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.ended.Load() {
		return d.lost("ack")
	}
	ok, err := d.s.acks.ack(ctx, d.id, d.token)
	if err != nil {
		return err
	}
	if !ok {
		return d.lost("ack")
	}
	d.ended.Store(true)
	return nil
}

// Nack makes the row visible again once delay has passed (by the
// database's clock, rounded up to the microsecond) and ends the lease.
// Fetches of this Source that are waiting wake up to take it into account;
// with [Options.Notify] the same statement notifies the queue's channel so
// that those of other Sources do too, and without it they see the row at
// their next poll.
func (d *delivery) Nack(ctx context.Context, delay time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.ended.Load() {
		return d.lost("nack")
	}
	args := []any{d.id, d.token, pgschema.Micros(max(delay, 0))}
	if d.s.channel != "" {
		args = append(args, d.s.channel)
	}
	tag, err := d.s.pool.Exec(ctx, d.s.q.nack, args...)
	if err != nil {
		return fmt.Errorf("pgqueue: nack message %q (row %d): %w", d.msg.ID, d.id, err)
	}
	if tag.RowsAffected() == 0 {
		return d.lost("nack")
	}
	d.ended.Store(true)
	d.s.wake.Wake()
	return nil
}

// Extend moves the lease end to the visibility timeout after the
// statement's start, if the lease is live.
func (d *delivery) Extend(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.ended.Load() {
		return d.lost("extend")
	}
	start := time.Now()
	tag, err := d.s.pool.Exec(ctx, d.s.q.extend, d.id, d.token, d.s.vis)
	if err != nil {
		return fmt.Errorf("pgqueue: extend message %q (row %d): %w", d.msg.ID, d.id, err)
	}
	if tag.RowsAffected() == 0 {
		return d.lost("extend")
	}
	deadline := start.Add(d.s.opts.VisibilityTimeout)
	d.mu.Lock()
	// Concurrent Extends may finish out of order: keep the later end.
	if deadline.After(d.deadline) {
		d.deadline = deadline
	}
	d.mu.Unlock()
	return nil
}
