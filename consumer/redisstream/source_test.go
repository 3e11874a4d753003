package redisstream_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/redisstream"
	"github.com/idemq/idemq/internal/testenv"
)

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr()})
	t.Cleanup(func() { _ = client.Close() })
	for name, o := range map[string]redisstream.Options{
		"no stream":        {},
		"brace in stream":  {Stream: "a{b}"},
		"brace in prefix":  {Stream: "s", Prefix: "p{"},
		"negative lease":   {Stream: "s", VisibilityTimeout: -time.Second},
		"sub-ms lease":     {Stream: "s", VisibilityTimeout: time.Microsecond},
		"negative block":   {Stream: "s", Block: -1},
		"negative max len": {Stream: "s", MaxLen: -1},
	} {
		_, err := redisstream.New(client, o)
		require.Error(t, err, name)
	}
	_, err := redisstream.New(nil, redisstream.Options{Stream: "s"})
	require.Error(t, err, "nil client")
	_, err = redisstream.NewPublisher(client, redisstream.PublisherOptions{Stream: "}"})
	require.Error(t, err, "brace in the publisher's stream")

	src, err := redisstream.New(client, redisstream.Options{Stream: "orders"})
	require.NoError(t, err)
	require.Equal(t, "idemq:stream:{orders}:stream", src.StreamKey())
	require.Equal(t, "idemq:stream:{orders}:delayed", src.DelayedKey())
	require.Equal(t, "idemq", src.Group())
	require.NotEmpty(t, src.Consumer())
	other, err := redisstream.New(client, redisstream.Options{Stream: "orders"})
	require.NoError(t, err)
	require.NotEqual(t, src.Consumer(), other.Consumer(), "default consumer names must be unique per Source")
}

// A delivery whose lease lapsed and was reclaimed by another consumer can
// neither ack, nack nor extend, and its attempts leave the new holder's
// lease as it was.
func TestStaleDeliveryAfterReclaim(t *testing.T) {
	t.Parallel()
	const lease = 300 * time.Millisecond
	client, prefix := testenv.Redis(t)
	a := newSource(t, client, prefix, "s", "a", lease)
	b := newSource(t, client, prefix, "s", "b", lease)
	require.NoError(t, newPublisher(t, client, prefix, "s").Publish(t.Context(), consumer.Message{ID: "m", Body: []byte("x")}))

	da := fetchOne(t, a, 5*time.Second)
	require.Equal(t, 1, da.Message().Attempt)
	db := fetchOne(t, b, 5*time.Second) // after a's lease lapsed
	require.Equal(t, "m", db.Message().ID)
	require.Equal(t, 2, db.Message().Attempt)

	ctx := t.Context()
	require.ErrorIs(t, da.Ack(ctx), consumer.ErrLeaseLost)
	require.ErrorIs(t, da.Nack(ctx, 0), consumer.ErrLeaseLost)
	require.ErrorIs(t, da.Nack(ctx, time.Second), consumer.ErrLeaseLost)
	require.ErrorIs(t, da.Extend(ctx), consumer.ErrLeaseLost)

	p := pending(t, client, b)
	require.Len(t, p, 1)
	require.Equal(t, "b", p[0].Consumer, "the stale delivery changed the owner")
	require.EqualValues(t, 2, p[0].RetryCount, "the stale delivery changed the delivery counter")
	n, err := client.ZCard(ctx, b.DelayedKey()).Result()
	require.NoError(t, err)
	require.Zero(t, n, "the stale Nack moved the message to the delayed set")

	require.NoError(t, db.Extend(ctx))
	require.NoError(t, db.Ack(ctx))
	requireEmpty(t, client, b)
}

// Once the lease has lapsed on the server, Ack fails even if no one has
// reclaimed the message yet, and the message is redelivered.
func TestAckAfterLapseFails(t *testing.T) {
	t.Parallel()
	const lease = 200 * time.Millisecond
	client, prefix := testenv.Redis(t)
	a := newSource(t, client, prefix, "s", "a", lease)
	require.NoError(t, newPublisher(t, client, prefix, "s").Publish(t.Context(), consumer.Message{ID: "m"}))
	d := fetchOne(t, a, 5*time.Second)
	time.Sleep(time.Until(d.Deadline()) + lease/2) // let the lease lapse; nothing to observe
	require.ErrorIs(t, d.Ack(t.Context()), consumer.ErrLeaseLost)
	require.ErrorIs(t, d.Extend(t.Context()), consumer.ErrLeaseLost)

	d2 := fetchOne(t, a, 5*time.Second)
	require.Equal(t, 2, d2.Message().Attempt)
	require.NoError(t, d2.Ack(t.Context()))
	requireEmpty(t, client, a)
}

