// Package units converts durations to the whole units that stores keep
// them in.
package units

import "time"

// Ceil converts d to whole units of unit, rounding a positive remainder
// up, so that no positive duration becomes zero and no lease, hold or
// delay ends earlier than asked. A negative d is truncated towards zero.
// unit must be positive.
func Ceil(d, unit time.Duration) int64 {
	n := int64(d / unit)
	if d%unit > 0 {
		n++
	}
	return n
}
