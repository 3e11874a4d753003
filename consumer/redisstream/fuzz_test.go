package redisstream

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

// FuzzDecodeHeaders checks that a headers field either fails with
// errBadHeaders or decodes to headers whose encoding is no longer than the
// field, decodes to the same headers and encodes back to itself.
func FuzzDecodeHeaders(f *testing.F) {
	for _, h := range []map[string]string{
		{"content-type": "application/json", "x-empty": ""},
		{"bin\x00key": "\x00\xff\xfe\n\x80", "x-unicode": "héllo, 世界"},
		{"": ""},
		{"h": "v"},
		{"a": "1", "b": ""},
		{"long": strings.Repeat("x", 300)},
		{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	} {
		f.Add(encodeHeaders(h))
	}
	for _, s := range []string{
		"",
		"\x05ab", "\x01a", "\x01a\x03b", "\xff",
		"\x01a\x01b\x01a\x01c",                     // a repeated key
		"\x80\x00\x81\x00x",                        // lengths as non-minimal uvarints
		"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", // a length of 2^64-1
		"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
		"\x00", "\x00\x00\x00",
		strings.Repeat("\x00", 1000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := decodeHeaders(s)
		if err != nil {
			require.ErrorIs(t, err, errBadHeaders)
			require.Nil(t, h)
			return
		}
		if s == "" {
			require.Nil(t, h)
			return
		}
		require.NotEmpty(t, h)
		size := 0
		for k, v := range h {
			size += 2 + len(k) + len(v)
		}
		require.LessOrEqual(t, size, len(s), "headers hold more than the field")

		enc := encodeHeaders(h)
		require.LessOrEqual(t, len(enc), len(s))
		again, err := decodeHeaders(enc)
		require.NoError(t, err)
		require.Equal(t, h, again)
		require.Equal(t, enc, encodeHeaders(again))
	})
}

// FuzzHeadersRoundTrip checks that any headers decode from their encoding
// unchanged, and that no headers encode as "".
func FuzzHeadersRoundTrip(f *testing.F) {
	f.Add(uint8(2), "content-type", "application/json", "x-empty", "", "", "")
	f.Add(uint8(3), "bin\x00key", "\x00\xff\xfe\n\x80", "x-unicode", "héllo, 世界", "", "")
	f.Add(uint8(1), "long", strings.Repeat("\x00", 300), "", "", "", "")
	f.Add(uint8(3), "a", "1", "a", "2", "b", "")
	f.Add(uint8(0), "", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, n uint8, k1, v1, k2, v2, k3, v3 string) {
		h := map[string]string{}
		for _, kv := range [][2]string{{k1, v1}, {k2, v2}, {k3, v3}}[:n%4] {
			h[kv[0]] = kv[1]
		}
		enc := encodeHeaders(h)
		got, err := decodeHeaders(enc)
		require.NoError(t, err)
		if len(h) == 0 {
			require.Empty(t, enc)
			require.Nil(t, got)
			return
		}
		require.Equal(t, h, got)
	})
}

// joinFields packs stream entry fields for FuzzDecodeMessage: each one is
// a length byte and the field.
func joinFields(fields ...string) string {
	var b strings.Builder
	for _, s := range fields {
		b.WriteByte(byte(len(s)))
		b.WriteString(s)
	}
	return b.String()
}

// splitFields reverses joinFields for any input: a last field shorter than
// its length byte says takes what is left.
func splitFields(raw string) []any {
	var out []any
	for len(raw) > 0 {
		n := min(int(raw[0]), len(raw)-1)
		out = append(out, raw[1:1+n])
		raw = raw[1+n:]
	}
	return out
}

// wantAttempt is the Attempt of a delivery with counter count of an entry
// whose attempts field says attempts (0 for none): their sum, capped at
// the largest 32-bit int.
func wantAttempt(count, attempts int64) int64 {
	return min(count+min(attempts, math.MaxInt32), math.MaxInt32)
}