// Extend keeps a message from being reclaimed for many leases, and does
// not count as a delivery.
func TestExtendPreventsReclaim(t *testing.T) {
	t.Parallel()
	const lease = 300 * time.Millisecond
	client, prefix := testenv.Redis(t)
	a := newSource(t, client, prefix, "s", "a", lease)
	b := newSource(t, client, prefix, "s", "b", lease)
	require.NoError(t, newPublisher(t, client, prefix, "s").Publish(t.Context(), consumer.Message{ID: "m"}))
	d := fetchOne(t, a, 5*time.Second)

	ctx, cancel := context.WithTimeout(t.Context(), 4*lease)
	defer cancel()
	rival := make(chan error, 1)
	go func() {
		ds, err := b.Fetch(ctx, 1)
		if len(ds) > 0 {
			err = errAny{ds[0].Message().ID}
		}
		rival <- err
	}()
	tick := time.NewTicker(lease / 3)
	defer tick.Stop()
	for range 15 { // five leases
		<-tick.C
		prev := d.Deadline()
		require.NoError(t, d.Extend(t.Context()))
		require.True(t, d.Deadline().After(prev))
	}
	require.ErrorIs(t, <-rival, context.DeadlineExceeded, "the rival Fetch got the message being extended")

	p := pending(t, client, a)
	require.Len(t, p, 1)
	require.Equal(t, "a", p[0].Consumer)
	require.EqualValues(t, 1, p[0].RetryCount, "Extend counted as a delivery")
	require.NoError(t, d.Ack(t.Context()))
	requireEmpty(t, client, a)
}

type errAny struct{ id string }

func (e errAny) Error() string { return "fetched " + e.id }

// A Nack with a delay moves the message to the delayed set, out of the
// stream, and a Fetch after the delay brings it back: same ID and fields,
// Attempt one more, across several hops.
func TestNackDelayMovesThroughDelayedSet(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	client, prefix := testenv.Redis(t)
	src := newSource(t, client, prefix, "s", "a", 30*time.Second)
	enq := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	want := consumer.Message{ID: "later", Key: "k", Body: []byte{0, 1, 2}, Headers: map[string]string{"h": "v"}, EnqueuedAt: enq}
	require.NoError(t, newPublisher(t, client, prefix, "s").Publish(t.Context(), want))
	ctx := t.Context()

	d := fetchOne(t, src, 5*time.Second)
	for attempt := 2; attempt <= 3; attempt++ {
		nacked := time.Now()
		require.NoError(t, d.Nack(ctx, delay))

		n, err := client.ZCard(ctx, src.DelayedKey()).Result()
		require.NoError(t, err)
		require.EqualValues(t, 1, n, "delayed set after Nack")
		n, err = client.XLen(ctx, src.StreamKey()).Result()
		require.NoError(t, err)
		require.Zero(t, n, "stream after a delayed Nack")
		require.Empty(t, pending(t, client, src), "pending after a delayed Nack")
		require.ErrorIs(t, d.Ack(ctx), consumer.ErrLeaseLost, "Ack after Nack")

		d = fetchOne(t, src, 5*time.Second)
		require.GreaterOrEqual(t, time.Since(nacked), delay-10*time.Millisecond, "redelivered before the delay passed")
		m := d.Message()
		require.Equal(t, want.ID, m.ID)
		require.Equal(t, want.Key, m.Key)
		require.Equal(t, want.Body, m.Body)
		require.Equal(t, want.Headers, m.Headers)
		require.True(t, want.EnqueuedAt.Equal(m.EnqueuedAt), "EnqueuedAt %s, want %s", m.EnqueuedAt, want.EnqueuedAt)
		require.Equal(t, attempt, m.Attempt)
		n, err = client.ZCard(ctx, src.DelayedKey()).Result()
		require.NoError(t, err)
		require.Zero(t, n, "delayed set after the message came back")
	}
	require.NoError(t, d.Ack(ctx))
	requireEmpty(t, client, src)
}

