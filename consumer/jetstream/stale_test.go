package jetstream_test

import (
	"context"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/jetstream"
)

// TestServerAcceptsStaleAcks records what the server does with an
// acknowledgement sent on the ack subject of a delivery whose ack wait
// lapsed after the message was delivered again: JetStream (2.9 at least)
// applies it to the message, under the new holder's feet, and answers it
// like any other. That is why the driver checks leases itself. The test
// only logs the outcome, so that a server that stops doing this does not
// fail it; the package documentation should then be revisited.
func TestServerAcceptsStaleAcks(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	stream := uniqueStream(t, nc)
	src, pub := newQueue(t, nc, jetstream.Options{Stream: stream, AckWait: 300 * time.Millisecond})
	require.NoError(t, pub.Publish(t.Context(), consumer.Message{ID: "stale", Body: []byte("x")}))

	js, err := natsjs.New(nc)
	require.NoError(t, err)
	c, err := js.Consumer(t.Context(), stream, src.Durable())
	require.NoError(t, err)
	next := func() natsjs.Msg {
		m, err := c.Next(natsjs.FetchMaxWait(5 * time.Second))
		require.NoError(t, err)
		return m
	}
	first := next()
	second := next() // once the first delivery's ack wait lapsed
	meta, err := second.Metadata()
	require.NoError(t, err)
	require.EqualValues(t, 2, meta.NumDelivered)

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	require.NoError(t, first.DoubleAck(ctx), "the server answers a stale ack like any other")
	if info := consumerInfo(t, nc, src); info.NumAckPending == 0 {
		t.Logf("server %s applied the stale delivery's ack: the message its new holder is handling is gone", nc.ConnectedServerVersion())
	} else {
		t.Logf("server %s ignored the stale delivery's ack (%d pending): revisit the package documentation",
			nc.ConnectedServerVersion(), info.NumAckPending)
		require.NoError(t, second.DoubleAck(ctx))
	}
}

// TestStaleHolderSendsNothing checks the driver's side: once a delivery's
// lease has lapsed and the message went to a new holder, the old
// delivery's Ack, Nack and Extend fail with ErrLeaseLost without reaching
// the server, so the new holder keeps the message: it is not acknowledged,
// not redelivered to a third consumer, and its ack wait not disturbed.
func TestStaleHolderSendsNothing(t *testing.T) {
	t.Parallel()
	const lease = 300 * time.Millisecond
	nc := connect(t)
	src, pub := newQueue(t, nc, jetstream.Options{AckWait: lease})
	require.NoError(t, pub.Publish(t.Context(), consumer.Message{ID: "held", Body: []byte("x")}))

	old := fetchOne(t, src, 5*time.Second)
	cur := fetchOne(t, src, 5*time.Second) // after old's lease lapsed
	require.Equal(t, 2, cur.Message().Attempt)

	ctx := t.Context()
	require.ErrorIs(t, old.Ack(ctx), consumer.ErrLeaseLost)
	require.ErrorIs(t, old.Nack(ctx, 0), consumer.ErrLeaseLost)
	require.ErrorIs(t, old.Extend(ctx), consumer.ErrLeaseLost)

	info := consumerInfo(t, nc, src)
	require.EqualValues(t, 1, info.NumAckPending, "the new holder's delivery is still unacknowledged")
	require.Zero(t, info.NumPending)

	// Nothing comes to a third consumer while the holder extends.
	rival, cancel := context.WithTimeout(ctx, 2*lease)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		for rival.Err() == nil {
			time.Sleep(lease / 4)
			_ = cur.Extend(ctx)
		}
	})
	ds, err := src.Fetch(rival, 1)
	wg.Wait()
	require.ErrorIs(t, err, context.DeadlineExceeded, "got %d deliveries", len(ds))
	require.NoError(t, cur.Ack(ctx))
	requireDrained(t, nc, src)
}
