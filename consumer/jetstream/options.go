package jetstream

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defaults for zero [Options] fields.
const (
	DefaultDurable        = "idemq"
	DefaultAckWait        = 30 * time.Second
	DefaultPullExpiry     = 5 * time.Second
	DefaultRequestTimeout = 5 * time.Second

	// DefaultMaxDeliver is unlimited: JetStream never stops redelivering
	// a message that keeps failing, so the dlq middleware decides when to
	// give up (see [Options.MaxDeliver]).
	DefaultMaxDeliver = -1

	// maxLeaseMargin caps the default [Options.LeaseMargin].
	maxLeaseMargin = time.Second
)

// Options configures [New]. Zero fields take the documented defaults.
type Options struct {
	// Stream is the JetStream stream to consume. Required. If it does not
	// exist, Setup creates it (see [Source.Setup]); an existing stream is
	// used as it is.
	Stream string

	// Subjects are the subjects the stream captures when Setup creates
	// it. They are not used for a stream that exists. Default: the
	// stream's name as its only subject.
	Subjects []string

	// Durable is the durable pull consumer's name. Every Source with the
	// same Stream and Durable shares its messages, like the members of a
	// consumer group; each durable gets every message of the stream (on a
	// stream that allows more than one). Setup creates it or updates it
	// to these Options, so all Sources of a durable must be given the same
	// AckWait, MaxDeliver, MaxAckPending and FilterSubject: the last Setup
	// wins, and a Source whose AckWait disagrees with the server's reports
	// a Deadline that is wrong. Default [DefaultDurable].
	Durable string

	// FilterSubject, when set, makes the durable consume only the
	// stream's messages whose subject matches it (wildcards allowed).
	// Default: every message of the stream.
	FilterSubject string

	// AckWait is the lease: the consumer's ack wait, how long JetStream
	// waits for an Ack, Nack or Extend (InProgress) of a delivery before
	// it delivers the message again with Attempt increased. Keep it
	// longer than a few round trips to the server; the Consumer runtime
	// extends a lease when half of it has passed, so a handler may run
	// longer than AckWait. At least 100ms. Default [DefaultAckWait].
	AckWait time.Duration

	// LeaseMargin is how much of each lease the driver keeps in reserve.
	// JetStream accepts an acknowledgement from a delivery whose ack wait
	// has lapsed, even once the message was delivered to someone else
	// (see the package documentation), so Ack, Nack and Extend check the
	// lease against the local clock before they send anything, and
	// Deadline is LeaseMargin earlier than the end of the ack wait: an
	// operation leaves with at least LeaseMargin to reach the server.
	// At most AckWait/4. Default AckWait/10, at most 1s.
	LeaseMargin time.Duration

	// MaxDeliver is how many times JetStream delivers a message at most;
	// after the last delivery's lease lapses or it is nacked, the message
	// stays in the stream but is never delivered again. With the dlq
	// middleware, set it above dlq's MaxAttempts (which parks the message
	// on the delivery numbered MaxAttempts) or leave it unlimited, so
	// that a failing message reaches the dead-letter queue instead of
	// being left in the stream. -1 means unlimited. Default
	// [DefaultMaxDeliver].
	MaxDeliver int

	// MaxAckPending bounds the messages the durable has delivered and not
	// yet had acknowledged, across all its Sources: once reached, Fetch
	// gets nothing until some are acknowledged. Keep it at least the sum
	// of the Consumers' MaxInFlight. -1 means unlimited. Default 0: the
	// server's default (1000).
	MaxAckPending int

	// DuplicateWindow is the stream's window for Nats-Msg-Id duplicate
	// detection when Setup creates the stream (see [Publisher]). Not used
	// for a stream that exists. Default 0: the server's default (2m).
	DuplicateWindow time.Duration

	// PullExpiry bounds how long one pull request waits on the server for
	// a message; a blocked Fetch sends one after another until a message
	// comes or its context is done. Cancelling a Fetch withdraws its
	// request at once, so PullExpiry does not delay cancellation; it bounds
	// how long a Fetch takes to notice that the server restarted and lost
	// the request, or that the durable was deleted. At least 10ms. Default [DefaultPullExpiry].
	PullExpiry time.Duration

	// RequestTimeout bounds each request to the server (a pull for the
	// messages already waiting, an Ack, a Nack, an Extend, a Setup) whose
	// context has no earlier deadline. Default [DefaultRequestTimeout].
	RequestTimeout time.Duration
}

