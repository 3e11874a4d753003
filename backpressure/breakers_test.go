package backpressure

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func newTestBreakers(t *testing.T, opts BreakerOptions, maxKeys int, clock *brkClock) *Breakers {
	t.Helper()
	opts.now = clock.now
	g, err := NewBreakers(opts, maxKeys)
	require.NoError(t, err)
	return g
}

// brkTrip makes b fail until it opens.
func brkTrip(t *testing.T, b *Breaker) {
	t.Helper()
	for b.State() == StateClosed {
		tk, err := b.Allow()
		require.NoError(t, err)
		b.Record(tk, errBrkDown)
	}
	require.Equal(t, StateOpen, b.State())
}

// brkKeys returns the kept keys, sorted.
func brkKeys(g *Breakers) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	keys := make([]string, 0, len(g.m))
	for k := range g.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// brkKept returns the breaker kept for key without touching it.
func brkKept(g *Breakers, key string) *Breaker {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.m[key]
}

// brkCheckGroup checks, at rest, that every kept breaker is filed where
// its state says and that the lists are well linked.
func brkCheckGroup(t *testing.T, g *Breakers) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	inList := map[*Breaker]breakerPlace{}
	for _, l := range []struct {
		lru   *breakerLRU
		place breakerPlace
	}{{&g.closed, breakerInClosed}, {&g.open, breakerInOpen}} {
		n := 0
		var prev *Breaker
		for b := l.lru.head; b != nil; b = b.next {
			require.Same(t, prev, b.prev)
			require.Same(t, b, g.m[b.key], "listed breaker %q not in the map", b.key)
			inList[b] = l.place
			prev = b
			n++
		}
		require.Same(t, prev, l.lru.tail)
		require.Equal(t, l.lru.n, n)
	}
	for key, b := range g.m {
		b.mu.Lock()
		state, manual := b.state, b.manual
		b.mu.Unlock()
		want := breakerInOpen
		switch {
		case manual || b.pinHold:
			want = breakerPinned
		case state == StateClosed:
			want = breakerInClosed
		}
		require.Equal(t, want, b.where, "key %q in state %s", key, state)
		if want != breakerPinned {
			require.Equal(t, want, inList[b], "key %q", key)
		}
	}
	require.LessOrEqual(t, len(inList), len(g.m))
}

// TestBreakersBoundedUnderKeyFlood: 10,000 distinct keys through a set of
// 100; a tripped breaker and a pinned one survive it untouched.
func TestBreakersBoundedUnderKeyFlood(t *testing.T) {
	const maxKeys = 100
	clock := newBrkClock()
	obs := &brkObserver{}
	g := newTestBreakers(t, BreakerOptions{ConsecutiveFailures: 1, OpenTimeout: time.Hour, Observer: obs}, maxKeys, clock)

	hot := g.Get("hot")
	brkTrip(t, hot)
	g.Open("pinned")
	pinned := brkKept(g, "pinned")
	require.NotNil(t, pinned)

	for i := range 10_000 {
		b := g.Get(fmt.Sprintf("key-%d", i))
		require.LessOrEqual(t, g.Len(), maxKeys, "after Get %d", i)
		tk, err := b.Allow()
		require.NoError(t, err)
		b.Record(tk, nil)
		clock.advance(time.Millisecond)
	}
	require.Equal(t, maxKeys, g.Len())
	require.Same(t, hot, brkKept(g, "hot"))
	require.Same(t, pinned, brkKept(g, "pinned"))
	require.Equal(t, StateOpen, hot.State())
	require.Equal(t, StateOpen, pinned.State())
	require.Same(t, brkKept(g, "key-9999"), g.Get("key-9999"))
	require.Nil(t, brkKept(g, "key-0"))
	require.EqualValues(t, 2, obs.get(MetricBreakerState))
	brkCheckGroup(t, g)
}

