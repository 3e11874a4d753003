package pgschema

import (
	"time"

	"github.com/idemq/idemq/internal/units"
)

// Micros converts d to whole microseconds, PostgreSQL's resolution,
// rounding a positive remainder up so that no positive duration becomes
// zero and no lease, hold or delay ends earlier than asked. Negative
// durations are truncated towards zero.
func Micros(d time.Duration) int64 { return units.Ceil(d, time.Microsecond) }
