package consumer_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

// traceMiddleware returns a middleware that appends "name>" on the way in and
// "<name" on the way out to *log.
func traceMiddleware(name string, log *[]string) consumer.Middleware {
	return func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
			*log = append(*log, name+">")
			err := next.Handle(ctx, msg)
			*log = append(*log, "<"+name)
			return err
		})
	}
}

func TestChainOrder(t *testing.T) {
	t.Parallel()
	var log []string
	errBoom := errors.New("boom")
	h := consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		log = append(log, "handler")
		return errBoom
	})

	wrapped := consumer.Chain(traceMiddleware("a", &log), traceMiddleware("b", &log), traceMiddleware("c", &log))(h)
	err := wrapped.Handle(context.Background(), &consumer.Message{ID: "1"})

	require.ErrorIs(t, err, errBoom)
	require.Equal(t, []string{"a>", "b>", "c>", "handler", "<c", "<b", "<a"}, log,
		"the first middleware listed must be the outermost")
}

func TestChainSeesResultLast(t *testing.T) {
	t.Parallel()
	errInner := errors.New("inner")
	// The outer middleware rewrites whatever the inner one returns: only
	// if it really is outermost does its rewrite reach the caller.
	outer := func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
			if err := next.Handle(ctx, msg); err != nil {
				return consumer.Permanent(err)
			}
			return nil
		})
	}
	inner := func(consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(context.Context, *consumer.Message) error { return errInner })
	}
	h := consumer.HandlerFunc(func(context.Context, *consumer.Message) error { return nil })

	err := consumer.Chain(outer, inner)(h).Handle(context.Background(), &consumer.Message{})
	require.ErrorIs(t, err, errInner)
	require.True(t, consumer.IsPermanent(err))
}

func TestChainEmpty(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	for _, tc := range []struct {
		name string
		ret  error
	}{
		{"nil", nil},
		{"error", errBoom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			type ctxKey struct{}
			ctx := context.WithValue(context.Background(), ctxKey{}, "v")
			msg := &consumer.Message{ID: "m1", Body: []byte("body")}
			calls := 0
			h := consumer.HandlerFunc(func(gotCtx context.Context, gotMsg *consumer.Message) error {
				calls++
				require.Equal(t, "v", gotCtx.Value(ctxKey{}), "the handler must get the caller's ctx")
				require.Same(t, msg, gotMsg, "the handler must get the caller's message")
				return tc.ret
			})

			err := consumer.Chain()(h).Handle(ctx, msg)

			require.Equal(t, 1, calls)
			if tc.ret == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.ret)
			}
		})
	}
}

func TestHandlerFunc(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	type ctxKey struct{}
	ctx := context.WithValue(context.Background(), ctxKey{}, 42)
	msg := &consumer.Message{ID: "m1"}
	var gotCtx context.Context
	var gotMsg *consumer.Message
	f := func(ctx context.Context, m *consumer.Message) error {
		gotCtx, gotMsg = ctx, m
		return errBoom
	}

	var h consumer.Handler = consumer.HandlerFunc(f)
	err := h.Handle(ctx, msg)

	require.ErrorIs(t, err, errBoom)
	require.Equal(t, 42, gotCtx.Value(ctxKey{}))
	require.Same(t, msg, gotMsg)
}
