package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/idemq/idemq/consumer"
)

// Acknowledgement bodies JetStream understands, sent to a delivery's ack
// subject.
var (
	ackAck      = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
)

// delivery is one leased message. JetStream keeps no lease token it would
// check: its lease is the local Deadline, and whether it was ended by this
// delivery's own Ack or Nack.
type delivery struct {
	s     *Source
	reply string // the ack subject, which names the delivery
	msg   consumer.Message

	// sem serialises Ack, Nack and Extend, with cancellation.
	sem chan struct{}

	mu       sync.Mutex
	deadline time.Time
	ended    bool // acknowledged, nacked or found lapsed
}

var _ consumer.Delivery = (*delivery)(nil)

func (d *delivery) Message() *consumer.Message { return &d.msg }

// Deadline implements [consumer.Delivery]: LeaseMargin short of AckWait
// after the pull request or the Extend that leased the message was sent.
// The server starts its ack wait later, when it delivers the message or
// receives the Extend.
func (d *delivery) Deadline() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.deadline
}

// Extend implements [consumer.Delivery] with an InProgress
// acknowledgement, which restarts the server's ack wait, sent as a request
// so that success means the server has processed it.
func (d *delivery) Extend(ctx context.Context) error {
	return d.do(ctx, "extend", ackProgress, false)
}

// Ack implements [consumer.Delivery] with a synchronous acknowledgement
// (AckSync): success means the server has processed it.
func (d *delivery) Ack(ctx context.Context) error {
	return d.do(ctx, "ack", ackAck, true)
}

// Nack implements [consumer.Delivery] with a negative acknowledgement
// (NakWithDelay, or Nak when delay <= 0), sent as a request. JetStream
// delivers the message again once delay has passed on the server's clock.
func (d *delivery) Nack(ctx context.Context, delay time.Duration) error {
	body := ackNak
	if delay > 0 {
		body = []byte(`-NAK {"delay":` + strconv.FormatInt(delay.Nanoseconds(), 10) + `}`)
	}
	return d.do(ctx, "nack", body, true)
}

// do sends body to the ack subject if the lease holds, and waits for the
// server's reply. ends tells whether success ends the lease (Ack, Nack) or
// renews it (Extend).
//
// JetStream applies an acknowledgement to whoever holds the message now,
// so nothing is sent once the lease has ended by the local clock: the
// message may have been delivered to someone else. The reply says only
// that the server processed the acknowledgement, not whether it found the
// message waiting for one.
func (d *delivery) do(ctx context.Context, op string, body []byte, ends bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-d.sem }()

	before := time.Now()
	d.mu.Lock()
	if !d.ended && !before.Before(d.deadline) {
		d.ended = true
	}
	ended := d.ended
	d.mu.Unlock()
	if ended {
		return d.lost(op, nil)
	}
	if !d.s.nc.IsConnected() {
		// The client would buffer the acknowledgement and send it after
		// reconnecting, maybe long after the lease lapsed.
		return fmt.Errorf("jetstream: %s %s: %w (connection %s)", op, d.msg.ID, nats.ErrDisconnected, d.s.nc.Status())
	}

	rctx, cancel := d.s.requestCtx(ctx)
	defer cancel()
	_, err := d.s.nc.RequestWithContext(rctx, d.reply, body)
	if errors.Is(err, nats.ErrNoResponders) {
		// Nobody listens on the ack subject: the durable consumer or its
		// stream is gone, and the delivery with it.
		d.end()
		return d.lost(op, err)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("jetstream: %s %s (message %q, attempt %d): %w", op, d.reply, d.msg.ID, d.msg.Attempt, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if ends {
		d.ended = true
	} else if dl := before.Add(d.s.o.AckWait - d.s.o.LeaseMargin); dl.After(d.deadline) {
		d.deadline = dl
	}
	return nil
}

// restart restarts the server's ack wait of a delivery just fetched, with
// an InProgress acknowledgement, and moves Deadline to match.
func (d *delivery) restart(ctx context.Context) error {
	before := time.Now()
	rctx, cancel := d.s.requestCtx(ctx)
	defer cancel()
	if _, err := d.s.nc.RequestWithContext(rctx, d.reply, ackProgress); err != nil {
		return fmt.Errorf("jetstream: fetch: restart the ack wait of %s: %w", d.reply, err)
	}
	d.mu.Lock()
	d.deadline = before.Add(d.s.o.AckWait - d.s.o.LeaseMargin)
	d.mu.Unlock()
	return nil
}

func (d *delivery) end() {
	d.mu.Lock()
	d.ended = true
	d.mu.Unlock()
}

func (d *delivery) lost(op string, cause error) error {
	err := fmt.Errorf("jetstream: %s %s (message %q, attempt %d): %w",
		op, d.reply, d.msg.ID, d.msg.Attempt, consumer.ErrLeaseLost)
	if cause != nil {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	return err
}
