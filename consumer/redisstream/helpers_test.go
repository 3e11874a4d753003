package redisstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/redisstream"
)

// newSource returns a Source of stream under prefix with the given
// consumer name and lease, with its group set up.
func newSource(t *testing.T, client redis.UniversalClient, prefix, stream, name string, lease time.Duration) *redisstream.Source {
	t.Helper()
	src, err := redisstream.New(client, redisstream.Options{
		Stream: stream, Prefix: prefix, Consumer: name, VisibilityTimeout: lease,
	})
	require.NoError(t, err)
	require.NoError(t, src.Setup(t.Context()))
	return src
}

func newPublisher(t *testing.T, client redis.UniversalClient, prefix, stream string) *redisstream.Publisher {
	t.Helper()
	pub, err := redisstream.NewPublisher(client, redisstream.PublisherOptions{Stream: stream, Prefix: prefix})
	require.NoError(t, err)
	return pub
}

// fetchOne waits up to wait for one delivery.
func fetchOne(t *testing.T, src consumer.Source, wait time.Duration) consumer.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	ds, err := src.Fetch(ctx, 1)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	return ds[0]
}

// requireEmpty checks that src's stream holds no entry, none is pending
// and the delayed set is empty.
func requireEmpty(t *testing.T, client redis.UniversalClient, src *redisstream.Source) {
	t.Helper()
	ctx := t.Context()
	n, err := client.XLen(ctx, src.StreamKey()).Result()
	require.NoError(t, err)
	require.Zero(t, n, "entries left in the stream")
	p, err := client.XPending(ctx, src.StreamKey(), src.Group()).Result()
	require.NoError(t, err)
	require.Zero(t, p.Count, "entries left pending: %+v", p)
	n, err = client.ZCard(ctx, src.DelayedKey()).Result()
	require.NoError(t, err)
	require.Zero(t, n, "messages left in the delayed set")
}

// pending returns the pending entries of src's group.
func pending(t *testing.T, client redis.UniversalClient, src *redisstream.Source) []redis.XPendingExt {
	t.Helper()
	p, err := client.XPendingExt(t.Context(), &redis.XPendingExtArgs{
		Stream: src.StreamKey(), Group: src.Group(), Start: "-", End: "+", Count: 1000,
	}).Result()
	require.NoError(t, err)
	return p
}
