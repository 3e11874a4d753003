package dlq

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzCursorRoundTrip checks that the cursor after an entry whose
// LastFailedAt has a Unix time in nanoseconds parses to the entry's
// position.
func FuzzCursorRoundTrip(f *testing.F) {
	f.Add(time.Date(2025, time.March, 14, 9, 26, 53, 123456789, time.UTC).UnixNano(), EntryID("orders", "m1"))
	f.Add(int64(0), "")
	f.Add(int64(-1), "ünï\x00\n{x}")
	f.Add(int64(-1<<63), "\xff")
	f.Add(int64(1<<63-1), strings.Repeat("id", 300))
	f.Fuzz(func(t *testing.T, ns int64, id string) {
		for _, loc := range []*time.Location{time.UTC, time.FixedZone("UTC+5:30", 5*3600+1800)} {
			e := Entry{ID: id, LastFailedAt: time.Unix(0, ns).In(loc)}
			pos, err := parseCursor(cursor(e))
			require.NoError(t, err)
			require.Equal(t, id, pos.ID)
			require.True(t, e.LastFailedAt.Equal(pos.LastFailedAt), "%s != %s", e.LastFailedAt, pos.LastFailedAt)
		}
	})
}
