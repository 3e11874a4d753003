package stockredis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/internal/testenv"
	"github.com/idemq/idemq/stock"
)

func newStore(t *testing.T) (*Store, redis.UniversalClient) {
	t.Helper()
	client, prefix := testenv.Redis(t)
	s, err := New(client, Options{Prefix: prefix})
	require.NoError(t, err)
	return s, client
}

func define(t *testing.T, s *Store, item string, cfg stock.ItemConfig, units int) {
	t.Helper()
	ctx := t.Context()
	require.NoError(t, s.Define(ctx, item, cfg))
	if units > 0 {
		require.NoError(t, s.Restock(ctx, item, units))
	}
}

func reserve(t *testing.T, s *Store, item, holder, id string, qty int, hold time.Duration) stock.Reservation {
	t.Helper()
	r, err := s.Reserve(t.Context(), stock.ReserveRequest{Item: item, Holder: holder, ID: id, Quantity: qty, Hold: hold})
	require.NoError(t, err, "Reserve(%q)", id)
	return r
}

func level(t *testing.T, s *Store, item string) stock.Level {
	t.Helper()
	l, err := s.Level(t.Context(), item)
	require.NoError(t, err)
	return l
}

// checkItem checks the invariants of an item's keys: its units add up, its
// held count is the sum of the holds in its sorted set, each of which is a
// held reservation, and its per-holder counts add up to held + confirmed.
func checkItem(t *testing.T, s *Store, client redis.UniversalClient, item string) {
	t.Helper()
	ctx := t.Context()
	k := s.keys(item)
	f, err := client.HGetAll(ctx, k.item).Result()
	require.NoError(t, err)
	atoi := func(s string) int {
		n, err := strconv.Atoi(s)
		require.NoError(t, err)
		return n
	}
	units, avail, held, confirmed := atoi(f["units"]), atoi(f["available"]), atoi(f["held"]), atoi(f["confirmed"])
	require.GreaterOrEqual(t, avail, 0)
	require.Equal(t, units, avail+held+confirmed, "units do not add up: %v", f)

	ids, err := client.ZRange(ctx, k.holds, 0, -1).Result()
	require.NoError(t, err)
	sum := 0
	for _, id := range ids {
		state, qty, ok := record(t, client, k, id)
		require.True(t, ok, "reservation %q in the holds", id)
		require.Equal(t, "held", state, "reservation %q in the holds", id)
		sum += qty
	}
	require.Equal(t, held, sum, "held units and holds disagree")
	if due, ok := f["due"]; ok && len(ids) > 0 {
		first, err := client.ZRangeWithScores(ctx, k.holds, 0, 0).Result()
		require.NoError(t, err)
		require.LessOrEqual(t, float64(atoi(due)), first[0].Score, "a hold ends before the item's due")
	}

	counts, err := client.HGetAll(ctx, k.holders).Result()
	require.NoError(t, err)
	if f["counted"] == "0" {
		require.Equal(t, "0", f["holder_limit"], "holders' counts not kept with a holder limit")
		require.Empty(t, counts, "holders' counts kept without a holder limit")
	} else {
		// Each holder's count is the units of its held and confirmed
		// reservations.
		recs, err := client.HGetAll(ctx, k.resv).Result()
		require.NoError(t, err)
		want := map[string]string{}
		sums := map[string]int{}
		for _, v := range recs {
			f := strings.SplitN(v, " ", 5)
			require.Len(t, f, 5, "record %q", v)
			if f[0] != "held" && f[0] != "confirmed" {
				continue
			}
			n, rest, ok := strings.Cut(f[4], ":")
			require.True(t, ok, "record %q", v)
			sums[rest[atoi(n):]] += atoi(f[2])
		}
		for h, n := range sums {
			want[h] = strconv.Itoa(n)
		}
		require.Equal(t, want, counts, "per-holder counts")
	}

	if f["codes"] == "1" {
		free, err := client.LLen(ctx, k.free).Result()
		require.NoError(t, err)
		require.Equal(t, int64(avail+held), free, "free codes and units disagree")
	}
}

// record reads reservation id of k's item straight from its hash, and
// reports its state and quantity, or ok false if there is none.
func record(t *testing.T, client redis.UniversalClient, k itemKeys, id string) (state string, qty int, ok bool) {
	t.Helper()
	v, err := client.HGet(t.Context(), k.resv, id).Result()
	if errors.Is(err, redis.Nil) {
		return "", 0, false
	}
	require.NoError(t, err)
	f := strings.SplitN(v, " ", 4)
	require.Len(t, f, 4, "record %q", v)
	qty, err = strconv.Atoi(f[2])
	require.NoError(t, err, "record %q", v)
	return f[0], qty, true
}

func TestNew(t *testing.T) {
	// New does not contact Redis, so no server is needed here.
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = client.Close() })

	s, err := New(client, Options{})
	require.NoError(t, err)
	require.Equal(t, DefaultPrefix, s.prefix)
	require.Equal(t, "idemq:stock:{shoes}:i", s.keys("shoes").item)
	require.Equal(t, "idemq:stock:{a%7Bb%7D%25c}:r", s.keys("a{b}%c").resv)
	require.Equal(t, "idemq:stock:{res:r%7D1}", s.pointerKey("r}1"))

	for _, p := range []string{"a{", "}", "x{y}"} {
		_, err := New(client, Options{Prefix: p})
		require.ErrorContains(t, err, "brace")
	}
	_, err = New(nil, Options{})
	require.Error(t, err)
	require.Equal(t, DefaultRetain, s.retain)
	_, err = New(client, Options{Retain: -time.Second})
	require.ErrorContains(t, err, "Retain")
}

// TestRetain checks how long reservation IDs stay bound: a refused
// Reserve's ID and an unconfirmed reservation's for their hold plus
// Retain, a confirmed one's for good. Once an ID has lapsed, a retry of
// its Reserve finds the reservation it made and takes nothing more.
// pointerTTL returns the PTTL of id's pointer: -2 for none, -1 for one
// that does not expire.
func pointerTTL(t *testing.T, s *Store, client redis.UniversalClient, id string) time.Duration {
	t.Helper()
	d, err := client.PTTL(t.Context(), s.pointerKey(id)).Result()
	require.NoError(t, err)
	return d
}

