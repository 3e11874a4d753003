package jetstream

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/idemq/idemq/consumer"
)

const (
	// maxFetch bounds the messages one Fetch takes, so that one pull
	// request stays short however large a max the caller passes.
	maxFetch = 1000

	// expiryGrace is how long after a pull request's expiry a Fetch waits
	// for the server's word that it expired before it gives the request
	// up as lost (the server restarted, or the connection dropped).
	expiryGrace = time.Second

	// minExpiry is the shortest expiry a pull request asks for.
	minExpiry = 10 * time.Millisecond

	// batchGap is how long a pull request that has brought messages may
	// go quiet before Fetch returns them (see pull). The server ends a
	// request that took what there was right after the last message, so
	// this only matters when MaxAckPending holds the rest back.
	batchGap = 50 * time.Millisecond
)

// Source is the consuming side of a stream: a [consumer.Source] that pulls
// from a durable JetStream consumer. It is safe for concurrent use, and
// holds no resources of its own between calls: there is nothing to close.
type Source struct {
	nc   *nats.Conn
	js   natsjs.JetStream
	o    Options
	next string // the pull request subject

	ready atomic.Bool // the stream and the durable are known to exist
}

var _ consumer.Source = (*Source)(nil)

// New returns a Source that consumes opts.Stream through the durable
// opts.Durable over nc. It validates opts and does not contact the server:
// the stream and the durable consumer are created by [Source.Setup] or,
// failing that, by the first Fetch.
func New(nc *nats.Conn, opts Options) (*Source, error) {
	if nc == nil {
		return nil, errors.New("jetstream: connection is nil")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	js, err := natsjs.New(nc, natsjs.WithDefaultTimeout(o.RequestTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Source{
		nc:   nc,
		js:   js,
		o:    o,
		next: "$JS.API.CONSUMER.MSG.NEXT." + o.Stream + "." + o.Durable,
	}, nil
}

// Stream returns the stream's name.
func (s *Source) Stream() string { return s.o.Stream }

// Durable returns the durable consumer's name.
func (s *Source) Durable() string { return s.o.Durable }

// AckWait returns the lease: the durable consumer's ack wait.
func (s *Source) AckWait() time.Duration { return s.o.AckWait }

// Setup makes sure the stream and the durable consumer exist.
//
// A stream that does not exist is created as a work queue
// (WorkQueuePolicy: a message is removed once acknowledged) on file
// storage, capturing [Options.Subjects], with [Options.DuplicateWindow]; an
// existing stream is left as it is, whatever its retention and limits.
// The durable pull consumer is created, or updated, with explicit acks,
// delivery from the start of the stream, and the AckWait, MaxDeliver,
// MaxAckPending and FilterSubject of the Options.
//
// Fetch calls it when it has not succeeded yet, so calling it is
// optional; it reports a bad connection or a conflicting configuration
// early.
func (s *Source) Setup(ctx context.Context) error {
	ctx, cancel := s.requestCtx(ctx)
	defer cancel()
	st, err := s.js.Stream(ctx, s.o.Stream)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		st, err = s.js.CreateStream(ctx, natsjs.StreamConfig{
			Name:       s.o.Stream,
			Subjects:   s.o.Subjects,
			Retention:  natsjs.WorkQueuePolicy,
			Storage:    natsjs.FileStorage,
			Duplicates: s.o.DuplicateWindow,
		})
		if errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) { // created meanwhile
			st, err = s.js.Stream(ctx, s.o.Stream)
		}
	}
	if err != nil {
		return fmt.Errorf("jetstream: stream %s: %w", s.o.Stream, err)
	}
	c, err := st.CreateOrUpdateConsumer(ctx, natsjs.ConsumerConfig{
		Durable:       s.o.Durable,
		DeliverPolicy: natsjs.DeliverAllPolicy,
		AckPolicy:     natsjs.AckExplicitPolicy,
		AckWait:       s.o.AckWait,
		MaxDeliver:    s.o.MaxDeliver,
		MaxAckPending: s.o.MaxAckPending,
		FilterSubject: s.o.FilterSubject,
	})
	if err != nil {
		return fmt.Errorf("jetstream: durable consumer %s on stream %s: %w", s.o.Durable, s.o.Stream, err)
	}
	if got := c.CachedInfo().Config.AckWait; got != s.o.AckWait {
		return fmt.Errorf("jetstream: durable consumer %s on stream %s has AckWait %s, not %s",
			s.o.Durable, s.o.Stream, got, s.o.AckWait)
	}
	s.ready.Store(true)
	return nil
}

// Fetch implements [consumer.Source]. It returns at most 1000 deliveries
// whatever limit is.
//
// Each round first sends a pull request that takes only the messages
// available now (no_wait), up to limit. Only when that finds nothing does
// Fetch send one that waits on the server, for up to PullExpiry, for one
// message, and then starts the next round. So a Fetch on a busy stream
// returns full batches, and one on an idle stream returns each message as
// soon as it is published. When MaxAckPending holds messages back, the
// server neither serves a request nor ends it: Fetch returns what came
// once 50ms pass without more, and otherwise waits as for a message. A
// request that goes unanswered altogether makes Fetch check that the
// durable still exists (the server ignores requests to one that does
// not); if it is gone, Fetch fails, and the next Fetch creates it again.
//
// Cancellation: a pull request is withdrawn at once by removing the
// interest in its reply subject (the server does not deliver to a request
// nobody listens to), and Fetch returns ctx's error. JetStream cannot take
// a delivery back: a message the server sent before it noticed the
// withdrawal, or that a round took just as ctx ended, is nacked for
// immediate redelivery, so that it is not left leased to nobody; that
// counts as a delivery (Attempt increases). One the server handed over at
// the very moment the request was withdrawn can be lost on its way; it is
// redelivered when its AckWait lapses, also with Attempt increased.
// Neither loses a message.
func (s *Source) Fetch(ctx context.Context, limit int) ([]consumer.Delivery, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("jetstream: Fetch max must be positive, got %d", limit)
	}
	n := min(limit, maxFetch)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !s.ready.Load() {
		if err := s.Setup(ctx); err != nil {
			return nil, err
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !s.nc.IsConnected() {
			return nil, fmt.Errorf("jetstream: fetch: %w (connection %s)", nats.ErrDisconnected, s.nc.Status())
		}
		r := s.pull(ctx, n, 0)
		if len(r.msgs) > 0 || r.err != nil {
			return s.deliveries(ctx, r)
		}
		if r.silent {
			if err := s.check(ctx); err != nil {
				return nil, err
			}
			continue
		}

		expiry := s.o.PullExpiry
		if dl, ok := ctx.Deadline(); ok {
			expiry = min(expiry, time.Until(dl))
		}
		r = s.pull(ctx, 1, max(expiry, minExpiry))
		if len(r.msgs) > 0 || r.err != nil {
			return s.deliveries(ctx, r)
		}
		if r.silent {
			if err := s.check(ctx); err != nil {
				return nil, err
			}
		}
	}
}

// check makes sure the durable still exists after a pull request that got
// no answer at all: the server ignores requests to a durable that does not
// exist (or to one whose MaxAckPending is reached, or that it lost in a
// restart). A durable that is gone is created again by the next Fetch.
func (s *Source) check(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil // the caller returns ctx's error
	}
	ctx, cancel := s.requestCtx(ctx)
	defer cancel()
	_, err := s.js.Consumer(ctx, s.o.Stream, s.o.Durable)
	if errors.Is(err, natsjs.ErrConsumerNotFound) || errors.Is(err, natsjs.ErrStreamNotFound) {
		s.ready.Store(false)
		return fmt.Errorf("jetstream: fetch: durable consumer %s on stream %s: %w", s.o.Durable, s.o.Stream, err)
	}
	return nil // other failures show in the next round
}

