package dlqpg

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/dlq"
)

// FuzzDecodeCursor checks that any cursor either fails or gives a
// position in whole microseconds whose cursor decodes to the same
// position and is a fixed point of decoding and encoding again.
func FuzzDecodeCursor(f *testing.F) {
	for _, e := range []dlq.Entry{
		{ID: "abc", LastFailedAt: time.Date(2025, 1, 2, 3, 4, 5, 678901000, time.UTC)},
		{ID: "", LastFailedAt: time.Unix(0, 0)},
		{ID: "ünï\x00\n{x}", LastFailedAt: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{ID: dlq.EntryID("orders", "m1"), LastFailedAt: time.Date(2025, time.March, 14, 9, 26, 53, 0, time.UTC)},
		{ID: strings.Repeat("x", 500), LastFailedAt: time.UnixMicro(-1)},
	} {
		f.Add(encodeCursor(e))
	}
	for _, c := range []string{
		"", "A", "AQAAAAAAAAA", "AgAAAAAAAAAA", "AQAAAAAAAAAA", "AQAAAAAAAAAA=",
		"AQAAAAAAAAAA\n", "AQ\rAAAAAAAAAA", "Af__________", "Af//////////",
		"not a cursor", "\xff\xfe", strings.Repeat("A", 4096),
	} {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, c string) {
		pos, err := decodeCursor(c)
		if err != nil {
			require.Zero(t, pos)
			return
		}
		require.LessOrEqual(t, len(pos.id), len(c))
		require.True(t, pos.at.Equal(pos.at.Truncate(time.Microsecond)), "%s is not whole microseconds", pos.at)

		c2 := encodeCursor(dlq.Entry{ID: pos.id, LastFailedAt: pos.at})
		pos2, err := decodeCursor(c2)
		require.NoError(t, err)
		require.Equal(t, pos.id, pos2.id)
		require.True(t, pos.at.Equal(pos2.at), "%s != %s", pos.at, pos2.at)
		require.Equal(t, c2, encodeCursor(dlq.Entry{ID: pos2.id, LastFailedAt: pos2.at}))
	})
}

// FuzzCursorRoundTrip checks that the cursor after an entry decodes to its
// ID and its LastFailedAt rounded down to the microsecond, the column's
// resolution.
func FuzzCursorRoundTrip(f *testing.F) {
	f.Add(time.Date(2025, 1, 2, 3, 4, 5, 678901000, time.UTC).UnixMicro(), uint16(0), "abc")
	f.Add(int64(0), uint16(0), "")
	f.Add(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro(), uint16(0), "ünï\x00\n{x}")
	f.Add(int64(-1), uint16(999), "\xff")
	f.Add(int64(-1<<63), uint16(1), dlq.EntryID("orders", "m1"))
	f.Add(int64(1<<63-1), uint16(999), strings.Repeat("id", 300))
	f.Fuzz(func(t *testing.T, us int64, ns uint16, id string) {
		for _, loc := range []*time.Location{time.UTC, time.FixedZone("UTC-3", -3*3600)} {
			e := dlq.Entry{ID: id, LastFailedAt: time.UnixMicro(us).Add(time.Duration(ns % 1000)).In(loc)}
			pos, err := decodeCursor(encodeCursor(e))
			require.NoError(t, err)
			require.Equal(t, id, pos.id)
			require.True(t, time.UnixMicro(us).Equal(pos.at), "%s != %s", time.UnixMicro(us), pos.at)
		}
	})
}
