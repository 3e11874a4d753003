package consumer

import "context"

// Handler handles one message. Returning nil acknowledges it; returning an
// error asks for a redelivery (see [Permanent] and [RetryAfter] for the
// outcomes an error can carry).
//
// ctx is cancelled when the consumer loses the message's lease (the cause is
// [ErrLeaseLost]) or when a shutdown runs out of drain time. A handler that
// does slow work must honour it.
type Handler interface {
	Handle(ctx context.Context, msg *Message) error
}

// HandlerFunc adapts an ordinary function to a [Handler].
type HandlerFunc func(ctx context.Context, msg *Message) error

// Handle calls f(ctx, msg).
func (f HandlerFunc) Handle(ctx context.Context, msg *Message) error { return f(ctx, msg) }

// Middleware wraps a Handler with extra behaviour.
type Middleware func(Handler) Handler

// Chain composes middleware. The first listed is the outermost: it sees the
// message first and the result last, so Chain(a, b)(h) is a(b(h)).
func Chain(mws ...Middleware) Middleware {
	return func(h Handler) Handler {
		for i := len(mws) - 1; i >= 0; i-- {
			h = mws[i](h)
		}
		return h
	}
}