func TestRetain(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	const retain = 300 * time.Millisecond
	s, err := New(client, Options{Prefix: prefix, Retain: retain})
	require.NoError(t, err)
	ctx := t.Context()
	define(t, s, "mugs", stock.ItemConfig{}, 2)
	pttl := func(id string) time.Duration { return pointerTTL(t, s, client, id) }

	reserve(t, s, "mugs", "ann", "kept", 1, time.Hour)
	_, err = s.Confirm(ctx, "kept")
	require.NoError(t, err)
	require.Equal(t, time.Duration(-1), pttl("kept"), "a confirmed ID is bound for good")

	reserve(t, s, "mugs", "bob", "held", 1, time.Hour)
	require.InDelta(t, float64(time.Hour+retain), float64(pttl("held")), float64(time.Minute))

	_, err = s.Reserve(ctx, stock.ReserveRequest{Item: "mugs", Holder: "cy", ID: "refused", Hold: 100 * time.Millisecond})
	require.ErrorIs(t, err, stock.ErrSoldOut)
	require.InDelta(t, float64(100*time.Millisecond+retain), float64(pttl("refused")), float64(250*time.Millisecond))

	// A short hold, released so that its unit is free again: after its
	// hold and Retain, its ID is unbound, and a retry finds the old
	// reservation rather than taking the unit again.
	require.NoError(t, s.Release(ctx, "held"))
	reserve(t, s, "mugs", "dee", "short", 1, 50*time.Millisecond)
	require.Eventually(t, func() bool { return pttl("short") == -2 }, 10*time.Second, 10*time.Millisecond,
		"the ID lapses after its hold and Retain")
	require.Eventually(t, func() bool { return pttl("refused") == -2 }, 10*time.Second, 10*time.Millisecond)
	_, err = s.Get(ctx, "short")
	require.ErrorIs(t, err, stock.ErrNotFound)
	_, err = s.Confirm(ctx, "short")
	require.ErrorIs(t, err, stock.ErrNotFound)

	r, err := s.Reserve(ctx, stock.ReserveRequest{Item: "mugs", Holder: "dee", ID: "short", Hold: 50 * time.Millisecond})
	require.NoError(t, err)
	require.Equal(t, stock.Expired, r.State, "the retry finds the reservation it made")
	got, err := s.Get(ctx, "short")
	require.NoError(t, err, "the retry bound the ID again")
	require.Equal(t, stock.Expired, got.State)
	require.Equal(t, stock.Level{Item: "mugs", Available: 1, Confirmed: 1}, level(t, s, "mugs"))
	require.Equal(t, time.Duration(-1), pttl("kept"))
	checkItem(t, s, client, "mugs")
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	define(t, s, "shoes", stock.ItemConfig{}, 5)

	before, err := client.Time(ctx).Result()
	require.NoError(t, err)
	r := reserve(t, s, "shoes", "ann", "r1", 2, time.Minute)
	require.Equal(t, stock.Reservation{ID: "r1", Item: "shoes", Holder: "ann", Quantity: 2,
		State: stock.Held, ExpiresAt: r.ExpiresAt}, r)
	require.WithinDuration(t, before.Add(time.Minute), r.ExpiresAt, 5*time.Second)
	require.Equal(t, stock.Level{Item: "shoes", Available: 3, Held: 2}, level(t, s, "shoes"))

	again := reserve(t, s, "shoes", "ann", "r1", 2, time.Hour)
	require.Equal(t, r, again, "a retried Reserve returns the same reservation")
	_, err = s.Reserve(ctx, stock.ReserveRequest{Item: "shoes", Holder: "bob", ID: "r1", Quantity: 2, Hold: time.Minute})
	require.ErrorIs(t, err, stock.ErrConflict)
	_, err = s.Reserve(ctx, stock.ReserveRequest{Item: "shoes", Holder: "ann", ID: "r1", Quantity: 3, Hold: time.Minute})
	require.ErrorIs(t, err, stock.ErrConflict)

	got, err := s.Get(ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, r, got)

	c, err := s.Confirm(ctx, "r1")
	require.NoError(t, err)
	r.State = stock.Confirmed
	require.Equal(t, r, c)
	c2, err := s.Confirm(ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, c, c2)
	require.ErrorIs(t, s.Release(ctx, "r1"), stock.ErrConfirmed)

	reserve(t, s, "shoes", "bob", "r2", 1, time.Minute)
	require.NoError(t, s.Release(ctx, "r2"))
	require.NoError(t, s.Release(ctx, "r2"))
	_, err = s.Confirm(ctx, "r2")
	require.ErrorIs(t, err, stock.ErrReleased)
	got, err = s.Get(ctx, "r2")
	require.NoError(t, err)
	require.Equal(t, stock.Released, got.State)
	require.Equal(t, stock.Level{Item: "shoes", Available: 3, Confirmed: 2}, level(t, s, "shoes"))

	_, err = s.Reserve(ctx, stock.ReserveRequest{Item: "shoes", Holder: "cy", ID: "r3", Quantity: 4, Hold: time.Minute})
	var re *stock.ReservationError
	require.ErrorAs(t, err, &re)
	require.ErrorIs(t, err, stock.ErrSoldOut)
	require.Equal(t, stock.ReservationError{Item: "shoes", Available: 3, Err: stock.ErrSoldOut}, *re)

	for _, id := range []string{"nope", ""} {
		_, err = s.Get(ctx, id)
		require.ErrorIs(t, err, stock.ErrNotFound)
		_, err = s.Confirm(ctx, id)
		require.ErrorIs(t, err, stock.ErrNotFound)
		require.ErrorIs(t, s.Release(ctx, id), stock.ErrNotFound)
	}
	checkItem(t, s, client, "shoes")
}

func TestItemErrors(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	for _, item := range []string{"ghost", ""} {
		require.ErrorIs(t, s.Restock(ctx, item, 1), stock.ErrUnknownItem)
		_, err := s.LoadCodes(ctx, item, []string{"a"})
		require.ErrorIs(t, err, stock.ErrUnknownItem)
		_, err = s.Level(ctx, item)
		require.ErrorIs(t, err, stock.ErrUnknownItem)
		require.ErrorIs(t, s.Disable(ctx, item, "x"), stock.ErrUnknownItem)
		require.ErrorIs(t, s.Enable(ctx, item), stock.ErrUnknownItem)
	}
	_, err := s.Reserve(ctx, stock.ReserveRequest{Item: "ghost", Holder: "h", ID: "g1", Hold: time.Minute})
	require.ErrorIs(t, err, stock.ErrUnknownItem)

	require.Error(t, s.Define(ctx, "", stock.ItemConfig{}))
	require.Error(t, s.Define(ctx, "x", stock.ItemConfig{HolderLimit: -1}))
	define(t, s, "counted", stock.ItemConfig{}, 0)
	define(t, s, "codes", stock.ItemConfig{Codes: true}, 0)
	require.ErrorContains(t, s.Define(ctx, "counted", stock.ItemConfig{Codes: true}), "cannot change")
	require.ErrorContains(t, s.Define(ctx, "codes", stock.ItemConfig{}), "cannot change")
	require.ErrorContains(t, s.Restock(ctx, "codes", 1), "code pool")
	_, err = s.LoadCodes(ctx, "counted", []string{"a"})
	require.ErrorContains(t, err, "counts units")
	require.Error(t, s.Restock(ctx, "counted", 0))
	require.Error(t, s.Restock(ctx, "counted", -1))

	// Counts stay below 2^53, where Lua numbers are exact.
	require.NoError(t, s.Restock(ctx, "counted", 1<<52))
	require.ErrorContains(t, s.Restock(ctx, "counted", 1<<52), "at most 2^53-1")
	require.NoError(t, s.Restock(ctx, "counted", 1<<52-1))
	require.ErrorContains(t, s.Restock(ctx, "counted", 1), "at most 2^53-1")
	r, err := s.Reserve(ctx, stock.ReserveRequest{Item: "counted", Holder: "h", ID: "big", Hold: time.Minute})
	require.NoError(t, err)
	require.Equal(t, stock.Held, r.State)
	lvl, err := s.Level(ctx, "counted")
	require.NoError(t, err)
	require.Equal(t, maxUnits-1, lvl.Available)
	checkItem(t, s, s.client, "counted")

	_, err = s.Sweep(ctx, 0)
	require.Error(t, err)
}

