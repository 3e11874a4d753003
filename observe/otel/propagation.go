package otel

import (
	"context"
	"maps"

	"go.opentelemetry.io/otel/propagation"

	"github.com/idemq/idemq/consumer"
)

// propagator carries W3C trace context (the traceparent and tracestate
// headers).
var propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Inject writes the span context of ctx into msg.Headers as W3C
// traceparent and tracestate, for a publisher to send with the message. It
// copies the headers before writing, so a map msg shares with other
// messages is left alone. Without a valid span in ctx it changes nothing.
//
// A header that changes with every publication changes a hash of the
// headers too: with idempotency.KeyFromContent, two publications of the
// same content no longer share a key. Use a stable message ID as the key.
func Inject(ctx context.Context, msg *consumer.Message) {
	propagator.Inject(ctx, Carrier(msg))
}

// Extract returns ctx with the span context carried in msg.Headers (W3C
// traceparent and tracestate) as its remote parent, or ctx itself when the
// message carries none.
func Extract(ctx context.Context, msg *consumer.Message) context.Context {
	return propagator.Extract(ctx, Carrier(msg))
}

// Carrier returns a propagation.TextMapCarrier over msg.Headers, for
// propagators other than W3C trace context (baggage, B3). Its Set copies
// the headers on the first write, so a map msg shares with other messages
// is left alone.
func Carrier(msg *consumer.Message) propagation.TextMapCarrier {
	return &carrier{msg: msg}
}

type carrier struct {
	msg    *consumer.Message
	copied bool
}

func (c *carrier) Get(key string) string { return c.msg.Headers[key] }

func (c *carrier) Set(key, value string) {
	if !c.copied {
		h := make(map[string]string, len(c.msg.Headers)+2)
		maps.Copy(h, c.msg.Headers)
		c.msg.Headers = h
		c.copied = true
	}
	c.msg.Headers[key] = value
}

func (c *carrier) Keys() []string {
	keys := make([]string, 0, len(c.msg.Headers))
	for k := range c.msg.Headers {
		keys = append(keys, k)
	}
	return keys
}
