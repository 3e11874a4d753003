package keyset

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// urlSafe reports whether s has only the characters of unpadded URL-safe
// base64, so that it can go in a URL query without escaping.
func urlSafe(s string) bool {
	for _, c := range []byte(s) {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func TestDecodeRejects(t *testing.T) {
	for _, c := range []string{
		"",               // nothing
		"AQAAAAAAAAA",    // 8 bytes: a version and 7 of the time
		"AgAAAAAAAAAA",   // version 2
		"AAAAAAAAAAAA",   // version 0
		"AQAAAAAAAAAA=",  // padded
		"AQAAAAAAAAAA\n", // a newline
		"Af//////////",   // standard, not URL-safe, base64
		"not a cursor",   // a space
		"\xff\xfe",       // not base64 at all
		"AQAAAAAAAAAAAB", // stray low bits in the last character
	} {
		_, _, ok := Decode(c)
		require.False(t, ok, "%q", c)
	}
	at, id, ok := Decode("AQAAAAAAAAAA")
	require.True(t, ok)
	require.Zero(t, at)
	require.Empty(t, id)
}

// FuzzDecode checks that any string either fails to decode or is the
// cursor of the position it decodes to.
func FuzzDecode(f *testing.F) {
	for _, p := range []struct {
		t  int64
		id string
	}{
		{1741944413000000, "orders\x00m1"},
		{0, ""},
		{-1, "ünï\x00\n{x}"},
		{-1 << 63, strings.Repeat("x", 500)},
		{1<<63 - 1, "\xff"},
	} {
		f.Add(Encode(p.t, p.id))
	}
	for _, c := range []string{
		"", "A", "AQAAAAAAAAA", "AgAAAAAAAAAA", "AQAAAAAAAAAA", "AQAAAAAAAAAA=",
		"AQAAAAAAAAAA\n", "AQ\rAAAAAAAAAA", "Af__________", "Af//////////",
		"AQAAAAAAAAAAB", "not a cursor", "\xff\xfe", strings.Repeat("A", 4096),
	} {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, c string) {
		at, id, ok := Decode(c)
		if !ok {
			require.Zero(t, at)
			require.Empty(t, id)
			return
		}
		require.Equal(t, c, Encode(at, id))
		require.True(t, urlSafe(c), "cursor %q", c)
	})
}

// FuzzRoundTrip checks that every position decodes from its cursor
// unchanged.
func FuzzRoundTrip(f *testing.F) {
	f.Add(int64(1741944413123456789), "orders\x00m1")
	f.Add(int64(0), "")
	f.Add(int64(-1), "ünï\x00\n{x}")
	f.Add(int64(-1<<63), "\xff")
	f.Add(int64(1<<63-1), strings.Repeat("id", 300))
	f.Fuzz(func(t *testing.T, at int64, id string) {
		c := Encode(at, id)
		require.True(t, urlSafe(c), "cursor %q", c)
		at2, id2, ok := Decode(c)
		require.True(t, ok)
		require.Equal(t, at, at2)
		require.Equal(t, id, id2)
	})
}
