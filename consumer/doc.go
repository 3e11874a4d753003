// Package consumer runs message handlers safely on at-least-once queues.
//
// A [Source] (a queue driver) hands out leased deliveries; a [Consumer]
// fetches them, runs a [Handler] on each and settles the outcome:
//
//   - nil acknowledges the message;
//   - an error nacks it, to be delivered again after a delay from the
//     [Backoff] (exponential in [Message.Attempt], with full jitter);
//   - [RetryAfter] sets that delay itself;
//   - [Permanent] marks a failure that retrying cannot fix, for a
//     dead-letter middleware to park.
//
// # Guarantees
//
// Delivery is at least once. A message is acked only after its handler
// returned nil, and a delivery whose lease was lost is never acked, so no
// message is lost by the consumer; but a message can be handled more than
// once (a crash before the ack, a lost lease, a failed ack). Make the
// effect idempotent with package idempotency.
//
// The runtime bounds the deliveries it holds ([Config.MaxInFlight]),
// extends their leases while they are held, can keep messages that share a
// Key in order ([Config.OrderByKey]), recovers handler panics, and drains on
// shutdown.
//
// # Middleware
//
// A [Middleware] wraps a Handler; [Chain] composes them, outermost first.
// This package provides [Recover], [Timeout] and [Retry]; packages
// idempotency, dlq and backpressure provide more.
//
// # Drivers
//
// [MemQueue] is an in-process queue that honours the whole Source contract,
// for examples and tests. Subpackages hold drivers for real brokers; every
// driver passes the conformance suite in package consumertest.
package consumer
