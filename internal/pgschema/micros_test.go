package pgschema_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/internal/pgschema"
)

func TestMicros(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]int64{
		0:                           0,
		time.Nanosecond:             1,
		time.Microsecond:            1,
		time.Microsecond + 1:        2,
		600 * time.Millisecond:      600_000,
		30*time.Second + 999:        30_000_001,
		time.Hour:                   3_600_000_000,
		time.Hour + time.Nanosecond: 3_600_000_001,
		-time.Nanosecond:            0,
		-time.Microsecond:           -1,
		-time.Microsecond - 500:     -1,
	} {
		require.Equal(t, want, pgschema.Micros(d), "Micros(%s)", d)
	}
}
