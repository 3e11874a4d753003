package amqp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/idemq/idemq/consumer"
)

// Delivery states. A delivery is held until Ack, Nack or its lease's
// expiry settles it; a Nack with a delay is settling while it publishes the
// delayed copy. Only the call that moves it out of held acts on the
// broker, so a delivery tag is never acknowledged twice (which the broker
// would answer by closing the channel, and every other delivery on it).
const (
	stateHeld = iota
	stateSettling
	stateDone
)

// delivery is one message received on a session's channel. Its lease is
// the channel (the delivery tag is valid only on it) and, with
// Options.Lease, a deadline the Source enforces itself.
type delivery struct {
	s    *Source
	sess *srcSession
	raw  amqp.Delivery
	msg  consumer.Message

	mu       sync.Mutex
	state    int
	deadline time.Time   // zero without a lease
	timer    *time.Timer // runs expire at deadline; nil without a lease
}

var _ consumer.Delivery = (*delivery)(nil)

func (s *Source) newDelivery(sess *srcSession, raw *amqp.Delivery, now time.Time) *delivery {
	d := &delivery{s: s, sess: sess, raw: *raw}
	d.msg = decode(&d.raw).msg
	if s.o.Lease > 0 {
		d.deadline = now.Add(s.o.Lease)
		d.timer = time.AfterFunc(s.o.Lease, d.expire)
	}
	return d
}

func (d *delivery) Message() *consumer.Message { return &d.msg }

// Deadline implements [consumer.Delivery]: Fetch's or the last Extend's
// time plus [Options.Lease], or the zero time without a lease. The lease
// also ends, earlier, when the channel that delivered the message closes.
func (d *delivery) Deadline() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.deadline
}

// Extend implements [consumer.Delivery]. It does not contact the broker,
// which has no lease to renew: it checks that the delivery is still held
// and its channel open, and moves the Source's own deadline, if there is
// one, to Lease from now.
func (d *delivery) Extend(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	if err := d.checkLocked("extend", time.Now()); err != nil {
		d.mu.Unlock()
		return err
	}
	if d.timer != nil {
		d.deadline = time.Now().Add(d.s.o.Lease)
		d.timer.Reset(d.s.o.Lease)
	}
	d.mu.Unlock()
	return nil
}

// Ack implements [consumer.Delivery] with basic.ack. The broker does not
// answer acknowledgements: Ack returns once the frame is written, and if
// the connection is lost before the broker reads it, the message is
// delivered again.
func (d *delivery) Ack(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.settle("ack"); err != nil {
		return err
	}
	return d.send("ack", d.sess.ch.Ack(d.raw.DeliveryTag, false))
}

// Nack implements [consumer.Delivery].
//
// With delay <= 0 it is basic.nack with requeue: the broker delivers the
// message again at once, with x-delivery-count, and so Attempt, increased.
//
// With a delay, the message (body, properties and headers, and its
// Attempt in a header) is published to the delay queue of the smallest
// bucket at least as long as delay, and, once the broker has confirmed
// that, the delivery is acknowledged. The delay queue dead-letters it back
// to the queue when the bucket's time has passed. If the publish fails,
// Nack falls back to basic.nack with requeue, so the message comes back
// at once rather than stay held, and returns the error. If the original
// cannot be acknowledged after the copy was published (its channel closed
// meanwhile), the message is delivered twice: at once by the broker, and
// after the delay.
func (d *delivery) Nack(ctx context.Context, delay time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if delay <= 0 {
		if err := d.settle("nack"); err != nil {
			return err
		}
		return d.send("nack", d.sess.ch.Nack(d.raw.DeliveryTag, false, true))
	}

	d.mu.Lock()
	if err := d.checkLocked("nack", time.Now()); err != nil {
		d.mu.Unlock()
		return err
	}
	d.state = stateSettling
	d.stopTimerLocked()
	d.mu.Unlock()

	bucket, due := d.s.bucket(delay, time.Now())
	err := d.s.publishDelayed(ctx, bucket, republish(&d.raw, d.msg.Attempt, due))
	d.mu.Lock()
	d.state = stateDone
	d.mu.Unlock()
	if err != nil {
		nerr := d.sess.ch.Nack(d.raw.DeliveryTag, false, true)
		if nerr != nil {
			return fmt.Errorf("amqp: nack %s with a delay of %s: %w; and the fallback to an immediate requeue failed too: %w",
				d.describe(), delay, err, d.send("nack", nerr))
		}
		return fmt.Errorf("amqp: nack %s with a delay of %s: %w; requeued it for redelivery at once instead",
			d.describe(), delay, err)
	}
	if err := d.sess.ch.Ack(d.raw.DeliveryTag, false); err != nil {
		return fmt.Errorf("amqp: nack %s with a delay of %s: the delayed copy is queued, but acknowledging the original failed, so it will also be delivered at once: %w",
			d.describe(), delay, d.send("ack", err))
	}
	return nil
}

// settle moves a held delivery to done, or reports why it cannot.
func (d *delivery) settle(op string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkLocked(op, time.Now()); err != nil {
		return err
	}
	d.state = stateDone
	d.stopTimerLocked()
	return nil
}

// checkLocked reports an error matching ErrLeaseLost unless the delivery is
// held, its channel open and its deadline, if any, not passed. A delivery
// found past its deadline is expired here and now, so that no call
// succeeds on it from then on.
func (d *delivery) checkLocked(op string, now time.Time) error {
	if d.state != stateHeld {
		return d.lost(op, "already settled")
	}
	if isDead(d.sess) {
		d.state = stateDone
		d.stopTimerLocked()
		return d.lost(op, "its channel closed")
	}
	if d.timer != nil && !now.Before(d.deadline) {
		d.state = stateDone
		d.stopTimerLocked()
		go d.requeue()
		return d.lost(op, "its lease expired")
	}
	return nil
}

func (d *delivery) stopTimerLocked() {
	if d.timer != nil {
		d.timer.Stop()
	}
}

// expire hands the message back to the broker once the lease has ended.
func (d *delivery) expire() {
	d.mu.Lock()
	if d.state != stateHeld || time.Now().Before(d.deadline) {
		d.mu.Unlock() // settled, or extended while this was starting
		return
	}
	d.state = stateDone
	d.mu.Unlock()
	d.requeue()
}

func (d *delivery) requeue() {
	err := d.sess.ch.Nack(d.raw.DeliveryTag, false, true)
	if err != nil && !isDead(d.sess) && !errors.Is(err, amqp.ErrClosed) {
		d.s.log.LogAttrs(context.Background(), slog.LevelWarn, "amqp: requeueing a delivery whose lease expired failed",
			slog.String("message_id", d.msg.ID), slog.Any("error", err))
	}
}

// send maps the result of writing an ack or nack for the delivery: a
// closed channel means the broker will deliver the message again, so the
// lease is lost.
func (d *delivery) send(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, amqp.ErrClosed) || isDead(d.sess) {
		return fmt.Errorf("amqp: %s %s: channel closed (%v): %w", op, d.describe(), err, consumer.ErrLeaseLost)
	}
	return fmt.Errorf("amqp: %s %s: %w", op, d.describe(), err)
}

func (d *delivery) lost(op, why string) error {
	return fmt.Errorf("amqp: %s %s: %s: %w", op, d.describe(), why, consumer.ErrLeaseLost)
}

func (d *delivery) describe() string {
	return fmt.Sprintf("message %q (attempt %d)", d.msg.ID, d.msg.Attempt)
}