// Every key the driver writes for a stream lies in one hash slot.
func TestKeysShareHashSlot(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	src := newSource(t, client, prefix, "orders", "a", 30*time.Second)
	pub := newPublisher(t, client, prefix, "orders")
	require.Equal(t, src.StreamKey(), pub.StreamKey())
	ctx := t.Context()
	require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "1"}, consumer.Message{ID: "2"}))
	ds, err := src.Fetch(ctx, 2)
	require.NoError(t, err)
	require.NoError(t, ds[0].Nack(ctx, time.Hour)) // creates the delayed set

	keys, err := client.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	require.ElementsMatch(t, []string{src.StreamKey(), src.DelayedKey()}, keys)
	for _, k := range keys {
		require.True(t, strings.HasPrefix(k, prefix+"{orders}:"), "key %q", k)
		require.Equal(t, keySlot(src.StreamKey()), keySlot(k), "key %q is in another slot than the stream", k)
	}
	require.Equal(t, keySlot("orders"), keySlot(src.StreamKey()), "the hash tag must be the stream's name")
}

// keySlot is Redis Cluster's HASH_SLOT: CRC16 (XMODEM) of the key's hash
// tag, or of the whole key when it has none, modulo 16384.
func keySlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

func TestPublishMaxLen(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	pub, err := redisstream.NewPublisher(client, redisstream.PublisherOptions{Stream: "s", Prefix: prefix, MaxLen: 3})
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "1"}, consumer.Message{ID: "2"}))
	err = pub.Publish(ctx, consumer.Message{ID: "3"}, consumer.Message{ID: "4"})
	require.ErrorIs(t, err, redisstream.ErrStreamFull)
	n, err := client.XLen(ctx, pub.StreamKey()).Result()
	require.NoError(t, err)
	require.EqualValues(t, 2, n, "a refused batch must add nothing")
	require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "3"}))

	// Acknowledged messages are deleted, which makes room.
	src := newSource(t, client, prefix, "s", "a", 30*time.Second)
	d := fetchOne(t, src, 5*time.Second)
	require.NoError(t, d.Ack(ctx))
	require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "4"}))
}

// A Source's MaxLen holds due delayed messages back while the stream is
// full, without losing them.
func TestSourceMaxLenHoldsDelayed(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	src, err := redisstream.New(client, redisstream.Options{Stream: "s", Prefix: prefix, MaxLen: 1, Block: 50 * time.Millisecond})
	require.NoError(t, err)
	pub := newPublisher(t, client, prefix, "s")
	ctx := t.Context()
	require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "delayed"}))
	d := fetchOne(t, src, 5*time.Second)
	require.NoError(t, d.Nack(ctx, time.Millisecond))
	require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "filler"}))

	held := fetchOne(t, src, 5*time.Second)
	require.Equal(t, "filler", held.Message().ID)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	ds, err := src.Fetch(short, 1)
	require.ErrorIs(t, err, context.DeadlineExceeded, "got %d deliveries while the stream was full", len(ds))
	n, err := client.ZCard(ctx, src.DelayedKey()).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n)

	require.NoError(t, held.Ack(ctx))
	d = fetchOne(t, src, 5*time.Second)
	require.Equal(t, "delayed", d.Message().ID)
	require.Equal(t, 2, d.Message().Attempt)
	require.NoError(t, d.Ack(ctx))
	requireEmpty(t, client, src)
}

// Entries added by other tools are delivered, with the entry ID as the
// message ID, and can be acknowledged.
func TestForeignEntry(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	src := newSource(t, client, prefix, "s", "a", 30*time.Second)
	ctx := t.Context()
	id, err := client.XAdd(ctx, &redis.XAddArgs{Stream: src.StreamKey(), Values: []any{"body", "hello", "other", "x"}}).Result()
	require.NoError(t, err)
	d := fetchOne(t, src, 5*time.Second)
	require.Equal(t, id, d.Message().ID)
	require.Equal(t, []byte("hello"), d.Message().Body)
	require.Equal(t, 1, d.Message().Attempt)
	require.False(t, d.Message().EnqueuedAt.IsZero())
	require.NoError(t, d.Ack(ctx))
	requireEmpty(t, client, src)
}

