package stock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/idemq/idemq/backpressure"
	"github.com/idemq/idemq/consumer"
)

// Unavailable is what Display shows for an item that cannot be reserved.
const Unavailable = "Unavailable"

// DefaultThreshold is the level above which Display shows "N+".
const DefaultThreshold = 10

// Display renders a level for customers: "Unavailable" when the item is
// disabled or has nothing left, the exact count at or below threshold (a
// countdown that creates honest urgency), and "threshold+" above it, so
// that the exact stock of a large pool is not disclosed. threshold <= 0
// means DefaultThreshold.
func Display(l Level, threshold int) string {
	if threshold <= 0 {
		threshold = DefaultThreshold
	}
	switch {
	case l.Disabled || l.Available <= 0:
		return Unavailable
	case l.Available > threshold:
		return strconv.Itoa(threshold) + "+"
	}
	return strconv.Itoa(l.Available)
}

// CacheOptions configures a [LevelCache].
type CacheOptions struct {
	// TTL bounds how old a cached level may be. Default 1s.
	TTL time.Duration
	// Threshold is passed to Display. Default DefaultThreshold.
	Threshold int
	now       func() time.Time
}

// LevelCache reads item levels for display through a short-lived cache, so
// that a popular item's page does not hit the store on every view. A level
// it returns was read from the store at most TTL before the call began
// (plus the time the store took to answer); concurrent misses for one item
// share one read.
//
// The cache is for showing availability only. Reserve always asks the
// store, so a stale "3 left" can never admit a reservation that the store
// would refuse.
type LevelCache struct {
	store Store
	o     CacheOptions
	reads backpressure.Coalescer[Level]

	mu      sync.Mutex
	entries map[string]cachedLevel
	forgets map[string]uint64 // by item: how often Forget was called
}

type cachedLevel struct {
	level Level
	at    time.Time
}

// NewLevelCache returns a cache in front of store.
func NewLevelCache(store Store, opts CacheOptions) (*LevelCache, error) {
	if store == nil {
		return nil, errors.New("stock: nil Store")
	}
	if opts.TTL < 0 {
		return nil, fmt.Errorf("stock: negative TTL %s", opts.TTL)
	}
	if opts.TTL == 0 {
		opts.TTL = time.Second
	}
	if opts.Threshold <= 0 {
		opts.Threshold = DefaultThreshold
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	return &LevelCache{store: store, o: opts, entries: map[string]cachedLevel{}, forgets: map[string]uint64{}}, nil
}

// Level returns the item's level, from the cache when it is fresh enough.
func (c *LevelCache) Level(ctx context.Context, item string) (Level, error) {
	start := c.o.now()
	c.mu.Lock()
	e, ok := c.entries[item]
	gen := c.forgets[item]
	c.mu.Unlock()
	if ok && start.Sub(e.at) <= c.o.TTL {
		return e.level, nil
	}
	// A read begun before a Forget is neither joined nor kept after it.
	key := strconv.FormatUint(gen, 10) + ":" + item
	l, _, err := c.reads.Do(ctx, key, func(ctx context.Context) (Level, error) {
		at := c.o.now()
		l, err := c.store.Level(ctx, item)
		if err != nil {
			return Level{}, err
		}
		c.mu.Lock()
		if c.forgets[item] == gen {
			c.entries[item] = cachedLevel{level: l, at: at}
		}
		c.mu.Unlock()
		return l, nil
	})
	return l, err
}

// Display returns the item's level rendered by [Display].
func (c *LevelCache) Display(ctx context.Context, item string) (string, error) {
	l, err := c.Level(ctx, item)
	if err != nil {
		return "", err
	}
	return Display(l, c.o.Threshold), nil
}

// Forget drops the cached level of item, for instance after an operator
// disabled it: every call that begins after Forget returns reads the
// store anew, even if a read begun before is still under way.
func (c *LevelCache) Forget(item string) {
	c.mu.Lock()
	delete(c.entries, item)
	c.forgets[item]++
	c.mu.Unlock()
}

// DisableWhileOpen returns an OnStateChange callback for a
// [backpressure.Breaker] that guards an item's partner (the voucher
// provider): when the breaker opens, the item is disabled with reason, so
// customers see "Unavailable" and no reservation is taken that the partner
// could not honour; when it half-opens or closes, the item is enabled, so
// that the breaker's probes can go through.
//
// It switches only what is its own: it leaves alone an item that is
// already disabled with another reason (an operator's), and enables only
// an item disabled with reason, so give it a reason no operator uses. An
// operator's Disable or Enable that lands between its reading the item and
// switching it can still be undone. A switch that fails is logged and
// tried again, waiting from 100ms up to 30s (with jitter), until it
// succeeds or the breaker changes state again: an Enable lost to a store
// error would otherwise leave the item disabled, and a half-open breaker
// without the probe that could close it.
func DisableWhileOpen(store Store, item, reason string, logger *slog.Logger) func(name string, from, to backpressure.State) {
	if logger == nil {
		logger = slog.Default()
	}
	w := &breakerSwitch{store: store, item: item, reason: reason, logger: logger}
	return w.change
}

// breakerSwitch is the state behind DisableWhileOpen.
type breakerSwitch struct {
	store        Store
	item, reason string
	logger       *slog.Logger

	mu  sync.Mutex // held while switching, so that switches apply in order
	gen uint64     // the breaker's state changes so far
}

const switchTimeout = 5 * time.Second

// switchRetry spaces the tries of a switch that failed.
var switchRetry = consumer.Backoff{Initial: 100 * time.Millisecond, Max: 30 * time.Second, Jitter: consumer.EqualJitter}

func (w *breakerSwitch) change(name string, _, to backpressure.State) {
	w.mu.Lock()
	w.gen++
	gen := w.gen
	err := w.apply(to)
	w.mu.Unlock()
	if err != nil {
		w.failed(name, to, err)
		go w.retry(name, to, gen)
	}
}

// retry applies to until it succeeds, unless the breaker has changed state
// since gen.
func (w *breakerSwitch) retry(name string, to backpressure.State, gen uint64) {
	for attempt := 1; ; attempt++ {
		time.Sleep(switchRetry.Delay(attempt))
		w.mu.Lock()
		if w.gen != gen {
			w.mu.Unlock()
			return
		}
		err := w.apply(to)
		w.mu.Unlock()
		if err == nil {
			return
		}
		w.failed(name, to, err)
	}
}

// apply switches the item for the breaker's state to. w.mu is held.
func (w *breakerSwitch) apply(to backpressure.State) error {
	ctx, cancel := context.WithTimeout(context.Background(), switchTimeout)
	defer cancel()
	l, err := w.store.Level(ctx, w.item)
	if err != nil {
		return err
	}
	switch {
	case to == backpressure.StateOpen && !l.Disabled:
		return w.store.Disable(ctx, w.item, w.reason)
	case to != backpressure.StateOpen && l.Disabled && l.Reason == w.reason:
		return w.store.Enable(ctx, w.item)
	}
	return nil
}

func (w *breakerSwitch) failed(name string, to backpressure.State, err error) {
	w.logger.LogAttrs(context.Background(), slog.LevelError, "stock: switching item with its breaker failed; trying again",
		slog.String("item", w.item), slog.String("breaker", name), slog.String("to", to.String()), slog.Any("error", err))
}
