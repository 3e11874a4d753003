package outbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/idemq/idemq/consumer"
)

// Publisher sends relayed events to their destination. The [Relay] calls
// it with the events of one key in order, one call after the other, and
// with the events of different keys concurrently: it must be safe for
// concurrent use.
//
// Publish must return only once the broker has taken msgs, in the order
// given, or report an error; after an error the relay publishes the
// events again (they may then arrive twice: consumers dedupe on the ID).
// Return an error built with [consumer.Permanent] for events that can
// never be published, so that the relay gives up on them at once, or with
// [consumer.RetryAfter] to set the retry delay. Like every driver, a
// Publisher reports and does not retry: the relay decides.
type Publisher interface {
	Publish(ctx context.Context, destination string, msgs ...consumer.Message) error
}

// PublisherFunc adapts a function to [Publisher].
type PublisherFunc func(ctx context.Context, destination string, msgs ...consumer.Message) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, destination string, msgs ...consumer.Message) error {
	return f(ctx, destination, msgs...)
}

// To returns a Publisher that sends every event to pub, whatever its
// destination: for an outbox that feeds one queue or stream.
func To(pub consumer.Publisher) Publisher {
	return PublisherFunc(func(ctx context.Context, _ string, msgs ...consumer.Message) error {
		return pub.Publish(ctx, msgs...)
	})
}

// ErrUnknownDestination is returned by a [Route] publisher for a
// destination it has no publisher for. It is not permanent: the relay
// retries with backoff, so that events written by a newer release wait for
// a relay that knows their destination rather than failing.
var ErrUnknownDestination = errors.New("outbox: unknown destination")

// Route returns a Publisher that sends each event to the publisher routes
// names for its destination, such as a pgqueue.Publisher or a
// redisstream.Publisher per queue or stream. routes must not be modified
// afterwards.
func Route(routes map[string]consumer.Publisher) Publisher {
	return PublisherFunc(func(ctx context.Context, destination string, msgs ...consumer.Message) error {
		pub, ok := routes[destination]
		if !ok {
			return fmt.Errorf("%w %q", ErrUnknownDestination, destination)
		}
		return pub.Publish(ctx, msgs...)
	})
}
