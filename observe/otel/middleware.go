package otel

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/idemq/idemq/consumer"
)

// Attributes that the messaging semantic conventions have no generic name
// for.
const (
	// AttrMessageKey is the message's [consumer.Message.Key], when set.
	AttrMessageKey = attribute.Key("idemq.message.key")
	// AttrMessageAttempt is the message's delivery number,
	// [consumer.Message.Attempt].
	AttrMessageAttempt = attribute.Key("idemq.message.attempt")
	// AttrDeferred marks a handler error that said "not now"
	// ([consumer.ErrDeferred]): the span's status is left unset.
	AttrDeferred = attribute.Key("idemq.deferred")
)

// Middleware traces each handler call with a span named "process <queue>"
// ("process" when queue is empty) from tracer (default
// otel.Tracer([ScopeName])). The handler's context carries the span, so
// its own spans, and messages it publishes with [Inject], belong to the
// same trace.
//
// The span's parent is the delivery's span when the source is wrapped with
// [TraceSource]; otherwise it is the span context the publisher put in the
// message's headers ([Inject]), and the span is of kind consumer. It
// carries the messaging attributes (messaging.message.id,
// messaging.destination.name, messaging.message.body.size) and
// [AttrMessageKey] and [AttrMessageAttempt]. A handler error is recorded
// with status Error and an error.type of "permanent", "panic", "timeout",
// "lease_lost" or "_OTHER"; an error that matches [consumer.ErrDeferred]
// is only marked with [AttrDeferred]. A panic is recorded and passed on.
//
// The middleware sees the handler call only: the fetch before it and the
// ack or nack after it happen in the consumer runtime. [TraceSource] adds
// those.
func Middleware(tracer trace.Tracer, queue string) consumer.Middleware {
	if tracer == nil {
		tracer = otel.Tracer(ScopeName)
	}
	name := spanName("process", queue)
	return func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) (err error) {
			kind := trace.SpanKindConsumer
			if d, ok := deliverySpan(msg); ok {
				ctx = trace.ContextWithSpan(ctx, d)
				kind = trace.SpanKindInternal // the delivery span is the consumer side
			} else {
				ctx = Extract(ctx, msg)
			}
			attrs := append(messageAttrs(msg, queue),
				semconv.MessagingOperationName("process"),
				semconv.MessagingOperationTypeProcess)
			ctx, span := tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
			panicked := true
			defer func() {
				if panicked {
					v := recover()
					recordError(span, fmt.Errorf("handler panic: %v", v), "panic")
					span.End()
					panic(v)
				}
				recordError(span, err, "")
				span.End()
			}()
			err = next.Handle(ctx, msg)
			panicked = false
			return err
		})
	}
}

func spanName(op, queue string) string {
	if queue == "" {
		return op
	}
	return op + " " + queue
}

func messageAttrs(msg *consumer.Message, queue string) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 8)
	if queue != "" {
		attrs = append(attrs, semconv.MessagingDestinationName(queue))
	}
	attrs = append(attrs,
		semconv.MessagingMessageID(msg.ID),
		semconv.MessagingMessageBodySize(len(msg.Body)),
		AttrMessageAttempt.Int(msg.Attempt))
	if msg.Key != "" {
		attrs = append(attrs, AttrMessageKey.String(msg.Key))
	}
	return attrs
}

// recordError sets span's status from err. typ overrides the error.type
// derived from err.
func recordError(span trace.Span, err error, typ string) {
	if err == nil {
		return
	}
	if typ == "" && errors.Is(err, consumer.ErrDeferred) {
		span.SetAttributes(AttrDeferred.Bool(true))
		span.AddEvent("deferred", trace.WithAttributes(attribute.String("reason", err.Error())))
		return
	}
	if typ == "" {
		typ = errorType(err)
	}
	span.RecordError(err)
	span.SetAttributes(semconv.ErrorTypeKey.String(typ))
	span.SetStatus(codes.Error, err.Error())
}

// errorType is a low-cardinality class of err for error.type.
func errorType(err error) string {
	var p *consumer.PanicError
	switch {
	case errors.As(err, &p):
		return "panic"
	case consumer.IsPermanent(err):
		return "permanent"
	case errors.Is(err, consumer.ErrLeaseLost):
		return "lease_lost"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, consumer.ErrHandlerTimeout):
		return "timeout"
	}
	return "_OTHER"
}
