// Package otel connects the idemq packages to OpenTelemetry: metrics,
// and traces that follow a message from its publisher to its handler
// through the message headers.
//
// It is a module of its own (github.com/idemq/idemq/observe/otel), so
// that programs that do not import it do not depend on OpenTelemetry. It
// uses the OpenTelemetry API only; the SDK (exporters, readers, sampling)
// is the program's choice. Its package name clashes with
// go.opentelemetry.io/otel; import it under another name:
//
//	import idemqotel "github.com/idemq/idemq/observe/otel"
//
// # Metrics
//
// [NewObserver] returns an [Observer], a consumer.Observer. Give it to the
// consumer and to every middleware that takes an Observer; [Observer.With]
// adds attributes, such as the queue's name:
//
//	obs, err := idemqotel.NewObserver(otel.Meter("billing"), idemqotel.ObserverOptions{})
//	orders := obs.With(attribute.String("messaging.destination.name", "orders"))
//	c, err := consumer.New(src, h, consumer.Config{Observer: orders})
//
// Gauge names such as consumer_inflight become Int64UpDownCounters, other
// counts Int64Counters, durations Float64Histograms in seconds, all named
// "idemq.<name>" and created on first use.
//
// # Traces
//
// Publishers call [Inject] on each message before publishing it, which
// puts the W3C traceparent of their context in the message's headers.
// Consumers trace the handler with [Middleware], and the whole delivery
// (fetch, handle, ack or nack) by wrapping their source with
// [TraceSource]:
//
//	idemqotel.Inject(ctx, &msg)
//	err := pub.Publish(ctx, msg)
//
//	src := idemqotel.TraceSource(queue, tracer, "orders")
//	h := consumer.Chain(idemqotel.Middleware(tracer, "orders"), dedupe)(handler)
//	c, err := consumer.New(src, h, cfg)
//
// The resulting trace is publisher → "receive orders" (the delivery, from
// fetch to settlement) → "process orders" (the handler) and "ack orders"
// or "nack orders". Each redelivery is a new "receive" span under the
// same publisher span, with its attempt number.
//
// # What it does not do
//
// Headers are the only way trace context crosses the broker, so the trace
// is only as good as the publishers' [Inject]. Only W3C trace context is
// carried; use [Carrier] with another propagator for baggage or B3. Logs
// are not bridged: the idemq packages log through log/slog, with message
// ID, key and attempt as attributes, and a slog handler that adds the
// trace from the context can join them to the spans.
package otel