// pullRequest is the body of a JetStream pull request.
type pullRequest struct {
	Batch   int           `json:"batch"`
	Expires time.Duration `json:"expires,omitempty"`
	NoWait  bool          `json:"no_wait,omitempty"`
}

// pulled is what one pull request brought: the messages, when it was sent
// (before any of them was delivered), and an error that ended it.
type pulled struct {
	msgs []*nats.Msg
	sent time.Time // when the request was sent
	got  time.Time // when the last message arrived
	err  error

	// silent: the request got no answer at all before pull gave it up.
	silent bool
}

// pull sends one pull request for up to batch messages and collects them.
// With expiry 0 the request takes only what is available now (no_wait);
// otherwise it waits up to expiry on the server. Either way it is
// withdrawn when ctx is done.
//
// The server ends a request that took what was available with a status
// (or by filling the batch), at once; but one that is held back by
// MaxAckPending it neither serves nor ends. So once a request has brought
// something, pull waits at most batchGap for more before it withdraws the
// request and returns what it has; and a no_wait request that brings
// nothing stays open, as a waiting one would, until PullExpiry.
func (s *Source) pull(ctx context.Context, batch int, expiry time.Duration) pulled {
	var r pulled
	sub, err := s.nc.SubscribeSync(s.nc.NewInbox())
	if err != nil {
		r.err = fmt.Errorf("jetstream: fetch: subscribe: %w", err)
		return r
	}
	req := pullRequest{Batch: batch, Expires: expiry, NoWait: expiry == 0}
	body, _ := json.Marshal(req)
	wctx, cancel := context.WithTimeout(ctx, cmp.Or(expiry, s.o.PullExpiry)+expiryGrace)
	defer cancel()

	r.sent = time.Now()
	if err := s.nc.PublishRequest(s.next, sub.Subject, body); err != nil {
		_ = sub.Unsubscribe()
		r.err = fmt.Errorf("jetstream: fetch: %w", err)
		return r
	}
	for len(r.msgs) < batch {
		m, err := s.nextMsg(wctx, sub, len(r.msgs) > 0)
		if err != nil {
			// Cancelled, or the request is overdue or held back: withdraw
			// it, keeping what arrives until the server has seen the
			// withdrawal.
			if late := s.withdraw(sub); len(late) > 0 {
				r.msgs = append(r.msgs, late...)
				r.got = time.Now()
			}
			switch {
			case ctx.Err() != nil:
				r.err = ctx.Err()
			case !errors.Is(err, context.DeadlineExceeded):
				r.err = fmt.Errorf("jetstream: fetch: %w", err)
			default:
				// The request's end never came, or more was held back:
				// return what came, or let the next round send another.
				r.silent = len(r.msgs) == 0
			}
			return r
		}
		if m.Reply != "" {
			r.msgs = append(r.msgs, m)
			r.got = time.Now()
			continue
		}
		// A status from the server: JetStream messages always have an
		// ack subject as their reply, statuses never.
		if err := s.status(m); err != nil {
			r.err = err
		}
		if m.Header.Get("Status") != "100" { // all but heartbeats end the request
			break
		}
	}
	// The request is over on the server: nothing more will come.
	_ = sub.Unsubscribe()
	return r
}

