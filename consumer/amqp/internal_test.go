package amqp

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

func TestEncodeDecode(t *testing.T) {
	t.Parallel()
	enq := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	m := consumer.Message{
		ID: "m-1", Key: "k", Body: []byte{0, 1, 2},
		Headers: map[string]string{"a": "1", "x-empty": ""},
		Attempt: 9, EnqueuedAt: enq,
	}
	p, err := encode(&m, time.Now())
	require.NoError(t, err)
	require.Equal(t, amqp.Persistent, p.DeliveryMode)
	require.Equal(t, "m-1", p.MessageId)
	require.NoError(t, p.Headers.Validate())

	d := amqp.Delivery{MessageId: p.MessageId, Headers: p.Headers, Timestamp: p.Timestamp, Body: p.Body}
	got := decode(&d).msg
	require.Equal(t, m.ID, got.ID)
	require.Equal(t, m.Key, got.Key)
	require.Equal(t, m.Body, got.Body)
	require.Equal(t, m.Headers, got.Headers)
	require.True(t, enq.Equal(got.EnqueuedAt), "EnqueuedAt %s", got.EnqueuedAt)
	require.Equal(t, 1, got.Attempt, "Attempt is not published")

	t.Run("reserved header", func(t *testing.T) {
		_, err := encode(&consumer.Message{Headers: map[string]string{"x-idemq-key": "k"}}, time.Now())
		require.ErrorContains(t, err, "reserved")
	})
	t.Run("defaults", func(t *testing.T) {
		now := time.Now()
		p, err := encode(&consumer.Message{}, now)
		require.NoError(t, err)
		require.Len(t, p.MessageId, 32)
		got := decode(&amqp.Delivery{MessageId: p.MessageId, Headers: p.Headers}).msg
		require.True(t, now.Equal(got.EnqueuedAt))
		require.Nil(t, got.Headers)
	})
}

func TestDecodeAttempt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		headers     amqp.Table
		redelivered bool
		want        int
	}{
		{"first delivery", nil, false, 1},
		{"quorum redelivery", amqp.Table{"x-delivery-count": int64(3)}, true, 4},
		{"int32 count", amqp.Table{"x-delivery-count": int32(2)}, true, 3},
		{"after a delayed nack", amqp.Table{"x-idemq-attempt": int64(5)}, false, 6},
		{"redelivered after a delayed nack", amqp.Table{"x-idemq-attempt": int64(5), "x-delivery-count": int64(1)}, true, 7},
		{"classic queue redelivery", nil, true, 2},
		{"negative values ignored", amqp.Table{"x-idemq-attempt": int64(-4), "x-delivery-count": int64(-1)}, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := amqp.Delivery{MessageId: "m", Headers: tc.headers, Redelivered: tc.redelivered}
			require.Equal(t, tc.want, decode(&d).msg.Attempt)
		})
	}
}

func TestDecodeForeignMessage(t *testing.T) {
	t.Parallel()
	ts := time.Unix(1700000000, 0)
	d := amqp.Delivery{
		Headers: amqp.Table{
			"n": int32(7), "b": []byte("raw"), "x-death": []any{amqp.Table{"count": int64(1)}},
			"x-first-death-queue": "q", "x-delivery-count": int64(1),
		},
		Timestamp: ts, Redelivered: true, Body: []byte("body"),
	}
	got := decode(&d).msg
	require.Equal(t, map[string]string{"n": "7", "b": "raw"}, got.Headers, "broker bookkeeping is left out")
	require.True(t, ts.Equal(got.EnqueuedAt))
	require.Equal(t, 2, got.Attempt)
	require.Contains(t, got.ID, "sha256:", "an ID is derived from the content")

	// The ID survives redelivery and a delayed nack.
	d2 := d
	d2.Headers = amqp.Table{"n": int32(7), "b": []byte("raw"), "x-idemq-attempt": int64(4)}
	require.Equal(t, got.ID, decode(&d2).msg.ID)
	d2.Body = []byte("other")
	require.NotEqual(t, got.ID, decode(&d2).msg.ID)
}

