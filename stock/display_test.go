package stock

import (
	"context"
	"errors"
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
