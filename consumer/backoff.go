package consumer

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Jitter selects how a [Backoff] randomises its delays.
type Jitter int

const (
	// FullJitter draws the delay uniformly from [0, d], where d is the
	// capped exponential delay. It spreads a burst of failures the most and
	// is the default.
	FullJitter Jitter = iota
	// EqualJitter draws the delay uniformly from [d/2, d].
	EqualJitter
	// NoJitter uses d itself. Only for tests and demonstrations: failures
	// that happened together are retried together.
	NoJitter
)

// Backoff computes redelivery delays that grow exponentially with a
// message's Attempt: attempt 1 waits about Initial, attempt 2 about
// Initial*Multiplier, and so on up to Max, randomised by Jitter.
//
// The delay depends only on the attempt number, never on how long the
// message has been failing: deciding when to give up is the job of a
// dead-letter middleware, not of the backoff, so there is no elapsed-time
// limit that could silently stop redeliveries.
type Backoff struct {
	Initial    time.Duration // default 1s
	Max        time.Duration // default 5m, or Initial when that is larger
	Multiplier float64       // default 2
	Jitter     Jitter        // default FullJitter
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial == 0 {
		b.Initial = time.Second
	}
	if b.Max == 0 {
		b.Max = max(5*time.Minute, b.Initial)
	}
	if b.Multiplier == 0 {
		b.Multiplier = 2
	}
	return b
}

func (b Backoff) validate() error {
	switch {
	case b.Initial < 0:
		return fmt.Errorf("consumer: negative backoff Initial %s", b.Initial)
	case b.Max < 0:
		return fmt.Errorf("consumer: negative backoff Max %s", b.Max)
	case b.Max > 0 && b.Initial > b.Max:
		return fmt.Errorf("consumer: backoff Initial %s exceeds Max %s", b.Initial, b.Max)
	case b.Multiplier != 0 && b.Multiplier < 1:
		return fmt.Errorf("consumer: backoff Multiplier %g is below 1", b.Multiplier)
	case b.Jitter < FullJitter || b.Jitter > NoJitter:
		return fmt.Errorf("consumer: unknown Jitter %d", b.Jitter)
	}
	return nil
}

// Delay returns the delay before redelivering a message whose attempt
// number attempt just failed. Zero fields take their defaults.
func (b Backoff) Delay(attempt int) time.Duration {
	b = b.withDefaults()
	d := b.ceiling(attempt)
	switch b.Jitter {
	case FullJitter:
		return uniform(0, d)
	case EqualJitter:
		return uniform(d/2, d)
	default:
		return d
	}
}

// ceiling is the un-jittered delay for attempt: backoff/v4's exponential
// schedule without randomisation, stepped attempt-1 times. MaxElapsedTime
// is 0 so the schedule never returns backoff.Stop: a queue redelivers until
// something decides otherwise, and v4's 15-minute default would end it.
func (b Backoff) ceiling(attempt int) time.Duration {
	eb := backoff.ExponentialBackOff{
		InitialInterval:     b.Initial,
		RandomizationFactor: 0,
		Multiplier:          b.Multiplier,
		MaxInterval:         b.Max,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	eb.Reset()
	d := eb.NextBackOff()
	// Bounded so that a multiplier barely above 1 and a huge attempt
	// number cannot make this loop long.
	for i := 1; i < min(attempt, 10_000) && d < b.Max && b.Multiplier > 1; i++ {
		d = eb.NextBackOff()
	}
	return d
}

// uniform draws from [lo, hi], 0 <= lo <= hi. The span is counted in
// uint64 so that hi-lo+1 cannot overflow when hi is the largest duration.
func uniform(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rand.Uint64N(uint64(hi-lo)+1))
}
