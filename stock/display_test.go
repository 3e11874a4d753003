package stock

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/backpressure"
)

func TestDisplay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		l         Level
		threshold int
		want      string
	}{
		{Level{Available: 500}, 0, "10+"},
		{Level{Available: 11}, 0, "10+"},
		{Level{Available: 10}, 0, "10"},
		{Level{Available: 1}, 0, "1"},
		{Level{Available: 0}, 0, Unavailable},
		{Level{Available: 50, Disabled: true}, 0, Unavailable},
		{Level{Available: 30}, 25, "25+"},
		{Level{Available: 25}, 25, "25"},
	} {
		require.Equal(t, tc.want, Display(tc.l, tc.threshold), "%+v threshold %d", tc.l, tc.threshold)
	}
}

// countingStore counts Level reads.
type countingStore struct {
	Store
	reads atomic.Int32
	gate  chan struct{} // when set, Level waits on it
}

func (s *countingStore) Level(ctx context.Context, item string) (Level, error) {
	s.reads.Add(1)
	if s.gate != nil {
		<-s.gate
	}
	return s.Store.Level(ctx, item)
}

func TestLevelCacheStalenessIsBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := NewMemoryStore()
	require.NoError(t, mem.Define(ctx, "v", ItemConfig{}))
	require.NoError(t, mem.Restock(ctx, "v", 12))
	store := &countingStore{Store: mem}
	clock := time.Unix(1000, 0)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	c, err := NewLevelCache(store, CacheOptions{TTL: time.Second, now: now})
	require.NoError(t, err)

	got, err := c.Display(ctx, "v")
	require.NoError(t, err)
	require.Equal(t, "10+", got)
	for i := range 5 {
		_, err := mem.Reserve(ctx, ReserveRequest{Item: "v", Holder: "h", ID: strconv.Itoa(i), Hold: time.Hour})
		require.NoError(t, err)
	}
	advance(time.Second) // exactly TTL old: still served from the cache
	d, err := c.Display(ctx, "v")
	require.NoError(t, err)
	require.Equal(t, "10+", d, "within TTL the cached level is shown")
	require.Equal(t, int32(1), store.reads.Load())
	advance(time.Millisecond) // past TTL: read again
	d, err = c.Display(ctx, "v")
	require.NoError(t, err)
	require.Equal(t, "7", d)
	require.Equal(t, int32(2), store.reads.Load())

	// The cache never admits: the store refuses what it no longer has,
	// whatever the cache shows.
	require.NoError(t, mem.Disable(ctx, "v", "partner down"))
	d, err = c.Display(ctx, "v")
	require.NoError(t, err)
	require.Equal(t, "7", d, "stale for at most TTL")
	_, err = mem.Reserve(ctx, ReserveRequest{Item: "v", Holder: "h2", ID: "x", Hold: time.Hour})
	require.ErrorIs(t, err, ErrDisabled)
	c.Forget("v")
	d, err = c.Display(ctx, "v")
	require.NoError(t, err)
	require.Equal(t, Unavailable, d)

	_, err = NewLevelCache(nil, CacheOptions{})
	require.Error(t, err)
	_, err = NewLevelCache(mem, CacheOptions{TTL: -1})
	require.Error(t, err)
}

func TestLevelCacheCoalescesMisses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := NewMemoryStore()
	require.NoError(t, mem.Define(ctx, "v", ItemConfig{}))
	store := &countingStore{Store: mem, gate: make(chan struct{})}
	c, err := NewLevelCache(store, CacheOptions{TTL: time.Hour})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			d, err := c.Display(ctx, "v")
			require.NoError(t, err)
			require.Equal(t, Unavailable, d)
		})
	}
	require.Eventually(t, func() bool { return store.reads.Load() == 1 }, 10*time.Second, time.Millisecond)
	close(store.gate)
	wg.Wait()
	require.Equal(t, int32(1), store.reads.Load(), "50 concurrent misses, one read")
}

// TestBreakerDisablesItem: a failing partner opens the breaker, which
// disables the item at once; half-open re-enables it for the probe.
func TestBreakerDisablesItem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := NewMemoryStore()
	require.NoError(t, store.Define(ctx, "voucher", ItemConfig{}))
	require.NoError(t, store.Restock(ctx, "voucher", 100))
	b, err := backpressure.NewBreaker(backpressure.BreakerOptions{
		Name: "partner", ConsecutiveFailures: 3, OpenTimeout: time.Minute,
		OnStateChange: DisableWhileOpen(store, "voucher", "partner unavailable", nil),
	})
	require.NoError(t, err)
	errPartner := errors.New("partner 500")
	for range 3 {
		require.ErrorIs(t, b.Do(ctx, func(context.Context) error { return errPartner }), errPartner)
	}
	require.Equal(t, backpressure.StateOpen, b.State())
	l, err := store.Level(ctx, "voucher")
	require.NoError(t, err)
	require.True(t, l.Disabled)
	require.Equal(t, "partner unavailable", l.Reason)
	_, err = store.Reserve(ctx, ReserveRequest{Item: "voucher", Holder: "h", ID: "r1", Hold: time.Minute})
	require.ErrorIs(t, err, ErrDisabled)

	b.Close() // an operator knows the partner is back
	l, err = store.Level(ctx, "voucher")
	require.NoError(t, err)
	require.False(t, l.Disabled)
	_, err = store.Reserve(ctx, ReserveRequest{Item: "voucher", Holder: "h", ID: "r2", Hold: time.Minute})
	require.NoError(t, err)
}

