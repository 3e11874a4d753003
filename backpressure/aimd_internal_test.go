package backpressure

import (
	"container/heap"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// simCall is one simulated request in flight.
type simCall struct {
	done   time.Time
	permit Permit
}

type simCalls []simCall

func (c simCalls) Len() int           { return len(c) }
func (c simCalls) Less(i, j int) bool { return c[i].done.Before(c[j].done) }
func (c simCalls) Swap(i, j int)      { c[i], c[j] = c[j], c[i] }
func (c *simCalls) Push(x any)        { *c = append(*c, x.(simCall)) }
func (c *simCalls) Pop() any {
	old := *c
	x := old[len(old)-1]
	*c = old[:len(old)-1]
	return x
}

// simulate runs a closed-loop load against a fake dependency on a fake
// clock: callers keep every slot the limiter grants busy; a call's latency
// is latency(concurrency when it starts). Calls still in flight stay in
// inflight for the next phase. It returns the limit after each of n
// completions.
func simulate(t *testing.T, l *AIMD, clock *time.Time, inflight *simCalls, n int, latency func(concurrency int) time.Duration) []int {
	t.Helper()
	limits := make([]int, 0, n)
	for len(limits) < n {
		for {
			p, err := l.Acquire(context.Background())
			if err != nil {
				break // limit reached: the rest of the demand is rejected
			}
			heap.Push(inflight, simCall{done: clock.Add(latency(inflight.Len() + 1)), permit: p})
		}
		require.NotZero(t, inflight.Len(), "the limiter admits nothing")
		c := heap.Pop(inflight).(simCall)
		*clock = c.done
		l.Release(c.permit, nil)
		limits = append(limits, l.Limit())
	}
	return limits
}

func mean(xs []int) float64 {
	sum := 0
	for _, x := range xs {
		sum += x
	}
	return float64(sum) / float64(len(xs))
}

// TestAIMDFindsTheKnee: a dependency that answers in 10ms up to 20
// concurrent simCalls and in 200ms beyond; simCalls over 50ms count as drops.
// The limit settles within 30% of 20, and climbs again once the
// dependency recovers.
func TestAIMDFindsTheKnee(t *testing.T) {
	clock := time.Unix(1_000_000, 0)
	l, err := NewAIMD(AIMDOptions{Initial: 5, Max: 500, Timeout: 50 * time.Millisecond,
		now: func() time.Time { return clock }})
	require.NoError(t, err)

	var inflight simCalls
	knee := 20
	dependency := func(c int) time.Duration {
		if c > knee {
			return 200 * time.Millisecond
		}
		return 10 * time.Millisecond
	}
	limits := simulate(t, l, &clock, &inflight, 40_000, dependency)
	settled := limits[len(limits)/2:]
	m := mean(settled)
	t.Logf("overloaded: mean limit %.1f, min %d, max %d", m, minOf(settled), maxOf(settled))
	require.InDelta(t, 20, m, 6, "mean limit over the second half")
	require.GreaterOrEqual(t, minOf(settled), 14)
	require.LessOrEqual(t, maxOf(settled), 26)

	// The dependency recovers: its knee moves to 200.
	knee = 200
	limits = simulate(t, l, &clock, &inflight, 40_000, dependency)
	t.Logf("recovered: final limit %d", limits[len(limits)-1])
	require.Greater(t, limits[len(limits)-1], 100, "the limit climbs once the dependency recovers")

	// And it falls back when the dependency degrades again.
	knee = 20
	limits = simulate(t, l, &clock, &inflight, 40_000, dependency)
	require.InDelta(t, 20, mean(limits[len(limits)/2:]), 6)
}

func minOf(xs []int) int {
	m := xs[0]
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}

func maxOf(xs []int) int {
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
