package dlqpg

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/dlq"
)

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
