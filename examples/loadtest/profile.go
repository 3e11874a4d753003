package main

import (
	"fmt"
	"time"
)

// The run's shape, in fractions of -duration: the arrival profile of a
// typical 100-second burst and the windows in which faults are injected,
// scaled down so that a 20-second run goes through all of it. The verdict
// compares the windows named here.
const (
	rampUpAt   = 0.20 // baseline until here, then the rate ramps up
	burstAt    = 0.35 // full burst from here
	burstEnd   = 0.55 // the rate ramps down from here
	rampDownAt = 0.65 // back to baseline from here to the end

	faultAt  = 0.30 // slow and dead faults hold over [faultAt, faultEnd)
	faultEnd = 0.60
)

// errorBursts are the windows of -fault errors, as [from, to) fractions.
var errorBursts = [][2]float64{{0.30, 0.35}, {0.50, 0.55}, {0.70, 0.75}}

// profile is the open-model arrival rate: how many messages per second are
// published at each point of the run, whatever the consumer does.
type profile struct {
	base  float64 // messages per second outside the burst
	burst float64 // the burst's rate as a multiple of base
}

// rate returns the arrival rate at fraction f of the run.
func (p profile) rate(f float64) float64 {
	peak := p.base * p.burst
	switch {
	case f < rampUpAt:
		return p.base
	case f < burstAt:
		return p.base + (peak-p.base)*(f-rampUpAt)/(burstAt-rampUpAt)
	case f < burstEnd:
		return peak
	case f < rampDownAt:
		return peak - (peak-p.base)*(f-burstEnd)/(rampDownAt-burstEnd)
	default:
		return p.base
	}
}

// fault names the failure injected into the dependency.
type fault string

const (
	faultNone   fault = "none"
	faultSlow   fault = "slow"   // each call 200-500ms slower over the fault window
	faultErrors fault = "errors" // half the calls fail during short bursts
	faultDead   fault = "dead"   // the partner refuses every call over the fault window
)

func parseFault(s string) (fault, error) {
	switch f := fault(s); f {
	case faultNone, faultSlow, faultErrors, faultDead:
		return f, nil
	}
	return "", fmt.Errorf("unknown -fault %q: want none, slow, errors or dead", s)
}

// instant returns fraction f of d, rounded for printing.
func instant(d time.Duration, f float64) time.Duration {
	return time.Duration(f * float64(d)).Round(10 * time.Millisecond)
}

// clock turns instants into fractions of the run.
type clock struct {
	start    time.Time
	duration time.Duration
}

func (c clock) frac(t time.Time) float64 {
	return float64(t.Sub(c.start)) / float64(c.duration)
}

// conditions are the dependency's faults at one instant.
type conditions struct {
	slow      bool    // add 200-500ms to each call
	errorRate float64 // fraction of calls that fail
	dead      bool    // refuse every call
}

func (f fault) at(frac float64) conditions {
	inFault := frac >= faultAt && frac < faultEnd
	switch f {
	case faultSlow:
		return conditions{slow: inFault}
	case faultDead:
		return conditions{dead: inFault}
	case faultErrors:
		for _, b := range errorBursts {
			if frac >= b[0] && frac < b[1] {
				return conditions{errorRate: 0.5}
			}
		}
	}
	return conditions{}
}

// window describes the fault's timing for the report's header.
func (f fault) window(d time.Duration) string {
	at := func(f float64) time.Duration { return instant(d, f) }
	switch f {
	case faultSlow:
		return fmt.Sprintf("dependency 200-500ms slower from %s to %s", at(faultAt), at(faultEnd))
	case faultDead:
		return fmt.Sprintf("partner refuses connections from %s to %s", at(faultAt), at(faultEnd))
	case faultErrors:
		s := "50% of calls fail during"
		for i, b := range errorBursts {
			if i > 0 {
				s += ","
			}
			s += fmt.Sprintf(" %s-%s", at(b[0]), at(b[1]))
		}
		return s
	}
	return "no fault"
}