// Fetch reports Redis's errors, and creates the group again on the next
// call once the stream was deleted under it.
func TestStreamDeleted(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	src, err := redisstream.New(client, redisstream.Options{Stream: "s", Prefix: prefix, Block: 50 * time.Millisecond})
	require.NoError(t, err)
	pub := newPublisher(t, client, prefix, "s")
	ctx := t.Context()
	require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "1"}))
	require.NoError(t, fetchOne(t, src, 5*time.Second).Ack(ctx)) // the first Fetch creates the group

	require.NoError(t, client.Del(ctx, src.StreamKey()).Err())
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = src.Fetch(short, 1)
	require.ErrorContains(t, err, "NOGROUP")

	require.NoError(t, pub.Publish(ctx, consumer.Message{ID: "2"}))
	d := fetchOne(t, src, 5*time.Second)
	require.Equal(t, "2", d.Message().ID)
	require.NoError(t, d.Ack(ctx))
}

// A Fetch whose context is cancelled while its XREADGROUP waits on the
// server hands back what that read took when it returns: the message goes
// to the next Fetch as its first delivery.
func TestFetchCancelledMidReadHandsBack(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	src, err := redisstream.New(client, redisstream.Options{Stream: "s", Prefix: prefix, Block: 2 * time.Second})
	require.NoError(t, err)
	require.NoError(t, src.Setup(t.Context()))
	pub := newPublisher(t, client, prefix, "s")

	ctx, cancel := context.WithCancel(t.Context())
	type result struct {
		ds  []consumer.Delivery
		err error
	}
	res := make(chan result, 1)
	go func() {
		ds, err := src.Fetch(ctx, 10)
		res <- result{ds, err}
	}()
	time.Sleep(200 * time.Millisecond) // let the read get under way
	cancel()
	select {
	case r := <-res:
		require.FailNow(t, "Fetch returned before its read did", "%v, %v", r.ds, r.err)
	default:
	}
	require.NoError(t, pub.Publish(t.Context(), consumer.Message{ID: "m"}))
	r := <-res
	require.Empty(t, r.ds)
	require.ErrorIs(t, r.err, context.Canceled)

	d := fetchOne(t, src, 5*time.Second)
	require.Equal(t, "m", d.Message().ID)
	require.Equal(t, 1, d.Message().Attempt, "a handed-back delivery must not count")
	require.NoError(t, d.Ack(t.Context()))
	requireEmpty(t, client, src)
}

// TestBlockingReadBothProtocols publishes while a Fetch waits in
// XREADGROUP, whose reply is a map under RESP3 and a list of pairs under
// RESP2: either way the message arrives whole.
func TestBlockingReadBothProtocols(t *testing.T) {
	t.Parallel()
	for _, protocol := range []int{2, 3} {
		_, prefix := testenv.Redis(t)
		client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(), Protocol: protocol})
		t.Cleanup(func() { _ = client.Close() })
		src, err := redisstream.New(client, redisstream.Options{Stream: "s", Prefix: prefix, Block: 5 * time.Second})
		require.NoError(t, err)
		require.NoError(t, src.Setup(t.Context()))
		type result struct {
			ds  []consumer.Delivery
			err error
		}
		res := make(chan result, 1)
		go func() {
			ds, err := src.Fetch(t.Context(), 1)
			res <- result{ds, err}
		}()
		time.Sleep(200 * time.Millisecond) // let the read block
		msg := consumer.Message{ID: "m", Key: "k", Body: []byte{0, 1, 0xff}, Headers: map[string]string{"a": "1", "b": ""}}
		require.NoError(t, newPublisher(t, client, prefix, "s").Publish(t.Context(), msg))
		r := <-res
		require.NoError(t, r.err, "protocol %d", protocol)
		require.Len(t, r.ds, 1, "protocol %d", protocol)
		d := r.ds[0]
		require.Equal(t, msg.ID, d.Message().ID, "protocol %d", protocol)
		require.Equal(t, msg.Key, d.Message().Key, "protocol %d", protocol)
		require.Equal(t, msg.Body, d.Message().Body, "protocol %d", protocol)
		require.Equal(t, msg.Headers, d.Message().Headers, "protocol %d", protocol)
		require.Equal(t, 1, d.Message().Attempt, "protocol %d", protocol)
		require.NoError(t, d.Ack(t.Context()))
		requireEmpty(t, client, src)
	}
}
