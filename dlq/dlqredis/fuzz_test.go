package dlqredis

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
)

// FuzzCursorRoundTrip checks that the cursor after an entry decodes to the
// entry's place in the index: its ID and the score Put gives it, its
// LastFailedAt in whole microseconds.
func FuzzCursorRoundTrip(f *testing.F) {
	t0 := time.Date(2025, time.March, 14, 9, 26, 53, 0, time.UTC)
	f.Add(micro(t0), uint16(0), dlq.EntryID("orders", "m1"))
	f.Add(micro(t0), uint16(999), "e1")
	f.Add(int64(0), uint16(0), "")
	f.Add(int64(-1), uint16(1), "ünï\x00\n{x}")
	f.Add(int64(-1<<63), uint16(0), "\xff")
	f.Add(int64(1<<63-1), uint16(999), strings.Repeat("id", 300))
	f.Fuzz(func(t *testing.T, us int64, ns uint16, id string) {
		e := dlq.Entry{ID: id, LastFailedAt: fromMicro(us).Add(time.Duration(ns % 1000))}
		pos, err := decodeCursor(encodeCursor(e))
		require.NoError(t, err)
		want := position{set: true, score: strconv.FormatInt(micro(e.LastFailedAt), 10), id: id}
		require.Equal(t, want, pos)
		require.Equal(t, strconv.FormatInt(us, 10), pos.score)
	})
}

// joinStrings is the encoder that decodeStrings reverses.
func joinStrings(ss ...string) string {
	var b []byte
	for _, s := range ss {
		b = appendString(b, s)
	}
	return string(b)
}

// FuzzDecodeStrings checks that a string list either fails or holds no
// more than its input, and encodes, no longer than the input, to a list
// that decodes the same.
func FuzzDecodeStrings(f *testing.F) {
	for _, v := range []string{
		joinStrings("wrap: inner: root cause", "inner: root cause", "root cause"),
		joinStrings("content-type", "application/json", "x-empty", ""),
		joinStrings(""),
		joinStrings(strings.Repeat("x", 300)),
		"", "\x00", "\x05ab", "\xff", "\x80\x00", "\x81\x00x",
		"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
		"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
		strings.Repeat("\x00", 1000),
	} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		ss, err := decodeStrings(v)
		if err != nil {
			require.Nil(t, ss)
			return
		}
		require.NotNil(t, ss, "presence tells an empty list from nil")
		size := 0
		for _, s := range ss {
			size += 1 + len(s)
		}
		require.LessOrEqual(t, size, len(v))

		enc := joinStrings(ss...)
		require.LessOrEqual(t, len(enc), len(v))
		again, err := decodeStrings(enc)
		require.NoError(t, err)
		require.Equal(t, ss, again)
	})
}

// FuzzStringsRoundTrip checks that any list of strings decodes from its
// encoding unchanged.
func FuzzStringsRoundTrip(f *testing.F) {
	f.Add(uint8(3), "wrap: root cause", "root cause", "")
	f.Add(uint8(0), "", "", "")
	f.Add(uint8(2), "\x00\xff", strings.Repeat("é", 200), "x")
	f.Fuzz(func(t *testing.T, n uint8, a, b, c string) {
		ss := []string{a, b, c}[:n%4]
		got, err := decodeStrings(joinStrings(ss...))
		require.NoError(t, err)
		require.Equal(t, ss, got)
	})
}

// storedFields returns the hash Put writes for e: its fields, with ff and
// lf as the Put script sets them.
func storedFields(e dlq.Entry) map[string]string {
	h := map[string]string{fLast: strconv.FormatInt(micro(e.LastFailedAt), 10)}
	if !e.FirstFailedAt.IsZero() {
		h[fFirst] = strconv.FormatInt(micro(e.FirstFailedAt), 10)
	}
	args := encodeFields(e)
	for i := 0; i < len(args); i += 2 {
		switch v := args[i+1].(type) {
		case string:
			h[args[i].(string)] = v
		case []byte:
			h[args[i].(string)] = string(v)
		default:
			panic("field of another type")
		}
	}
	return h
}

