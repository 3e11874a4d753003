package units

import (
	"testing"
	"time"
)

func TestCeil(t *testing.T) {
	for _, tc := range []struct {
		d, unit time.Duration
		want    int64
	}{
		{0, time.Millisecond, 0},
		{time.Nanosecond, time.Millisecond, 1},
		{time.Millisecond, time.Millisecond, 1},
		{time.Millisecond + time.Nanosecond, time.Millisecond, 2},
		{1500 * time.Microsecond, time.Millisecond, 2},
		{time.Hour, time.Millisecond, 3_600_000},
		{999 * time.Nanosecond, time.Microsecond, 1},
		{-time.Nanosecond, time.Microsecond, 0},
		{-1500 * time.Nanosecond, time.Microsecond, -1},
	} {
		if got := Ceil(tc.d, tc.unit); got != tc.want {
			t.Errorf("Ceil(%v, %v) = %d, want %d", tc.d, tc.unit, got, tc.want)
		}
	}
}