func TestBreakersEviction(t *testing.T) {
	opts := BreakerOptions{Name: "api", ConsecutiveFailures: 1, OpenTimeout: time.Minute}

	t.Run("least recently used closed breaker first", func(t *testing.T) {
		g := newTestBreakers(t, opts, 3, newBrkClock())
		g.Get("a")
		g.Get("b")
		g.Get("c")
		g.Get("a") // b is now the least recently used
		g.Get("d")
		require.Equal(t, []string{"a", "c", "d"}, brkKeys(g))
		g.Get("e")
		require.Equal(t, []string{"a", "d", "e"}, brkKeys(g))
		brkCheckGroup(t, g)
	})

	t.Run("a closed breaker with calls in flight is skipped", func(t *testing.T) {
		g := newTestBreakers(t, opts, 3, newBrkClock())
		a := g.Get("a")
		g.Get("b")
		g.Get("c")
		tk, err := a.Allow()
		require.NoError(t, err)
		g.Get("d") // a is least recently used, but busy
		require.Equal(t, []string{"a", "c", "d"}, brkKeys(g))
		a.Record(tk, nil)
		g.Get("e") // c, since skipping a counted as using it
		require.Equal(t, []string{"a", "d", "e"}, brkKeys(g))
		g.Get("f") // a is idle now, and least recently used
		require.Equal(t, []string{"d", "e", "f"}, brkKeys(g))
		brkCheckGroup(t, g)
	})

	t.Run("closed breakers all busy: the least recently used goes", func(t *testing.T) {
		g := newTestBreakers(t, opts, 3, newBrkClock())
		var tickets []Ticket
		for _, k := range []string{"a", "b", "c"} {
			tk, err := g.Get(k).Allow()
			require.NoError(t, err)
			tickets = append(tickets, tk)
		}
		g.Get("d")
		require.Equal(t, []string{"b", "c", "d"}, brkKeys(g))
		brkCheckGroup(t, g)
	})

	t.Run("open and half-open breakers are kept while closed ones can go", func(t *testing.T) {
		clock := newBrkClock()
		g := newTestBreakers(t, opts, 3, clock)
		a := g.Get("a")
		b := g.Get("b")
		g.Get("c")
		brkTrip(t, a)
		brkTrip(t, b)
		clock.advance(time.Minute)
		require.Equal(t, StateHalfOpen, b.State())
		for _, k := range []string{"d", "e", "f", "g"} {
			g.Get(k)
			require.Equal(t, []string{"a", "b", k}, brkKeys(g))
		}
		brkCheckGroup(t, g)
	})

	t.Run("all open: the least recently tripped goes, releasing its gauge", func(t *testing.T) {
		obs := &brkObserver{}
		o := opts
		o.Observer = obs
		g := newTestBreakers(t, o, 2, newBrkClock())
		a := g.Get("a")
		b := g.Get("b")
		brkTrip(t, b)
		brkTrip(t, a)
		require.EqualValues(t, 2, obs.get(MetricBreakerState))
		g.Get("c") // b tripped first
		require.Equal(t, []string{"a", "c"}, brkKeys(g))
		require.EqualValues(t, 1, obs.get(MetricBreakerState))

		// Whoever still holds b may go on using it; it no longer counts.
		require.Equal(t, StateOpen, b.State())
		b.Close()
		require.EqualValues(t, 1, obs.get(MetricBreakerState))
		brkTrip(t, b)
		require.EqualValues(t, 1, obs.get(MetricBreakerState))
		require.NotSame(t, b, g.Get("b"))
		require.EqualValues(t, 0, obs.gaugeMin)
		brkCheckGroup(t, g)
	})

	t.Run("a pinned breaker is never evicted", func(t *testing.T) {
		g := newTestBreakers(t, opts, 2, newBrkClock())
		g.Open("p")
		p := brkKept(g, "p")
		x := g.Get("x")
		brkTrip(t, x)
		g.Get("y") // x is open, but the only breaker that may go
		require.Equal(t, []string{"p", "y"}, brkKeys(g))
		brkTrip(t, g.Get("y"))
		g.Get("z")
		require.Equal(t, []string{"p", "z"}, brkKeys(g))
		require.Same(t, p, g.Get("p"))
		require.Equal(t, StateOpen, p.State())
		brkCheckGroup(t, g)

		g.Close("p")
		require.Equal(t, StateClosed, p.State())
		g.Get("z")
		g.Get("q") // p is unpinned, closed and least recently used
		require.Equal(t, []string{"q", "z"}, brkKeys(g))
		brkCheckGroup(t, g)
	})

	t.Run("Breaker.Open pins too, Breaker.Close unpins", func(t *testing.T) {
		g := newTestBreakers(t, opts, 2, newBrkClock())
		a := g.Get("a")
		a.Open()
		g.Get("b")
		brkTrip(t, g.Get("b"))
		g.Get("c")
		g.Get("d")
		require.Equal(t, []string{"a", "d"}, brkKeys(g))
		brkCheckGroup(t, g)
		a.Close()
		g.Get("d")
		g.Get("e")
		require.Equal(t, []string{"d", "e"}, brkKeys(g))
		brkCheckGroup(t, g)
	})

	t.Run("every slot pinned: Get hands out breakers it does not keep", func(t *testing.T) {
		g := newTestBreakers(t, opts, 1, newBrkClock())
		g.Open("p")
		q1, q2 := g.Get("q"), g.Get("q")
		require.NotSame(t, q1, q2)
		require.Equal(t, StateClosed, q1.State())
		require.Equal(t, "api:q", q1.name)
		require.Equal(t, []string{"p"}, brkKeys(g))

		// Open of a new key keeps it anyway.
		g.Open("r")
		require.Equal(t, []string{"p", "r"}, brkKeys(g))
		require.Equal(t, StateOpen, g.Get("r").State())
		brkCheckGroup(t, g)

		// Unpinned again, the set shrinks back to maxKeys.
		g.Close("p")
		g.Close("r")
		q := g.Get("q")
		require.Same(t, q, g.Get("q"))
		require.Equal(t, []string{"q"}, brkKeys(g))
		brkCheckGroup(t, g)
	})

	t.Run("Close of an unknown key does nothing", func(t *testing.T) {
		g := newTestBreakers(t, opts, 2, newBrkClock())
		g.Close("nobody")
		require.Zero(t, g.Len())
	})
}

