package consumer_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

// pow2Ceiling is the un-jittered delay of a Backoff with Multiplier 2 and
// the given Initial and Max, computed independently of the package.
func pow2Ceiling(initial, max time.Duration, attempt int) time.Duration {
	d := initial
	for i := 1; i < attempt; i++ {
		if d >= max/2 {
			return max
		}
		d *= 2
	}
	return min(d, max)
}

func TestBackoffNoJitterSchedule(t *testing.T) {
	t.Parallel()
	b := consumer.Backoff{
		Initial:    100 * time.Millisecond,
		Multiplier: 2,
		Max:        time.Second,
		Jitter:     consumer.NoJitter,
	}
	want := []time.Duration{
		100 * time.Millisecond,
		200 * time.Millisecond,
		400 * time.Millisecond,
		800 * time.Millisecond,
		1000 * time.Millisecond,
		1000 * time.Millisecond,
	}
	got := make([]time.Duration, len(want))
	for i := range want {
		got[i] = b.Delay(i + 1)
	}
	require.Equal(t, want, got)
}

func TestBackoffJitterBounds(t *testing.T) {
	t.Parallel()
	const (
		initial = 10 * time.Millisecond
		max     = 3 * time.Second // not a power-of-two multiple of initial: the cap must clamp
	)
	for _, tc := range []struct {
		name   string
		jitter consumer.Jitter
		lower  func(ceiling time.Duration) time.Duration
	}{
		{"full", consumer.FullJitter, func(time.Duration) time.Duration { return 0 }},
		{"equal", consumer.EqualJitter, func(c time.Duration) time.Duration { return c / 2 }},
		{"none", consumer.NoJitter, func(c time.Duration) time.Duration { return c }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := consumer.Backoff{Initial: initial, Max: max, Multiplier: 2, Jitter: tc.jitter}
			for attempt := 1; attempt <= 20; attempt++ {
				ceiling := pow2Ceiling(initial, max, attempt)
				for range 200 {
					d := b.Delay(attempt)
					require.GreaterOrEqual(t, d, tc.lower(ceiling), "attempt %d", attempt)
					require.LessOrEqual(t, d, ceiling, "attempt %d", attempt)
				}
			}
		})
	}
}

func TestBackoffZeroValueDefaults(t *testing.T) {
	t.Parallel()
	b := consumer.Backoff{Jitter: consumer.NoJitter}
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{
		{1, time.Second},
		{2, 2 * time.Second}, // default Multiplier 2
		{3, 4 * time.Second},
		{50, 5 * time.Minute},
		{1000, 5 * time.Minute},
	} {
		require.Equal(t, tc.want, b.Delay(tc.attempt), "attempt %d", tc.attempt)
	}

	// The zero Jitter is FullJitter: draws stay under the default ceiling
	// and are not all equal to it.
	var zero consumer.Backoff
	sawBelow := false
	for range 100 {
		d := zero.Delay(1)
		require.GreaterOrEqual(t, d, time.Duration(0))
		require.LessOrEqual(t, d, time.Second)
		sawBelow = sawBelow || d < time.Second
	}
	require.True(t, sawBelow, "the zero Backoff must jitter (FullJitter is the default)")
}

func TestBackoffHugeAttempts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		b       consumer.Backoff
		attempt int
		wantMax bool // the un-jittered schedule must have reached Max
	}{
		{"defaults full jitter", consumer.Backoff{}, 1_000_000, false},
		{"defaults no jitter", consumer.Backoff{Jitter: consumer.NoJitter}, 1_000_000, true},
		{"equal jitter", consumer.Backoff{Initial: time.Millisecond, Max: time.Hour, Jitter: consumer.EqualJitter}, 1_000_000, false},
		{"no jitter max int", consumer.Backoff{Initial: time.Millisecond, Max: time.Hour, Jitter: consumer.NoJitter}, math.MaxInt, true},
		{"large multiplier", consumer.Backoff{Initial: time.Second, Max: 24 * time.Hour, Multiplier: 1e9, Jitter: consumer.NoJitter}, 1_000_000, true},
		// These never reach Max; the schedule must still end and stay bounded.
		{"multiplier one", consumer.Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 1, Jitter: consumer.NoJitter}, 1_000_000, false},
		{"tiny multiplier", consumer.Backoff{Initial: time.Nanosecond, Max: time.Minute, Multiplier: 1.0001, Jitter: consumer.NoJitter}, 1_000_000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			max := tc.b.Max
			if max == 0 {
				max = 5 * time.Minute
			}
			d := tc.b.Delay(tc.attempt)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.LessOrEqual(t, d, max)
			if tc.wantMax {
				require.Equal(t, max, d)
			}
		})
	}
}