// TestConcurrentReserves races many more Reserves than there are units:
// exactly as many are granted as there are units, and the others are
// refused as sold out.
func TestConcurrentReserves(t *testing.T) {
	t.Parallel()
	const units, reservers = 100, 5000
	s, client := newStore(t)
	define(t, s, "drop", stock.ItemConfig{HolderLimit: 1}, units)

	errs := make([]error, reservers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range reservers {
		wg.Go(func() {
			<-start
			_, errs[i] = s.Reserve(context.Background(), stock.ReserveRequest{
				Item: "drop", Holder: fmt.Sprintf("h%d", i), ID: fmt.Sprintf("r%d", i), Hold: time.Minute})
		})
	}
	close(start)
	wg.Wait()

	granted := 0
	for _, err := range errs {
		if err == nil {
			granted++
			continue
		}
		var re *stock.ReservationError
		require.ErrorAs(t, err, &re)
		require.ErrorIs(t, err, stock.ErrSoldOut)
		require.Zero(t, re.Available)
	}
	require.Equal(t, units, granted)
	require.Equal(t, stock.Level{Item: "drop", Held: units}, level(t, s, "drop"))
	checkItem(t, s, client, "drop")
}

// TestConcurrentRetries races Reserves that share one ID: one reservation
// is made, and every call gets it.
func TestConcurrentRetries(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	define(t, s, "tickets", stock.ItemConfig{}, 10)
	const n = 64
	got := make([]stock.Reservation, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got[i], errs[i] = s.Reserve(context.Background(), stock.ReserveRequest{
				Item: "tickets", Holder: "ann", ID: "same", Quantity: 3, Hold: time.Minute})
		})
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, got[0], got[i])
	}
	require.Equal(t, stock.Level{Item: "tickets", Available: 7, Held: 3}, level(t, s, "tickets"))
	checkItem(t, s, client, "tickets")
}

// TestHolderCountsFollowTheLimit: an item keeps its holders' counts only
// while it has a holder limit. Setting one counts them afresh from the
// reservations (held ones whose time has come included, until they are
// expired), and removing it drops them.
func TestHolderCountsFollowTheLimit(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	k := s.keys("mugs")
	counts := func() map[string]string {
		t.Helper()
		m, err := client.HGetAll(ctx, k.holders).Result()
		require.NoError(t, err)
		return m
	}
	define(t, s, "mugs", stock.ItemConfig{}, 20)
	reserve(t, s, "mugs", "ann", "a1", 2, time.Minute)
	reserve(t, s, "mugs", "ann", "a2", 1, time.Minute)
	_, err := s.Confirm(ctx, "a2")
	require.NoError(t, err)
	reserve(t, s, "mugs", "bob", "b1", 3, time.Minute)
	require.NoError(t, s.Release(ctx, "b1"))
	reserve(t, s, "mugs", "bob", "b2", 1, time.Minute)
	reserve(t, s, "mugs", "cy", "c1", 1, 20*time.Millisecond)
	checkItem(t, s, client, "mugs")
	require.Empty(t, counts(), "no counts without a limit")

	time.Sleep(40 * time.Millisecond) // c1's time has come; nothing has expired it
	define(t, s, "mugs", stock.ItemConfig{HolderLimit: 3}, 0)
	require.Equal(t, map[string]string{"ann": "3", "bob": "1", "cy": "1"}, counts(), "counted afresh")
	checkItem(t, s, client, "mugs")

	_, err = s.Reserve(ctx, stock.ReserveRequest{Item: "mugs", Holder: "ann", ID: "a3", Quantity: 1, Hold: time.Minute})
	require.ErrorIs(t, err, stock.ErrHolderLimit, "ann holds 2 and has 1 confirmed")
	reserve(t, s, "mugs", "bob", "b3", 2, time.Minute)
	require.Equal(t, stock.Level{Item: "mugs", Available: 14, Held: 5, Confirmed: 1}, level(t, s, "mugs"))
	require.Equal(t, map[string]string{"ann": "3", "bob": "3"}, counts(), "c1 expired by Level")
	checkItem(t, s, client, "mugs")

	define(t, s, "mugs", stock.ItemConfig{}, 0)
	require.Empty(t, counts(), "counts dropped with the limit")
	reserve(t, s, "mugs", "ann", "a4", 5, time.Minute)
	checkItem(t, s, client, "mugs")
	define(t, s, "mugs", stock.ItemConfig{HolderLimit: 10}, 0)
	require.Equal(t, map[string]string{"ann": "8", "bob": "3"}, counts())
	checkItem(t, s, client, "mugs")

	// An item stored before counts followed the limit has no counted
	// field, and keeps its counts.
	require.NoError(t, client.HDel(ctx, k.item, "counted").Err())
	reserve(t, s, "mugs", "dee", "d1", 1, time.Minute)
	require.Equal(t, map[string]string{"ann": "8", "bob": "3", "dee": "1"}, counts())
	checkItem(t, s, client, "mugs")

	// A build that predates the counted field sets a limit by writing
	// holder_limit alone, on an item whose counts are not kept: the next
	// script of the item counts them before it checks the limit.
	define(t, s, "mugs", stock.ItemConfig{}, 0)
	reserve(t, s, "mugs", "ann", "a5", 1, time.Minute)
	require.Empty(t, counts())
	require.NoError(t, client.HSet(ctx, k.item, "holder_limit", 9).Err())
	_, err = s.Reserve(ctx, stock.ReserveRequest{Item: "mugs", Holder: "ann", ID: "a6", Quantity: 1, Hold: time.Minute})
	require.ErrorIs(t, err, stock.ErrHolderLimit, "ann holds 9 units")
	require.Equal(t, map[string]string{"ann": "9", "bob": "3", "dee": "1"}, counts())
	checkItem(t, s, client, "mugs")
}

func TestHolderLimitAndDisable(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	define(t, s, "voucher", stock.ItemConfig{HolderLimit: 2}, 10)
	reserve(t, s, "voucher", "ann", "a1", 1, time.Minute)
	_, err := s.Confirm(ctx, "a1")
	require.NoError(t, err)
	reserve(t, s, "voucher", "ann", "a2", 1, time.Minute)
	_, err = s.Reserve(ctx, stock.ReserveRequest{Item: "voucher", Holder: "ann", ID: "a3", Hold: time.Minute})
	var re *stock.ReservationError
	require.ErrorAs(t, err, &re)
	require.Equal(t, stock.ReservationError{Item: "voucher", Available: 8, Err: stock.ErrHolderLimit}, *re)
	require.NoError(t, s.Release(ctx, "a2"))
	reserve(t, s, "voucher", "ann", "a3", 1, time.Minute)

	require.NoError(t, s.Disable(ctx, "voucher", "partner down"))
	_, err = s.Reserve(ctx, stock.ReserveRequest{Item: "voucher", Holder: "bob", ID: "b1", Hold: time.Minute})
	require.ErrorAs(t, err, &re)
	require.Equal(t, stock.ReservationError{Item: "voucher", Available: 8, Err: stock.ErrDisabled, Reason: "partner down"}, *re)
	require.Equal(t, stock.Level{Item: "voucher", Available: 8, Held: 1, Confirmed: 1, Disabled: true, Reason: "partner down"},
		level(t, s, "voucher"))
	// An existing hold can still be confirmed, and a retry still answers.
	_, err = s.Confirm(ctx, "a3")
	require.NoError(t, err)
	reserve(t, s, "voucher", "ann", "a3", 1, time.Minute)

	require.NoError(t, s.Enable(ctx, "voucher"))
	reserve(t, s, "voucher", "bob", "b1", 2, time.Minute)
	// Define updates the limit of an existing item, keeping its units.
	require.NoError(t, s.Define(ctx, "voucher", stock.ItemConfig{HolderLimit: 3}))
	reserve(t, s, "voucher", "bob", "b2", 1, time.Minute)
	require.Equal(t, stock.Level{Item: "voucher", Available: 5, Held: 3, Confirmed: 2}, level(t, s, "voucher"))
	checkItem(t, s, client, "voucher")
}

