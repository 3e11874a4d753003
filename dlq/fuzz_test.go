package dlq

import (
	"strings"
	"testing"
	"time"

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

// FuzzParseCursor checks that any cursor either fails or gives a position
// whose cursor parses to the same position and is a fixed point: parsing
// it and writing it again gives the same cursor.
func FuzzParseCursor(f *testing.F) {
	t0 := time.Date(2025, time.March, 14, 9, 26, 53, 123456789, time.UTC)
	for _, e := range []Entry{
		{ID: EntryID("orders", "m1"), LastFailedAt: t0},
		{ID: "abc", LastFailedAt: time.Date(2025, 1, 2, 3, 4, 5, 678901000, time.UTC)},
		{ID: "", LastFailedAt: time.Unix(0, 0)},
		{ID: "ünï\x00\n{x}", LastFailedAt: time.Unix(0, -1)},
		{ID: strings.Repeat("x", 500), LastFailedAt: t0},
	} {
		f.Add(cursor(e))
	}
	for _, c := range []string{
		"", "A", "AAAAAAAAAAA", "AAAAAAAAAAA=", "AAAAAAAAAAB", "AAAAAAAAAAAA",
		"AAAAAAAAAAA\n", "AAAA\rAAAAAAA", "////////////", "+++++++++++",
		"__________8", "not a cursor", "\xff\xfe", strings.Repeat("A", 4096),
	} {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, c string) {
		pos, err := parseCursor(c)
		if err != nil {
			require.Zero(t, pos)
			return
		}
		require.LessOrEqual(t, len(pos.ID), len(c))
		c2 := cursor(pos)
		require.True(t, urlSafe(c2), "cursor %q", c2)
		pos2, err := parseCursor(c2)
		require.NoError(t, err)
		require.Equal(t, pos.ID, pos2.ID)
		require.True(t, pos.LastFailedAt.Equal(pos2.LastFailedAt), "%s != %s", pos.LastFailedAt, pos2.LastFailedAt)
		require.Equal(t, c2, cursor(pos2))
	})
}

// FuzzCursorRoundTrip checks that the cursor after an entry whose
// LastFailedAt has a Unix time in nanoseconds parses to the entry's
// position, and that it is URL-safe.
func FuzzCursorRoundTrip(f *testing.F) {
	f.Add(time.Date(2025, time.March, 14, 9, 26, 53, 123456789, time.UTC).UnixNano(), EntryID("orders", "m1"))
	f.Add(int64(0), "")
	f.Add(int64(-1), "ünï\x00\n{x}")
	f.Add(int64(-1<<63), "\xff")
	f.Add(int64(1<<63-1), strings.Repeat("id", 300))
	f.Fuzz(func(t *testing.T, ns int64, id string) {
		for _, loc := range []*time.Location{time.UTC, time.FixedZone("UTC+5:30", 5*3600+1800)} {
			e := Entry{ID: id, LastFailedAt: time.Unix(0, ns).In(loc)}
			c := cursor(e)
			require.True(t, urlSafe(c), "cursor %q", c)
			pos, err := parseCursor(c)
			require.NoError(t, err)
			require.Equal(t, id, pos.ID)
			require.True(t, e.LastFailedAt.Equal(pos.LastFailedAt), "%s != %s", e.LastFailedAt, pos.LastFailedAt)
		}
	})
}