// requireSameEntry compares entries, their times as instants.
func requireSameEntry(t *testing.T, want, got dlq.Entry) {
	t.Helper()
	for _, ts := range [][2]*time.Time{
		{&want.Message.EnqueuedAt, &got.Message.EnqueuedAt},
		{&want.FirstFailedAt, &got.FirstFailedAt},
		{&want.LastFailedAt, &got.LastFailedAt},
	} {
		require.True(t, ts[0].Equal(*ts[1]), "%s != %s", *ts[0], *ts[1])
		*ts[0], *ts[1] = time.Time{}, time.Time{}
	}
	require.Equal(t, want, got)
}

// Bits of FuzzDecodeEntry's present argument: which optional fields the
// hash holds.
const (
	hasVersion = 1 << iota
	hasBody
	hasHeaders
	hasEnqueued
	hasChain
	hasFirst
	hasLast
	hasAttempt
)

// FuzzDecodeEntry checks decodeEntry on any hash: it either fails, naming
// the entry, or gives the entry with the ID it was asked for, its plain
// fields as stored, and a hash that decodes to the same entry when Put
// again.
func FuzzDecodeEntry(f *testing.F) {
	all := uint8(0xff)
	hdr := joinStrings("content-type", "application/json", "x-empty", "")
	chn := joinStrings("handle: charge: card declined", "charge: card declined", "card declined")
	f.Add(all, "e1", "1", "msg-e1", "k", "body of e1", hdr, "3", "1741944413.123456789", "orders", "permanent", "failed", chn, "3", "1741944400000000", "1741944413000000")
	f.Add(all&^(hasBody|hasHeaders|hasEnqueued|hasChain|hasFirst), "e2", "1", "", "", "", "", "0", "", "", "", "", "", "0", "", "0")
	f.Add(all, "e3", "1", "m", "", "", "", "-1", "-1.500000000", "s", "attempts_exhausted", "", "", "+5", "-1", "-62135596800000000")
	f.Add(all, "e4", "1", "m", "", "\x00\xff", "\x01a", "1", "1.+00000001", "", "", "", "\x05ab", "1", "x", "1")
	f.Add(all, "e5", "2", "m", "", "", "", "1", "9223372036854775807.999999999", "", "", "", "", "1", "9223372036854775807", "-9223372036854775808")
	f.Add(all&^hasVersion, "", "", "", "", "", "", "", "", "", "", "", "", "", "", "")
	f.Add(all, "e6", "1", "m", "", "", "", "99999999999999999999", "1.1", "", "", "", "", "1", "1", "1")
	f.Fuzz(func(t *testing.T, present uint8, id, v, mid, mkey, body, hdr, att, enq, src, rsn, errText, chn, n, ff, lf string) {
		h := map[string]string{fMsgID: mid, fMsgKey: mkey, fSource: src, fReason: rsn, fError: errText, fAttempts: n}
		for bit, kv := range map[uint8][2]string{
			hasVersion: {fVersion, v}, hasBody: {fBody, body}, hasHeaders: {fHeaders, hdr},
			hasEnqueued: {fEnqueued, enq}, hasChain: {fChain, chn}, hasFirst: {fFirst, ff},
			hasLast: {fLast, lf}, hasAttempt: {fAttempt, att},
		} {
			if present&bit != 0 {
				h[kv[0]] = kv[1]
			}
		}
		e, err := decodeEntry(id, h)
		if err != nil {
			require.ErrorContains(t, err, "dlqredis: entry "+strconv.Quote(id))
			require.Zero(t, e)
			return
		}
		require.Equal(t, id, e.ID)
		require.Equal(t, mid, e.Message.ID)
		require.Equal(t, mkey, e.Message.Key)
		require.Equal(t, src, e.Source)
		require.Equal(t, rsn, string(e.Reason))
		require.Equal(t, errText, e.Error)
		if present&hasBody != 0 {
			require.NotNil(t, e.Message.Body)
			require.Equal(t, body, string(e.Message.Body))
		} else {
			require.Nil(t, e.Message.Body)
		}
		require.Equal(t, present&hasHeaders != 0, e.Message.Headers != nil)
		require.Equal(t, present&hasChain != 0, e.ErrorChain != nil)

		again, err := decodeEntry(id, storedFields(e))
		require.NoError(t, err)
		requireSameEntry(t, e, again)
	})
}

