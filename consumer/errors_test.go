package consumer_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

var errBadPayload = errors.New("decode failed")

func TestPermanentNil(t *testing.T) {
	t.Parallel()
	require.NoError(t, consumer.Permanent(nil))
	require.False(t, consumer.IsPermanent(nil))
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	err := consumer.Permanent(errBadPayload)

	require.Error(t, err)
	require.ErrorIs(t, err, errBadPayload)
	require.True(t, consumer.IsPermanent(err))
	require.Contains(t, err.Error(), errBadPayload.Error())

	var p *consumer.PermanentError
	require.ErrorAs(t, err, &p)
	require.Same(t, errBadPayload, p.Err)
}

func TestIsPermanent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"plain error", errBadPayload, false},
		{"permanent", consumer.Permanent(errBadPayload), true},
		{"wrapped once", fmt.Errorf("handling: %w", consumer.Permanent(errBadPayload)), true},
		{"wrapped twice", fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", consumer.Permanent(errBadPayload))), true},
		{"joined", errors.Join(errors.New("other"), consumer.Permanent(errBadPayload)), true},
		{"formatted with %v loses it", fmt.Errorf("handling: %v", consumer.Permanent(errBadPayload)), false},
		{"retry after", consumer.RetryAfter(time.Second, errBadPayload), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, consumer.IsPermanent(tc.err))
		})
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	const d = 1500 * time.Millisecond
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"direct", consumer.RetryAfter(d, errBadPayload)},
		{"wrapped", fmt.Errorf("calling api: %w", consumer.RetryAfter(d, errBadPayload))},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", consumer.RetryAfter(d, errBadPayload)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r *consumer.RetryAfterError
			require.ErrorAs(t, tc.err, &r)
			require.Equal(t, d, r.Delay)
			require.ErrorIs(t, tc.err, errBadPayload)

			got, ok := consumer.RetryAfterDelay(tc.err)
			require.True(t, ok)
			require.Equal(t, d, got)
			require.Contains(t, tc.err.Error(), errBadPayload.Error())
			require.False(t, consumer.IsPermanent(tc.err))
		})
	}
}

func TestRetryAfterDelayAbsent(t *testing.T) {
	t.Parallel()
	for _, err := range []error{nil, errBadPayload, consumer.Permanent(errBadPayload)} {
		d, ok := consumer.RetryAfterDelay(err)
		require.False(t, ok, "%v", err)
		require.Zero(t, d)
	}
}

func TestRetryAfterNil(t *testing.T) {
	t.Parallel()
	err := consumer.RetryAfter(time.Minute, nil)
	require.Error(t, err)
	require.NotEmpty(t, err.Error())

	d, ok := consumer.RetryAfterDelay(err)
	require.True(t, ok)
	require.Equal(t, time.Minute, d)
}

func TestRetryAfterAndPermanentNested(t *testing.T) {
	t.Parallel()
	const d = 3 * time.Second
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"retry after inside permanent", consumer.Permanent(consumer.RetryAfter(d, errBadPayload))},
		{"permanent inside retry after", consumer.RetryAfter(d, consumer.Permanent(errBadPayload))},
		{"wrapped mix", fmt.Errorf("x: %w", consumer.RetryAfter(d, fmt.Errorf("y: %w", consumer.Permanent(errBadPayload))))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.True(t, consumer.IsPermanent(tc.err))
			got, ok := consumer.RetryAfterDelay(tc.err)
			require.True(t, ok)
			require.Equal(t, d, got)
			require.ErrorIs(t, tc.err, errBadPayload)
			require.Contains(t, tc.err.Error(), errBadPayload.Error())
		})
	}
}

func TestPanicError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		value      any
		wantUnwrap error
		wantInMsg  string
	}{
		{"error value", errBadPayload, errBadPayload, errBadPayload.Error()},
		{"string value", "kaboom", nil, "kaboom"},
		{"int value", 42, nil, "42"},
		{"struct value", struct{ N int }{7}, nil, "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pe := &consumer.PanicError{Value: tc.value, Stack: []byte("stack")}

			if tc.wantUnwrap == nil {
				require.Nil(t, pe.Unwrap())
			} else {
				require.Same(t, tc.wantUnwrap, pe.Unwrap())
				require.ErrorIs(t, pe, tc.wantUnwrap)
			}
			require.Contains(t, pe.Error(), tc.wantInMsg)

			var err error = fmt.Errorf("handling: %w", pe)
			var got *consumer.PanicError
			require.ErrorAs(t, err, &got)
			require.Same(t, pe, got)
		})
	}
}