func (o Options) withDefaults() (Options, error) {
	if err := validStreamName(o.Stream); err != nil {
		return o, err
	}
	if err := validName("Durable", o.Durable); err != nil {
		return o, err
	}
	switch {
	case o.AckWait < 0:
		return o, fmt.Errorf("jetstream: negative AckWait %s", o.AckWait)
	case o.AckWait > 0 && o.AckWait < 100*time.Millisecond:
		return o, fmt.Errorf("jetstream: AckWait %s is below 100ms", o.AckWait)
	case o.LeaseMargin < 0:
		return o, fmt.Errorf("jetstream: negative LeaseMargin %s", o.LeaseMargin)
	case o.MaxDeliver < -1:
		return o, fmt.Errorf("jetstream: MaxDeliver %d: use a positive number, or -1 for unlimited", o.MaxDeliver)
	case o.MaxAckPending < -1:
		return o, fmt.Errorf("jetstream: MaxAckPending %d: use a positive number, -1 for unlimited or 0 for the server's default", o.MaxAckPending)
	case o.DuplicateWindow < 0:
		return o, fmt.Errorf("jetstream: negative DuplicateWindow %s", o.DuplicateWindow)
	case o.PullExpiry < 0:
		return o, fmt.Errorf("jetstream: negative PullExpiry %s", o.PullExpiry)
	case o.PullExpiry > 0 && o.PullExpiry < 10*time.Millisecond:
		return o, fmt.Errorf("jetstream: PullExpiry %s is below 10ms", o.PullExpiry)
	case o.RequestTimeout < 0:
		return o, fmt.Errorf("jetstream: negative RequestTimeout %s", o.RequestTimeout)
	}
	for _, s := range o.Subjects {
		if err := validSubject(s); err != nil {
			return o, err
		}
	}
	if o.FilterSubject != "" {
		if err := validSubject(o.FilterSubject); err != nil {
			return o, err
		}
	}
	if len(o.Subjects) == 0 {
		o.Subjects = []string{o.Stream}
	}
	if o.Durable == "" {
		o.Durable = DefaultDurable
	}
	if o.AckWait == 0 {
		o.AckWait = DefaultAckWait
	}
	if o.LeaseMargin == 0 {
		o.LeaseMargin = min(o.AckWait/10, maxLeaseMargin)
	}
	if o.LeaseMargin > o.AckWait/4 {
		return o, fmt.Errorf("jetstream: LeaseMargin %s is more than a quarter of AckWait %s", o.LeaseMargin, o.AckWait)
	}
	if o.MaxDeliver == 0 {
		o.MaxDeliver = DefaultMaxDeliver
	}
	if o.PullExpiry == 0 {
		o.PullExpiry = DefaultPullExpiry
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	return o, nil
}

// validStreamName checks a stream name: JetStream puts it in API subjects,
// so it may not hold the characters that separate or match tokens.
func validStreamName(name string) error {
	if name == "" {
		return errors.New("jetstream: Options.Stream is required")
	}
	return validName("Stream", name)
}

func validName(field, name string) error {
	if strings.ContainsAny(name, ".*> \t\r\n/\\") {
		return fmt.Errorf("jetstream: %s %q may not contain '.', '*', '>', '/', '\\' or white space", field, name)
	}
	return nil
}

// validSubject checks a subject or filter: non-empty tokens separated by
// dots, without white space.
func validSubject(s string) error {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("jetstream: invalid subject %q", s)
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" {
			return fmt.Errorf("jetstream: invalid subject %q: empty token", s)
		}
	}
	return nil
}
