package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/idempotency"
)

// msgHeaderSource carries the {source} of the POST in the queued message.
const msgHeaderSource = "webhook-source"

// dedupeNamespace puts the consumer's idempotency keys apart from the
// receipt claims ("receipt:<id>") in the shared store.
const dedupeNamespace = "process"

// maxErrorLen bounds the error text kept in a status.
const maxErrorLen = 1000

// event is a queued webhook as the handler sees it.
type event struct {
	ID     string
	Source string
	Type   string
	Data   json.RawMessage
}

// decodeEvent checks the payload: a JSON object with a non-empty "type".
// The receipt does not look at it (it answers at once and keeps the body
// as sent), so a bad payload fails here, for good.
func decodeEvent(msg *consumer.Message) (event, error) {
	var p struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(msg.Body, &p); err != nil {
		return event{}, fmt.Errorf("event %q: payload is not a JSON object with a string \"type\": %w", msg.ID, err)
	}
	if p.Type == "" {
		return event{}, fmt.Errorf("event %q: payload has no \"type\"", msg.ID)
	}
	return event{ID: msg.ID, Source: msg.Headers[msgHeaderSource], Type: p.Type, Data: p.Data}, nil
}

// newConsumer builds the consumer of the app's queue:
//
//	dlq → Recover → record done → idempotency → Retry → handle → effect
//
// The dead-letter middleware is outermost so that it sees permanent errors
// (a bad payload, an ID reused for another payload), panics and the last
// failed delivery, and parks them through parkSink, which marks the event
// failed. Recording "done" sits outside the idempotency middleware, so a
// status write that fails is retried by a redelivery that the idempotency
// middleware acks without running the effect again.
func (a *app) newConsumer() (*consumer.Consumer, error) {
	retry, err := consumer.Retry(consumer.RetryOptions{
		MaxAttempts: a.cfg.retries,
		Initial:     10 * time.Millisecond,
		MaxInterval: 100 * time.Millisecond,
		MaxElapsed:  time.Second,
	})
	if err != nil {
		return nil, err
	}
	dedupe, err := idempotency.Middleware(idempotency.Options{
		Store:     a.idem,
		Namespace: dedupeNamespace,
		Retention: a.cfg.dedupeWindow,
		Observer:  a.obs,
		Logger:    a.log,
	})
	if err != nil {
		return nil, err
	}
	park, err := dlq.Middleware(dlq.Options{
		Sink:        parkSink{store: a.dlq, status: a.status},
		Source:      queueName,
		MaxAttempts: a.cfg.maxAttempts,
		Observer:    a.obs,
		Logger:      a.log,
	})
	if err != nil {
		return nil, err
	}
	h := consumer.Chain(park, consumer.Recover, a.recordDone, dedupe, retry)(consumer.HandlerFunc(a.handle))
	return consumer.New(a.src, h, consumer.Config{
		MaxInFlight: 2 * a.cfg.concurrency,
		Concurrency: a.cfg.concurrency,
		Backoff:     consumer.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second},
		Logger:      a.log,
		Observer:    a.obs,
	})
}

// handle is one try of an event: [consumer.Retry] calls it up to -retries
// times per delivery, and each call counts as an attempt.
func (a *app) handle(ctx context.Context, msg *consumer.Message) error {
	if err := a.status.Attempt(ctx, msg.ID, msg.Headers[msgHeaderSource], msg.Attempt); err != nil {
		return err
	}
	ev, err := decodeEvent(msg)
	if err != nil {
		return dlq.Undecodable(err)
	}
	if err := a.effect(ctx, ev); err != nil {
		// Shown while the event waits for its next try; a status that
		// cannot be written is not worth failing the try for.
		if serr := a.status.Retrying(context.WithoutCancel(ctx), msg.ID, errorText(err)); serr != nil {
			a.log.LogAttrs(ctx, slog.LevelWarn, "webhooks: recording a failed try", slog.String("event_id", msg.ID), slog.Any("error", serr))
		}
		return err
	}
	return nil
}

// recordDone marks the event done once everything inside it succeeded:
// the effect, or the idempotency middleware's finding that it happened
// before.
func (a *app) recordDone(next consumer.Handler) consumer.Handler {
	return consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		if err := next.Handle(ctx, msg); err != nil {
			return err
		}
		return a.status.Done(context.WithoutCancel(ctx), msg.ID)
	})
}

// parkSink parks an event in the dead-letter store, then marks it failed:
// a failed status always has its message in the DLQ. If marking fails, the
// dead-letter middleware leaves the message on its queue, to be parked
// (again, under the same entry ID) by a later delivery.
type parkSink struct {
	store  dlq.Store
	status statusStore
}

func (s parkSink) Put(ctx context.Context, e dlq.Entry) error {
	if err := s.store.Put(ctx, e); err != nil {
		return err
	}
	return s.status.Failed(ctx, e.Message.ID, string(e.Reason), errorText(errors.New(e.Error)), e.ID)
}

// errorText is err's message cut to maxErrorLen and made safe for any
// store: valid UTF-8 without NUL bytes.
func errorText(err error) string {
	s := strings.ToValidUTF8(err.Error(), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) > maxErrorLen {
		s = strings.ToValidUTF8(s[:maxErrorLen], "") + "…"
	}
	return s
}

// simulator is the default effect: it takes -latency and fails with
// probability -fail-rate, like a partner API that is slow and sometimes
// down. It counts what it did, for the demo.
type simulator struct {
	latency  time.Duration
	failRate float64

	calls    atomic.Int64
	failures atomic.Int64

	mu      sync.Mutex
	applied map[string]int // event ID → times the effect happened
}

func newSimulator(latency time.Duration, failRate float64) *simulator {
	return &simulator{latency: latency, failRate: failRate, applied: map[string]int{}}
}

// errSimulated is the simulator's transient failure.
var errSimulated = errors.New("simulated: partner API answered 503 Service Unavailable")

func (s *simulator) apply(ctx context.Context, ev event) error {
	s.calls.Add(1)
	if s.latency > 0 {
		t := time.NewTimer(s.latency)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
	}
	if s.failRate > 0 && rand.Float64() < s.failRate {
		s.failures.Add(1)
		return errSimulated
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied[ev.ID]++
	return nil
}

// timesApplied returns how many times the effect happened for id.
func (s *simulator) timesApplied(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied[id]
}
