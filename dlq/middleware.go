package dlq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/idempotency"
)

// Metric names the middleware reports.
const (
	MetricDeadLettered       = "dead_lettered"        // messages parked
	MetricDeadLetterFailures = "dead_letter_failures" // parkings that failed (the message stays on its queue)
)

// Sink receives parked messages. Every [Store] is a Sink.
type Sink interface {
	Put(ctx context.Context, e Entry) error
}

// UndecodableError marks a message whose body cannot be decoded. Build it
// with [Undecodable].
type UndecodableError struct{ Err error }

// Error returns the decoding error's text.
func (e *UndecodableError) Error() string { return "undecodable message: " + e.Err.Error() }

// Unwrap returns the decoding error.
func (e *UndecodableError) Unwrap() error { return e.Err }

// Undecodable marks err, a failure to decode the message, as permanent with
// the reason [ReasonUndecodable].
func Undecodable(err error) error {
	if err == nil {
		return nil
	}
	return consumer.Permanent(&UndecodableError{Err: err})
}

// Options configures [Middleware]. Zero fields take the documented
// defaults.
type Options struct {
	// Sink parks messages. Required.
	Sink Sink

	// Source names the queue the messages come from, stored with each
	// entry. Default "default".
	Source string

	// MaxAttempts is the number of failed deliveries a message gets: when
	// the one numbered MaxAttempts fails, the message is parked. In-process
	// retries by [consumer.Retry] happen within one delivery, and
	// deliveries deferred by backpressure ([consumer.ErrDeferred]) that this
	// process saw do not count (deferrals seen by other consumer processes
	// do, as the broker's delivery count includes them). Default 5.
	MaxAttempts int

	// Classify, when set, is asked first for a failure's reason; park
	// false leaves the message to the default rules.
	Classify func(err error) (reason Reason, park bool)

	// Observer counts MetricDeadLettered and MetricDeadLetterFailures.
	Observer consumer.Observer

	// Logger receives a line per parked message and per failed parking.
	// Default slog.Default().
	Logger *slog.Logger
}

// Middleware parks messages that cannot be handled, so that they neither
// block their queue nor loop forever:
//
//   - a permanent error ([consumer.Permanent], [Undecodable], a reused
//     idempotency key) parks the message at once;
//   - any other error parks it when its Attempt has reached MaxAttempts;
//     before that the error goes back to the consumer, which redelivers the
//     message after its backoff;
//   - a parked message is handled: the middleware returns nil and the
//     consumer acks it;
//   - if the sink fails, the error goes back to the consumer and the
//     message is not acked, so nothing is lost;
//   - a message whose context is already done (lost lease, shutdown) or
//     whose error matches [consumer.ErrDeferred] (backpressure, a
//     duplicate in progress) is never parked.
//
// Put it outside the idempotency middleware, which reports reused keys as
// permanent errors, and outside [consumer.Recover] so that panics count
// as failures: Chain(dlq, consumer.Recover, dedupe, retry).
func Middleware(opts Options) (consumer.Middleware, error) {
	if opts.Sink == nil {
		return nil, errors.New("dlq: Options.Sink is required")
	}
	if opts.MaxAttempts < 0 {
		return nil, fmt.Errorf("dlq: negative MaxAttempts %d", opts.MaxAttempts)
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 5
	}
	if opts.Source == "" {
		opts.Source = "default"
	}
	if opts.Observer == nil {
		opts.Observer = consumer.NopObserver{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &parker{o: opts, now: time.Now, hist: newHistory(10_000)}
	return func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
			return m.handle(ctx, next, msg)
		})
	}, nil
}

type parker struct {
	o    Options
	now  func() time.Time
	hist *history
}

// reason decides whether a failure parks the message, and why.
func (p *parker) reason(err error, attempt int) (Reason, bool) {
	if p.o.Classify != nil {
		if r, ok := p.o.Classify(err); ok {
			return r, true
		}
	}
	var u *UndecodableError
	switch {
	case errors.As(err, &u):
		return ReasonUndecodable, true
	case errors.Is(err, idempotency.ErrFingerprintMismatch):
		return ReasonFingerprintMismatch, true
	case consumer.IsPermanent(err):
		return ReasonPermanent, true
	case attempt >= p.o.MaxAttempts:
		return ReasonAttemptsExhausted, true
	}
	return "", false
}