// waitExpired waits until the server's clock has passed r's expiry, as
// Get observes it.
func waitExpired(t *testing.T, s *Store, id string) {
	t.Helper()
	require.Eventually(t, func() bool {
		r, err := s.Get(t.Context(), id)
		require.NoError(t, err)
		return r.State == stock.Expired
	}, 10*time.Second, 5*time.Millisecond)
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	define(t, s, "cakes", stock.ItemConfig{HolderLimit: 1}, 2)
	reserve(t, s, "cakes", "ann", "short", 1, 30*time.Millisecond)
	reserve(t, s, "cakes", "bob", "long", 1, time.Hour)
	waitExpired(t, s, "short")

	// Not yet swept: the units are still counted as held in Redis, but
	// Confirm sees the hold is over, and gives them back.
	held, err := client.HGet(ctx, s.keys("cakes").item, "held").Int()
	require.NoError(t, err)
	require.Equal(t, 2, held)
	_, err = s.Confirm(ctx, "short")
	require.ErrorIs(t, err, stock.ErrExpired)
	require.NoError(t, s.Release(ctx, "short"), "releasing an expired hold succeeds")
	r, err := s.Get(ctx, "short")
	require.NoError(t, err)
	require.Equal(t, stock.Expired, r.State)
	r = reserve(t, s, "cakes", "ann", "short", 1, time.Hour)
	require.Equal(t, stock.Expired, r.State, "a retried Reserve returns the expired reservation")
	require.Equal(t, stock.Level{Item: "cakes", Available: 1, Held: 1}, level(t, s, "cakes"))

	// The holder's expired hold no longer counts against the limit.
	reserve(t, s, "cakes", "ann", "again", 1, 30*time.Millisecond)
	waitExpired(t, s, "again")
	n, err := s.Sweep(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = s.Sweep(ctx, 10)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, stock.Level{Item: "cakes", Available: 1, Held: 1}, level(t, s, "cakes"))
	checkItem(t, s, client, "cakes")
}

// TestDueHolds checks that a Reserve expires the holds that are due even
// when a hold that ends later was made first: the item's due bound is
// lowered by a shorter hold.
func TestDueHolds(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	define(t, s, "tea", stock.ItemConfig{}, 3)
	reserve(t, s, "tea", "ann", "long", 1, time.Hour)
	reserve(t, s, "tea", "bob", "short", 1, 30*time.Millisecond)
	checkItem(t, s, client, "tea")
	waitExpired(t, s, "short")
	reserve(t, s, "tea", "cy", "next", 1, time.Hour)
	state, _, ok := record(t, client, s.keys("tea"), "short")
	require.True(t, ok)
	require.Equal(t, "expired", state, "the Reserve expired the due hold")
	checkItem(t, s, client, "tea")
	require.Equal(t, stock.Level{Item: "tea", Available: 1, Held: 2}, level(t, s, "tea"))
}

// TestReserveLooksPastSweepBatch fills an item with more expired holds than
// a Reserve sweeps first: the Reserve must still see every unit that came
// back, and so must a holder's limit.
func TestReserveLooksPastSweepBatch(t *testing.T) {
	t.Parallel()
	const units = 3*sweepBatch + 7
	s, client := newStore(t)
	ctx := t.Context()

	// fill reserves every unit of item in holds of two seconds, and waits
	// until they are all due and none has been expired yet.
	fill := func(item string, holder func(i int) string) {
		define(t, s, item, stock.ItemConfig{HolderLimit: units}, units)
		errs := make([]error, units)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < units; i += 8 {
					_, errs[i] = s.Reserve(ctx, stock.ReserveRequest{Item: item, Holder: holder(i),
						ID: fmt.Sprintf("%s-%d", item, i), Hold: 2 * time.Second})
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		for i := range units {
			waitExpired(t, s, fmt.Sprintf("%s-%d", item, i))
		}
		n, err := client.ZCard(ctx, s.keys(item).holds).Result()
		require.NoError(t, err)
		require.Equal(t, int64(units), n, "holds expired while filling; the test is too slow")
	}

	// Every unit and all of ann's allowance are back only once all the
	// holds are expired.
	fill("bulk", func(int) string { return "ann" })
	reserve(t, s, "bulk", "ann", "all", units, time.Minute)
	checkItem(t, s, client, "bulk")
	n, err := s.Sweep(ctx, units)
	require.NoError(t, err)
	require.Zero(t, n)

	fill("bulk2", func(i int) string { return fmt.Sprintf("h%d", i) })
	n, err = s.Sweep(ctx, sweepBatch+1)
	require.NoError(t, err)
	require.Equal(t, sweepBatch+1, n)
	checkItem(t, s, client, "bulk2")
	n, err = s.Sweep(ctx, units)
	require.NoError(t, err)
	require.Equal(t, units-sweepBatch-1, n)
	require.Equal(t, stock.Level{Item: "bulk2", Available: units}, level(t, s, "bulk2"))
	checkItem(t, s, client, "bulk2")
}

func TestCodes(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	define(t, s, "gift", stock.ItemConfig{Codes: true}, 0)
	odd := []string{"A-1", "12:x", "3:ab", "{brace}", "\x00\xff", " "}
	n, err := s.LoadCodes(ctx, "gift", append(odd, "A-1", ""))
	require.NoError(t, err)
	require.Equal(t, len(odd), n, "duplicates and empty codes are not loaded")
	n, err = s.LoadCodes(ctx, "gift", []string{"A-1", "new"})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, stock.Level{Item: "gift", Available: 7}, level(t, s, "gift"))

	reserve(t, s, "gift", "ann", "g1", 4, time.Minute)
	c, err := s.Confirm(ctx, "g1")
	require.NoError(t, err)
	require.Equal(t, odd[:4], c.Codes, "codes go out in load order")
	got, err := s.Get(ctx, "g1")
	require.NoError(t, err)
	require.Equal(t, c, got)
	c2, err := s.Confirm(ctx, "g1")
	require.NoError(t, err)
	require.Equal(t, c, c2)

	// A code given out is never loaded again.
	n, err = s.LoadCodes(ctx, "gift", odd)
	require.NoError(t, err)
	require.Zero(t, n)
	reserve(t, s, "gift", "bob", "g2", 3, time.Minute)
	c, err = s.Confirm(ctx, "g2")
	require.NoError(t, err)
	require.Equal(t, []string{odd[4], odd[5], "new"}, c.Codes)
	checkItem(t, s, client, "gift")

	// Codes removed outside the store: the confirmation fails and changes
	// nothing.
	n, err = s.LoadCodes(ctx, "gift", []string{"last"})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	reserve(t, s, "gift", "cy", "g3", 1, time.Minute)
	require.NoError(t, client.Del(ctx, s.keys("gift").free).Err())
	_, err = s.Confirm(ctx, "g3")
	require.ErrorIs(t, err, stock.ErrNoCodes)
	r, err := s.Get(ctx, "g3")
	require.NoError(t, err)
	require.Equal(t, stock.Held, r.State)

	// Large loads go in batches; the count is exact.
	define(t, s, "many", stock.ItemConfig{Codes: true}, 0)
	many := make([]string, 2*codesPerScript+5)
	for i := range many {
		many[i] = fmt.Sprintf("c%05d", i%(2*codesPerScript))
	}
	n, err = s.LoadCodes(ctx, "many", many)
	require.NoError(t, err)
	require.Equal(t, 2*codesPerScript, n)
	n, err = s.LoadCodes(ctx, "many", nil)
	require.NoError(t, err)
	require.Zero(t, n)
}

