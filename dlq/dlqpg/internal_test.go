package dlqpg

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/dlq"
)

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	for _, e := range []dlq.Entry{
		{ID: "abc", LastFailedAt: time.Date(2025, 1, 2, 3, 4, 5, 678901000, time.UTC)},
		{ID: "", LastFailedAt: time.Unix(0, 0)},
		{ID: "ünï\x00\n{x}", LastFailedAt: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		p, err := decodeCursor(encodeCursor(e))
		require.NoError(t, err)
		require.Equal(t, e.ID, p.id)
		require.True(t, p.at.Equal(e.LastFailedAt), "%s != %s", p.at, e.LastFailedAt)
	}
}