func TestBreakersNames(t *testing.T) {
	clock := newBrkClock()
	g := newTestBreakers(t, BreakerOptions{Name: "tenants", ConsecutiveFailures: 1}, 10, clock)
	b := g.Get("acme")
	require.Equal(t, "tenants:acme", b.name)
	brkTrip(t, b)
	_, err := b.Allow()
	require.ErrorContains(t, err, "tenants:acme rejected")

	var seen brkTransitions
	g = newTestBreakers(t, BreakerOptions{ConsecutiveFailures: 1, OnStateChange: seen.record}, 10, clock)
	brkTrip(t, g.Get("acme"))
	require.Equal(t, []brkTransition{{"acme", StateClosed, StateOpen}}, seen.list())
}

func TestNewBreakersValidates(t *testing.T) {
	_, err := NewBreakers(BreakerOptions{}, 0)
	require.Error(t, err)
	_, err = NewBreakers(BreakerOptions{FailureRatio: 2}, 10)
	require.Error(t, err)
	g, err := NewBreakers(BreakerOptions{}, 1)
	require.NoError(t, err)
	require.Zero(t, g.Len())
}

// TestBreakersConcurrent drives 64 goroutines through a set of 100
// breakers over 300 keys, tripping, probing and pinning them.
func TestBreakersConcurrent(t *testing.T) {
	const (
		goroutines = 64
		calls      = 400
		maxKeys    = 100
	)
	clock := newBrkClock()
	obs := &brkObserver{}
	var transitions atomic.Int64
	g := newTestBreakers(t, BreakerOptions{
		Name:                "c",
		ConsecutiveFailures: 2,
		FailureRatio:        0.5,
		MinRequests:         4,
		OpenTimeout:         5 * time.Millisecond,
		Observer:            obs,
		OnStateChange:       func(string, State, State) { transitions.Add(1) },
	}, maxKeys, clock)

	var overflows atomic.Int64
	var wg sync.WaitGroup
	for w := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				clock.advance(20 * time.Microsecond)
				key := fmt.Sprintf("k%d", (w*7919+i*31)%300)
				switch {
				case i%97 == 0:
					g.Open(fmt.Sprintf("p%d", w%5))
				case i%89 == 0:
					g.Close(fmt.Sprintf("p%d", w%5))
				}
				b := g.Get(key)
				if g.Len() > maxKeys {
					overflows.Add(1)
				}
				tk, err := b.Allow()
				if err != nil {
					continue
				}
				var result error
				if (w+i)%3 == 0 {
					result = errBrkDown
				}
				b.Record(tk, result)
			}
		}()
	}
	wg.Wait()

	require.Zero(t, overflows.Load())
	require.LessOrEqual(t, g.Len(), maxKeys)
	brkCheckGroup(t, g)
	require.Equal(t, transitions.Load(), obs.get(MetricBreakerTransitions))

	// The gauge counts exactly the kept breakers that are open.
	open := 0
	g.mu.Lock()
	for _, b := range g.m {
		b.mu.Lock()
		if b.state == StateOpen {
			open++
		}
		require.Zero(t, b.inflight)
		b.mu.Unlock()
	}
	g.mu.Unlock()
	require.EqualValues(t, open, obs.get(MetricBreakerState))
	require.EqualValues(t, 0, obs.gaugeMin)
}