// FuzzEntryRoundTrip checks that an entry Put stores decodes unchanged,
// but for its failure times, kept to the microsecond.
func FuzzEntryRoundTrip(f *testing.F) {
	enq := time.Date(2025, time.March, 14, 9, 20, 0, 123456789, time.UTC)
	t0 := time.Date(2025, time.March, 14, 9, 26, 53, 0, time.UTC)
	f.Add(uint8(0xff), "e1", "msg-e1", "k", []byte("body of e1"), "content-type", "application/json", 1, enq.Unix(), uint32(enq.Nanosecond()),
		"orders", "permanent", "failed", "wrapped: failed", "failed", 3, micro(t0.Add(-time.Minute)), micro(t0), uint16(789))
	f.Add(uint8(0), "e2", "", "", []byte(nil), "", "", 0, int64(0), uint32(0), "", "", "", "", "", 0, int64(0), int64(0), uint16(0))
	f.Add(uint8(0xff), "\x00\xff", "ünï", "\n", []byte{}, "", "", -1, int64(-1), uint32(999999999), "s", "r", "e", "", "", -7,
		int64(-1<<63), int64(1<<63-1), uint16(999))
	f.Add(uint8(0xff), "e3", "m", "", []byte{0}, "h", "", 1<<62, int64(-62135596800), uint32(0), "", "", "", "a", "", 1, int64(0), int64(0), uint16(1))
	f.Fuzz(func(t *testing.T, present uint8, id, mid, mkey string, body []byte, hk, hv string, attempt int, enqSec int64, enqNs uint32,
		src, rsn, errText, chain1, chain2 string, attempts int, ffUs, lfUs int64, subMicro uint16) {
		e := dlq.Entry{
			ID: id,
			Message: consumer.Message{
				ID: mid, Key: mkey, Body: body, Attempt: attempt,
				EnqueuedAt: time.Unix(enqSec, int64(enqNs%1e9)).UTC(),
			},
			Source: src, Reason: dlq.Reason(rsn), Error: errText,
			Attempts:      attempts,
			FirstFailedAt: fromMicro(ffUs),
			LastFailedAt:  fromMicro(lfUs),
		}
		if present&hasBody == 0 {
			e.Message.Body = nil
		}
		if present&hasHeaders != 0 {
			e.Message.Headers = map[string]string{}
			if hk != "" || hv != "" {
				e.Message.Headers[hk] = hv
			}
		}
		if present&hasChain != 0 {
			e.ErrorChain = []string{}
			if chain1 != "" || chain2 != "" {
				e.ErrorChain = append(e.ErrorChain, chain1, chain2)
			}
		}
		if present&hasFirst == 0 {
			e.FirstFailedAt = time.Time{}
		}
		if present&hasEnqueued == 0 {
			e.Message.EnqueuedAt = time.Time{}
		}
		want := e
		// Put keeps failure times to the microsecond, rounded down.
		e.FirstFailedAt = e.FirstFailedAt.Add(time.Duration(subMicro % 1000))
		e.LastFailedAt = e.LastFailedAt.Add(time.Duration(subMicro % 1000))
		if want.FirstFailedAt.IsZero() {
			e.FirstFailedAt = time.Time{}
		}

		got, err := decodeEntry(id, storedFields(e))
		require.NoError(t, err)
		requireSameEntry(t, want, got)
	})
}