// flakyStore fails Enable while failEnables is positive.
type flakyStore struct {
	Store
	failEnables atomic.Int32
	enables     atomic.Int32
}

func (s *flakyStore) Enable(ctx context.Context, item string) error {
	s.enables.Add(1)
	if s.failEnables.Add(-1) >= 0 {
		return errors.New("store unavailable")
	}
	return s.Store.Enable(ctx, item)
}

func requireDisabled(t *testing.T, store Store, item string, disabled bool, reason string) {
	t.Helper()
	l, err := store.Level(context.Background(), item)
	require.NoError(t, err)
	require.Equal(t, disabled, l.Disabled, "Disabled of %q", item)
	require.Equal(t, reason, l.Reason, "Reason of %q", item)
}

// TestBreakerLeavesOperatorsSwitch: the breaker's switch neither enables
// an item an operator disabled nor takes over the operator's reason.
func TestBreakerLeavesOperatorsSwitch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := NewMemoryStore()
	require.NoError(t, store.Define(ctx, "voucher", ItemConfig{}))
	change := DisableWhileOpen(store, "voucher", "partner unavailable", nil)

	change("p", backpressure.StateClosed, backpressure.StateOpen)
	requireDisabled(t, store, "voucher", true, "partner unavailable")
	require.NoError(t, store.Disable(ctx, "voucher", "fraud check"))
	change("p", backpressure.StateOpen, backpressure.StateHalfOpen)
	requireDisabled(t, store, "voucher", true, "fraud check")
	change("p", backpressure.StateHalfOpen, backpressure.StateOpen)
	requireDisabled(t, store, "voucher", true, "fraud check")
	change("p", backpressure.StateOpen, backpressure.StateClosed)
	requireDisabled(t, store, "voucher", true, "fraud check")

	require.NoError(t, store.Enable(ctx, "voucher"))
	change("p", backpressure.StateClosed, backpressure.StateOpen)
	change("p", backpressure.StateOpen, backpressure.StateClosed)
	requireDisabled(t, store, "voucher", false, "")
}

// TestBreakerRetriesSwitch: an Enable that fails is tried again until it
// succeeds, and a retry that a later state change overtook does nothing.
func TestBreakerRetriesSwitch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := NewMemoryStore()
	require.NoError(t, mem.Define(ctx, "voucher", ItemConfig{}))
	store := &flakyStore{Store: mem}
	change := DisableWhileOpen(store, "voucher", "partner unavailable", slog.New(slog.DiscardHandler))

	change("p", backpressure.StateClosed, backpressure.StateOpen)
	store.failEnables.Store(2)
	change("p", backpressure.StateOpen, backpressure.StateHalfOpen)
	requireDisabled(t, store, "voucher", true, "partner unavailable")
	require.Eventually(t, func() bool {
		l, err := store.Level(ctx, "voucher")
		require.NoError(t, err)
		return !l.Disabled
	}, 10*time.Second, 10*time.Millisecond, "the failed Enable is tried again")
	require.Equal(t, int32(3), store.enables.Load(), "two failures, then the Enable that worked")

	// Enable fails, and the breaker opens again before the retry: the
	// item stays disabled.
	change("p", backpressure.StateHalfOpen, backpressure.StateOpen)
	store.failEnables.Store(1)
	change("p", backpressure.StateOpen, backpressure.StateHalfOpen)
	change("p", backpressure.StateHalfOpen, backpressure.StateOpen)
	time.Sleep(3 * switchRetry.Initial) // past the first retry
	requireDisabled(t, store, "voucher", true, "partner unavailable")
	require.Equal(t, int32(4), store.enables.Load(), "the overtaken retry did not Enable")
}

// steppedStore answers its n-th Level (from 0) with what it read at once,
// but only once release[n] is closed.
type steppedStore struct {
	Store
	reads   atomic.Int32
	release [2]chan struct{}
}

func (s *steppedStore) Level(ctx context.Context, item string) (Level, error) {
	n := s.reads.Add(1) - 1
	l, err := s.Store.Level(ctx, item)
	<-s.release[n]
	return l, err
}

// TestLevelCacheForgetDuringRead: after Forget, a call reads the store
// anew even while a read begun before Forget is still under way, and that
// read's level, finishing last, is not cached.
func TestLevelCacheForgetDuringRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := NewMemoryStore()
	require.NoError(t, mem.Define(ctx, "v", ItemConfig{}))
	require.NoError(t, mem.Restock(ctx, "v", 20))
	store := &steppedStore{Store: mem, release: [2]chan struct{}{make(chan struct{}), make(chan struct{})}}
	c, err := NewLevelCache(store, CacheOptions{TTL: time.Hour})
	require.NoError(t, err)

	display := func() chan string {
		out := make(chan string, 1)
		go func() {
			d, err := c.Display(ctx, "v")
			require.NoError(t, err)
			out <- d
		}()
		return out
	}
	before := display()
	require.Eventually(t, func() bool { return store.reads.Load() == 1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, mem.Disable(ctx, "v", "fraud check"))
	c.Forget("v")
	after := display()
	require.Eventually(t, func() bool { return store.reads.Load() == 2 }, 10*time.Second, time.Millisecond,
		"a call after Forget does not join the read begun before it")
	close(store.release[1])
	require.Equal(t, Unavailable, <-after)
	close(store.release[0])
	require.Equal(t, "10+", <-before, "the read begun before Disable")
	d, err := c.Display(ctx, "v")
	require.NoError(t, err)
	require.Equal(t, Unavailable, d, "the level read before Forget, which came last, was not cached")
	require.Equal(t, int32(2), store.reads.Load())
}
