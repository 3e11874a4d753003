package main

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzParseWhen checks parseWhen on arbitrary flag values: empty is no
// bound (the zero time), any other accepted value is a time other than
// zero, an RFC 3339 time is read as that time, and a duration ago is not
// after now and reads back the same when written as a Go duration.
func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{
		"", "2h", "90m", "7d", "0s", "0d", "65535d", "65536d", "-1d", "+1d", "1.5d", "d", "-5m", "-0s",
		"2562047h47m16.854775807s", "2562047h47m16.854775808s", "9223372036854775807ns",
		"2025-05-31T08:30:00Z", "2025-05-31T10:30:00+02:00", "2025-05-31T08:30:00.123456789Z",
		"2025-05-31", "yesterday", "0001-01-01T00:00:01Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999-23:59",
		"1h\x00", "\xff", "2025-05-31t08:30:00z",
	} {
		f.Add(s, int64(1748779200), int64(0))
	}
	f.Fuzz(func(t *testing.T, s string, sec, nsec int64) {
		// now as the command reads it: some time this century.
		now := time.Unix(1_600_000_000+sec%1_000_000_000, nsec%1_000_000_000)

		got, err := parseWhen(s, now)
		if err != nil {
			require.Zero(t, got)
			require.NotEmpty(t, s)
			return
		}
		if s == "" {
			require.True(t, got.IsZero())
			return
		}
		require.False(t, got.IsZero(), "%q reads as the zero time, which filters take for no bound", s)
		if abs, perr := time.Parse(time.RFC3339Nano, s); perr == nil {
			require.True(t, abs.Equal(got), "%q: got %s", s, got)
			back, err := parseWhen(got.Format(time.RFC3339Nano), now)
			require.NoError(t, err)
			require.True(t, back.Equal(got))
			return
		}
		require.False(t, got.After(now), "%q: %s is after now %s", s, got, now)
		ago := now.Sub(got)
		back, err := parseWhen(ago.String(), now)
		require.NoError(t, err, "%q: %s ago", s, ago)
		require.True(t, back.Equal(got), "%q: %s ago reads back as %s", s, ago, back)
		if days, ok := strings.CutSuffix(s, "d"); ok {
			require.Zero(t, ago%(24*time.Hour), "%q: %s ago", s, ago)
			require.NotEmpty(t, days)
		}
	})
}

// FuzzParseTarget checks parseTarget on arbitrary -to values: an accepted
// one is a known kind with a non-empty name and only that kind's options,
// it is the string parsed, and written out again it parses to the same
// target.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{
		"redis-stream:orders", "redis-stream:orders?prefix=idemq-test-ab%7Bc%7D:", "pgqueue:orders?table=replayed",
		"pgqueue:orders?table=no_such_queue&notify=true", "pgqueue:orders?notify=0", "pgqueue:orders?notify=",
		"", "orders", "kafka:orders", "redis-stream:", "redis-stream:?prefix=x", "pgqueue:orders?prefix=x",
		"redis-stream:a{b}", "pgqueue:orders?notify=maybe", "pgqueue:orders?table=a&table=b",
		"pgqueue:a:b?table=%zz", "pgqueue:q?table=a;b", "redis-stream:s?prefix=x?y", "redis-stream:s?",
		"redis-stream:s?&&", "redis-stream:s?prefix", "REDIS-STREAM:s", "pgqueue:\xff\x00?table=\xfe",
		"pgqueue:q#frag?notify=TRUE",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseTarget(s)
		if err != nil {
			require.Zero(t, got)
			return
		}
		require.Equal(t, s, got.raw)
		require.Equal(t, s, got.String())
		require.NotEmpty(t, got.name, "%q", s)
		require.NotContains(t, got.name, "?")
		require.True(t, strings.HasPrefix(s, got.scheme+":"+got.name), "%q gives %+v", s, got)
		if rest := s[len(got.scheme+":"+got.name):]; rest != "" {
			require.Equal(t, byte('?'), rest[0])
		}
		q := url.Values{}
		switch got.scheme {
		case schemeRedisStream:
			require.Empty(t, got.table)
			require.False(t, got.notify)
			if got.prefix != "" {
				q.Set("prefix", got.prefix)
			}
		case schemePgQueue:
			require.Empty(t, got.prefix)
			if got.table != "" {
				q.Set("table", got.table)
			}
			if got.notify {
				q.Set("notify", "true")
			}
		default:
			t.Fatalf("%q: unknown kind %q accepted", s, got.scheme)
		}

		written := got.scheme + ":" + got.name
		if len(q) > 0 {
			written += "?" + q.Encode()
		}
		again, err := parseTarget(written)
		require.NoError(t, err, "%q written as %q", s, written)
		again.raw, got.raw = "", ""
		require.Equal(t, got, again, "%q written as %q", s, written)
	})
}