// TestIDBoundToItem checks the pointer from a reservation ID to its item.
func TestIDBoundToItem(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	define(t, s, "a", stock.ItemConfig{}, 1)
	define(t, s, "b", stock.ItemConfig{}, 1)
	reserve(t, s, "a", "ann", "x", 1, time.Minute)
	// The script ran in b in the same round trip as the pointer, and made
	// a hold; the conflict undid it.
	_, err := s.Reserve(ctx, stock.ReserveRequest{Item: "b", Holder: "ann", ID: "x", Hold: time.Minute})
	require.ErrorIs(t, err, stock.ErrConflict)
	require.Equal(t, stock.Level{Item: "b", Available: 1}, level(t, s, "b"))
	_, _, ok := record(t, client, s.keys("b"), "x")
	require.False(t, ok, "the undone reservation is gone")
	checkItem(t, s, client, "b")
	// Refused in b, or not: still a conflict, still nothing taken.
	_, err = s.Reserve(ctx, stock.ReserveRequest{Item: "b", Holder: "ann", ID: "x", Quantity: 2, Hold: time.Minute})
	require.ErrorIs(t, err, stock.ErrConflict)
	got, err := s.Get(ctx, "x")
	require.NoError(t, err)
	require.Equal(t, "a", got.Item)

	// A crash after the pointer is written and before the reservation:
	// the ID reads as not found, and a retry completes it.
	require.NoError(t, client.Set(ctx, s.pointerKey("y"), "b", 0).Err())
	_, err = s.Get(ctx, "y")
	require.ErrorIs(t, err, stock.ErrNotFound)
	_, err = s.Confirm(ctx, "y")
	require.ErrorIs(t, err, stock.ErrNotFound)
	require.ErrorIs(t, s.Release(ctx, "y"), stock.ErrNotFound)
	r := reserve(t, s, "b", "bob", "y", 1, time.Minute)
	require.Equal(t, "b", r.Item)
	item, err := client.Get(ctx, s.pointerKey("y")).Result()
	require.NoError(t, err)
	require.Equal(t, "b", item)
	checkItem(t, s, client, "a")
	checkItem(t, s, client, "b")
}

// runReserve runs the reservation script alone, as one half of a Reserve
// whose other half (the pointer) was lost, failed or ran elsewhere.
func runReserve(t *testing.T, s *Store, item, holder, id string, hold time.Duration, nonce string) []any {
	t.Helper()
	v := runBatch(t, s, item, batchReq{id: id, holder: holder, qty: 1, hold: hold, nonce: nonce})
	require.Len(t, v, 1)
	return v[0]
}

type batchReq struct {
	id, holder string
	qty        int
	hold       time.Duration
	nonce      string
}

// runBatch runs reserveBatchScript once for reqs and returns its replies.
func runBatch(t *testing.T, s *Store, item string, reqs ...batchReq) [][]any {
	t.Helper()
	k := s.keys(item)
	args := []any{sweepBatch}
	for _, r := range reqs {
		args = append(args, r.id, r.holder, r.qty, millis(r.hold), r.nonce)
	}
	v, err := reserveBatchScript.Run(t.Context(), s.client, k.scriptKeys(), args...).Slice()
	require.NoError(t, err)
	out, err := splitReplies(v, len(reqs))
	require.NoError(t, err)
	return out
}

func runUndo(t *testing.T, s *Store, item, id, nonce string) int64 {
	t.Helper()
	k := s.keys(item)
	n, err := undoReserveScript.Run(t.Context(), s.client, k.scriptKeys(), id, nonce).Int64()
	require.NoError(t, err)
	return n
}

// TestUndoReserve checks the undo of a reservation made under an ID bound
// to another item: only the call that made it (its nonce) undoes it, a
// retried script keeps the nonce, and the undo gives the units back once.
func TestUndoReserve(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	define(t, s, "b", stock.ItemConfig{HolderLimit: 1}, 2)

	parse := func(v []any) stock.Reservation {
		t.Helper()
		r, err := reserved(stock.ReserveRequest{Item: "b", Holder: "ann", ID: "x", Quantity: 1}, v)
		require.NoError(t, err)
		return r
	}
	r := parse(runReserve(t, s, "b", "ann", "x", time.Minute, "n1"))
	// go-redis retried the script: the same reservation, the same nonce.
	require.Equal(t, r, parse(runReserve(t, s, "b", "ann", "x", time.Minute, "n1")))
	require.Zero(t, runUndo(t, s, "b", "x", "n2"), "a call undoes only what it made")
	require.Equal(t, stock.Level{Item: "b", Available: 1, Held: 1}, level(t, s, "b"))
	// Another call with the same ID (and another nonce) found it, and was
	// given it: the call that made it may no longer undo it.
	require.Equal(t, r, parse(runReserve(t, s, "b", "ann", "x", time.Minute, "n2")))
	require.Zero(t, runUndo(t, s, "b", "x", "n1"), "an undo leaves a reservation another call was given")
	require.Equal(t, stock.Level{Item: "b", Available: 1, Held: 1}, level(t, s, "b"))
	require.Equal(t, int64(1), runUndo(t, s, "b", "x", "n2"))
	require.Zero(t, runUndo(t, s, "b", "x", "n2"), "a retried undo changes nothing")
	require.Equal(t, stock.Level{Item: "b", Available: 2}, level(t, s, "b"))
	checkItem(t, s, client, "b")
	// ann's count went back too: her limit lets her reserve again.
	reserve(t, s, "b", "ann", "x2", 1, time.Minute)

	// A hold that expired before its undo: the units are already back,
	// the undo only removes the record.
	require.Equal(t, int64(stOK), runReserve(t, s, "b", "bob", "y", 20*time.Millisecond, "n3")[0])
	require.Eventually(t, func() bool {
		return level(t, s, "b") == stock.Level{Item: "b", Available: 1, Held: 1}
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, int64(1), runUndo(t, s, "b", "y", "n3"))
	require.Equal(t, stock.Level{Item: "b", Available: 1, Held: 1}, level(t, s, "b"))
	checkItem(t, s, client, "b")
}

// TestUndoAfterRebinding: a Reserve finds its ID bound to another item,
// and before its undo runs that binding lapses and a retry for this item
// binds the ID again and is given the reservation. The undo must leave it
// to the retry.
func TestUndoAfterRebinding(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	define(t, s, "a", stock.ItemConfig{}, 1)
	define(t, s, "b", stock.ItemConfig{}, 1)

	// Call X: the pointer named b; its script made a hold in a.
	require.NoError(t, client.Set(ctx, s.pointerKey("k"), "b", 0).Err())
	require.Equal(t, int64(stOK), runReserve(t, s, "a", "ann", "k", time.Hour, "nX")[0])
	// The binding to b lapses; call Y, for a, binds k and is given X's hold.
	require.NoError(t, client.Del(ctx, s.pointerKey("k")).Err())
	y := reserve(t, s, "a", "ann", "k", 1, time.Hour)
	require.Equal(t, stock.Held, y.State)
	// X's undo comes late.
	require.Zero(t, runUndo(t, s, "a", "k", "nX"))

	got, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, y, got)
	c, err := s.Confirm(ctx, "k")
	require.NoError(t, err, "Y's hold is still Y's")
	require.Equal(t, stock.Confirmed, c.State)
	require.Equal(t, stock.Level{Item: "a", Confirmed: 1}, level(t, s, "a"))
	checkItem(t, s, client, "a")
}

