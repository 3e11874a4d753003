package amqp

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/idemq/idemq/consumer"
)

// Defaults for zero [Options] and [PublisherOptions] fields.
const (
	DefaultURL      = "amqp://guest:guest@127.0.0.1:5672/"
	DefaultPrefetch = 64
)

// DefaultDelayBuckets are the delay queues a [Source] uses for Nack with a
// delay when [Options.DelayBuckets] is empty. A delay is rounded up to the
// next bucket; only the buckets actually used are declared.
var DefaultDelayBuckets = []time.Duration{
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour,
}

// defaultReconnect spaces connection attempts after failures.
var defaultReconnect = consumer.Backoff{
	Initial: 100 * time.Millisecond,
	Max:     10 * time.Second,
	Jitter:  consumer.EqualJitter,
}

// maxQueueName is AMQP's limit on a queue name (a short string).
const maxQueueName = 255

// Options configures [New]. Zero fields take the documented defaults.
type Options struct {
	// URL is the broker's AMQP URI. Default [DefaultURL].
	URL string

	// Config tunes the connections (TLS, SASL, vhost, heartbeat, client
	// properties). Its Recovery must be nil: the Source reconnects by
	// itself, and the client library's recovery would reopen channels
	// whose delivery tags the Source still holds. When Dial is nil, the
	// Source dials with the context of the call that needs the
	// connection, so that call can give up on an unresponsive broker.
	Config amqp.Config

	// Queue is the quorum queue to consume: declared (durable, with
	// x-queue-type quorum) when the Source connects, or checked to match
	// when it exists. Required. It must not start with "amq.", and its
	// delay queues are named "<Queue>.delay.<bucket>".
	Queue string

	// Prefetch is the channel's prefetch count (basic.qos): how many
	// unacknowledged messages the broker sends this Source at most, those
	// Fetch has handed out and those waiting in the Source for the next
	// Fetch together. Set it to the [consumer.Config.MaxInFlight] of the
	// Consumer that runs the Source; a Fetch never returns more. At most
	// 65535. Default [DefaultPrefetch], the Consumer's default
	// MaxInFlight.
	Prefetch int

	// Lease, when positive, gives each delivery a lease enforced by the
	// Source itself: a delivery that is neither settled nor extended
	// within Lease of its Fetch (or last Extend) is handed back to the
	// broker (basic.nack with requeue) and redelivered with Attempt
	// increased, and its Ack, Nack and Extend then fail with
	// [consumer.ErrLeaseLost]. Zero (the default) means no lease: Deadline
	// is the zero time, a delivery is held until it is settled or its
	// channel closes, and Extend only checks that the channel is open.
	// See the package documentation for RabbitMQ's consumer_timeout.
	Lease time.Duration

	// DelayBuckets are the delays, in whole milliseconds, of the queues
	// that Nack with a delay sends messages through: the message waits
	// out the smallest bucket at least as long as the delay. A delay
	// longer than the largest bucket goes round it as often as needed.
	// Default [DefaultDelayBuckets].
	DelayBuckets []time.Duration

	// Reconnect spaces connection attempts after failures: after n
	// consecutive failed attempts, the next one waits Reconnect.Delay(n).
	// The first attempt after a connection was lost is immediate. Default
	// 100ms doubling to 10s, with equal jitter.
	Reconnect consumer.Backoff

	// Logger receives what the Source cannot report through a return
	// value: failed lease expiries and redelays of long delays. Default
	// slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if err := validateQueue(o.Queue, true); err != nil {
		return o, err
	}
	if err := validateConn(o.Config, o.Reconnect); err != nil {
		return o, err
	}
	switch {
	case o.Prefetch < 0:
		return o, fmt.Errorf("amqp: negative Prefetch %d", o.Prefetch)
	case o.Prefetch > 65535:
		return o, fmt.Errorf("amqp: Prefetch %d exceeds 65535", o.Prefetch)
	case o.Lease < 0:
		return o, fmt.Errorf("amqp: negative Lease %s", o.Lease)
	case o.Lease > 0 && o.Lease < time.Millisecond:
		return o, fmt.Errorf("amqp: Lease %s is below a millisecond", o.Lease)
	}
	if o.URL == "" {
		o.URL = DefaultURL
	}
	if o.Prefetch == 0 {
		o.Prefetch = DefaultPrefetch
	}
	if len(o.DelayBuckets) == 0 {
		o.DelayBuckets = DefaultDelayBuckets
	}
	o.DelayBuckets = slices.Clone(o.DelayBuckets)
	for i, b := range o.DelayBuckets {
		switch {
		case b < time.Millisecond || b%time.Millisecond != 0:
			return o, fmt.Errorf("amqp: DelayBuckets[%d] %s is not a positive whole number of milliseconds", i, b)
		case b > (1<<32-1)*time.Millisecond:
			return o, fmt.Errorf("amqp: DelayBuckets[%d] %s exceeds the largest message TTL", i, b)
		case i > 0 && b <= o.DelayBuckets[i-1]:
			return o, fmt.Errorf("amqp: DelayBuckets must increase: %s follows %s", b, o.DelayBuckets[i-1])
		}
		if name := delayQueueName(o.Queue, b); len(name) > maxQueueName {
			return o, fmt.Errorf("amqp: delay queue name %q is longer than %d bytes; shorten Queue", name, maxQueueName)
		}
	}
	if o.Reconnect == (consumer.Backoff{}) {
		o.Reconnect = defaultReconnect
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// PublisherOptions configures [NewPublisher]. Zero fields take the
// documented defaults.
type PublisherOptions struct {
	// URL, Config and Reconnect are as in [Options].
	URL       string
	Config    amqp.Config
	Reconnect consumer.Backoff

	// Queue is the quorum queue to publish to, through the default
	// exchange. It is declared as the Source declares it when the
	// Publisher connects, so that messages published before any consumer
	// started are kept. Required.
	Queue string
}

func (o PublisherOptions) withDefaults() (PublisherOptions, error) {
	if err := validateQueue(o.Queue, true); err != nil {
		return o, err
	}
	if err := validateConn(o.Config, o.Reconnect); err != nil {
		return o, err
	}
	if o.URL == "" {
		o.URL = DefaultURL
	}
	if o.Reconnect == (consumer.Backoff{}) {
		o.Reconnect = defaultReconnect
	}
	return o, nil
}

func validateQueue(q string, required bool) error {
	switch {
	case q == "" && required:
		return errors.New("amqp: Queue is required")
	case len(q) > maxQueueName:
		return fmt.Errorf("amqp: Queue %q is longer than %d bytes", q, maxQueueName)
	case strings.HasPrefix(q, "amq."):
		return fmt.Errorf("amqp: Queue %q starts with the reserved prefix \"amq.\"", q)
	}
	return nil
}

func validateConn(cfg amqp.Config, b consumer.Backoff) error {
	if cfg.Recovery != nil {
		return errors.New("amqp: Config.Recovery must be nil: the driver reconnects by itself")
	}
	if b.Initial < 0 || b.Max < 0 || b.Multiplier < 0 {
		return fmt.Errorf("amqp: negative Reconnect backoff %+v", b)
	}
	return nil
}

// delayQueueName is the queue that holds messages nacked with a delay of
// bucket: "<queue>.delay.<bucket>", the bucket in the largest unit that
// divides it (250ms, 5s, 10m, 1h).
func delayQueueName(queue string, bucket time.Duration) string {
	var s string
	switch {
	case bucket%time.Hour == 0:
		s = strconv.FormatInt(int64(bucket/time.Hour), 10) + "h"
	case bucket%time.Minute == 0:
		s = strconv.FormatInt(int64(bucket/time.Minute), 10) + "m"
	case bucket%time.Second == 0:
		s = strconv.FormatInt(int64(bucket/time.Second), 10) + "s"
	default:
		s = strconv.FormatInt(int64(bucket/time.Millisecond), 10) + "ms"
	}
	return queue + ".delay." + s
}

// mainQueueArgs are the arguments the queue is declared with, by Sources
// and Publishers alike: they must agree, or the second declaration fails.
func mainQueueArgs() amqp.Table {
	return amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
}

// delayQueueArgs make a quorum queue that holds each message for bucket
// and then dead-letters it, at least once, back to queue through the
// default exchange. At-least-once dead-lettering needs reject-publish
// overflow; no length limit is set, so nothing is rejected.
func delayQueueArgs(queue string, bucket time.Duration) amqp.Table {
	return amqp.Table{
		amqp.QueueTypeArg:           amqp.QueueTypeQuorum,
		amqp.QueueMessageTTLArg:     int64(bucket / time.Millisecond),
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": queue,
		"x-dead-letter-strategy":    "at-least-once",
		amqp.QueueOverflowArg:       amqp.QueueOverflowRejectPublish,
	}
}
