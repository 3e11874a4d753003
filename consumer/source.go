package consumer

import (
	"context"
	"time"
)

// Source is the consuming side of a queue driver.
//
// Drivers report errors and never retry on their own: the [Consumer] decides
// whether and when to try again.
type Source interface {
	// Fetch returns between 1 and max deliveries. It blocks until at least
	// one message is available or ctx is done, in which case it returns
	// ctx's error and no deliveries, and leaves no message leased to
	// nobody. A driver whose server reads cannot be interrupted may return
	// up to a bound it documents after ctx is done. Each delivery is leased to the caller until its Deadline; an
	// unacknowledged delivery whose lease ends is delivered again, to this
	// or another consumer, with Attempt increased.
	Fetch(ctx context.Context, max int) ([]Delivery, error)
}

// Delivery is one leased message.
//
// Ack, Nack and Extend are conditional on the lease: once the lease has
// ended (it expired, or the message was acknowledged or nacked already),
// they change nothing and return an error that matches [ErrLeaseLost].
// When their ctx ends mid-call they return its error and may or may not
// have taken effect; of two concurrent Acks of one delivery, one succeeds.
// A delivery's methods are safe for concurrent use.
type Delivery interface {
	// Message returns the message. The same pointer is returned each time.
	Message() *Message

	// Deadline is when the lease ends unless extended, by the local clock.
	// The server's clock decides; Deadline is a cautious local estimate
	// that never falls after the server's. The zero time means the lease
	// never expires.
	Deadline() time.Time

	// Extend renews the lease for the source's full lease duration from
	// now, and moves Deadline accordingly.
	Extend(ctx context.Context) error

	// Ack removes the message from the queue.
	Ack(ctx context.Context) error

	// Nack gives the message back to the queue, to be delivered again once
	// delay has passed (at once when delay <= 0).
	Nack(ctx context.Context, delay time.Duration) error
}

// Publisher is the producing side of a queue driver.
type Publisher interface {
	// Publish enqueues msgs. Attempt is ignored; EnqueuedAt is set when
	// zero; an empty ID is replaced by a random one.
	Publish(ctx context.Context, msgs ...Message) error
}
