package amqp

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

// newTestQueue returns a Source and a Publisher on a fresh queue, the
// Source set up first (see TestConformance).
func newTestQueue(t *testing.T, o Options) (*Source, *Publisher) {
	t.Helper()
	url := BrokerURL(t)
	o.URL = url
	o.Queue = TempQueue(t, url, o.DelayBuckets...)
	src, err := New(o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, src.Close()) })
	require.NoError(t, src.Setup(t.Context()))
	pub, err := NewPublisher(PublisherOptions{URL: url, Queue: o.Queue})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, pub.Close()) })
	return src, pub
}

func fetchOne(t *testing.T, src consumer.Source, wait time.Duration) consumer.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	ds, err := src.Fetch(ctx, 1)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	return ds[0]
}

func requireNothing(t *testing.T, src consumer.Source, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	ds, err := src.Fetch(ctx, 10)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Empty(t, ds)
}

// Without Options.Lease, a delivery is held for as long as its channel
// lives: no deadline, Extend succeeds, and nobody else gets the message.
func TestNoLease(t *testing.T) {
	t.Parallel()
	src, pub := newTestQueue(t, Options{})
	other, err := New(Options{URL: src.o.URL, Queue: src.Queue()})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, other.Close()) })

	require.NoError(t, pub.Publish(t.Context(), consumer.Message{ID: "held"}))
	d := fetchOne(t, src, 10*time.Second)
	require.True(t, d.Deadline().IsZero())
	require.NoError(t, d.Extend(t.Context()))
	requireNothing(t, other, time.Second)
	require.NoError(t, d.Extend(t.Context()))
	require.NoError(t, d.Ack(t.Context()))
	require.ErrorIs(t, d.Extend(t.Context()), consumer.ErrLeaseLost)
	require.ErrorIs(t, d.Ack(t.Context()), consumer.ErrLeaseLost)
}

// When the connection that delivered a message is lost, its deliveries
// report ErrLeaseLost, the broker delivers the message again (Attempt
// increased) once the next Fetch has connected again, and the stale
// delivery's calls do not disturb the new one.
func TestConnectionLost(t *testing.T) {
	t.Parallel()
	src, pub := newTestQueue(t, Options{Lease: time.Minute})
	require.NoError(t, pub.Publish(t.Context(), consumer.Message{ID: "m", Body: []byte("x")}))
	d1 := fetchOne(t, src, 10*time.Second)
	require.Equal(t, 1, d1.Message().Attempt)

	src.link.mu.Lock()
	sess := src.link.cur
	src.link.mu.Unlock()
	sess.kill(errString("killed by the test"))

	require.ErrorIs(t, d1.Extend(t.Context()), consumer.ErrLeaseLost)
	d2 := fetchOne(t, src, 10*time.Second) // reconnects
	require.Equal(t, "m", d2.Message().ID)
	require.Equal(t, 2, d2.Message().Attempt)
	require.ErrorIs(t, d1.Ack(t.Context()), consumer.ErrLeaseLost)
	require.ErrorIs(t, d1.Nack(t.Context(), 0), consumer.ErrLeaseLost)
	require.NoError(t, d2.Extend(t.Context()))
	require.NoError(t, d2.Ack(t.Context()))
	requireNothing(t, src, 500*time.Millisecond)
}

type errString string

func (e errString) Error() string { return string(e) }

// A delay longer than the largest bucket goes round it as often as needed
// and comes back no earlier than asked, as the next attempt.
func TestLongDelay(t *testing.T) {
	t.Parallel()
	src, pub := newTestQueue(t, Options{DelayBuckets: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}})
	want := consumer.Message{ID: "slow", Key: "k", Body: []byte("x"), Headers: map[string]string{"h": "v"}}
	require.NoError(t, pub.Publish(t.Context(), want))
	d := fetchOne(t, src, 10*time.Second)
	const delay = 700 * time.Millisecond
	nacked := time.Now()
	require.NoError(t, d.Nack(t.Context(), delay))
	d2 := fetchOne(t, src, 10*time.Second)
	require.GreaterOrEqual(t, time.Since(nacked), delay)
	m := d2.Message()
	require.Equal(t, want.ID, m.ID)
	require.Equal(t, want.Key, m.Key)
	require.Equal(t, want.Headers, m.Headers)
	require.Equal(t, 2, m.Attempt)
	require.NoError(t, d2.Ack(t.Context()))
}

// A Publish to a queue deleted after the Publisher declared it is
// confirmed by the broker, but returned: it fails with ErrUnroutable.
func TestUnroutable(t *testing.T) {
	t.Parallel()
	url := BrokerURL(t)
	q := TempQueue(t, url)
	pub, err := NewPublisher(PublisherOptions{URL: url, Queue: q})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, pub.Close()) })
	require.NoError(t, pub.Setup(t.Context()))
	require.NoError(t, pub.Publish(t.Context(), consumer.Message{ID: "kept"}))
	require.NoError(t, DeleteQueues(url, q))
	err = pub.Publish(t.Context(), consumer.Message{ID: "lost"}, consumer.Message{ID: "lost too"})
	require.ErrorIs(t, err, ErrUnroutable)
}

// After Close, Fetch fails with ErrClosed and held deliveries are lost.
func TestClose(t *testing.T) {
	t.Parallel()
	src, pub := newTestQueue(t, Options{})
	require.NoError(t, pub.Publish(t.Context(), consumer.Message{ID: "m"}))
	d := fetchOne(t, src, 10*time.Second)
	require.NoError(t, src.Close())
	require.ErrorIs(t, d.Ack(t.Context()), consumer.ErrLeaseLost)
	_, err := src.Fetch(t.Context(), 1)
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, pub.Close())
	require.ErrorIs(t, pub.Publish(t.Context(), consumer.Message{ID: "n"}), ErrClosed)
}

// A Fetch that cannot connect reports the error, and the next one within
// the backoff reports it again without dialling.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	src, err := New(Options{URL: "amqp://guest:guest@127.0.0.1:1/", Queue: "q",
		Reconnect: consumer.Backoff{Initial: time.Hour, Max: time.Hour}})
	require.NoError(t, err)
	defer src.Close()
	_, err = src.Fetch(t.Context(), 1)
	require.ErrorContains(t, err, "connect to 127.0.0.1:1")
	_, err = src.Fetch(t.Context(), 1)
	require.ErrorContains(t, err, "next attempt in")
}
