package amqp

import (
	"bytes"
	"encoding/hex"
	"maps"
	"math"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

// maxShortstr is the longest AMQP 0-9-1 short string, which message-id
// and the names in a header table are: amqp091-go refuses a longer one
// when it writes the frame.
const maxShortstr = 255

// fuzzHeaderValue makes a header value of a type a publisher may set:
// kind picks it, i and s give its value.
func fuzzHeaderValue(kind uint8, i int64, s string) any {
	switch kind % 14 {
	case 0:
		return s
	case 1:
		return []byte(s)
	case 2:
		return i
	case 3:
		return int32(i)
	case 4:
		return int16(i)
	case 5:
		return int8(i)
	case 6:
		return uint8(i)
	case 7:
		return uint16(i)
	case 8:
		return uint32(i)
	case 9:
		return uint64(i)
	case 10:
		return i%2 == 0
	case 11:
		return float64(i) / 3
	case 12:
		return nil
	default:
		return []any{s, i}
	}
}

// fuzzDelivery is how d arrives when p was published: the timestamp
// travels in whole seconds.
func fuzzDelivery(p amqp.Publishing) amqp.Delivery {
	return amqp.Delivery{
		MessageId: p.MessageId, Headers: p.Headers, Timestamp: time.Unix(p.Timestamp.Unix(), 0),
		DeliveryMode: p.DeliveryMode, Body: p.Body,
	}
}

// FuzzEncodeDecode builds messages from the fuzz arguments and checks that
// encode refuses exactly those with a reserved or broker's header name, or
// a header name or ID longer than AMQP allows, that
// what it accepts can be written as an AMQP frame, and that decode gives
// the message back, with the defaults encode fills in.
func FuzzEncodeDecode(f *testing.F) {
	f.Add("m-1", "k", []byte{0, 1, 2}, "a", "1", "x-empty", "", int64(1714979289123456789), false, int64(1748779200000000000), false)
	f.Add("", "", []byte(nil), "", "", "", "", int64(0), true, int64(1748779200000000000), false)
	f.Add("m-2", "", []byte("body"), "x-idemq-key", "k", "", "", int64(1), false, int64(1), true)
	f.Add("m-3", "k", []byte("body"), "X-Idemq-Key", "k", "x-idemq", "v", int64(-1), false, int64(0), true)
	f.Add("m-4", "k", []byte("body"), "content-type", "application/json", "traceparent", "00-4bf92f3577b34da6-01", int64(math.MaxInt64), false, int64(math.MinInt64), false)
	f.Add("\xff\x00", "\xfe", []byte("\xff"), "\xff", "\x00", "h", "v", int64(math.MinInt64), false, int64(1), false)
	f.Add(strings.Repeat("i", maxShortstr), "k", []byte("b"), strings.Repeat("h", maxShortstr), "v", "x-deat", "v", int64(1), false, int64(1), false)
	f.Fuzz(func(t *testing.T, id, key string, body []byte, k1, v1, k2, v2 string, ns int64, zeroAt bool, nowNs int64, redelivered bool) {
		var headers map[string]string
		for _, h := range [][2]string{{k1, v1}, {k2, v2}} {
			if h[0] != "" || h[1] != "" {
				if headers == nil {
					headers = map[string]string{}
				}
				headers[h[0]] = h[1]
			}
		}
		// Times that Unix nanoseconds, the header's format, can hold.
		at, now := time.Unix(0, ns), time.Unix(0, nowNs)
		if zeroAt {
			at = time.Time{}
		}
		m := consumer.Message{ID: id, Key: key, Body: body, Headers: headers, Attempt: 9, EnqueuedAt: at}
		orig := m
		orig.Headers = maps.Clone(headers)

		p, err := encode(&m, now)
		require.Equal(t, orig, m, "encode modified the message")
		refused := len(id) > maxShortstr
		for k := range headers {
			refused = refused || brokerHeader(k) || len(k) > maxShortstr
		}
		if refused {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		require.Equal(t, amqp.Persistent, p.DeliveryMode)
		require.NoError(t, p.Headers.Validate())
		wantID, wantAt := id, at
		if id == "" {
			require.Len(t, p.MessageId, 32)
			_, err := hex.DecodeString(p.MessageId)
			require.NoError(t, err)
			wantID = p.MessageId
		}
		if at.IsZero() {
			wantAt = now
		}
		require.Equal(t, wantID, p.MessageId)

		d := fuzzDelivery(p)
		d.Redelivered = redelivered
		got := decode(&d)
		require.Zero(t, got.due)
		require.Equal(t, wantID, got.msg.ID, "ID")
		require.Equal(t, key, got.msg.Key, "Key")
		require.True(t, bytes.Equal(body, got.msg.Body), "Body %q, want %q", got.msg.Body, body)
		require.Equal(t, headers, got.msg.Headers, "Headers")
		require.True(t, wantAt.Equal(got.msg.EnqueuedAt), "EnqueuedAt %s, want %s", got.msg.EnqueuedAt, wantAt)
		wantAttempt := 1
		if redelivered {
			wantAttempt = 2
		}
		require.Equal(t, wantAttempt, got.msg.Attempt, "Attempt")

		require.LessOrEqual(t, len(p.MessageId), maxShortstr, "message-id of %d bytes cannot be sent", len(p.MessageId))
		for k := range p.Headers {
			require.LessOrEqual(t, len(k), maxShortstr, "header name of %d bytes cannot be sent", len(k))
		}
	})
}

// FuzzDecode builds deliveries, as the driver or another publisher may
// have sent them, from the fuzz arguments and checks what decode makes of
// them: the message-id or an ID from the content that redeliveries and
// the broker's bookkeeping leave unchanged, Attempt at least 1 and counting
// both the driver's and the broker's count, the driver's Key, EnqueuedAt
// and due headers, every other header but the broker's as a string; and
// that the message, encoded again, decodes to itself.
func FuzzDecode(f *testing.F) {
	// attemptKind, countKind, enqKind, dueKind pick the types of those
	// headers (fuzzHeaderValue; 14 and over leaves one out).
	f.Add("m-1", []byte{0, 1, 2}, "a", "1", uint8(0), "k", uint8(14), int64(5), uint8(14), int64(1), uint8(2), int64(1714979289123456789), uint8(14), int64(0), int64(1700000000), false)
	f.Add("", []byte("body"), "n", "raw", uint8(3), "", uint8(14), int64(0), uint8(2), int64(1), uint8(14), int64(0), uint8(14), int64(0), int64(1700000000), true)
	f.Add("", []byte("body"), "b", "raw", uint8(1), "k", uint8(2), int64(4), uint8(14), int64(0), uint8(14), int64(0), uint8(2), int64(1700000000123), int64(0), false)
	f.Add("m", []byte(nil), "x-death", "q", uint8(13), "", uint8(2), int64(-4), uint8(2), int64(-1), uint8(9), int64(-1), uint8(14), int64(0), int64(-1), false)
	f.Add("m", []byte(nil), "x-first-death-queue", "q", uint8(0), "", uint8(3), int64(2), uint8(3), int64(2), uint8(3), int64(2), uint8(3), int64(2), int64(1), true)
	f.Add("m", []byte(nil), "x-delivery-count", "1", uint8(0), "", uint8(9), int64(-1), uint8(9), int64(-1), uint8(9), int64(-1), uint8(9), int64(-1), int64(1), true)
	f.Add("m", []byte(nil), "h", "v", uint8(12), "", uint8(2), int64(math.MaxInt64/2), uint8(2), int64(math.MaxInt64/2), uint8(2), int64(math.MaxInt64), uint8(2), int64(math.MinInt64), int64(1), false)
	f.Add("\xff", []byte("\xff"), "\xff", "\x00", uint8(11), "\xfe", uint8(10), int64(1), uint8(11), int64(1), uint8(0), int64(1), uint8(1), int64(1), int64(1), true)
	f.Fuzz(func(t *testing.T, id string, body []byte, name, s string, kind uint8, key string,
		attemptKind uint8, attempt int64, countKind uint8, count int64, enqKind uint8, enq int64, dueKind uint8, due int64,
		tsSec int64, redelivered bool) {
		// The broker delivers no message-id or header name longer than a
		// short string can hold.
		id, name = id[:min(len(id), maxShortstr)], name[:min(len(name), maxShortstr)]
		headers := amqp.Table{}
		set := func(k string, kind uint8, i int64, s string) {
			if kind < 14 {
				headers[k] = fuzzHeaderValue(kind, i, s)
			}
		}
		set(headerAttempt, attemptKind, attempt, "")
		set(headerDeliveryCount, countKind, count, "")
		set(headerEnqueuedAt, enqKind, enq, "")
		set(headerDue, dueKind, due, "")
		if key != "" {
			headers[headerKey] = key
		}
		if name != "" {
			headers[name] = fuzzHeaderValue(kind, int64(len(s)), s)
		}
		// A timestamp in the range of Unix nanoseconds, as encode writes,
		// or none.
		var ts time.Time
		if tsSec != 0 {
			ts = time.Unix(tsSec%(math.MaxInt64/int64(time.Second)), 0)
		}
		d := amqp.Delivery{MessageId: id, Headers: headers, Timestamp: ts, Redelivered: redelivered, Body: body}
		orig := d
		orig.Headers = maps.Clone(headers)

		out := decode(&d)
		m := out.msg
		require.Equal(t, orig, d, "decode modified the delivery")

		require.True(t, bytes.Equal(body, m.Body))
		if id != "" {
			require.Equal(t, id, m.ID)
		} else {
			require.True(t, strings.HasPrefix(m.ID, "sha256:"), "ID %q", m.ID)
			_, err := hex.DecodeString(strings.TrimPrefix(m.ID, "sha256:"))
			require.NoError(t, err)
			require.Len(t, m.ID, len("sha256:")+32)
			// The broker's bookkeeping and redelivery leave it unchanged.
			plain := amqp.Table{}
			for k, v := range headers {
				if !brokerHeader(k) {
					plain[k] = v
				}
			}
			plain["x-death"] = []any{amqp.Table{"count": int64(1)}}
			require.Equal(t, m.ID, decode(&amqp.Delivery{Headers: plain, Body: body, Redelivered: !redelivered}).msg.ID)
		}

		prior, _ := headerInt(headers, headerAttempt)
		n, ok := headerInt(headers, headerDeliveryCount)
		if !ok && redelivered {
			n = 1
		}
		require.GreaterOrEqual(t, m.Attempt, 1, "Attempt from %d earlier attempts and %d deliveries", prior, n)
		require.LessOrEqual(t, m.Attempt, math.MaxInt32)
		if sum := max(prior, 0) + max(n, 0); sum >= 0 && sum < math.MaxInt32 {
			require.Equal(t, int(sum+1), m.Attempt)
		} else {
			require.Equal(t, math.MaxInt32, m.Attempt, "capped")
		}

		if k, ok := headers[headerKey].(string); ok {
			require.Equal(t, k, m.Key)
		} else {
			require.Empty(t, m.Key)
		}
		if ns, ok := headerInt(headers, headerEnqueuedAt); ok {
			require.Equal(t, ns, m.EnqueuedAt.UnixNano())
		} else {
			require.True(t, ts.Equal(m.EnqueuedAt))
		}
		if ms, ok := headerInt(headers, headerDue); ok {
			require.True(t, time.UnixMilli(ms).Equal(out.due))
		} else {
			require.Zero(t, out.due)
		}

		want := map[string]string{}
		for k, v := range headers {
			if !brokerHeader(k) {
				want[k] = headerString(v)
			}
		}
		if len(want) == 0 {
			want = nil
		}
		require.Equal(t, want, m.Headers)
		if sv, ok := headers[name].(string); ok && !brokerHeader(name) {
			require.Equal(t, sv, m.Headers[name])
		}

		// Encoded again, as a replay publishes it, it decodes to itself.
		p, err := encode(&m, time.Unix(0, 1))
		require.NoError(t, err)
		d = fuzzDelivery(p)
		again := decode(&d).msg
		require.Equal(t, m.ID, again.ID)
		require.Equal(t, m.Key, again.Key)
		require.Equal(t, m.Headers, again.Headers)
		require.True(t, bytes.Equal(m.Body, again.Body))
		if !m.EnqueuedAt.IsZero() {
			require.True(t, m.EnqueuedAt.Equal(again.EnqueuedAt), "EnqueuedAt %s, want %s", again.EnqueuedAt, m.EnqueuedAt)
		}
	})
}
