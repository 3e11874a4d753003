package redisstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/consumer"
)

// ErrStreamFull is returned by [Publisher.Publish] when adding the messages
// would take the stream past [PublisherOptions.MaxLen] entries. Nothing of
// that batch was added.
var ErrStreamFull = errors.New("redisstream: stream full")

// publishBatch is how many messages one script call adds at most.
const publishBatch = 1000

// PublisherOptions configures [NewPublisher]. Zero fields take the
// documented defaults.
type PublisherOptions struct {
	// Stream and Prefix name the stream as in [Options]. Stream is
	// required; Prefix defaults to [DefaultPrefix].
	Stream, Prefix string

	// MaxLen, when positive, caps the stream: Publish refuses, with
	// [ErrStreamFull], a batch that would take it past MaxLen entries.
	// The entries are the messages waiting to be read and those held by
	// consumers (an acknowledged message is deleted at once), not those
	// waiting out a Nack's delay. Nothing is ever trimmed: trimming would
	// drop messages no one has acknowledged. Default 0, no cap.
	MaxLen int64
}

// Publisher is the producing side of a stream: a [consumer.Publisher]. It
// is safe for concurrent use.
type Publisher struct {
	client redis.UniversalClient
	stream string
	maxLen int64
}

var _ consumer.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher to opts.Stream through client. It
// validates opts and does not contact Redis.
func NewPublisher(client redis.UniversalClient, opts PublisherOptions) (*Publisher, error) {
	if client == nil {
		return nil, errors.New("redisstream: client is nil")
	}
	o, err := Options{Stream: opts.Stream, Prefix: opts.Prefix, MaxLen: opts.MaxLen}.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Publisher{client: client, stream: streamKey(o.Prefix, o.Stream), maxLen: o.MaxLen}, nil
}

// StreamKey returns the Redis key of the stream.
func (p *Publisher) StreamKey() string { return p.stream }

// Publish implements [consumer.Publisher]: each message becomes one stream
// entry (XADD). Attempt is ignored, a zero EnqueuedAt becomes the current
// time and an empty ID a random one; msgs itself is not modified.
//
// Up to 1000 messages are added by one script, all or none. A larger
// batch is sent as several such scripts, one after the other; if one
// fails, the messages before it stay published and Publish returns the
// error. go-redis resends a command whose reply was lost, so a message can
// be published twice: consumers see two messages with the same ID, which
// is what the idempotency middleware is for.
func (p *Publisher) Publish(ctx context.Context, msgs ...consumer.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	for start := 0; start < len(msgs); start += publishBatch {
		chunk := msgs[start:min(start+publishBatch, len(msgs))]
		args := make([]any, 0, 2+publishArgs*len(chunk))
		args = append(args, p.maxLen, publishArgs)
		for i := range chunk {
			m := chunk[i] // a copy: the caller's message stays as it was
			if m.ID == "" {
				m.ID = consumer.NewMessageID()
			}
			if m.EnqueuedAt.IsZero() {
				m.EnqueuedAt = now
			}
			args = appendPublishArgs(args, &m)
		}
		n, err := publishScript.Run(ctx, p.client, []string{p.stream}, args...).Int64()
		if err != nil {
			return fmt.Errorf("redisstream: publish %d messages to %s: %w", len(chunk), p.stream, err)
		}
		if n < 0 {
			return fmt.Errorf("redisstream: publish %d messages to %s (MaxLen %d): %w",
				len(chunk), p.stream, p.maxLen, ErrStreamFull)
		}
	}
	return nil
}