// TestBindingOutlastsHold: an ID first bound by a Reserve that was
// refused, or that asked for a shorter hold, stays bound as long as the
// hold it is given, and Retain more.
func TestBindingOutlastsHold(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	const retain = time.Second
	s, err := New(client, Options{Prefix: prefix, Retain: retain})
	require.NoError(t, err)
	ctx := t.Context()
	define(t, s, "mugs", stock.ItemConfig{}, 0)
	pttl := func(id string) time.Duration { return pointerTTL(t, s, client, id) }

	_, err = s.Reserve(ctx, stock.ReserveRequest{Item: "mugs", Holder: "ann", ID: "x", Hold: time.Second})
	require.ErrorIs(t, err, stock.ErrSoldOut)
	require.LessOrEqual(t, pttl("x"), 2*time.Second)
	require.NoError(t, s.Restock(ctx, "mugs", 2))
	r := reserve(t, s, "mugs", "ann", "x", 1, time.Hour)
	require.Equal(t, stock.Held, r.State)
	require.InDelta(t, float64(time.Hour+retain), float64(pttl("x")), float64(time.Minute),
		"the retry that got the hold lengthened the refused call's binding")

	// A retry with a shorter hold finds the reservation and shortens nothing.
	again := reserve(t, s, "mugs", "ann", "x", 1, time.Second)
	require.Equal(t, r, again)
	require.InDelta(t, float64(time.Hour+retain), float64(pttl("x")), float64(time.Minute))

	// A binding made lasting stays so.
	_, err = s.Confirm(ctx, "x")
	require.NoError(t, err)
	reserve(t, s, "mugs", "ann", "x", 1, time.Hour)
	require.Equal(t, time.Duration(-1), pttl("x"))

	// A hold as long as a time.Duration goes: the binding's lifetime
	// stops there rather than wrapping around.
	long := reserve(t, s, "mugs", "bob", "long", 1, math.MaxInt64)
	require.Equal(t, stock.Held, long.State)
	require.Greater(t, pttl("long"), 100*365*24*time.Hour)
	checkItem(t, s, client, "mugs")
}

// TestConfirmBindsOnlyConfirmed: Confirm makes an ID's binding lasting
// only for a reservation it confirmed; the ID of a refused Reserve, or of
// a released hold, still lapses.
func TestConfirmBindsOnlyConfirmed(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	define(t, s, "mugs", stock.ItemConfig{}, 1)
	pttl := func(id string) time.Duration { return pointerTTL(t, s, client, id) }

	reserve(t, s, "mugs", "ann", "held", 1, time.Minute)
	_, err := s.Reserve(ctx, stock.ReserveRequest{Item: "mugs", Holder: "bob", ID: "refused", Hold: time.Minute})
	require.ErrorIs(t, err, stock.ErrSoldOut)
	_, err = s.Confirm(ctx, "refused")
	require.ErrorIs(t, err, stock.ErrNotFound)
	require.Positive(t, pttl("refused"), "a refused ID's binding still lapses")

	require.NoError(t, s.Release(ctx, "held"))
	_, err = s.Confirm(ctx, "held")
	require.ErrorIs(t, err, stock.ErrReleased)
	require.Positive(t, pttl("held"), "a released ID's binding still lapses")

	reserve(t, s, "mugs", "cy", "kept", 1, time.Minute)
	_, err = s.Confirm(ctx, "kept")
	require.NoError(t, err)
	require.Equal(t, time.Duration(-1), pttl("kept"))
	checkItem(t, s, client, "mugs")
}

// TestUnboundReservation covers the halves of a Reserve running apart,
// as they can in Redis Cluster, where the pointer and the item are on
// different nodes, or when the client dies between the reply and the
// undo: a reservation that no pointer leads to is never lost for longer
// than its hold, and a retry with its ID finds it.
func TestUnboundReservation(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	define(t, s, "a", stock.ItemConfig{}, 1)
	define(t, s, "b", stock.ItemConfig{}, 1)

	// The script ran and the pointer write failed: the retry binds the ID
	// and returns the same reservation, taking nothing more.
	v := runReserve(t, s, "b", "ann", "x", time.Minute, "n1")
	_, err := s.Get(ctx, "x")
	require.ErrorIs(t, err, stock.ErrNotFound)
	r := reserve(t, s, "b", "ann", "x", 1, time.Minute)
	want, err := reserved(stock.ReserveRequest{Item: "b", Holder: "ann", ID: "x", Quantity: 1}, v)
	require.NoError(t, err)
	require.Equal(t, want, r)
	require.Equal(t, stock.Level{Item: "b", Held: 1}, level(t, s, "b"))

	// The pointer names a; the script ran in a as well as in b, and the
	// caller died before its undo: b's hold cannot be reached, and its
	// unit comes back when it expires.
	require.NoError(t, s.Release(ctx, "x"))
	reserve(t, s, "a", "bob", "y", 1, time.Minute)
	require.Equal(t, int64(stOK), runReserve(t, s, "b", "bob", "y", 2*time.Second, "n2")[0])
	require.Equal(t, stock.Level{Item: "b", Available: 0, Held: 1}, level(t, s, "b"))
	require.Eventually(t, func() bool {
		return level(t, s, "b") == stock.Level{Item: "b", Available: 1}
	}, 10*time.Second, 5*time.Millisecond)
	got, err := s.Get(ctx, "y")
	require.NoError(t, err)
	require.Equal(t, stock.Reservation{ID: "y", Item: "a", Holder: "bob", Quantity: 1, State: stock.Held,
		ExpiresAt: got.ExpiresAt}, got)
	checkItem(t, s, client, "a")
	checkItem(t, s, client, "b")
}