// nextMsg waits for the next message on sub until ctx is done, or for at
// most batchGap when some already came.
func (s *Source) nextMsg(ctx context.Context, sub *nats.Subscription, some bool) (*nats.Msg, error) {
	if some {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, batchGap)
		defer cancel()
	}
	return sub.NextMsgWithContext(ctx)
}

// status interprets a status message that ended (or, for 100, did not
// end) a pull request: nil for the normal ends.
func (s *Source) status(m *nats.Msg) error {
	code, desc := m.Header.Get("Status"), m.Header.Get("Description")
	switch code {
	case "100", "404", "408": // heartbeat, no messages, request expired
		return nil
	case "503": // no responders: no consumer listens for pull requests
		s.ready.Store(false)
		return fmt.Errorf("jetstream: fetch: durable consumer %s on stream %s not found: %w",
			s.o.Durable, s.o.Stream, nats.ErrNoResponders)
	case "409":
		if desc == "Consumer Deleted" {
			s.ready.Store(false)
		}
	}
	return fmt.Errorf("jetstream: fetch: server status %s %s", code, desc)
}

// withdraw removes the interest in sub's subject, so that the server drops
// the pull request waiting there, and returns the messages that arrived
// before the server saw it.
func (s *Source) withdraw(sub *nats.Subscription) []*nats.Msg {
	if err := sub.Drain(); err != nil {
		_ = sub.Unsubscribe()
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.o.RequestTimeout)
	defer cancel()
	var msgs []*nats.Msg
	for {
		// Draining ends once a round trip to the server has completed and
		// everything before it is read; then NextMsg fails.
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				_ = sub.Unsubscribe()
			}
			return msgs
		}
		if m.Reply != "" {
			msgs = append(msgs, m)
		}
	}
}