func TestRepublish(t *testing.T) {
	t.Parallel()
	d := amqp.Delivery{
		MessageId: "m", ContentType: "application/json", CorrelationId: "c", Expiration: "1000", UserId: "u",
		Headers: amqp.Table{"h": "v", "x-delivery-count": int64(2), "x-idemq-due": int64(5)},
		Body:    []byte("b"),
	}
	p := republish(&d, 3, time.Time{})
	require.Equal(t, amqp.Table{"h": "v", "x-idemq-attempt": int64(3)}, p.Headers)
	require.Equal(t, "application/json", p.ContentType)
	require.Equal(t, "c", p.CorrelationId)
	require.Empty(t, p.Expiration, "a per-message TTL would cut the delay short")
	require.Empty(t, p.UserId)
	require.Equal(t, amqp.Persistent, p.DeliveryMode)
	require.Equal(t, int64(2), d.Headers["x-delivery-count"], "the delivery is not modified")

	due := time.UnixMilli(1_700_000_000_123)
	p = republish(&d, 3, due)
	require.Equal(t, due.UnixMilli(), p.Headers["x-idemq-due"])
}

func TestBuckets(t *testing.T) {
	t.Parallel()
	s := &Source{o: Options{DelayBuckets: []time.Duration{time.Second, 10 * time.Second}}}
	now := time.Now()
	for _, tc := range []struct {
		delay  time.Duration
		bucket time.Duration
		due    bool
	}{
		{time.Millisecond, time.Second, false},
		{time.Second, time.Second, false},
		{time.Second + 1, 10 * time.Second, false},
		{10 * time.Second, 10 * time.Second, false},
		{time.Minute, 10 * time.Second, true},
	} {
		b, due := s.bucket(tc.delay, now)
		require.Equal(t, tc.bucket, b, "bucket for %s", tc.delay)
		if tc.due {
			require.Equal(t, now.Add(tc.delay), due)
		} else {
			require.True(t, due.IsZero())
		}
	}

	require.Equal(t, "q.delay.250ms", delayQueueName("q", 250*time.Millisecond))
	require.Equal(t, "q.delay.5s", delayQueueName("q", 5*time.Second))
	require.Equal(t, "q.delay.90s", delayQueueName("q", 90*time.Second))
	require.Equal(t, "q.delay.10m", delayQueueName("q", 10*time.Minute))
	require.Equal(t, "q.delay.2h", delayQueueName("q", 2*time.Hour))
}

func TestOptions(t *testing.T) {
	t.Parallel()
	o, err := Options{Queue: "q"}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, DefaultURL, o.URL)
	require.Equal(t, DefaultPrefetch, o.Prefetch)
	require.Equal(t, DefaultDelayBuckets, o.DelayBuckets)
	require.Zero(t, o.Lease)

	long := string(make([]byte, 250))
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no queue", Options{}, "Queue is required"},
		{"reserved queue", Options{Queue: "amq.q"}, "reserved"},
		{"negative prefetch", Options{Queue: "q", Prefetch: -1}, "Prefetch"},
		{"huge prefetch", Options{Queue: "q", Prefetch: 70000}, "Prefetch"},
		{"negative lease", Options{Queue: "q", Lease: -time.Second}, "Lease"},
		{"tiny lease", Options{Queue: "q", Lease: time.Microsecond}, "Lease"},
		{"unsorted buckets", Options{Queue: "q", DelayBuckets: []time.Duration{time.Second, time.Second}}, "increase"},
		{"sub-millisecond bucket", Options{Queue: "q", DelayBuckets: []time.Duration{1500 * time.Microsecond}}, "milliseconds"},
		{"long delay queue name", Options{Queue: long}, "shorten"},
		{"recovery", Options{Queue: "q", Config: amqp.Config{Recovery: &amqp.Recovery{}}}, "Recovery"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err = NewPublisher(PublisherOptions{})
	require.ErrorContains(t, err, "Queue is required")
}