// FuzzDecodeMessage checks decodeMessage on entries with any fields:
// the message takes the last value of each field, an undecodable headers
// field is kept whole, Attempt is the delivery counter plus the last
// positive attempts field (capped) and never less than the counter, and publishing
// the message again gives an entry that decodes to the same message.
func FuzzDecodeMessage(f *testing.F) {
	enq := strconv.FormatInt(time.Date(2025, 3, 14, 9, 26, 53, 123456789, time.UTC).UnixNano(), 10)
	hdr := encodeHeaders(map[string]string{"a": "1", "b": ""})
	f.Add("1741944413123-0", uint16(0), joinFields("id", "order-1", "key", "customer-7", "body", `{"total":42}`, "headers", "", "enqueued_at", enq))
	f.Add("1741944413123-1", uint16(1), joinFields("id", "m", "key", "k", "body", "\x00\x01\xff", "headers", hdr, "enqueued_at", enq, "attempts", "3"))
	f.Add("1-0", uint16(0), joinFields("id", "m", "headers", "\x05ab"))
	f.Add("1741944413123-0", uint16(4), joinFields("temperature", "21.5", "sensor", "s-9"))
	f.Add("1741944413123-0", uint16(0), joinFields("id", "", "id", "second", "attempts", "-2", "attempts", "x", "enqueued_at", "soon"))
	f.Add("not-an-id", uint16(0), joinFields("id"))
	f.Add("", uint16(0), "")
	f.Add("18446744073709551615-0", uint16(65535), joinFields("attempts", "0", "body", ""))
	f.Fuzz(func(t *testing.T, entryID string, counter uint16, raw string) {
		e := &rawEntry{id: entryID, count: int64(counter) + 1, fields: splitFields(raw)}
		m := decodeMessage(e)

		last := map[string]string{}
		attempts := int64(0)
		for i := 0; i+1 < len(e.fields); i += 2 {
			name, value := e.fields[i].(string), e.fields[i+1].(string)
			last[name] = value
			if n, err := strconv.ParseInt(value, 10, 64); name == fieldAttempts && err == nil && n > 0 {
				attempts = n
			}
		}

		wantID := last[fieldID]
		if wantID == "" {
			wantID = entryID
		}
		require.Equal(t, wantID, m.ID)
		require.Equal(t, last[fieldKey], m.Key)
		if body, ok := last[fieldBody]; ok {
			require.NotNil(t, m.Body)
			require.Equal(t, body, string(m.Body))
		} else {
			require.Nil(t, m.Body)
		}
		if v, ok := last[fieldHeaders]; ok {
			want, err := decodeHeaders(v)
			if err != nil {
				want = map[string]string{fieldHeaders: v}
			}
			require.Equal(t, want, m.Headers)
		} else {
			require.Nil(t, m.Headers)
		}
		require.GreaterOrEqual(t, int64(m.Attempt), e.count, "Attempt below the delivery counter")
		require.Equal(t, wantAttempt(e.count, attempts), int64(m.Attempt))

		// Publish the message again, as a Nack or a DLQ replay would, and
		// read it back with a fresh delivery counter.
		args := appendPublishArgs(nil, &m)
		for i, a := range args {
			if b, ok := a.([]byte); ok {
				args[i] = string(b) // Redis returns strings
			}
		}
		again := decodeMessage(&rawEntry{id: entryID, count: 1, fields: args})
		require.Equal(t, m.ID, again.ID)
		require.Equal(t, m.Key, again.Key)
		require.True(t, bytes.Equal(m.Body, again.Body))
		if len(m.Headers) == 0 {
			require.Empty(t, again.Headers)
		} else {
			require.Equal(t, m.Headers, again.Headers)
		}
		require.Equal(t, 1, again.Attempt)
		// enqueued_at holds Unix nanoseconds, which reach years 1678 to
		// 2262 only; an entry ID can name a later millisecond.
		if !m.EnqueuedAt.IsZero() && m.EnqueuedAt.Equal(time.Unix(0, m.EnqueuedAt.UnixNano())) {
			require.True(t, m.EnqueuedAt.Equal(again.EnqueuedAt), "%s != %s", m.EnqueuedAt, again.EnqueuedAt)
		}
	})
}

// FuzzMessageRoundTrip checks that a message published by this package is
// delivered with the fields it was published with, and Attempt the delivery
// counter plus a positive attempts field, never less than the counter (an
// attempts field may come from any producer).
func FuzzMessageRoundTrip(f *testing.F) {
	enq := time.Date(2025, 3, 14, 9, 26, 53, 123456789, time.UTC).UnixNano()
	f.Add("order-1", "customer-7", []byte(`{"total":42}`), "content-type", "application/json", enq, uint16(0), int64(0))
	f.Add("later", "k", []byte{0, 1, 2}, "h", "v", enq, uint16(1), int64(2))
	f.Add("m", "", []byte{}, "", "", int64(0), uint16(0), int64(-1))
	f.Add("", "k", []byte(nil), "bin\x00key", "\x00\xff", int64(-1), uint16(65535), int64(1<<31))
	f.Add("m", "", []byte("x"), "", "", enq, uint16(0), int64(math.MaxInt64-100)) // near the largest attempts field
	f.Fuzz(func(t *testing.T, id, key string, body []byte, hk, hv string, enqNs int64, counter uint16, prior int64) {
		m := consumer.Message{ID: id, Key: key, Body: body, EnqueuedAt: time.Unix(0, enqNs)}
		if hk != "" || hv != "" {
			m.Headers = map[string]string{hk: hv}
		}
		args := appendPublishArgs(nil, &m)
		if prior != 0 {
			args = append(args, fieldAttempts, strconv.FormatInt(prior, 10))
		}
		for i, a := range args {
			if b, ok := a.([]byte); ok {
				args[i] = string(b)
			}
		}
		const entryID = "1741944413123-0"
		count := int64(counter) + 1
		got := decodeMessage(&rawEntry{id: entryID, count: count, fields: args})

		if id == "" {
			require.Equal(t, entryID, got.ID)
		} else {
			require.Equal(t, id, got.ID)
		}
		require.Equal(t, key, got.Key)
		require.True(t, bytes.Equal(body, got.Body), "%q != %q", body, got.Body)
		require.Equal(t, m.Headers, got.Headers)
		require.True(t, m.EnqueuedAt.Equal(got.EnqueuedAt), "%s != %s", m.EnqueuedAt, got.EnqueuedAt)
		require.GreaterOrEqual(t, int64(got.Attempt), count, "Attempt below the delivery counter")
		require.Equal(t, wantAttempt(count, max(prior, 0)), int64(got.Attempt))
	})
}