// deliveries turns what a pull brought into deliveries, or hands it back
// when ctx ended meanwhile.
func (s *Source) deliveries(ctx context.Context, r pulled) ([]consumer.Delivery, error) {
	if err := ctx.Err(); err != nil {
		if herr := s.handBack(ctx, r.msgs); herr != nil {
			return nil, errors.Join(err, herr)
		}
		return nil, err
	}
	if len(r.msgs) == 0 {
		return nil, r.err
	}
	// An error after some messages (such as the durable being deleted
	// mid-batch) is for the next Fetch to report.
	deadline := r.sent.Add(s.o.AckWait - s.o.LeaseMargin)
	out := make([]*delivery, 0, len(r.msgs))
	var bad []*nats.Msg
	for _, m := range r.msgs {
		meta, err := m.Metadata()
		if err != nil {
			bad = append(bad, m)
			continue
		}
		out = append(out, &delivery{
			s:        s,
			reply:    m.Reply,
			msg:      decode(m, meta),
			deadline: deadline,
			sem:      make(chan struct{}, 1),
		})
	}
	if len(bad) > 0 {
		err := fmt.Errorf("jetstream: fetch: %d messages with an ack subject that is not JetStream's, such as %q",
			len(bad), bad[0].Reply)
		return nil, errors.Join(err, s.handBack(ctx, r.msgs))
	}
	if now := time.Now(); now.Sub(r.sent) > s.o.LeaseMargin && now.Sub(r.got) < s.o.LeaseMargin {
		// A request that waited on the server: the message was
		// delivered, and its ack wait began, some time after the request
		// was sent, but how long after cannot be told. Restart the ack
		// wait from now rather than report a lease that is mostly gone.
		// It is safe to, as any acknowledgement is, while the message
		// arrived less than LeaseMargin ago; otherwise the deadline from
		// the request stands.
		for _, d := range out {
			if err := d.restart(ctx); err != nil {
				return nil, errors.Join(err, s.handBack(ctx, r.msgs))
			}
		}
	}
	ds := make([]consumer.Delivery, len(out))
	for i, d := range out {
		ds[i] = d
	}
	return ds, nil
}

// handBack nacks msgs for immediate redelivery: they were delivered to a
// Fetch that is not returning them.
func (s *Source) handBack(ctx context.Context, msgs []*nats.Msg) error {
	if len(msgs) == 0 {
		return nil
	}
	var errs []error
	for _, m := range msgs {
		if err := s.nc.Publish(m.Reply, ackNak); err != nil {
			errs = append(errs, err)
		}
	}
	fctx, cancel := s.requestCtx(context.WithoutCancel(ctx))
	defer cancel()
	if err := s.nc.FlushWithContext(fctx); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("jetstream: hand back %d messages (they are redelivered when their AckWait lapses): %w", len(msgs), err)
	}
	return nil
}

// requestCtx bounds ctx by RequestTimeout.
func (s *Source) requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.o.RequestTimeout)
}
