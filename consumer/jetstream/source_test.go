package jetstream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/jetstream"
)

// TestMaxAckPending: a pull request that MaxAckPending holds back is
// neither served nor ended by the server. Fetch returns what came without
// waiting for the rest, blocks while nothing can come, and strands
// nothing: every message is delivered once, as its first delivery.
func TestMaxAckPending(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	src, pub := newQueue(t, nc, jetstream.Options{MaxAckPending: 2})
	for i := range 5 {
		require.NoError(t, pub.Publish(t.Context(), consumer.Message{ID: fmt.Sprint("m", i), Body: []byte("x")}))
	}
	start := time.Now()
	held := map[string]consumer.Delivery{}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ds, err := src.Fetch(ctx, 10)
	require.NoError(t, err)
	require.Len(t, ds, 2, "MaxAckPending")
	require.Less(t, time.Since(start), 2*time.Second, "Fetch waited for messages MaxAckPending held back")
	for _, d := range ds {
		held[d.Message().ID] = d
	}

	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	ds, err = src.Fetch(ctx, 10)
	require.ErrorIs(t, err, context.DeadlineExceeded, "nothing can come while two are held; got %d", len(ds))

	for len(held) < 5 {
		for id, d := range held {
			if d != nil {
				require.NoError(t, d.Ack(t.Context()))
				held[id] = nil
				break
			}
		}
		for _, d := range fetchBatch(t, src, 10) {
			id := d.Message().ID
			require.NotContains(t, held, id, "delivered twice")
			require.Equal(t, 1, d.Message().Attempt, "%s was stranded by a withdrawn request and redelivered", id)
			held[id] = d
		}
	}
	for _, d := range held {
		if d != nil {
			require.NoError(t, d.Ack(t.Context()))
		}
	}
	requireDrained(t, nc, src)
}

func fetchBatch(t *testing.T, src consumer.Source, limit int) []consumer.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ds, err := src.Fetch(ctx, limit)
	require.NoError(t, err)
	return ds
}

// TestPublishDedupe: the stream drops a message whose ID it has within its
// duplicate window, unless the Publisher has NoDedupe.
func TestPublishDedupe(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	src, pub := newQueue(t, nc, jetstream.Options{})
	m := consumer.Message{ID: "once", Body: []byte("x")}
	require.NoError(t, pub.Publish(t.Context(), m))
	require.NoError(t, pub.Publish(t.Context(), m), "a duplicate counts as published")
	replay, err := jetstream.NewPublisher(nc, jetstream.PublisherOptions{Subject: src.Stream(), NoDedupe: true})
	require.NoError(t, err)
	require.NoError(t, replay.Publish(t.Context(), m))

	for range 2 {
		d := fetchOne(t, src, 5*time.Second)
		require.Equal(t, "once", d.Message().ID)
		require.Equal(t, 1, d.Message().Attempt)
		require.NoError(t, d.Ack(t.Context()))
	}
	requireDrained(t, nc, src)
}

// TestForeignMessages: messages published without this driver are
// delivered with an ID made from the stream sequence, or their own
// Nats-Msg-Id, and the time the stream stored them.
func TestForeignMessages(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	src, _ := newQueue(t, nc, jetstream.Options{})
	before := time.Now()
	_, err := nc.Request(src.Stream(), []byte("plain"), 5*time.Second)
	require.NoError(t, err)
	msg := nats.NewMsg(src.Stream())
	msg.Data = []byte("with id")
	msg.Header.Set("Nats-Msg-Id", "theirs")
	msg.Header.Set("Trace", "abc")
	_, err = nc.RequestMsg(msg, 5*time.Second)
	require.NoError(t, err)

	got := map[string]*consumer.Message{}
	for len(got) < 2 {
		for _, d := range fetchBatch(t, src, 2) {
			got[string(d.Message().Body)] = d.Message()
			require.NoError(t, d.Ack(t.Context()))
		}
	}
	require.Equal(t, src.Stream()+":1", got["plain"].ID)
	require.WithinDuration(t, before, got["plain"].EnqueuedAt, time.Minute)
	require.Nil(t, got["plain"].Headers)
	require.Equal(t, "theirs", got["with id"].ID)
	require.Equal(t, map[string]string{"Trace": "abc"}, got["with id"].Headers)
}

// TestSetup: Setup is idempotent, updates the durable to its Options, and
// uses a stream that exists as it is.
func TestSetup(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	stream := uniqueStream(t, nc)
	src, err := jetstream.New(nc, jetstream.Options{Stream: stream, AckWait: time.Second})
	require.NoError(t, err)
	require.NoError(t, src.Setup(t.Context()))
	require.NoError(t, src.Setup(t.Context()))
	require.Equal(t, time.Second, consumerInfo(t, nc, src).Config.AckWait)

	other, err := jetstream.New(nc, jetstream.Options{Stream: stream, AckWait: 2 * time.Second, MaxDeliver: 7, Subjects: []string{"ignored"}})
	require.NoError(t, err)
	require.NoError(t, other.Setup(t.Context()))
	info := consumerInfo(t, nc, src)
	require.Equal(t, 2*time.Second, info.Config.AckWait, "the last Setup wins")
	require.Equal(t, 7, info.Config.MaxDeliver)

	// The server ignores pull requests to a durable that does not exist:
	// a Fetch on one deleted meanwhile notices when its request goes
	// unanswered, reports it, and the next Fetch creates it again.
	quick, err := jetstream.New(nc, jetstream.Options{Stream: stream, PullExpiry: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, quick.Setup(t.Context()))
	_, err = nc.Request("$JS.API.CONSUMER.DELETE."+stream+"."+src.Durable(), nil, 5*time.Second)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = quick.Fetch(ctx, 1)
	require.ErrorIs(t, err, natsjs.ErrConsumerNotFound)
	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err = quick.Fetch(ctx, 1)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the next Fetch creates the durable again and waits")
	require.Equal(t, jetstream.DefaultAckWait, consumerInfo(t, nc, quick).Config.AckWait, "recreated with quick's Options")
}
