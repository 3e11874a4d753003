package otel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/consumertest"
	idemqotel "github.com/idemq/idemq/observe/otel"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newTracer(t *testing.T) (trace.Tracer, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp.Tracer("test"), rec
}

func attr(s sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func byName(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func TestInjectExtract(t *testing.T) {
	t.Parallel()
	tracer, _ := newTracer(t)
	ctx, span := tracer.Start(context.Background(), "publish")
	defer span.End()

	shared := map[string]string{"content-type": "application/json"}
	msg := &consumer.Message{ID: "m1", Headers: shared}
	idemqotel.Inject(ctx, msg)

	require.Equal(t, map[string]string{"content-type": "application/json"}, shared, "a shared header map is not written")
	require.Equal(t, "application/json", msg.Headers["content-type"])
	sc := span.SpanContext()
	require.Equal(t, fmt.Sprintf("00-%s-%s-01", sc.TraceID(), sc.SpanID()), msg.Headers["traceparent"])

	got := trace.SpanContextFromContext(idemqotel.Extract(context.Background(), msg))
	require.True(t, got.IsRemote())
	require.Equal(t, sc.TraceID(), got.TraceID())
	require.Equal(t, sc.SpanID(), got.SpanID())

	// No span, no headers: nothing changes.
	plain := &consumer.Message{ID: "m2"}
	idemqotel.Inject(context.Background(), plain)
	require.Nil(t, plain.Headers)
	require.False(t, trace.SpanContextFromContext(idemqotel.Extract(context.Background(), plain)).IsValid())
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	for _, tc := range []struct {
		name     string
		err      error
		status   codes.Code
		errType  string
		deferred bool
	}{
		{"ok", nil, codes.Unset, "", false},
		{"error", errBoom, codes.Error, "_OTHER", false},
		{"permanent", consumer.Permanent(errBoom), codes.Error, "permanent", false},
		{"deferred", fmt.Errorf("busy: %w", consumer.ErrDeferred), codes.Unset, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tracer, rec := newTracer(t)
			pctx, producer := tracer.Start(context.Background(), "publish", trace.WithSpanKind(trace.SpanKindProducer))
			msg := &consumer.Message{ID: "m1", Key: "customer-7", Body: []byte("hello"), Attempt: 2}
			idemqotel.Inject(pctx, msg)
			producer.End()

			var inner trace.SpanContext
			h := idemqotel.Middleware(tracer, "orders")(consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
				inner = trace.SpanContextFromContext(ctx)
				return tc.err
			}))
			err := h.Handle(context.Background(), msg)
			require.Equal(t, tc.err, err)

			spans := byName(rec.Ended(), "process orders")
			require.Len(t, spans, 1)
			s := spans[0]
			require.Equal(t, inner, s.SpanContext(), "the handler's context carries the span")
			require.Equal(t, producer.SpanContext().TraceID(), s.SpanContext().TraceID())
			require.Equal(t, producer.SpanContext().SpanID(), s.Parent().SpanID())
			require.True(t, s.Parent().IsRemote())
			require.Equal(t, trace.SpanKindConsumer, s.SpanKind())
			for key, want := range map[attribute.Key]attribute.Value{
				"messaging.message.id":        attribute.StringValue("m1"),
				"messaging.destination.name":  attribute.StringValue("orders"),
				"messaging.operation.type":    attribute.StringValue("process"),
				"messaging.message.body.size": attribute.IntValue(5),
				idemqotel.AttrMessageKey:      attribute.StringValue("customer-7"),
				idemqotel.AttrMessageAttempt:  attribute.IntValue(2),
			} {
				got, ok := attr(s, key)
				require.True(t, ok, key)
				require.Equal(t, want, got, key)
			}
			require.Equal(t, tc.status, s.Status().Code)
			typ, ok := attr(s, "error.type")
			require.Equal(t, tc.errType != "", ok)
			if ok {
				require.Equal(t, tc.errType, typ.AsString())
				require.Equal(t, tc.err.Error(), s.Status().Description)
				require.Equal(t, "exception", s.Events()[0].Name)
			}
			_, ok = attr(s, idemqotel.AttrDeferred)
			require.Equal(t, tc.deferred, ok)
		})
	}
}

func TestMiddlewarePanic(t *testing.T) {
	t.Parallel()
	tracer, rec := newTracer(t)
	h := idemqotel.Middleware(tracer, "")(consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		panic("kaboom")
	}))
	require.PanicsWithValue(t, "kaboom", func() { _ = h.Handle(context.Background(), &consumer.Message{ID: "m1"}) })
	spans := byName(rec.Ended(), "process")
	require.Len(t, spans, 1)
	require.Equal(t, codes.Error, spans[0].Status().Code)
	typ, _ := attr(spans[0], "error.type")
	require.Equal(t, "panic", typ.AsString())
	require.False(t, spans[0].Parent().IsValid(), "no headers: a new trace")
}

