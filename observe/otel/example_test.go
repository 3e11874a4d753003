package otel_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/idemq/idemq/consumer"
	idemqotel "github.com/idemq/idemq/observe/otel"
)

// A publisher injects its trace context into the message; the consumer's
// source and middleware continue the trace. Each span is printed with its
// parent as it ends.
func ExampleTraceSource() {
	exporter := tracetest.NewInMemoryExporter() // a real program exports with OTLP
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tracer := tp.Tracer("example")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}

	// Publisher side.
	pctx, publish := tracer.Start(ctx, "publish orders")
	msg := consumer.Message{ID: "order-1", Body: []byte("order 1 placed")}
	idemqotel.Inject(pctx, &msg)
	if err := q.Publish(pctx, msg); err != nil {
		fmt.Println(err)
		return
	}
	publish.End()

	// Consumer side.
	h := consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		_, span := tracer.Start(ctx, "charge card") // the handler's own work
		span.End()
		cancel()
		return nil
	})
	c, err := consumer.New(
		idemqotel.TraceSource(q, tracer, "orders"),
		idemqotel.Middleware(tracer, "orders")(h),
		consumer.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Run(ctx); err != nil {
		fmt.Println(err)
		return
	}

	spans := exporter.GetSpans()
	names := map[string]string{}
	for _, s := range spans {
		names[s.SpanContext.SpanID().String()] = s.Name
	}
	for _, s := range spans {
		parent := names[s.Parent.SpanID().String()]
		if parent == "" {
			parent = "(root)"
		}
		fmt.Printf("%-16s child of %s, same trace: %t\n", s.Name, parent, s.SpanContext.TraceID() == publish.SpanContext().TraceID())
	}

	// Output:
	// publish orders   child of (root), same trace: true
	// charge card      child of process orders, same trace: true
	// process orders   child of receive orders, same trace: true
	// ack orders       child of receive orders, same trace: true
	// receive orders   child of publish orders, same trace: true
}

// The consumer's counts and durations as OpenTelemetry instruments, read
// here with a manual reader.
func ExampleNewObserver() {
	reader := sdkmetric.NewManualReader() // a real program exports with OTLP or Prometheus
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()

	obs, err := idemqotel.NewObserver(mp.Meter("example"), idemqotel.ObserverOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	orders := obs.With(attribute.String("messaging.destination.name", "orders"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := q.Publish(ctx, consumer.Message{ID: "order-1"}, consumer.Message{ID: "order-2"}); err != nil {
		fmt.Println(err)
		return
	}
	handled := 0
	h := consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		if handled++; handled == 2 {
			cancel()
		}
		return nil
	})
	c, err := consumer.New(q, h, consumer.Config{MaxInFlight: 1, Observer: orders, Backoff: consumer.Backoff{Initial: time.Millisecond}})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Run(ctx); err != nil {
		fmt.Println(err)
		return
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch data := m.Data.(type) {
		case metricdata.Sum[int64]:
			fmt.Printf("%s = %d (monotonic %t)\n", m.Name, data.DataPoints[0].Value, data.IsMonotonic)
		case metricdata.Histogram[float64]:
			fmt.Printf("%s: %d samples, unit %s\n", m.Name, data.DataPoints[0].Count, m.Unit)
		}
	}

	// Unordered output:
	// idemq.consumer_inflight = 0 (monotonic false)
	// idemq.queue_lag_seconds: 2 samples, unit s
	// idemq.handler_duration_seconds: 2 samples, unit s
	// idemq.processed = 2 (monotonic true)
}
