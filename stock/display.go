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
	return &LevelCache{store: store, o: opts, entries: map[string]cachedLevel{}}, nil
}

// Level returns the item's level, from the cache when it is fresh enough.
func (c *LevelCache) Level(ctx context.Context, item string) (Level, error) {
	start := c.o.now()
	c.mu.Lock()
	e, ok := c.entries[item]
	c.mu.Unlock()
	if ok && start.Sub(e.at) <= c.o.TTL {
		return e.level, nil
	}
	l, _, err := c.reads.Do(ctx, item, func(ctx context.Context) (Level, error) {
		at := c.o.now()
		l, err := c.store.Level(ctx, item)
		if err != nil {
			return Level{}, err
		}
		c.mu.Lock()
		c.entries[item] = cachedLevel{level: l, at: at}
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
// disabled it.
func (c *LevelCache) Forget(item string) {
	c.mu.Lock()
	delete(c.entries, item)
	c.mu.Unlock()
}

// DisableWhileOpen returns an OnStateChange callback for a
// [backpressure.Breaker] that guards an item's partner (the voucher
// provider): when the breaker opens, the item is disabled with reason, so
// customers see "Unavailable" and no reservation is taken that the partner
// could not honour; when it half-opens or closes, the item is enabled, so
// that the breaker's probes can go through.
func DisableWhileOpen(store Store, item, reason string, logger *slog.Logger) func(name string, from, to backpressure.State) {
	if logger == nil {
		logger = slog.Default()
	}
	return func(name string, _, to backpressure.State) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		if to == backpressure.StateOpen {
			err = store.Disable(ctx, item, reason)
		} else {
			err = store.Enable(ctx, item)
		}
		if err != nil {
			logger.LogAttrs(ctx, slog.LevelError, "stock: switching item with its breaker failed",
				slog.String("item", item), slog.String("breaker", name), slog.String("to", to.String()), slog.Any("error", err))
		}
	}
}