// A real run with TraceSource and Middleware: every delivery is one
// receive span, child of the publisher's span, with the process span and
// the ack or nack span under it.
func TestTraceSourceRun(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tracer, rec := newTracer(t)

	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	require.NoError(t, err)
	pctx, producer := tracer.Start(ctx, "publish orders", trace.WithSpanKind(trace.SpanKindProducer))
	msgs := []consumer.Message{{ID: "m1"}, {ID: "m2"}}
	for i := range msgs {
		idemqotel.Inject(pctx, &msgs[i])
	}
	require.NoError(t, q.Publish(ctx, msgs...))
	producer.End()

	runCtx, stop := context.WithCancel(ctx)
	var ok atomic.Int64
	h := consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		if msg.ID == "m2" && msg.Attempt == 1 {
			return errors.New("flaky")
		}
		if ok.Add(1) == 2 {
			stop()
		}
		return nil
	})
	c, err := consumer.New(idemqotel.TraceSource(q, tracer, "orders"), idemqotel.Middleware(tracer, "orders")(h), consumer.Config{
		MaxInFlight: 1,
		Backoff:     consumer.Backoff{Initial: time.Millisecond},
		Logger:      quiet,
	})
	require.NoError(t, err)
	require.NoError(t, c.Run(runCtx))

	ended := rec.Ended()
	require.Len(t, rec.Started(), len(ended), "every span ended")
	receives := byName(ended, "receive orders")
	require.Len(t, receives, 3) // m1, m2 twice
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	for _, s := range ended {
		children[s.Parent().SpanID()] = append(children[s.Parent().SpanID()], s)
	}
	for _, r := range receives {
		require.Equal(t, producer.SpanContext().SpanID(), r.Parent().SpanID())
		require.Equal(t, producer.SpanContext().TraceID(), r.SpanContext().TraceID())
		require.Equal(t, trace.SpanKindConsumer, r.SpanKind())
		require.Equal(t, codes.Unset, r.Status().Code)

		kids := children[r.SpanContext().SpanID()]
		require.Len(t, kids, 2, "process and a settlement")
		process, settle := kids[0], kids[1]
		if process.Name() != "process orders" {
			process, settle = settle, process
		}
		require.Equal(t, "process orders", process.Name())
		require.Equal(t, trace.SpanKindInternal, process.SpanKind())
		id, _ := attr(r, "messaging.message.id")
		attempt, _ := attr(r, idemqotel.AttrMessageAttempt)
		if id.AsString() == "m2" && attempt.AsInt64() == 1 {
			require.Equal(t, codes.Error, process.Status().Code)
			require.Equal(t, "flaky", process.Status().Description)
			require.Equal(t, "nack orders", settle.Name())
			_, ok := attr(settle, idemqotel.AttrRedeliverIn)
			require.True(t, ok)
		} else {
			require.Equal(t, codes.Unset, process.Status().Code)
			require.Equal(t, "ack orders", settle.Name())
		}
		require.Equal(t, trace.SpanKindClient, settle.SpanKind())
		require.False(t, settle.EndTime().After(r.EndTime()), "the delivery span ends after its settlement")
	}
}

// A delivery whose lease ran out ends its span when Extend reports it.
func TestTraceSourceLeaseLost(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tracer, rec := newTracer(t)
	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{VisibilityTimeout: 50 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, consumer.Message{ID: "m1"}))
	src := idemqotel.TraceSource(q, tracer, "")

	first, err := src.Fetch(ctx, 1)
	require.NoError(t, err)
	second, err := src.Fetch(ctx, 1) // returns once the first lease has expired
	require.NoError(t, err)
	require.ErrorIs(t, first[0].Extend(ctx), consumer.ErrLeaseLost)

	receives := byName(rec.Ended(), "receive")
	require.Len(t, receives, 1, "only the lost delivery's span has ended")
	lost := receives[0]
	attempt, _ := attr(lost, idemqotel.AttrMessageAttempt)
	require.Equal(t, int64(1), attempt.AsInt64())
	require.Equal(t, codes.Error, lost.Status().Code)
	typ, _ := attr(lost, "error.type")
	require.Equal(t, "lease_lost", typ.AsString())

	_ = second[0].Ack(ctx) // may fail too if this machine is slow; either way the span ends
	require.Len(t, byName(rec.Ended(), "receive"), 2)
}

// The wrapper keeps the Source contract.
func TestTraceSourceConformance(t *testing.T) {
	tracer, _ := newTracer(t)
	consumertest.Run(t, func(t *testing.T, lease time.Duration) (consumer.Source, consumer.Publisher) {
		q, err := consumer.NewMemQueue(consumer.MemQueueConfig{VisibilityTimeout: lease})
		require.NoError(t, err)
		return idemqotel.TraceSource(q, tracer, "conformance"), q
	})
}