// TestRetriedCalls runs Restock and LoadCodes scripts twice with one
// receipt, as go-redis does when a reply is lost: the retry adds nothing.
func TestRetriedCalls(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	define(t, s, "counted", stock.ItemConfig{}, 0)
	define(t, s, "codes", stock.ItemConfig{Codes: true}, 0)
	ttl := receiptTTL.Milliseconds()

	k := s.keys("counted")
	for range 2 {
		require.NoError(t, restockScript.Run(ctx, client, []string{k.item, k.receipt("n1")}, 5, ttl, maxUnits).Err())
	}
	require.Equal(t, 5, level(t, s, "counted").Available)

	k = s.keys("codes")
	for range 2 {
		v, err := loadCodesScript.Run(ctx, client, []string{k.item, k.free, k.all, k.receipt("n2")}, ttl, "a", "b").Slice()
		require.NoError(t, err)
		require.Equal(t, []any{int64(1), int64(2)}, v)
	}
	require.Equal(t, 2, level(t, s, "codes").Available)
	pttl, err := client.PTTL(ctx, k.receipt("n2")).Result()
	require.NoError(t, err)
	require.Positive(t, pttl)
	checkItem(t, s, client, "counted")
	checkItem(t, s, client, "codes")
}

// hashTag returns the part of a Redis key that decides its cluster slot,
// by the rule of the cluster specification: the text between the first '{'
// and the first '}' after it, if that is not empty; otherwise the whole key.
func hashTag(key string) string {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return key
	}
	return key[open+1 : open+1+end]
}

// TestKeysShareHashTag checks that every key of an item, whatever its name
// and its reservation IDs, carries the item's hash tag, so that its
// scripts run on Redis Cluster.
func TestKeysShareHashTag(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	names := []string{"plain", "{x}", "}{", "{", "a{b}c", "%7B", "}"}
	for i, item := range names {
		// A holder limit, so that the item keeps its holders' counts.
		define(t, s, item, stock.ItemConfig{Codes: i%2 == 1, HolderLimit: 10}, 0)
		if i%2 == 1 {
			_, err := s.LoadCodes(ctx, item, []string{"c1", "c2", "c3"})
			require.NoError(t, err)
		} else {
			require.NoError(t, s.Restock(ctx, item, 3))
		}
		for j, id := range []string{"r", "{r}", "}", "{"} {
			id := fmt.Sprintf("%d%s", i, id)
			reserve(t, s, item, "ann", id, 1, time.Minute)
			switch j {
			case 1:
				_, err := s.Confirm(ctx, id)
				require.NoError(t, err)
			case 2:
				require.NoError(t, s.Release(ctx, id))
			}
		}
		_, err := s.Level(ctx, item)
		require.NoError(t, err)
	}

	// Group the keys by hash tag: one tag per item, one per reservation
	// pointer, and the item set.
	byTag := map[string][]string{}
	iter := client.Scan(ctx, 0, s.prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		byTag[hashTag(k)] = append(byTag[hashTag(k)], k)
	}
	require.NoError(t, iter.Err())
	require.Contains(t, byTag, s.items)
	pointers := 0
	for i, item := range names {
		k := s.keys(item)
		tag := hashTag(k.item)
		require.NotEqual(t, k.item, tag, "item %q has no hash tag", item)
		keys := byTag[tag]
		require.Contains(t, keys, k.item, "item %q", item)
		require.Contains(t, keys, k.holds, "item %q", item)
		require.Contains(t, keys, k.holders, "item %q", item)
		if i%2 == 1 {
			require.Contains(t, keys, k.free, "item %q", item)
			require.Contains(t, keys, k.all, "item %q", item)
		}
		require.Contains(t, keys, k.resv, "item %q", item)
		for _, key := range keys {
			require.True(t, strings.HasPrefix(key, k.base), "key %q in the slot of item %q", key, item)
		}
		n, err := client.HLen(ctx, k.resv).Result()
		require.NoError(t, err)
		require.Equal(t, int64(4), n, "item %q", item)
		delete(byTag, tag)
		checkItem(t, s, client, item)
	}
	for tag, keys := range byTag {
		if tag == s.items {
			continue
		}
		require.True(t, strings.HasPrefix(tag, "res:"), "stray keys %q", keys)
		pointers++
	}
	require.Equal(t, 4*len(names), pointers)
}

func TestNoScript(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	flush := func() {
		// SCRIPT FLUSH is server-wide: other tests running at the same
		// time see NOSCRIPT too, which go-redis answers with EVAL.
		require.NoError(t, client.ScriptFlush(ctx).Err())
	}
	flush()
	require.NoError(t, s.Define(ctx, "n", stock.ItemConfig{}))
	flush()
	require.NoError(t, s.Restock(ctx, "n", 3))
	flush()
	require.NoError(t, s.Define(ctx, "c", stock.ItemConfig{Codes: true}))
	flush()
	_, err := s.LoadCodes(ctx, "c", []string{"x"})
	require.NoError(t, err)
	flush()
	reserve(t, s, "n", "ann", "r1", 1, time.Minute)
	flush()
	reserve(t, s, "c", "ann", "r2", 1, time.Minute)
	flush()
	_, err = s.Confirm(ctx, "r2")
	require.NoError(t, err)
	flush()
	require.NoError(t, s.Release(ctx, "r1"))
	flush()
	_, err = s.Get(ctx, "r1")
	require.NoError(t, err)
	flush()
	require.NoError(t, s.Disable(ctx, "n", "x"))
	flush()
	require.NoError(t, s.Enable(ctx, "n"))
	flush()
	require.Equal(t, stock.Level{Item: "n", Available: 3}, level(t, s, "n"))
	flush()
	_, err = s.Sweep(ctx, 10)
	require.NoError(t, err)
}

func TestContextCanceled(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	define(t, s, "i", stock.ItemConfig{}, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Reserve(ctx, stock.ReserveRequest{Item: "i", Holder: "h", ID: "r", Hold: time.Minute})
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, s.Restock(ctx, "i", 1), context.Canceled)
	_, err = s.Sweep(ctx, 1)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, stock.Level{Item: "i", Available: 1}, level(t, s, "i"))
	n, err := client.Exists(t.Context(), s.pointerKey("r")).Result()
	require.NoError(t, err)
	require.Zero(t, n)
}

// TestReserveBatchScript runs one batch that holds every case, in an order
// that makes the later requests depend on the earlier ones: each gets what
// it would have got alone, in the batch's order.
func TestReserveBatchScript(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	define(t, s, "b", stock.ItemConfig{HolderLimit: 2}, 4)
	reserve(t, s, "b", "old", "due", 1, 30*time.Millisecond)
	reserve(t, s, "b", "old", "kept", 1, time.Hour)
	waitExpired(t, s, "due")

	m := time.Minute
	v := runBatch(t, s, "b",
		batchReq{"a1", "ann", 1, m, "n1"},
		batchReq{"a1", "ann", 1, m, "n2"},  // the same ID: found
		batchReq{"a1", "bob", 1, m, "n3"},  // the same ID, another request
		batchReq{"a2", "ann", 1, m, "n4"},  // ann's second unit
		batchReq{"a3", "ann", 1, m, "n5"},  // over ann's limit
		batchReq{"b1", "bob", 1, m, "n6"},  // the last unit (the due hold's)
		batchReq{"c1", "cy", 1, m, "n7"},   // sold out
		batchReq{"due", "old", 1, m, "n8"}, // an expired reservation
		batchReq{"a3", "ann", 1, m, "n9"},  // still over the limit
	)
	require.Len(t, v, 9)
	require.Equal(t, int64(stOK), v[0][0])
	require.Len(t, v[0], 2)
	exp := v[0][1]
	require.Equal(t, []any{int64(stOK), "ann", "1", "held", exp, ""}, v[1])
	require.Equal(t, []any{int64(stConflict)}, v[2])
	require.Equal(t, []any{int64(stOK), exp}, v[3])
	require.Equal(t, []any{int64(stHolderLimit), int64(1), ""}, v[4])
	require.Equal(t, []any{int64(stOK), exp}, v[5])
	require.Equal(t, []any{int64(stSoldOut), int64(0), ""}, v[6])
	require.Equal(t, int64(stOK), v[7][0])
	require.Equal(t, "expired", v[7][3])
	require.Equal(t, []any{int64(stHolderLimit), int64(0), ""}, v[8])
	require.Equal(t, stock.Level{Item: "b", Held: 4}, level(t, s, "b"))
	checkItem(t, s, client, "b")

	// Disabled, and an unknown item.
	require.NoError(t, s.Disable(ctx, "b", "why"))
	v = runBatch(t, s, "b", batchReq{"a1", "ann", 1, m, "n10"}, batchReq{"d1", "dan", 1, m, "n11"})
	require.Equal(t, int64(stOK), v[0][0], "a retry is answered while disabled")
	require.Equal(t, []any{int64(stDisabled), int64(0), "why"}, v[1])
	v = runBatch(t, s, "ghost", batchReq{"g1", "ann", 1, m, "n12"}, batchReq{"g2", "ann", 1, m, "n13"})
	require.Equal(t, [][]any{{int64(stUnknownItem)}, {int64(stUnknownItem)}}, v)
}