func TestBackoffFullJitterIsRandom(t *testing.T) {
	t.Parallel()
	b := consumer.Backoff{Initial: 100 * time.Millisecond, Max: time.Minute, Multiplier: 2}
	const (
		draws   = 1000
		attempt = 5
	)
	ceiling := pow2Ceiling(100*time.Millisecond, time.Minute, attempt) // 1.6s
	seen := make(map[time.Duration]struct{}, draws)
	var sum float64
	for range draws {
		d := b.Delay(attempt)
		seen[d] = struct{}{}
		sum += float64(d)
	}
	require.Greater(t, len(seen), draws*9/10, "FullJitter must draw many distinct delays")
	mean := sum / draws / float64(ceiling)
	require.InDelta(t, 0.5, mean, 0.15, "the mean of FullJitter must be about half the ceiling")
}

func TestBackoffEqualJitterIsRandom(t *testing.T) {
	t.Parallel()
	b := consumer.Backoff{Initial: 100 * time.Millisecond, Max: time.Minute, Multiplier: 2, Jitter: consumer.EqualJitter}
	const draws = 1000
	ceiling := pow2Ceiling(100*time.Millisecond, time.Minute, 5)
	seen := make(map[time.Duration]struct{}, draws)
	var sum float64
	for range draws {
		d := b.Delay(5)
		seen[d] = struct{}{}
		sum += float64(d)
	}
	require.Greater(t, len(seen), draws*9/10)
	require.InDelta(t, 0.75, sum/draws/float64(ceiling), 0.1)
}

func TestConfigBackoffValidation(t *testing.T) {
	t.Parallel()
	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	require.NoError(t, err)
	h := consumer.HandlerFunc(func(context.Context, *consumer.Message) error { return nil })

	for _, tc := range []struct {
		name    string
		b       consumer.Backoff
		wantErr bool
	}{
		{"zero", consumer.Backoff{}, false},
		{"multiplier one", consumer.Backoff{Multiplier: 1}, false},
		{"initial equals max", consumer.Backoff{Initial: time.Second, Max: time.Second}, false},
		{"equal jitter", consumer.Backoff{Jitter: consumer.EqualJitter}, false},
		{"no jitter", consumer.Backoff{Jitter: consumer.NoJitter}, false},
		{"negative initial", consumer.Backoff{Initial: -time.Second}, true},
		{"negative max", consumer.Backoff{Max: -time.Second}, true},
		{"initial above max", consumer.Backoff{Initial: 2 * time.Second, Max: time.Second}, true},
		{"multiplier below one", consumer.Backoff{Multiplier: 0.5}, true},
		{"negative multiplier", consumer.Backoff{Multiplier: -2}, true},
		{"unknown jitter above", consumer.Backoff{Jitter: consumer.NoJitter + 1}, true},
		{"unknown jitter below", consumer.Backoff{Jitter: -1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := consumer.New(q, h, consumer.Config{Backoff: tc.b})
			if tc.wantErr {
				require.Error(t, err)
				require.Nil(t, c)
				require.Contains(t, err.Error(), "consumer: ")
				return
			}
			require.NoError(t, err)
			require.NotNil(t, c)
		})
	}
}

// TestBackoffDefaultMaxFollowsInitial: with Max left zero, the default Max
// is 5m or Initial when that is larger, so the schedule never falls below
// its first step and a Permanent error (delayed by Max) never comes back
// sooner than an ordinary one.
func TestBackoffDefaultMaxFollowsInitial(t *testing.T) {
	t.Parallel()
	b := consumer.Backoff{Initial: 10 * time.Minute, Jitter: consumer.NoJitter}
	for _, attempt := range []int{1, 2, 50} {
		require.Equal(t, 10*time.Minute, b.Delay(attempt), "attempt %d", attempt)
	}
	b = consumer.Backoff{Initial: time.Minute, Jitter: consumer.NoJitter}
	require.Equal(t, 5*time.Minute, b.Delay(50), "the usual default Max when Initial is below it")
}

// TestBackoffMaxInt64DoesNotPanic: with Max set to the largest Duration (a
// natural way to say "no cap"), which validation accepts, the jitter must
// not overflow computing its range. In a Consumer a panic here would happen
// in a worker goroutine, outside the handler's recover, and kill the process.
func TestBackoffMaxInt64DoesNotPanic(t *testing.T) {
	t.Parallel()
	for _, j := range []consumer.Jitter{consumer.FullJitter, consumer.EqualJitter, consumer.NoJitter} {
		b := consumer.Backoff{Initial: time.Second, Max: math.MaxInt64, Jitter: j}
		require.NotPanics(t, func() {
			for _, attempt := range []int{1, 100, 1_000_000} {
				d := b.Delay(attempt)
				require.GreaterOrEqual(t, d, time.Duration(0), "jitter %d attempt %d", j, attempt)
			}
		}, "jitter %d", j)
	}
}
