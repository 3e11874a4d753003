package otel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/idemq/idemq/consumer"
)

// AttrRedeliverIn is a nack's redelivery delay, in seconds.
const AttrRedeliverIn = attribute.Key("idemq.nack.redeliver_in")

// open maps each message of a held traced delivery to the delivery's span,
// so that [Middleware] can make its span a child of it: the consumer
// runtime hands the handler the message, not the delivery. Entries leave
// when the delivery is settled or its lease is lost.
var open sync.Map // *consumer.Message → trace.Span

func deliverySpan(msg *consumer.Message) (trace.Span, bool) {
	s, ok := open.Load(msg)
	if !ok {
		return nil, false
	}
	return s.(trace.Span), true
}

// TraceSource wraps src so that each delivery is traced from the fetch
// that leased it to its settlement, with spans from tracer (default
// otel.Tracer([ScopeName])):
//
//   - "receive <queue>" (kind consumer) starts when Fetch returns the
//     delivery and ends when it is acked, nacked, or its lease is seen lost
//     by Extend. Its parent is the span context the publisher put in the
//     message's headers ([Inject]); without one it starts a trace;
//   - "process <queue>", from [Middleware], is its child;
//   - "ack <queue>" and "nack <queue>" (kind client) time the settlement
//     calls, children of it too.
//
// A Fetch that fails, other than by its context ending, gets a "receive"
// span of its own with status Error. Fetch blocks until messages arrive,
// so the delivery span starts when the call returns: waiting for messages
// is not counted as the message's time.
//
// A delivery that is dropped without Ack, Nack or a failed Extend (which
// the consumer runtime never does) keeps its span open, unexported.
// TraceSource panics if src is nil.
func TraceSource(src consumer.Source, tracer trace.Tracer, queue string) consumer.Source {
	if src == nil {
		panic("otel: TraceSource of a nil Source")
	}
	if tracer == nil {
		tracer = otel.Tracer(ScopeName)
	}
	return &tracedSource{src: src, tracer: tracer, queue: queue}
}

type tracedSource struct {
	src    consumer.Source
	tracer trace.Tracer
	queue  string
}

func (s *tracedSource) Fetch(ctx context.Context, max int) ([]consumer.Delivery, error) {
	began := time.Now()
	ds, err := s.src.Fetch(ctx, max)
	if err != nil {
		if ctx.Err() == nil {
			attrs := []attribute.KeyValue{semconv.MessagingOperationName("receive"), semconv.MessagingOperationTypeReceive}
			if s.queue != "" {
				attrs = append(attrs, semconv.MessagingDestinationName(s.queue))
			}
			_, span := s.tracer.Start(ctx, spanName("receive", s.queue), trace.WithTimestamp(began),
				trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
			recordError(span, err, "")
			span.End()
		}
		return ds, err
	}
	out := make([]consumer.Delivery, len(ds))
	for i, d := range ds {
		out[i] = s.start(d, len(ds))
	}
	return out, nil
}

func (s *tracedSource) start(d consumer.Delivery, batch int) *tracedDelivery {
	msg := d.Message()
	attrs := append(messageAttrs(msg, s.queue),
		semconv.MessagingOperationName("receive"),
		semconv.MessagingOperationTypeReceive)
	if batch > 1 {
		attrs = append(attrs, semconv.MessagingBatchMessageCount(batch))
	}
	// The delivery outlives the Fetch call: its span hangs from the
	// publisher's context only.
	_, span := s.tracer.Start(Extract(context.Background(), msg), spanName("receive", s.queue),
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	open.Store(msg, span)
	return &tracedDelivery{Delivery: d, s: s, msg: msg, span: span}
}

type tracedDelivery struct {
	consumer.Delivery
	s     *tracedSource
	msg   *consumer.Message
	span  trace.Span
	ended atomic.Bool
}

func (d *tracedDelivery) Extend(ctx context.Context) error {
	deadline := d.Delivery.Deadline()
	err := d.Delivery.Extend(ctx)
	// The consumer runtime gives a delivery up when the lease is reported
	// lost or the extension failed past the deadline; so does the span.
	if err != nil && (errors.Is(err, consumer.ErrLeaseLost) || !deadline.IsZero() && !time.Now().Before(deadline)) {
		d.end(fmt.Errorf("lease lost: %w", err), "lease_lost")
	}
	return err
}

func (d *tracedDelivery) Ack(ctx context.Context) error {
	span := d.settling(ctx, "ack")
	err := d.Delivery.Ack(ctx)
	recordError(span, err, "")
	span.End()
	d.end(err, "")
	return err
}

func (d *tracedDelivery) Nack(ctx context.Context, delay time.Duration) error {
	span := d.settling(ctx, "nack", AttrRedeliverIn.Float64(max(delay, 0).Seconds()))
	err := d.Delivery.Nack(ctx, delay)
	recordError(span, err, "")
	span.End()
	d.end(err, "")
	return err
}

func (d *tracedDelivery) settling(ctx context.Context, op string, extra ...attribute.KeyValue) trace.Span {
	attrs := append([]attribute.KeyValue{
		semconv.MessagingOperationName(op),
		semconv.MessagingOperationTypeSettle,
		semconv.MessagingMessageID(d.msg.ID),
	}, extra...)
	if d.s.queue != "" {
		attrs = append(attrs, semconv.MessagingDestinationName(d.s.queue))
	}
	_, span := d.s.tracer.Start(trace.ContextWithSpan(ctx, d.span), spanName(op, d.s.queue),
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return span
}

// end ends the delivery span once, with err's status.
func (d *tracedDelivery) end(err error, typ string) {
	if !d.ended.CompareAndSwap(false, true) {
		return
	}
	open.CompareAndDelete(d.msg, d.span)
	recordError(d.span, err, typ)
	d.span.End()
}