// TestConcurrentBatches races 1,000 Reserves of two items, each ID asked
// for twice: on one item a holder limit and on the other its units decide
// which IDs are granted. The counts are exact, and both calls of an ID
// get the same answer.
func TestConcurrentBatches(t *testing.T) {
	t.Parallel()
	const ids, holders, limit, units = 250, 50, 2, 40
	s, client := newStore(t)
	define(t, s, "limited", stock.ItemConfig{HolderLimit: limit}, 1000)
	define(t, s, "scarce", stock.ItemConfig{}, units)

	type call struct {
		item, id, holder string
	}
	var calls []call
	for _, item := range []string{"limited", "scarce"} {
		for range 2 {
			for j := range ids {
				calls = append(calls, call{item, fmt.Sprintf("%s-%d", item, j), fmt.Sprintf("h%d", j%holders)})
			}
		}
	}
	require.Len(t, calls, 1000)
	got := make([]stock.Reservation, len(calls))
	errs := make([]error, len(calls))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Go(func() {
			<-start
			got[i], errs[i] = s.Reserve(context.Background(), stock.ReserveRequest{
				Item: c.item, Holder: c.holder, ID: c.id, Hold: time.Minute})
		})
	}
	close(start)
	wg.Wait()

	granted := map[string]int{}
	perHolder := map[string]int{}
	for i, c := range calls {
		twin := (i/(2*ids))*2*ids + (i+ids)%(2*ids)
		require.Equal(t, c.id, calls[twin].id)
		if errs[i] != nil {
			var re *stock.ReservationError
			require.ErrorAs(t, errs[i], &re)
			if c.item == "limited" {
				require.ErrorIs(t, errs[i], stock.ErrHolderLimit)
			} else {
				require.ErrorIs(t, errs[i], stock.ErrSoldOut)
				require.Zero(t, re.Available)
			}
			require.ErrorIs(t, errs[twin], re.Err, "the twin of %q", c.id)
			continue
		}
		require.NoError(t, errs[twin], "the twin of %q", c.id)
		require.Equal(t, got[twin], got[i])
		require.Equal(t, stock.Reservation{ID: c.id, Item: c.item, Holder: c.holder, Quantity: 1,
			State: stock.Held, ExpiresAt: got[i].ExpiresAt}, got[i])
		if i%(2*ids) < ids {
			granted[c.item]++
			if c.item == "limited" {
				perHolder[c.holder]++
			}
		}
	}
	require.Equal(t, holders*limit, granted["limited"])
	require.Len(t, perHolder, holders)
	for h, n := range perHolder {
		require.Equal(t, limit, n, "holder %q", h)
	}
	require.Equal(t, units, granted["scarce"])
	require.Equal(t, stock.Level{Item: "limited", Available: 1000 - holders*limit, Held: holders * limit},
		level(t, s, "limited"))
	require.Equal(t, stock.Level{Item: "scarce", Held: units}, level(t, s, "scarce"))
	checkItem(t, s, client, "limited")
	checkItem(t, s, client, "scarce")
	// The sender removes an item's queue when it finds it empty, just
	// after the last batch's callers have their answers.
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.queues) == 0
	}, 5*time.Second, time.Millisecond, "a queue outlived its calls")
}

// TestTakeDropsDoneCalls: a pipeline does not take a call whose context
// is done, even before its caller has noticed and given up, so that such
// a Reserve makes nothing; a queue left with no live call stops its
// sender and is removed.
func TestTakeDropsDoneCalls(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	call := func(ctx context.Context) *reserveCall {
		return &reserveCall{ctx: ctx, done: make(chan reserveResult, 1)}
	}
	done, live := call(ctx), call(context.Background())
	q := &reserveQueue{pending: []*reserveCall{done, live, done}, senders: 1}
	s := &Store{queues: map[string]*reserveQueue{"item": q}}

	batch := s.takeReserves("item", q, nil)
	require.Equal(t, []*reserveCall{live}, batch)
	require.True(t, live.taken)
	require.False(t, done.taken)
	require.Empty(t, q.pending)

	q.pending = append(q.pending, call(ctx))
	require.Empty(t, s.takeReserves("item", q, nil))
	require.Zero(t, q.senders)
	require.NotContains(t, s.queues, "item")
}

// holdPipelines holds every pipeline until release is closed, says on
// entered that one has come, and on ran that one has run.
type holdPipelines struct {
	entered, release, ran chan struct{}
}

func (h *holdPipelines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *holdPipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *holdPipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		select {
		case h.entered <- struct{}{}:
		default:
		}
		<-h.release
		err := next(ctx, cmds)
		select {
		case h.ran <- struct{}{}:
		default:
		}
		return err
	}
}

// TestUndoAfterCallerGaveUp: a Reserve whose ID turns out bound to
// another item, and whose caller gave up while the call was in flight,
// still has the hold its script made undone when the answer comes.
func TestUndoAfterCallerGaveUp(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	define(t, s, "a", stock.ItemConfig{}, 1)
	require.NoError(t, client.Set(t.Context(), s.pointerKey("k"), "b", 0).Err())
	hook := &holdPipelines{entered: make(chan struct{}, 1), release: make(chan struct{}), ran: make(chan struct{}, 1)}
	client.AddHook(hook)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := s.Reserve(ctx, stock.ReserveRequest{Item: "a", Holder: "ann", ID: "k", Hold: time.Hour})
		done <- err
	}()
	<-hook.entered
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	close(hook.release)
	<-hook.ran // the script has made its hold

	require.Eventually(t, func() bool {
		_, _, ok := record(t, client, s.keys("a"), "k")
		return !ok
	}, 10*time.Second, 5*time.Millisecond, "the hold made under an ID bound to b is undone")
	require.Equal(t, stock.Level{Item: "a", Available: 1}, level(t, s, "a"))
	checkItem(t, s, client, "a")
}
