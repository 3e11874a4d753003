package jetstream

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{Stream: "orders"}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, []string{"orders"}, o.Subjects)
	require.Equal(t, DefaultDurable, o.Durable)
	require.Equal(t, DefaultAckWait, o.AckWait)
	require.Equal(t, time.Second, o.LeaseMargin, "AckWait/10, at most 1s")
	require.Equal(t, -1, o.MaxDeliver)
	require.Zero(t, o.MaxAckPending, "the server's default")
	require.Equal(t, DefaultPullExpiry, o.PullExpiry)
	require.Equal(t, DefaultRequestTimeout, o.RequestTimeout)

	o, err = Options{Stream: "orders", AckWait: 400 * time.Millisecond}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, 40*time.Millisecond, o.LeaseMargin)
}

func TestOptionsInvalid(t *testing.T) {
	for name, o := range map[string]Options{
		"no stream":            {},
		"dotted stream":        {Stream: "a.b"},
		"wildcard stream":      {Stream: "a*"},
		"dotted durable":       {Stream: "s", Durable: "a.b"},
		"negative AckWait":     {Stream: "s", AckWait: -time.Second},
		"tiny AckWait":         {Stream: "s", AckWait: time.Millisecond},
		"negative LeaseMargin": {Stream: "s", LeaseMargin: -1},
		"large LeaseMargin":    {Stream: "s", AckWait: time.Second, LeaseMargin: 300 * time.Millisecond},
		"MaxDeliver -2":        {Stream: "s", MaxDeliver: -2},
		"MaxAckPending -2":     {Stream: "s", MaxAckPending: -2},
		"negative window":      {Stream: "s", DuplicateWindow: -1},
		"tiny PullExpiry":      {Stream: "s", PullExpiry: time.Millisecond},
		"negative timeout":     {Stream: "s", RequestTimeout: -1},
		"empty subject token":  {Stream: "s", Subjects: []string{"a..b"}},
		"spaced filter":        {Stream: "s", FilterSubject: "a b"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := o.withDefaults()
			require.Error(t, err)
		})
	}
}

func TestEncodeDecode(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 890123456, time.FixedZone("X", 3600))
	in := consumer.Message{
		ID: "id-1", Key: "k", Body: []byte{0, 1, 2},
		Headers:    map[string]string{"content-type": "application/json", "x-empty": "", "x-unicode": "héllo, 世界"},
		Attempt:    9,
		EnqueuedAt: at,
	}
	for _, dedupe := range []bool{true, false} {
		nm, err := encode("orders", &in, dedupe)
		require.NoError(t, err)
		_, withMsgID := nm.Header[headerMsgID]
		require.Equal(t, dedupe, withMsgID, "Nats-Msg-Id carries the ID only with dedupe")

		meta := &nats.MsgMetadata{NumDelivered: 3, Stream: "S", Timestamp: time.Unix(1, 0)}
		meta.Sequence.Stream = 42
		out := decode(nm, meta)
		require.Equal(t, in.ID, out.ID)
		require.Equal(t, in.Key, out.Key)
		require.Equal(t, in.Body, out.Body)
		require.Equal(t, in.Headers, out.Headers)
		require.Equal(t, 3, out.Attempt, "Attempt is the delivery count")
		require.True(t, at.Equal(out.EnqueuedAt), "EnqueuedAt %s, want %s", out.EnqueuedAt, at)
	}
}

// A message published by another tool has none of the driver's headers.
func TestDecodeForeign(t *testing.T) {
	stored := time.Unix(1700000000, 5)
	meta := &nats.MsgMetadata{NumDelivered: 1, Stream: "ORDERS", Timestamp: stored}
	meta.Sequence.Stream = 17
	out := decode(&nats.Msg{Data: []byte("x"), Header: nats.Header{"Trace": {"a", "b"}, "Nats-Expected-Stream": {"ORDERS"}}}, meta)
	require.Equal(t, "ORDERS:17", out.ID, "the stream sequence stands in for an ID")
	require.Equal(t, stored, out.EnqueuedAt, "the time the stream stored it")
	require.Equal(t, map[string]string{"Trace": "a"}, out.Headers, "first values, without NATS's own")

	out = decode(&nats.Msg{Header: nats.Header{headerMsgID: {"m-1"}}}, meta)
	require.Equal(t, "m-1", out.ID, "a Nats-Msg-Id set by another publisher")
	require.Nil(t, out.Headers)
}

func TestEncodeRejects(t *testing.T) {
	for name, m := range map[string]consumer.Message{
		"reserved Nats-":      {ID: "a", Headers: map[string]string{"nats-msg-id": "x"}},
		"reserved Idemq-":     {ID: "a", Headers: map[string]string{"Idemq-Key": "x"}},
		"colon in name":       {ID: "a", Headers: map[string]string{"a:b": "x"}},
		"space in name":       {ID: "a", Headers: map[string]string{"a b": "x"}},
		"empty name":          {ID: "a", Headers: map[string]string{"": "x"}},
		"line break in value": {ID: "a", Headers: map[string]string{"a": "x\r\ny: z"}},
		"leading space":       {ID: "a", Headers: map[string]string{"a": " x"}},
		"trailing tab":        {ID: "a", Headers: map[string]string{"a": "x\t"}},
		"slash in name":       {ID: "a", Headers: map[string]string{"a/b": "x"}},
		"quote in name":       {ID: "a", Headers: map[string]string{`"`: "x"}},
		"space around ID":     {ID: " a"},
		"space around Key":    {ID: "a", Key: "k "},
		"line break in ID":    {ID: "a\nb"},
		"line break in Key":   {ID: "a", Key: "k\r"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := encode("s", &m, true)
			require.Error(t, err)
		})
	}
}
