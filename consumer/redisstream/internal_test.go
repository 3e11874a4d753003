package redisstream

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/internal/testenv"
)

func TestHeadersRoundTrip(t *testing.T) {
	t.Parallel()
	for _, h := range []map[string]string{
		nil,
		{"": ""},
		{"content-type": "application/json", "x-empty": ""},
		{"bin\x00key": "\x00\xff\xfe\n\x80", "x-unicode": "héllo, 世界"},
		{"long": string(make([]byte, 300))},
	} {
		got, err := decodeHeaders(encodeHeaders(h))
		require.NoError(t, err)
		if len(h) == 0 {
			require.Empty(t, got)
			continue
		}
		require.Equal(t, h, got)
	}
	for _, bad := range []string{"\x05ab", "\x01a", "\x01a\x03b", "\xff"} {
		_, err := decodeHeaders(bad)
		require.ErrorIs(t, err, errBadHeaders, "%q", bad)
	}
	// A headers field that does not decode is delivered whole, not lost.
	m := decodeMessage(&rawEntry{id: "1-0", count: 1, fields: []any{"id", "m", "headers", "\x05ab"}})
	require.Equal(t, map[string]string{"headers": "\x05ab"}, m.Headers)
}

// Entries that a Fetch took after its context ended are handed back with
// their attempt counts unchanged, whether they were new or reclaimed.
func TestHandBack(t *testing.T) {
	t.Parallel()
	const lease = 200 * time.Millisecond
	client, prefix := testenv.Redis(t)
	src, err := New(client, Options{Stream: "s", Prefix: prefix, Consumer: "a", VisibilityTimeout: lease})
	require.NoError(t, err)
	pub, err := NewPublisher(client, PublisherOptions{Stream: "s", Prefix: prefix})
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, src.Setup(ctx))
	require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "old"}))

	// "old" is delivered once and its lease lapses, so the next poll
	// reclaims it (delivery counter 2) and reads "new" (counter 1).
	first := fetchOne(t, src)
	require.Equal(t, "old", first.Message().ID)
	require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "new"}))
	time.Sleep(time.Until(first.Deadline()) + lease/2)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	var taken []rawEntry
	for len(taken) < 2 {
		src.mu.Lock()
		src.nextSweep = time.Time{}
		src.mu.Unlock()
		es, _, err := src.poll(ctx, 2, time.Now())
		require.NoError(t, err)
		taken = append(taken, es...)
	}
	ds, err := src.deliveries(cancelled, taken, time.Now())
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, ds)
	require.Empty(t, pendingIDs(t, src), "handed-back entries are still pending")

	got := map[string]int{}
	for len(got) < 2 {
		ds, err := src.Fetch(ctx, 2)
		require.NoError(t, err)
		for _, d := range ds {
			got[d.Message().ID] = d.Message().Attempt
			require.NoError(t, d.Ack(ctx))
		}
	}
	require.Equal(t, map[string]int{"new": 1, "old": 2}, got)
}

func fetchOne(t *testing.T, src *Source) consumer.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ds, err := src.Fetch(ctx, 1)
	require.NoError(t, err)
	return ds[0]
}

func pendingIDs(t *testing.T, src *Source) []string {
	t.Helper()
	p, err := src.client.XPendingExt(t.Context(), &redis.XPendingExtArgs{Stream: src.stream, Group: src.group, Start: "-", End: "+", Count: 100}).Result()
	require.NoError(t, err)
	ids := make([]string, len(p))
	for i, e := range p {
		ids[i] = e.ID
	}
	return ids
}
