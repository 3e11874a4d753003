package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/idemq/idemq/consumer"
)

// publishBatch is how many messages Publish has in flight at most.
const publishBatch = 512

// PublisherOptions configures [NewPublisher]. Zero fields take the
// documented defaults.
type PublisherOptions struct {
	// Subject is the subject messages are published to; a stream must
	// capture it. Required. With [Options] defaults, the stream's name.
	Subject string

	// Stream, when set, is the stream the messages must land in: the
	// server refuses them (and Publish fails) if Subject belongs to
	// another stream.
	Stream string

	// NoDedupe stops JetStream from dropping a message whose ID it has
	// seen within the stream's duplicate window, by carrying the ID in a
	// header of this driver's instead of Nats-Msg-Id. Use it for a
	// publisher that re-sends messages on purpose under their old IDs,
	// such as dlq.Replay's: with dedupe, a replay within the window of
	// the original publish would be dropped, and Replay would count it as
	// published. Default false: Nats-Msg-Id carries the ID.
	NoDedupe bool

	// RequestTimeout bounds the wait for the server's acknowledgement of
	// each message: one that has not come by then fails the Publish (the
	// message may or may not be stored). Default [DefaultRequestTimeout].
	RequestTimeout time.Duration
}

// Publisher is the producing side of a stream: a [consumer.Publisher]. It
// is safe for concurrent use.
type Publisher struct {
	js      natsjs.JetStream
	subject string
	stream  string
	dedupe  bool
}

var _ consumer.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher to opts.Subject over nc. It validates
// opts and does not contact the server.
func NewPublisher(nc *nats.Conn, opts PublisherOptions) (*Publisher, error) {
	if nc == nil {
		return nil, errors.New("jetstream: connection is nil")
	}
	if err := validSubject(opts.Subject); err != nil {
		return nil, fmt.Errorf("jetstream: PublisherOptions.Subject: %w", err)
	}
	if strContainsWildcard(opts.Subject) {
		return nil, fmt.Errorf("jetstream: PublisherOptions.Subject %q has a wildcard", opts.Subject)
	}
	if opts.Stream != "" {
		if err := validStreamName(opts.Stream); err != nil {
			return nil, err
		}
	}
	if opts.RequestTimeout < 0 {
		return nil, fmt.Errorf("jetstream: negative RequestTimeout %s", opts.RequestTimeout)
	}
	timeout := opts.RequestTimeout
	if timeout == 0 {
		timeout = DefaultRequestTimeout
	}
	js, err := natsjs.New(nc,
		natsjs.WithDefaultTimeout(timeout),
		// Acknowledgements lost with a connection are given up after
		// this, so that they do not hold up later publishes.
		natsjs.WithPublishAsyncTimeout(timeout),
	)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Publisher{js: js, subject: opts.Subject, stream: opts.Stream, dedupe: !opts.NoDedupe}, nil
}

// Publish implements [consumer.Publisher]: each message becomes one stream
// message, with its ID in the Nats-Msg-Id header (unless NoDedupe), its
// Key and EnqueuedAt in headers of this driver's (Idemq-Key,
// Idemq-Enqueued-At), and its Headers as NATS headers. Attempt is ignored,
// a zero EnqueuedAt becomes the current time and an empty ID a random one;
// msgs itself is not modified.
//
// Header names must be printable ASCII without spaces or any of
// "()/,:;<=>?@[\]{} and a double quote (nats.go refuses them), and may not
// start with "Nats-" or "Idemq-"; values, the ID and the Key may not hold
// line breaks, nor begin or end with a space or a tab (nats.go trims
// them). A message that breaks these rules fails the whole call before
// anything is sent.
//
// Messages are sent without waiting for each other, up to 512 at a time,
// and Publish returns once the stream has stored every one. If any fails,
// or ctx ends first, it returns an error, and some of the messages may
// have been stored: publish them again under the same IDs, which the
// stream drops as duplicates within its window. A message so dropped
// counts as published.
func (p *Publisher) Publish(ctx context.Context, msgs ...consumer.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	out := make([]*nats.Msg, len(msgs))
	for i := range msgs {
		m := msgs[i] // a copy: the caller's message stays as it was
		if m.ID == "" {
			m.ID = consumer.NewMessageID()
		}
		if m.EnqueuedAt.IsZero() {
			m.EnqueuedAt = now
		}
		nm, err := encode(p.subject, &m, p.dedupe)
		if err != nil {
			return err
		}
		out[i] = nm
	}
	var opts []natsjs.PublishOpt
	if p.stream != "" {
		opts = append(opts, natsjs.WithExpectStream(p.stream))
	}
	for start := 0; start < len(out); start += publishBatch {
		chunk := out[start:min(start+publishBatch, len(out))]
		futures := make([]natsjs.PubAckFuture, 0, len(chunk))
		var err error
		for _, m := range chunk {
			var f natsjs.PubAckFuture
			f, err = p.js.PublishMsgAsync(m, opts...)
			if err != nil {
				err = fmt.Errorf("jetstream: publish %q to %s: %w", m.Header.Get(idHeader(p.dedupe)), p.subject, err)
				break
			}
			futures = append(futures, f)
		}
		// Wait for what was sent, even after a failure, so that the
		// error reports the first message that failed.
		for _, f := range futures {
			select {
			case <-f.Ok():
			case ferr := <-f.Err():
				if err == nil {
					err = fmt.Errorf("jetstream: publish %q to %s: %w", f.Msg().Header.Get(idHeader(p.dedupe)), p.subject, ferr)
				}
			case <-ctx.Done():
				return fmt.Errorf("jetstream: publish to %s: waiting for the server: %w", p.subject, ctx.Err())
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func idHeader(dedupe bool) string {
	if dedupe {
		return headerMsgID
	}
	return headerID
}

func strContainsWildcard(subject string) bool {
	for tok := range strings.SplitSeq(subject, ".") {
		if tok == "*" || tok == ">" {
			return true
		}
	}
	return false
}