func (p *parker) handle(ctx context.Context, next consumer.Handler, msg *consumer.Message) error {
	err := next.Handle(ctx, msg)
	if err == nil {
		if msg.Attempt > 1 {
			p.hist.forget(msg.ID)
		}
		return nil
	}
	if ctx.Err() != nil {
		// The consumer lost the message or is shutting down: the error
		// says nothing about the message itself.
		return err
	}
	if errors.Is(err, consumer.ErrDeferred) {
		// Put off (an overloaded dependency, a duplicate waiting for its
		// original): this delivery does not count as an attempt.
		p.hist.update(msg.ID, func(r *record) { r.deferrals++ })
		return err
	}
	now := p.now()
	h := p.hist.get(msg.ID)
	attempts := max(1, msg.Attempt-h.deferrals)
	reason, park := p.reason(err, attempts)
	if !park {
		p.hist.update(msg.ID, func(r *record) {
			if r.first.IsZero() {
				r.first = now
			}
		})
		return err
	}
	first := h.first
	if first.IsZero() {
		first = now
	}
	e := Entry{
		ID:            EntryID(p.o.Source, msg.ID),
		Message:       *msg,
		Source:        p.o.Source,
		Reason:        reason,
		Error:         err.Error(),
		ErrorChain:    errorChain(err),
		Attempts:      attempts,
		FirstFailedAt: first,
		LastFailedAt:  now,
	}
	if perr := p.o.Sink.Put(context.WithoutCancel(ctx), e); perr != nil {
		p.hist.update(msg.ID, func(r *record) { r.first = first })
		p.o.Observer.Count(MetricDeadLetterFailures, 1)
		p.o.Logger.LogAttrs(ctx, slog.LevelError, "dlq: parking failed; the message stays on its queue",
			slog.String("message_id", msg.ID), slog.String("reason", string(reason)), slog.Any("error", perr))
		return fmt.Errorf("dlq: parking message %q: %w (handler error: %w)", msg.ID, perr, err)
	}
	p.hist.forget(msg.ID)
	p.o.Observer.Count(MetricDeadLettered, 1)
	p.o.Logger.LogAttrs(ctx, slog.LevelWarn, "dlq: message parked",
		slog.String("message_id", msg.ID), slog.String("key", msg.Key), slog.Int("attempt", msg.Attempt),
		slog.String("reason", string(reason)), slog.String("entry_id", e.ID), slog.Any("error", err))
	return nil
}

// errorChain lists the messages of err and the errors it wraps, depth
// first, at most 32.
func errorChain(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if e == nil || len(out) >= 32 {
			return
		}
		out = append(out, e.Error())
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, inner := range u.Unwrap() {
				walk(inner)
			}
		}
	}
	walk(err)
	return out
}

// history remembers, for at most max messages (the oldest are forgotten),
// when this process first saw each failing message fail and how many of
// its deliveries were deferred rather than failed.
type history struct {
	max   int
	mu    sync.Mutex
	by    map[string]record
	order []string // insertion order, for eviction
}

type record struct {
	first     time.Time // zero until a failure
	deferrals int
}

func newHistory(max int) *history {
	return &history{max: max, by: make(map[string]record)}
}

// update applies f to id's record, creating it if needed.
func (h *history) update(id string, f func(*record)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.by[id]
	if !ok {
		for len(h.by) >= h.max && len(h.order) > 0 {
			delete(h.by, h.order[0])
			h.order = h.order[1:]
		}
		h.order = append(h.order, id)
		if len(h.order) > 2*h.max {
			// Drop the IDs forgotten since they were added.
			kept := h.order[:0]
			for _, k := range h.order {
				if _, ok := h.by[k]; ok {
					kept = append(kept, k)
				}
			}
			clear(h.order[len(kept):])
			h.order = kept
		}
	}
	f(&r)
	h.by[id] = r
}

func (h *history) get(id string) record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.by[id]
}

func (h *history) forget(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.by, id)
}
