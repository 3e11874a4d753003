package stockpg

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTakeDropsDoneCalls: a batch does not take a request whose context
// is done, even before its caller has noticed and given up, so that such
// a Reserve takes nothing; a queue left with no live request retires its
// flusher.
func TestTakeDropsDoneCalls(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	call := func(ctx context.Context) *reserveCall {
		return &reserveCall{ctx: ctx, done: make(chan reserveResult, 1)}
	}
	done, live := call(ctx), call(context.Background())
	key := batchKey{item: "item", exact: true}
	q := &batchQueue{pending: []*reserveCall{done, live, done}, flushers: 1}
	b := &batcher{queues: map[batchKey]*batchQueue{key: q}}

	calls, _, run := b.take(key, q)
	require.Equal(t, []*reserveCall{live}, calls)
	require.Equal(t, 1, run.calls)
	run.cancel()
	require.Empty(t, q.pending)

	q.pending = append(q.pending, call(ctx))
	calls, _, _ = b.take(key, q)
	require.Nil(t, calls)
	require.Zero(t, q.flushers)
	require.NotContains(t, b.queues, key)
}
