// Package stocktest is the conformance suite for [stock.Store] drivers: any
// store, ours or yours, proves that it keeps the contract of stock (no unit
// granted twice, none lost, a retried Reserve answered with the same
// reservation) by passing it.
//
// A driver runs it in one line from an ordinary test, with a [Factory] that
// makes a fresh, empty store for each check:
//
//	func TestConformance(t *testing.T) {
//		stocktest.Run(t, func(t *testing.T) stock.Store {
//			s, err := mydriver.New(client, mydriver.Config{Prefix: uniqueName(t)})
//			require.NoError(t, err)
//			return s
//		})
//	}
//
// # What it checks
//
// Level, Restock and Reserve of an item never defined fail with
// [stock.ErrUnknownItem]. Define creates an item with no units, and defining
// it again keeps its units and applies the new configuration (a changed
// HolderLimit takes effect); Restock adds exactly the units asked for and
// refuses a count that is not positive. A code item cannot be redefined as
// a counted one or back, refuses Restock, and takes its units from
// LoadCodes, which counts each new code once (duplicates in one call, and
// codes loaded before, given out or not, add nothing); a counted item
// refuses LoadCodes.
//
// Reserve holds exactly the units asked for (Quantity 0 meaning 1) and
// answers a reservation in state Held with the request's ID, item, holder
// and quantity, and an ExpiresAt of about the hold from now; Get returns the
// same. It refuses with [stock.ErrSoldOut] more units than are available,
// and a refused or invalid request (no ID, holder, item or positive hold, a
// negative quantity, an item, holder or ID longer than [stock.MaxNameLen])
// changes nothing and leaves no reservation, so its ID can be used again.
// Every refusal is matched with errors.Is. Names and codes of exactly
// MaxNameLen bytes work throughout; Define of a longer item name and
// LoadCodes with a longer code fail and change nothing.
//
// A Reserve retried with the same ID answers the same reservation (same
// ExpiresAt and quantity) and takes nothing more: 1,000 sequential and 200
// concurrent retries take one unit each, a retry succeeds even when the item
// has since sold out, and answers the reservation in whatever state it has
// reached (confirmed, released, expired). The same ID with another item,
// holder or quantity fails with [stock.ErrConflict] and changes nothing.
//
// Of 5,000 concurrent Reserves of 100 units, each by a holder of its own,
// exactly 100 succeed and the rest fail with ErrSoldOut, and a Level read
// throughout never shows a negative count or one that does not add up to
// the 100 units. With a HolderLimit of
// 1, of 2,000 concurrent Reserves by 100 holders exactly one per holder
// succeeds and the rest fail with [stock.ErrHolderLimit]; a holder's
// allowance counts held and confirmed units, is freed by a Release or an
// expiry, is per item, and refuses a single request larger than the limit.
//
// Confirm turns a hold into a confirmed reservation and answers the same one
// when repeated; Release gives a hold's units back, succeeds and changes
// nothing when repeated or when the hold expired, and fails with
// [stock.ErrConfirmed] on a confirmed reservation; Confirm of a released one
// fails with [stock.ErrReleased]; Get, Confirm and Release of an unknown ID
// fail with [stock.ErrNotFound]. Level follows every step exactly.
//
// A hold whose time has passed is expired before any Sweep: Get answers
// Expired, Confirm fails with [stock.ErrExpired], and its units go to the
// next Reserve. Sweep then reports no more expired holds than there were,
// expires at most its limit per call, and after it Level is exact: held
// units are those of unexpired holds, and available, held and confirmed
// units add up to the units the item ever got. A confirmed reservation
// keeps its units long after its hold time.
//
// Disable makes Reserve fail with [stock.ErrDisabled] and Level report
// Disabled with the reason, only for that item; holds taken before can still
// be confirmed; Enable lets Reserve succeed again. While 50 goroutines
// reserve continuously, no Reserve that began after Disable returned
// succeeds, and none fails with ErrDisabled before Disable was called.
//
// Of 80 concurrent reserve-and-confirm attempts on a pool of 50 codes,
// exactly 50 are confirmed, each with one code, and together they hand out
// every loaded code once; a confirmed reservation of 2 units gets 2 distinct
// codes; a released or expired hold consumes no code; Get and a repeated
// Confirm answer the same codes.
//
// It does not check durability across restarts of the server, behaviour
// across processes whose clocks disagree, which refusal a Reserve answers
// when several apply (sold out and disabled, say), a retry with a different
// Hold, the Reason a Level reports after Enable, whether refusals are
// [stock.ReservationError] values, [stock.ErrNoCodes], Define of an empty
// name or a negative HolderLimit, Sweep limits below 1, calls with a
// cancelled context, or how item names and IDs are escaped (the suite uses
// plain ones, with a random prefix).
//
// # Timing
//
// Checks never require a call to finish within a short time. Checks about
// expiry reserve with a hold of 300ms and sleep 500ms past it before relying
// on its end; every other hold lasts minutes, so that an expiry could only
// hide a bug. An ExpiresAt is allowed a minute's difference between the
// store's clock and the test's. Where a check needs a short hold to still
// hold (confirming it in time), it judges only calls that returned before
// the hold could have run out; if a slow machine makes a run inconclusive,
// it starts over with a hold three times as long, and is skipped after
// three inconclusive runs. Times are compared to the microsecond.
//
// # Parallelism
//
// The checks run as parallel sub-tests of a sub-test named "Store", so the
// factory is called concurrently and every store it makes must be
// independent of the others (a unique key prefix, table or database per
// call): Sweep and the counts see every item of a store, and a check expects
// to see only its own. [Run] returns only once every check has finished, so
// resources shared by the factory may be released with defer or t.Cleanup
// alike.
package stocktest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/stock"
)

// Factory returns a fresh, empty store for one check, independent of every
// other store it returns. It registers whatever cleanup the store needs with
// t.Cleanup, and fails t if it cannot make the store. It is called
// concurrently.
type Factory func(t *testing.T) stock.Store

const (
	// shortHold is the hold of checks about expiry, and the first one tried
	// by the check that needs a short hold to still hold.
	shortHold = 300 * time.Millisecond
	// margin is how long checks wait past a short hold before relying on
	// its end, for clock granularity.
	margin = 500 * time.Millisecond
	// longHold is the hold of every other reservation: far longer than a
	// check runs, so an expiry could only hide a bug.
	longHold = 5 * time.Minute
	// skew is how far an ExpiresAt may be from the test's clock plus the
	// hold: the store's clock may not be the test's.
	skew = time.Minute
	// checkTimeout bounds each check's calls together.
	checkTimeout = 2 * time.Minute
	// attempts is how many times a timing-sensitive check runs before it
	// gives up as inconclusive.
	attempts = 3
)

// Run runs every conformance check against stores made by newStore, each as
// a parallel sub-test of t. It returns when all of them have finished.
func Run(t *testing.T, newStore Factory) {
	t.Helper()
	require.NotNil(t, newStore, "stocktest: nil Factory")
	prefix := "stocktest-" + rand.Text()[:10] + ":"

	// The group makes Run synchronous: parallel sub-tests of t itself would
	// only start after the caller's test function returned, and after its
	// deferred calls had released what the factory uses.
	t.Run("Store", func(t *testing.T) {
		for _, ch := range checks {
			t.Run(ch.name, func(t *testing.T) {
				t.Parallel()
				st := newStore(t)
				require.NotNil(t, st, "factory returned a nil Store")
				ctx, cancel := context.WithTimeout(t.Context(), checkTimeout)
				t.Cleanup(cancel)
				ch.run(&checker{t: t, st: st, ctx: ctx, prefix: prefix + ch.name + ":"})
			})
		}
	})
}

var checks = []struct {
	name string
	run  func(*checker)
}{
	{"DefineRestockLevel", (*checker).defineRestock},
	{"Reserve", (*checker).reserveBasics},
	{"IdempotentRetry", (*checker).retries},
	{"ConcurrentReserve", (*checker).concurrentReserve},
	{"HolderLimit", (*checker).holderLimit},
	{"HolderLimitUnderConcurrency", (*checker).concurrentHolderLimit},
	{"ConfirmRelease", (*checker).lifecycle},
	{"Expiry", (*checker).expiry},
	{"ConfirmedKeepsUnits", (*checker).confirmedKeeps},
	{"Sweep", (*checker).sweep},
	{"DisableEnable", (*checker).disable},
	{"DisableDuringStorm", (*checker).disableStorm},
	{"CodePools", (*checker).codes},
	{"Quantity", (*checker).quantity},
	{"LongNames", (*checker).longNames},
}

// checker is one check's store, with helpers that fail the check.
type checker struct {
	t      *testing.T
	st     stock.Store
	ctx    context.Context
	prefix string
}

// name makes an item name or reservation ID unique to the check.
func (c *checker) name(s string) string { return c.prefix + s }

func req(item, holder, id string, quantity int, hold time.Duration) stock.ReserveRequest {
	return stock.ReserveRequest{Item: item, Holder: holder, ID: id, Quantity: quantity, Hold: hold}
}

func describe(r stock.Reservation) string {
	return fmt.Sprintf("{ID=%q Item=%q Holder=%q Quantity=%d State=%q ExpiresAt=%s Codes=%q}",
		r.ID, r.Item, r.Holder, r.Quantity, r.State, r.ExpiresAt.Format(time.RFC3339Nano), r.Codes)
}

func describeLevel(l stock.Level) string {
	return fmt.Sprintf("{Item=%q Available=%d Held=%d Confirmed=%d Disabled=%t Reason=%q}",
		l.Item, l.Available, l.Held, l.Confirmed, l.Disabled, l.Reason)
}

// sorted returns a sorted copy of codes, nil if there are none.
func sorted(codes []string) []string {
	if len(codes) == 0 {
		return nil
	}
	s := slices.Clone(codes)
	slices.Sort(s)
	return s
}

// requireSame checks that got is the reservation want: the same fields,
// ExpiresAt to the microsecond, and the same codes in any order.
func requireSame(t *testing.T, want, got stock.Reservation, why string) {
	t.Helper()
	msg := fmt.Sprintf("%s:\n want %s\n  got %s", why, describe(want), describe(got))
	require.Equal(t, want.ID, got.ID, "ID %s", msg)
	require.Equal(t, want.Item, got.Item, "Item %s", msg)
	require.Equal(t, want.Holder, got.Holder, "Holder %s", msg)
	require.Equal(t, want.Quantity, got.Quantity, "Quantity %s", msg)
	require.Equal(t, want.State, got.State, "State %s", msg)
	d := want.ExpiresAt.Sub(got.ExpiresAt)
	require.True(t, d > -time.Microsecond && d < time.Microsecond, "ExpiresAt %s", msg)
	require.Equal(t, sorted(want.Codes), sorted(got.Codes), "Codes %s", msg)
}

func (c *checker) define(item string, cfg stock.ItemConfig) {
	c.t.Helper()
	require.NoError(c.t, c.st.Define(c.ctx, item, cfg), "Define(%q, %+v)", item, cfg)
}

func (c *checker) restock(item string, units int) {
	c.t.Helper()
	require.NoError(c.t, c.st.Restock(c.ctx, item, units), "Restock(%q, %d)", item, units)
}

// counted defines a counted item with cfg and units.
func (c *checker) counted(item string, cfg stock.ItemConfig, units int) {
	c.t.Helper()
	c.define(item, cfg)
	if units > 0 {
		c.restock(item, units)
	}
}

func (c *checker) level(item string) stock.Level {
	c.t.Helper()
	l, err := c.st.Level(c.ctx, item)
	require.NoError(c.t, err, "Level(%q)", item)
	return l
}

// requireLevel checks item's counts (why).
func (c *checker) requireLevel(item string, available, held, confirmed int, why string) stock.Level {
	c.t.Helper()
	l := c.level(item)
	want := stock.Level{Item: item, Available: available, Held: held, Confirmed: confirmed}
	got := stock.Level{Item: l.Item, Available: l.Available, Held: l.Held, Confirmed: l.Confirmed}
	require.Equal(c.t, want, got, "Level(%q) %s: got %s", item, why, describeLevel(l))
	return l
}

// reserve makes a new reservation, which must succeed (why), and checks
// what it answers.
func (c *checker) reserve(r stock.ReserveRequest, why string) stock.Reservation {
	c.t.Helper()
	start := time.Now()
	got, err := c.st.Reserve(c.ctx, r)
	end := time.Now()
	require.NoError(c.t, err, "Reserve(%+v) %s", r, why)
	want := stock.Reservation{ID: r.ID, Item: r.Item, Holder: r.Holder, Quantity: max(r.Quantity, 1), State: stock.Held}
	require.Equal(c.t, want, stock.Reservation{ID: got.ID, Item: got.Item, Holder: got.Holder, Quantity: got.Quantity, State: got.State},
		"Reserve(%+v) %s answered %s", r, why, describe(got))
	require.Empty(c.t, got.Codes, "Reserve(%+v) %s answered a hold that already has codes: %s", r, why, describe(got))
	requireExpiry(c.t, got, start, end, r.Hold, fmt.Sprintf("Reserve(%+v) %s", r, why))
	return got
}

// requireExpiry checks that r's ExpiresAt is hold after a moment between
// start and end, give or take the clock skew allowed.
func requireExpiry(t *testing.T, r stock.Reservation, start, end time.Time, hold time.Duration, why string) {
	t.Helper()
	lo, hi := start.Add(hold-skew), end.Add(hold+skew)
	require.True(t, !r.ExpiresAt.Before(lo) && !r.ExpiresAt.After(hi),
		"%s: ExpiresAt %s must be about %s from the call (between %s and %s)",
		why, r.ExpiresAt.Format(time.RFC3339Nano), hold, lo.Format(time.RFC3339Nano), hi.Format(time.RFC3339Nano))
}

// retry reserves with the ID of an existing reservation want, which must
// answer it unchanged (why).
func (c *checker) retry(r stock.ReserveRequest, want stock.Reservation, why string) {
	c.t.Helper()
	got, err := c.st.Reserve(c.ctx, r)
	require.NoError(c.t, err, "Reserve(%+v) retried %s", r, why)
	requireSame(c.t, want, got, fmt.Sprintf("Reserve(%+v) retried %s", r, why))
}

// refused checks that Reserve of r fails with want (why) and leaves no
// reservation behind.
func (c *checker) refused(r stock.ReserveRequest, want error, why string) {
	c.t.Helper()
	got, err := c.st.Reserve(c.ctx, r)
	require.ErrorIs(c.t, err, want, "Reserve(%+v) %s: got %s", r, why, describe(got))
	c.notFound(r.ID, "after Reserve was refused with "+want.Error())
}

func (c *checker) notFound(id, why string) {
	c.t.Helper()
	got, err := c.st.Get(c.ctx, id)
	require.ErrorIs(c.t, err, stock.ErrNotFound, "Get(%q) %s: got %s", id, why, describe(got))
}

func (c *checker) get(id string) stock.Reservation {
	c.t.Helper()
	got, err := c.st.Get(c.ctx, id)
	require.NoError(c.t, err, "Get(%q)", id)
	return got
}

// requireState checks that Get(id) answers state (why).
func (c *checker) requireState(id string, state stock.State, why string) stock.Reservation {
	c.t.Helper()
	got := c.get(id)
	require.Equal(c.t, state, got.State, "Get(%q) %s: got %s", id, why, describe(got))
	return got
}

// confirm confirms the hold r, which must succeed, and checks what it
// answers.
func (c *checker) confirm(r stock.Reservation, why string) stock.Reservation {
	c.t.Helper()
	got, err := c.st.Confirm(c.ctx, r.ID)
	require.NoError(c.t, err, "Confirm(%q) %s", r.ID, why)
	c.requireConfirmed(r, got, "Confirm "+why)
	return got
}

// requireConfirmed checks that got is the hold r confirmed (why).
func (c *checker) requireConfirmed(r, got stock.Reservation, why string) {
	c.t.Helper()
	want := stock.Reservation{ID: r.ID, Item: r.Item, Holder: r.Holder, Quantity: r.Quantity, State: stock.Confirmed}
	require.Equal(c.t, want, stock.Reservation{ID: got.ID, Item: got.Item, Holder: got.Holder, Quantity: got.Quantity, State: got.State},
		"%s of %s: got %s", why, describe(r), describe(got))
}

func (c *checker) release(id, why string) {
	c.t.Helper()
	require.NoError(c.t, c.st.Release(c.ctx, id), "Release(%q) %s", id, why)
}

func (c *checker) sweepOnce(limit int) int {
	c.t.Helper()
	n, err := c.st.Sweep(c.ctx, limit)
	require.NoError(c.t, err, "Sweep(%d)", limit)
	require.True(c.t, n >= 0 && n <= limit, "Sweep(%d) reported %d expired holds", limit, n)
	return n
}

// sleep pauses past a hold under test; checks never sleep to wait for an
// outcome they can observe.
func (c *checker) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-c.ctx.Done():
	}
}

func (c *checker) defineRestock() {
	a, b, never := c.name("a"), c.name("b"), c.name("never-defined")
	_, err := c.st.Level(c.ctx, never)
	require.ErrorIs(c.t, err, stock.ErrUnknownItem, "Level of an item never defined")
	require.ErrorIs(c.t, c.st.Restock(c.ctx, never, 5), stock.ErrUnknownItem, "Restock of an item never defined")
	_, err = c.st.Level(c.ctx, never)
	require.ErrorIs(c.t, err, stock.ErrUnknownItem, "Level after a Restock of an item never defined (it must not define it)")

	c.define(a, stock.ItemConfig{})
	l := c.requireLevel(a, 0, 0, 0, "of a new item")
	require.False(c.t, l.Disabled, "Level of a new item: %s", describeLevel(l))
	c.restock(a, 5)
	c.requireLevel(a, 5, 0, 0, "after Restock 5")
	c.restock(a, 7)
	c.requireLevel(a, 12, 0, 0, "after Restock 5 and 7")
	for _, bad := range []int{0, -1, -12} {
		require.Error(c.t, c.st.Restock(c.ctx, a, bad), "Restock(%q, %d) must be refused", a, bad)
		c.requireLevel(a, 12, 0, 0, fmt.Sprintf("after a refused Restock of %d", bad))
	}
	c.define(a, stock.ItemConfig{})
	c.requireLevel(a, 12, 0, 0, "after Define of an existing item (it keeps its units)")

	// Define again sets the configuration, still keeping the units.
	c.define(a, stock.ItemConfig{HolderLimit: 2})
	c.requireLevel(a, 12, 0, 0, "after Define with a HolderLimit")
	c.refused(req(a, "h", c.name("r1"), 3, longHold), stock.ErrHolderLimit, "of 3 units after Define set a HolderLimit of 2")
	c.reserve(req(a, "h", c.name("r2"), 2, longHold), "of 2 units with a HolderLimit of 2")
	c.requireLevel(a, 10, 2, 0, "after a reservation of 2")
	c.define(a, stock.ItemConfig{})
	c.reserve(req(a, "h", c.name("r3"), 3, longHold), "of 3 more units after Define lifted the HolderLimit")
	c.requireLevel(a, 7, 5, 0, "after reservations of 2 and 3")

	// Items are separate.
	c.define(b, stock.ItemConfig{})
	c.requireLevel(b, 0, 0, 0, "of a new item beside another")
	c.refused(req(b, "h", c.name("r4"), 1, longHold), stock.ErrSoldOut, "of an item defined with no units")
	c.restock(b, 4)
	c.requireLevel(b, 4, 0, 0, "after Restock 4")
	c.requireLevel(a, 7, 5, 0, "after another item was restocked")
}

func (c *checker) reserveBasics() {
	item := c.name("item")
	c.counted(item, stock.ItemConfig{}, 10)

	r1 := c.reserve(req(item, "h1", c.name("r1"), 0, longHold), "of Quantity 0 (meaning 1)")
	require.Equal(c.t, 1, r1.Quantity, "Quantity of a reservation asked with Quantity 0")
	c.requireLevel(item, 9, 1, 0, "after a reservation of 1")
	requireSame(c.t, r1, c.get(r1.ID), "Get of a new hold")

	r2 := c.reserve(req(item, "h2", c.name("r2"), 4, 2*longHold), "of 4")
	c.requireLevel(item, 5, 5, 0, "after reservations of 1 and 4")
	requireSame(c.t, r2, c.get(r2.ID), "Get of a new hold")

	// Refusals change nothing and leave no reservation, so the ID is free.
	tooMany := req(item, "h3", c.name("r3"), 6, longHold)
	c.refused(tooMany, stock.ErrSoldOut, "of 6 when 5 are available")
	c.requireLevel(item, 5, 5, 0, "after a Reserve refused as sold out")
	c.refused(req(c.name("never-defined"), "h3", c.name("r4"), 1, longHold), stock.ErrUnknownItem, "of an item never defined")
	c.requireLevel(item, 5, 5, 0, "after a Reserve of an unknown item")

	invalid := map[string]stock.ReserveRequest{
		"no ID":             req(item, "h4", "", 1, longHold),
		"no holder":         req(item, "", c.name("no-holder"), 1, longHold),
		"no item":           req("", "h4", c.name("no-item"), 1, longHold),
		"no hold":           req(item, "h4", c.name("no-hold"), 1, 0),
		"a negative hold":   req(item, "h4", c.name("negative-hold"), 1, -time.Minute),
		"negative Quantity": req(item, "h4", c.name("negative-quantity"), -1, longHold),
		"an ID too long":    req(item, "h4", tooLong(c.name("long-id")), 1, longHold),
		"a holder too long": req(item, tooLong("h4"), c.name("long-holder"), 1, longHold),
		"an item too long":  req(tooLong(item), "h4", c.name("long-item"), 1, longHold),
	}
	for why, r := range invalid {
		got, err := c.st.Reserve(c.ctx, r)
		require.Error(c.t, err, "Reserve(%+v) with %s must be refused: got %s", r, why, describe(got))
		if r.ID != "" {
			c.notFound(r.ID, "after a Reserve with "+why)
		}
		c.requireLevel(item, 5, 5, 0, "after a Reserve with "+why)
	}

	c.restock(item, 1)
	c.reserve(tooMany, "of 6 when 6 are available, with the ID of a request refused before")
	c.requireLevel(item, 0, 11, 0, "after the refused request succeeded")
	c.refused(req(item, "h5", c.name("r5"), 1, longHold), stock.ErrSoldOut, "of an item all held")
	requireSame(c.t, r1, c.get(r1.ID), "Get of a hold after other reservations")
}

func (c *checker) retries() {
	const (
		sequential = 1000
		concurrent = 200
	)
	item, other := c.name("item"), c.name("other")
	c.counted(item, stock.ItemConfig{}, 3)
	c.counted(other, stock.ItemConfig{}, 10)

	first := req(item, "h1", c.name("r1"), 1, longHold)
	r1 := c.reserve(first, "of a new ID")
	for i := range sequential {
		again := first
		if i%2 == 1 {
			again.Quantity = 0 // the default, 1: the same request
		}
		c.retry(again, r1, fmt.Sprintf("(retry %d of %d)", i+1, sequential))
	}
	c.requireLevel(item, 2, 1, 0, fmt.Sprintf("after %d sequential retries of one reservation of 1", sequential))

	// Concurrent first tries of one ID: one reservation, whoever made it.
	second := req(item, "h2", c.name("r2"), 1, longHold)
	got := make([]stock.Reservation, concurrent)
	errs := make([]error, concurrent)
	startCh := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for i := range concurrent {
		wg.Go(func() {
			<-startCh
			got[i], errs[i] = c.st.Reserve(c.ctx, second)
		})
	}
	close(startCh)
	wg.Wait()
	end := time.Now()
	for i := range concurrent {
		require.NoError(c.t, errs[i], "concurrent Reserve(%+v), %d of %d with one ID", second, i+1, concurrent)
		requireSame(c.t, got[0], got[i], fmt.Sprintf("%d concurrent Reserves of one ID (the first and number %d)", concurrent, i+1))
	}
	r2 := got[0]
	require.Equal(c.t, stock.Reservation{ID: second.ID, Item: item, Holder: "h2", Quantity: 1, State: stock.Held},
		stock.Reservation{ID: r2.ID, Item: r2.Item, Holder: r2.Holder, Quantity: r2.Quantity, State: r2.State},
		"concurrent Reserves of one ID answered %s", describe(r2))
	requireExpiry(c.t, r2, start, end, longHold, "concurrent Reserves of one ID")
	c.requireLevel(item, 1, 2, 0, fmt.Sprintf("after %d concurrent Reserves of one ID", concurrent))
	requireSame(c.t, r2, c.get(r2.ID), "Get after concurrent Reserves of one ID")

	// The same ID for another request.
	conflicts := map[string]stock.ReserveRequest{
		"another item":     req(other, "h1", first.ID, 1, longHold),
		"another holder":   req(item, "h9", first.ID, 1, longHold),
		"another quantity": req(item, "h1", first.ID, 2, longHold),
	}
	for why, r := range conflicts {
		res, err := c.st.Reserve(c.ctx, r)
		require.ErrorIs(c.t, err, stock.ErrConflict, "Reserve(%+v) with the ID of %s but %s: got %s", r, describe(r1), why, describe(res))
		c.requireLevel(item, 1, 2, 0, "after a conflicting Reserve with "+why)
		c.requireLevel(other, 10, 0, 0, "after a conflicting Reserve with "+why)
		requireSame(c.t, r1, c.get(r1.ID), "Get after a conflicting Reserve with "+why)
	}

	// A retry answers the reservation even when nothing is left, and in
	// whatever state it has reached, taking nothing.
	c.reserve(req(item, "h3", c.name("r3"), 1, longHold), "of the last unit")
	c.requireLevel(item, 0, 3, 0, "when all units are held")
	c.retry(first, r1, "after the item sold out")
	c.retry(second, r2, "after the item sold out")
	c.requireLevel(item, 0, 3, 0, "after retries when all units are held")

	conf := c.confirm(r1, "of a held reservation")
	c.retry(first, conf, "after it was confirmed")
	c.requireLevel(item, 0, 2, 1, "after a retry of a confirmed reservation")

	c.release(r2.ID, "of a hold")
	rel := c.requireState(r2.ID, stock.Released, "after Release")
	c.retry(second, rel, "after it was released")
	c.requireLevel(item, 1, 1, 1, "after a retry of a released reservation (it must take nothing)")
}

func (c *checker) concurrentReserve() {
	const (
		units    = 100
		requests = 5000 // one redeemer each, all at once
		workers  = requests
	)
	item := c.name("item")
	c.counted(item, stock.ItemConfig{}, units)

	type result struct {
		r   stock.Reservation
		err error
	}
	results := make([]result, requests)
	id := func(i int) string { return c.name(fmt.Sprintf("r%04d", i)) }

	// A poller reads Level throughout; every reading must be a possible
	// state of 100 units.
	var (
		readings int
		bad      []stock.Level
		pollErr  error
	)
	startCh, done := make(chan struct{}), make(chan struct{})
	var poller sync.WaitGroup
	poller.Go(func() {
		<-startCh
		for {
			l, err := c.st.Level(c.ctx, item)
			if err != nil {
				pollErr = err
				return
			}
			readings++
			if l.Available < 0 || l.Held < 0 || l.Confirmed != 0 || l.Available+l.Held != units {
				bad = append(bad, l)
			}
			select {
			case <-done:
				return
			default:
			}
		}
	})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			<-startCh
			for i := w; i < requests; i += workers {
				results[i].r, results[i].err = c.st.Reserve(c.ctx, req(item, fmt.Sprintf("holder-%04d", i), id(i), 1, longHold))
			}
		})
	}
	close(startCh)
	wg.Wait()
	close(done)
	poller.Wait()

	granted, soldOut := 0, 0
	for i, res := range results {
		switch {
		case res.err == nil:
			granted++
			require.Equal(c.t, stock.Reservation{ID: id(i), Item: item, Holder: fmt.Sprintf("holder-%04d", i), Quantity: 1, State: stock.Held},
				stock.Reservation{ID: res.r.ID, Item: res.r.Item, Holder: res.r.Holder, Quantity: res.r.Quantity, State: res.r.State},
				"concurrent Reserve %d answered %s", i, describe(res.r))
		case errors.Is(res.err, stock.ErrSoldOut):
			soldOut++
		default:
			require.NoError(c.t, res.err, "concurrent Reserve %d of %d (only success or ErrSoldOut are right)", i, requests)
		}
	}
	require.Equal(c.t, units, granted, "of %d concurrent Reserves of %d units, exactly %d must succeed", requests, units, units)
	require.Equal(c.t, requests-units, soldOut, "of %d concurrent Reserves of %d units, the rest must fail with ErrSoldOut", requests, units)
	require.NoError(c.t, pollErr, "Level(%q) during concurrent Reserves", item)
	require.Positive(c.t, readings, "the poller read no Level")
	if len(bad) > 0 {
		require.Failf(c.t, "Level showed an impossible state during concurrent Reserves",
			"%d of %d readings of %d units were not non-negative counts adding up to %d; the first: %s",
			len(bad), readings, units, units, describeLevel(bad[0]))
	}
	c.requireLevel(item, 0, units, 0, fmt.Sprintf("after %d concurrent Reserves of %d units", requests, units))
	for i, res := range results {
		if res.err == nil {
			requireSame(c.t, res.r, c.get(id(i)), "Get of a hold granted in the race")
		} else {
			c.notFound(id(i), "of a Reserve refused in the race")
		}
	}
}

func (c *checker) holderLimit() {
	item, other := c.name("item"), c.name("other")
	c.counted(item, stock.ItemConfig{HolderLimit: 3}, 100)
	c.counted(other, stock.ItemConfig{HolderLimit: 1}, 100)

	c.refused(req(item, "h1", c.name("big"), 4, longHold), stock.ErrHolderLimit, "of 4 with a HolderLimit of 3")
	a := c.reserve(req(item, "h1", c.name("a"), 2, longHold), "of 2 with a HolderLimit of 3")
	c.refused(req(item, "h1", c.name("b"), 2, longHold), stock.ErrHolderLimit, "of 2 more when the holder holds 2 of 3")
	b := c.reserve(req(item, "h1", c.name("c"), 1, longHold), "of the holder's third unit")
	c.refused(req(item, "h1", c.name("d"), 1, longHold), stock.ErrHolderLimit, "of a fourth unit")
	c.requireLevel(item, 97, 3, 0, "after the holder reached its limit")

	// The limit is per holder and per item.
	c.reserve(req(item, "h2", c.name("e"), 3, longHold), "by another holder")
	c.reserve(req(other, "h1", c.name("f"), 1, longHold), "of another item by a holder at its limit on the first")
	c.requireLevel(item, 94, 6, 0, "after another holder reserved 3")

	// Released units free the allowance; confirmed ones do not.
	c.confirm(b, "of one unit of the holder's")
	c.refused(req(item, "h1", c.name("g"), 1, longHold), stock.ErrHolderLimit, "when the holder holds 2 and has 1 confirmed, of 3")
	c.release(a.ID, "of the holder's 2 held units")
	c.requireLevel(item, 96, 3, 1, "after the holder released 2 and confirmed 1")
	c.refused(req(item, "h1", c.name("h"), 3, longHold), stock.ErrHolderLimit, "of 3 when the holder has 1 confirmed, of 3")
	c.reserve(req(item, "h1", c.name("i"), 2, longHold), "of 2 after the holder released 2 (1 confirmed, of 3)")
	c.refused(req(item, "h1", c.name("j"), 1, longHold), stock.ErrHolderLimit, "when the holder is at its limit again")
	c.requireLevel(item, 94, 5, 1, "at the end")
}

func (c *checker) concurrentHolderLimit() {
	const (
		holders   = 100
		perHolder = 20
		requests  = holders * perHolder
		workers   = 200
		units     = 1000
	)
	item := c.name("item")
	c.counted(item, stock.ItemConfig{HolderLimit: 1}, units)

	// Request i is holder i/perHolder's; worker w makes requests w,
	// w+workers, ..., so each holder's requests are made by perHolder
	// different workers at about the same time.
	holder := func(i int) string { return fmt.Sprintf("holder-%03d", i/perHolder) }
	id := func(i int) string { return c.name(fmt.Sprintf("r%04d", i)) }
	type result struct {
		r   stock.Reservation
		err error
	}
	results := make([]result, requests)
	startCh := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			<-startCh
			for i := w; i < requests; i += workers {
				results[i].r, results[i].err = c.st.Reserve(c.ctx, req(item, holder(i), id(i), 1, longHold))
			}
		})
	}
	close(startCh)
	wg.Wait()

	granted := map[string][]int{} // holder → requests granted
	for i, res := range results {
		switch {
		case res.err == nil:
			require.Equal(c.t, holder(i), res.r.Holder, "concurrent Reserve %d answered %s", i, describe(res.r))
			granted[holder(i)] = append(granted[holder(i)], i)
		case errors.Is(res.err, stock.ErrHolderLimit):
		default:
			require.NoError(c.t, res.err, "concurrent Reserve %d (only success or ErrHolderLimit are right: stock is ample)", i)
		}
	}
	for h := range holders {
		name := holder(h * perHolder)
		require.Len(c.t, granted[name], 1, "of %d concurrent Reserves by %s with a HolderLimit of 1, exactly one must succeed; these did: %v",
			perHolder, name, granted[name])
	}
	c.requireLevel(item, units-holders, holders, 0, fmt.Sprintf("after %d concurrent Reserves by %d holders with a HolderLimit of 1", requests, holders))

	c.refused(req(item, "newcomer", c.name("two"), 2, longHold), stock.ErrHolderLimit, "of 2 with a HolderLimit of 1")
	first := results[granted[holder(0)][0]].r
	c.release(first.ID, "of a holder's only hold")
	c.reserve(req(item, first.Holder, c.name("after-release"), 1, longHold), "by a holder whose hold was released")
	second := results[granted[holder(perHolder)][0]].r
	c.confirm(second, "of a holder's only hold")
	c.refused(req(item, second.Holder, c.name("after-confirm"), 1, longHold), stock.ErrHolderLimit,
		"by a holder whose only reservation was confirmed")
	c.requireLevel(item, units-holders, holders-1, 1, "after one holder released and reserved again and another confirmed")
}

func (c *checker) lifecycle() {
	item := c.name("item")
	c.counted(item, stock.ItemConfig{}, 10)

	never := c.name("never")
	c.notFound(never, "of an unknown ID")
	_, err := c.st.Confirm(c.ctx, never)
	require.ErrorIs(c.t, err, stock.ErrNotFound, "Confirm(%q) of an unknown ID", never)
	require.ErrorIs(c.t, c.st.Release(c.ctx, never), stock.ErrNotFound, "Release(%q) of an unknown ID", never)

	r1 := c.reserve(req(item, "h1", c.name("r1"), 2, longHold), "of 2")
	c.requireLevel(item, 8, 2, 0, "after a reservation of 2")
	conf := c.confirm(r1, "of a hold")
	c.requireLevel(item, 8, 0, 2, "after Confirm of a hold of 2")
	again, err := c.st.Confirm(c.ctx, r1.ID)
	require.NoError(c.t, err, "Confirm(%q) again", r1.ID)
	requireSame(c.t, conf, again, "Confirm again")
	requireSame(c.t, conf, c.get(r1.ID), "Get of a confirmed reservation")
	require.ErrorIs(c.t, c.st.Release(c.ctx, r1.ID), stock.ErrConfirmed, "Release of a confirmed reservation")
	requireSame(c.t, conf, c.get(r1.ID), "Get after a refused Release of a confirmed reservation")
	c.requireLevel(item, 8, 0, 2, "after a refused Release of a confirmed reservation")

	r2 := c.reserve(req(item, "h2", c.name("r2"), 3, longHold), "of 3")
	c.requireLevel(item, 5, 3, 2, "after a reservation of 3")
	c.release(r2.ID, "of a hold")
	c.requireLevel(item, 8, 0, 2, "after Release of a hold of 3")
	rel := c.requireState(r2.ID, stock.Released, "after Release")
	require.Equal(c.t, []any{r2.Item, r2.Holder, r2.Quantity}, []any{rel.Item, rel.Holder, rel.Quantity},
		"Get after Release: got %s", describe(rel))
	c.release(r2.ID, "again")
	c.requireLevel(item, 8, 0, 2, "after a second Release")
	c.requireState(r2.ID, stock.Released, "after a second Release")
	got, err := c.st.Confirm(c.ctx, r2.ID)
	require.ErrorIs(c.t, err, stock.ErrReleased, "Confirm of a released reservation: got %s", describe(got))
	c.requireState(r2.ID, stock.Released, "after a refused Confirm")
	c.requireLevel(item, 8, 0, 2, "after a refused Confirm of a released reservation")

	// The units released are there to take.
	c.reserve(req(item, "h3", c.name("r3"), 8, longHold), "of every unit left")
	c.requireLevel(item, 0, 8, 2, "after the rest was reserved")
}

func (c *checker) expiry() {
	item := c.name("item")
	c.counted(item, stock.ItemConfig{HolderLimit: 2}, 3)

	long := c.reserve(req(item, "hb", c.name("long"), 1, longHold), "of 1 for minutes")
	shortReq := req(item, "ha", c.name("short"), 2, shortHold)
	start := time.Now()
	short := c.reserve(shortReq, fmt.Sprintf("of 2 for %s", shortHold))
	got, err := c.st.Reserve(c.ctx, req(item, "hc", c.name("too-early"), 1, longHold))
	if time.Since(start) < shortHold {
		require.ErrorIs(c.t, err, stock.ErrSoldOut, "Reserve while every unit is held: got %s", describe(got))
	} else if err == nil {
		c.t.Logf("inconclusive: a Reserve %s after a hold of %s began was not refused (the hold may have passed)", time.Since(start), shortHold)
		c.release(got.ID, "of a unit that was taken after the hold passed")
	}
	c.sleep(shortHold + margin)

	// Expired before any Sweep, and before any call that could have
	// noticed: Confirm comes first.
	got, err = c.st.Confirm(c.ctx, short.ID)
	require.ErrorIs(c.t, err, stock.ErrExpired, "Confirm of a hold whose time passed, before any other call: got %s", describe(got))
	exp := c.requireState(short.ID, stock.Expired, "after its hold passed, before any Sweep")
	require.Equal(c.t, []any{short.Item, short.Holder, short.Quantity}, []any{exp.Item, exp.Holder, exp.Quantity},
		"Get of an expired hold: got %s", describe(exp))
	c.release(short.ID, "of an expired hold")
	c.requireState(short.ID, stock.Expired, "after Release of an expired hold (it must change nothing)")
	got, err = c.st.Reserve(c.ctx, shortReq)
	require.NoError(c.t, err, "Reserve retried after its hold expired")
	require.Equal(c.t, stock.Expired, got.State, "Reserve retried after its hold expired must answer the expired reservation: got %s", describe(got))

	// Its units, and its holder's allowance, go to the next Reserve.
	next := c.reserve(req(item, "ha", c.name("next"), 2, longHold), "of the expired hold's 2 units, by its holder (HolderLimit 2)")
	swept := c.sweepOnce(100)
	require.LessOrEqual(c.t, swept, 1, "Sweep after one hold expired")
	c.requireLevel(item, 0, 3, 0, "after an expired hold's units were reserved again and Sweep")
	c.refused(req(item, "hc", c.name("late"), 1, longHold), stock.ErrSoldOut, "when the expired hold's units were taken again")
	require.Zero(c.t, c.sweepOnce(100), "Sweep again")
	c.requireLevel(item, 0, 3, 0, "after a second Sweep")
	c.requireState(short.ID, stock.Expired, "after Sweep")
	requireSame(c.t, long, c.get(long.ID), "Get of a long hold after Sweep")
	requireSame(c.t, next, c.get(next.ID), "Get of the hold that took the expired units, after Sweep")
}

func (c *checker) confirmedKeeps() {
	item := c.name("item")
	c.counted(item, stock.ItemConfig{}, 2)

	hold, lapsed := shortHold, 0
	var r, conf stock.Reservation
	for i := 0; ; i++ {
		if i == attempts {
			c.t.Skipf("inconclusive: in %d attempts, Confirm kept returning after the hold under test had passed (up to %s)", attempts, hold/3)
		}
		start := time.Now()
		r = c.reserve(req(item, "h", c.name(fmt.Sprintf("r%d", i)), 2, hold), fmt.Sprintf("of 2 for %s", hold))
		got, err := c.st.Confirm(c.ctx, r.ID)
		if err == nil {
			conf = got
			break
		}
		require.ErrorIs(c.t, err, stock.ErrExpired, "Confirm(%q) of a hold of %s", r.ID, hold)
		require.GreaterOrEqual(c.t, time.Since(start), hold, "Confirm(%q) of a hold of %s failed with ErrExpired %s after Reserve began",
			r.ID, hold, time.Since(start))
		c.t.Logf("attempt %d with %s was inconclusive: Confirm returned after the hold had passed", i+1, hold)
		lapsed++
		hold *= 3
	}
	c.requireConfirmed(r, conf, "Confirm of a hold")
	c.sleep(hold + margin)

	requireSame(c.t, conf, c.get(r.ID), fmt.Sprintf("Get of a reservation confirmed %s after its hold time", margin))
	require.LessOrEqual(c.t, c.sweepOnce(100), lapsed, "Sweep when only the %d inconclusive attempts' holds expired", lapsed)
	c.requireLevel(item, 0, 0, 2, "after a confirmed reservation's hold time passed and Sweep")
	c.refused(req(item, "h2", c.name("more"), 1, longHold), stock.ErrSoldOut, "when every unit is confirmed, after the hold time passed")
	require.ErrorIs(c.t, c.st.Release(c.ctx, r.ID), stock.ErrConfirmed, "Release of a confirmed reservation after its hold time")
	again, err := c.st.Confirm(c.ctx, r.ID)
	require.NoError(c.t, err, "Confirm again after the hold time")
	requireSame(c.t, conf, again, "Confirm again after the hold time")
	c.requireLevel(item, 0, 0, 2, "at the end")
}

func (c *checker) sweep() {
	const (
		expiring = 10
		limit    = 3
		units    = 12
	)
	require.Zero(c.t, c.sweepOnce(100), "Sweep of a fresh store")
	item := c.name("item")
	c.counted(item, stock.ItemConfig{}, units)

	long := c.reserve(req(item, "keeper", c.name("long"), 1, longHold), "of 1 for minutes")
	var short []stock.Reservation
	for i := range expiring {
		short = append(short, c.reserve(req(item, fmt.Sprintf("h%02d", i), c.name(fmt.Sprintf("s%02d", i)), 1, shortHold),
			fmt.Sprintf("of 1 for %s", shortHold)))
	}
	c.sleep(shortHold + margin)

	total := 0
	for call := 1; total < expiring; call++ {
		require.LessOrEqual(c.t, call, 5*expiring, "Sweep(%d) reported only %d of %d expired holds in %d calls", limit, total, expiring, call-1)
		total += c.sweepOnce(limit)
	}
	require.Equal(c.t, expiring, total, "Sweep(%d) calls together must report each of the %d expired holds once", limit, expiring)
	require.Zero(c.t, c.sweepOnce(100), "Sweep after every expired hold was swept")
	c.requireLevel(item, units-1, 1, 0, fmt.Sprintf("after Sweep returned %d expired holds' units", expiring))
	for _, r := range short {
		c.requireState(r.ID, stock.Expired, "after Sweep")
	}
	requireSame(c.t, long, c.get(long.ID), "Get of a long hold after Sweep")
	c.reserve(req(item, "later", c.name("later"), units-1, longHold), "of every swept unit")
	c.requireLevel(item, 0, units, 0, "after the swept units were reserved")
}

func (c *checker) disable() {
	item, other := c.name("item"), c.name("other")
	c.counted(item, stock.ItemConfig{}, 10)
	c.counted(other, stock.ItemConfig{}, 10)
	const reason = "recalled: batch 42"

	r1 := c.reserve(req(item, "h1", c.name("r1"), 1, longHold), "before Disable")
	require.NoError(c.t, c.st.Disable(c.ctx, item, reason), "Disable(%q)", item)
	l := c.requireLevel(item, 9, 1, 0, "after Disable")
	require.True(c.t, l.Disabled, "Level after Disable: %s", describeLevel(l))
	require.Equal(c.t, reason, l.Reason, "Reason of Level after Disable: %s", describeLevel(l))
	c.refused(req(item, "h2", c.name("r2"), 1, longHold), stock.ErrDisabled, "of a disabled item")
	c.requireLevel(item, 9, 1, 0, "after a Reserve of a disabled item")
	l = c.level(other)
	require.False(c.t, l.Disabled, "Level of another item after Disable: %s", describeLevel(l))
	c.reserve(req(other, "h2", c.name("r3"), 1, longHold), "of another item while one is disabled")

	c.confirm(r1, "of a hold taken before Disable, while disabled")
	c.requireLevel(item, 9, 0, 1, "after a hold was confirmed while disabled")

	require.NoError(c.t, c.st.Enable(c.ctx, item), "Enable(%q)", item)
	l = c.requireLevel(item, 9, 0, 1, "after Enable")
	require.False(c.t, l.Disabled, "Level after Enable: %s", describeLevel(l))
	c.reserve(req(item, "h2", c.name("r2"), 1, longHold), "after Enable, with the ID refused while disabled")
	c.requireLevel(item, 8, 1, 1, "after a Reserve once enabled")
}

func (c *checker) disableStorm() {
	const (
		workers = 50
		units   = 1_000_000
		// warmup is how many reservations the workers make before Disable.
		warmup = 200
		// after is how many Reserves each worker makes once Disable has
		// returned, at most; it stops at its first ErrDisabled then.
		after = 20
	)
	item := c.name("item")
	c.counted(item, stock.ItemConfig{}, units)

	var (
		calling   atomic.Bool  // Disable has been called
		disabled  atomic.Int64 // 1 once Disable has returned
		granted   atomic.Int64
		warmed    = make(chan struct{})
		warmOnce  sync.Once
		allDone   = make(chan struct{})
		successes = make([][]string, workers)
		late      = make([][]string, workers) // granted though begun after Disable returned
		early     = make([][]string, workers) // ErrDisabled before Disable was called
		failures  = make([]error, workers)
		refusedN  = make([]int, workers) // ErrDisabled after Disable returned
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i, afterDisable := 0, 0; afterDisable < after; i++ {
				if c.ctx.Err() != nil {
					failures[w] = c.ctx.Err()
					return
				}
				seq := disabled.Load()
				if seq != 0 {
					afterDisable++
				}
				id := c.name(fmt.Sprintf("w%02d-%06d", w, i))
				_, err := c.st.Reserve(c.ctx, req(item, fmt.Sprintf("holder-%02d", w), id, 1, longHold))
				switch {
				case err == nil:
					successes[w] = append(successes[w], id)
					if seq != 0 {
						late[w] = append(late[w], id)
					}
					if granted.Add(1) == warmup {
						warmOnce.Do(func() { close(warmed) })
					}
				case errors.Is(err, stock.ErrDisabled):
					if !calling.Load() {
						early[w] = append(early[w], id)
					}
					if seq != 0 {
						refusedN[w]++
						return
					}
				default:
					failures[w] = err
					return
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(allDone)
	}()
	select {
	case <-warmed:
	case <-allDone:
	case <-c.ctx.Done():
	}
	calling.Store(true)
	require.NoError(c.t, c.st.Disable(c.ctx, item, "storm"), "Disable(%q) during a storm of Reserves", item)
	disabled.Store(1)
	<-allDone

	total := 0
	var held string
	for w := range workers {
		require.NoError(c.t, failures[w], "worker %d: Reserve during a storm (stock is ample: only success or ErrDisabled are right)", w)
		if n := len(early[w]); n > 0 {
			require.Failf(c.t, "a Reserve failed with ErrDisabled before Disable was called",
				"worker %d: %d such Reserves, the first %q", w, n, early[w][0])
		}
		if n := len(late[w]); n > 0 {
			require.Failf(c.t, "a Reserve that began after Disable returned succeeded",
				"worker %d: %d such Reserves, the first %q", w, n, late[w][0])
		}
		require.Equal(c.t, 1, refusedN[w], "worker %d: Reserves after Disable returned must fail with ErrDisabled", w)
		total += len(successes[w])
		if len(successes[w]) > 0 {
			held = successes[w][0]
		}
	}
	require.GreaterOrEqual(c.t, total, warmup, "reservations made before Disable")
	l := c.requireLevel(item, units-total, total, 0, fmt.Sprintf("after a storm in which %d Reserves succeeded", total))
	require.True(c.t, l.Disabled, "Level after Disable: %s", describeLevel(l))

	got, err := c.st.Confirm(c.ctx, held)
	require.NoError(c.t, err, "Confirm(%q) of a hold granted before Disable", held)
	require.Equal(c.t, stock.Confirmed, got.State, "Confirm(%q) of a hold granted before Disable: got %s", held, describe(got))
	require.NoError(c.t, c.st.Enable(c.ctx, item), "Enable(%q) after a storm", item)
	c.reserve(req(item, "after", c.name("after-enable"), 1, longHold), "after Enable")
	c.requireLevel(item, units-total-1, total, 1, "after Enable, a Confirm and a Reserve")
}

func (c *checker) codes() {
	const (
		pool  = 50
		tries = 80
	)
	item, counted := c.name("codes"), c.name("counted")
	c.define(item, stock.ItemConfig{Codes: true})
	c.counted(counted, stock.ItemConfig{}, 5)
	c.requireLevel(item, 0, 0, 0, "of a new code item")

	code := func(i int) string { return fmt.Sprintf("CODE-%03d-%s", i, c.prefix) }
	var first []string
	for i := range 45 {
		first = append(first, code(i))
	}
	first = append(first, code(0), code(10), code(44)) // duplicates in one call
	n, err := c.st.LoadCodes(c.ctx, item, first)
	require.NoError(c.t, err, "LoadCodes(%q) of 45 codes and 3 duplicates", item)
	require.Equal(c.t, 45, n, "LoadCodes of 45 distinct codes and 3 duplicates of them")
	var second []string
	for i := 40; i < pool; i++ {
		second = append(second, code(i)) // 40-44 loaded before, 45-49 new
	}
	second = append(second, code(47))
	n, err = c.st.LoadCodes(c.ctx, item, second)
	require.NoError(c.t, err, "LoadCodes(%q) of 5 codes loaded before, 5 new ones and a duplicate", item)
	require.Equal(c.t, 5, n, "LoadCodes of 5 codes loaded before, 5 new ones and a duplicate")
	c.requireLevel(item, pool, 0, 0, fmt.Sprintf("after %d codes were loaded", pool))

	// A code item stays one, and a counted item stays counted.
	require.Error(c.t, c.st.Restock(c.ctx, item, 5), "Restock of a code item")
	require.Error(c.t, c.st.Define(c.ctx, item, stock.ItemConfig{}), "Define of a code item as a counted one")
	require.Error(c.t, c.st.Define(c.ctx, counted, stock.ItemConfig{Codes: true}), "Define of a counted item as a code one")
	_, err = c.st.LoadCodes(c.ctx, counted, []string{"not-a-unit"})
	require.Error(c.t, err, "LoadCodes of a counted item")
	require.Error(c.t, c.st.Restock(c.ctx, item, 5), "Restock of a code item after a Define as a counted one was refused")
	c.define(item, stock.ItemConfig{Codes: true})
	c.requireLevel(item, pool, 0, 0, "after refused Restocks and Defines and a Define again")
	c.requireLevel(counted, 5, 0, 0, "after a refused LoadCodes and Define")

	// Neither a released nor an expired hold consumes a code.
	rel := c.reserve(req(item, "released", c.name("released"), 1, longHold), "of one code")
	c.requireLevel(item, pool-1, 1, 0, "after a hold of one code")
	c.release(rel.ID, "of a hold of one code")
	c.requireLevel(item, pool, 0, 0, "after a hold of one code was released")
	exp := c.reserve(req(item, "expired", c.name("expired"), 1, shortHold), fmt.Sprintf("of one code for %s", shortHold))
	c.sleep(shortHold + margin)

	type result struct {
		r          stock.Reservation
		reserveErr error
		confirmErr error
	}
	results := make([]result, tries)
	startCh := make(chan struct{})
	var wg sync.WaitGroup
	for i := range tries {
		wg.Go(func() {
			<-startCh
			r := req(item, fmt.Sprintf("holder-%02d", i), c.name(fmt.Sprintf("r%02d", i)), 1, longHold)
			if _, results[i].reserveErr = c.st.Reserve(c.ctx, r); results[i].reserveErr == nil {
				results[i].r, results[i].confirmErr = c.st.Confirm(c.ctx, r.ID)
			}
		})
	}
	close(startCh)
	wg.Wait()

	loaded := map[string]bool{}
	for i := range pool {
		loaded[code(i)] = true
	}
	given := map[string]string{} // code → reservation
	confirmed := 0
	for i, res := range results {
		if res.reserveErr != nil {
			require.ErrorIs(c.t, res.reserveErr, stock.ErrSoldOut, "concurrent Reserve %d of a code", i)
			continue
		}
		require.NoError(c.t, res.confirmErr, "Confirm of concurrent hold %d of a code", i)
		confirmed++
		require.Equal(c.t, stock.Confirmed, res.r.State, "Confirm of concurrent hold %d: got %s", i, describe(res.r))
		require.Len(c.t, res.r.Codes, 1, "Confirm of a hold of 1 code: got %s", describe(res.r))
		cd := res.r.Codes[0]
		require.True(c.t, loaded[cd], "Confirm handed out %q, which was never loaded", cd)
		require.NotContains(c.t, given, cd, "code %q was handed out to both %q and %q", cd, given[cd], res.r.ID)
		given[cd] = res.r.ID
		requireSame(c.t, res.r, c.get(res.r.ID), "Get of a confirmed code reservation")
	}
	require.Equal(c.t, pool, confirmed, "of %d concurrent reserve-and-confirms of %d codes, exactly %d must be confirmed", tries, pool, pool)
	require.Len(c.t, given, pool, "every loaded code must be handed out once")

	require.LessOrEqual(c.t, c.sweepOnce(100), 1, "Sweep after one hold expired")
	c.requireLevel(item, 0, 0, pool, "after every code was handed out")
	c.requireState(rel.ID, stock.Released, "at the end")
	got := c.requireState(exp.ID, stock.Expired, "at the end")
	require.Empty(c.t, got.Codes, "Get of an expired hold of a code: got %s", describe(got))
	for _, res := range results {
		if res.reserveErr == nil {
			again, err := c.st.Confirm(c.ctx, res.r.ID)
			require.NoError(c.t, err, "Confirm(%q) again", res.r.ID)
			requireSame(c.t, res.r, again, "Confirm of a code reservation again")
			break
		}
	}

	// Codes loaded before, handed out or not, are ignored.
	n, err = c.st.LoadCodes(c.ctx, item, append(slices.Clone(first), code(pool), code(pool+1)))
	require.NoError(c.t, err, "LoadCodes(%q) of codes handed out and 2 new ones", item)
	require.Equal(c.t, 2, n, "LoadCodes of codes all handed out and 2 new ones")
	c.requireLevel(item, 2, 0, pool, "after 2 new codes were loaded")

	// A hold of 2 units gets 2 codes.
	r := c.reserve(req(item, "pair", c.name("pair"), 2, longHold), "of 2 codes")
	conf := c.confirm(r, "of a hold of 2 codes")
	require.Equal(c.t, []string{code(pool), code(pool + 1)}, sorted(conf.Codes), "codes of a confirmed hold of the last 2: got %s", describe(conf))
	c.requireLevel(item, 0, 0, pool+2, "at the end")
}

func (c *checker) quantity() {
	item := c.name("item")
	c.counted(item, stock.ItemConfig{}, 5)

	a := c.reserve(req(item, "h1", c.name("a"), 3, longHold), "of 3 of 5")
	c.refused(req(item, "h2", c.name("b"), 3, longHold), stock.ErrSoldOut, "of 3 when 2 are left")
	c.requireLevel(item, 2, 3, 0, "after 3 of 5 were reserved")
	b := c.reserve(req(item, "h2", c.name("c"), 2, longHold), "of the 2 left")
	c.requireLevel(item, 0, 5, 0, "after every unit was reserved")
	c.refused(req(item, "h3", c.name("d"), 1, longHold), stock.ErrSoldOut, "of 1 when none is left")

	c.release(a.ID, "of a hold of 3")
	c.requireLevel(item, 3, 2, 0, "after a hold of 3 was released")
	c.refused(req(item, "h3", c.name("e"), 4, longHold), stock.ErrSoldOut, "of 4 when 3 are left")
	c.confirm(b, "of a hold of 2")
	c.requireLevel(item, 3, 0, 2, "after a hold of 2 was confirmed")
	c.reserve(req(item, "h3", c.name("f"), 3, longHold), "of the 3 left")
	c.requireLevel(item, 0, 3, 2, "at the end")
}

// padded pads s to exactly stock.MaxNameLen bytes; tooLong to one more.
func padded(s string) string  { return s + strings.Repeat("x", stock.MaxNameLen-len(s)) }
func tooLong(s string) string { return padded(s) + "x" }

func (c *checker) longNames() {
	item := padded(c.name("item"))
	c.define(item, stock.ItemConfig{Codes: true, HolderLimit: 1})
	code := padded(c.name("code"))
	n, err := c.st.LoadCodes(c.ctx, item, []string{code})
	require.NoError(c.t, err, "LoadCodes of a code of MaxNameLen bytes")
	require.Equal(c.t, 1, n)

	_, err = c.st.LoadCodes(c.ctx, item, []string{c.name("short"), tooLong(c.name("code2"))})
	require.Error(c.t, err, "LoadCodes with a code longer than MaxNameLen")
	c.requireLevel(item, 1, 0, 0, "after a LoadCodes refused for a code too long (it loads none of its codes)")
	require.Error(c.t, c.st.Define(c.ctx, tooLong(c.name("item")), stock.ItemConfig{}), "Define of an item name longer than MaxNameLen")

	holder := padded("holder")
	r := c.reserve(req(item, holder, padded(c.name("r")), 1, longHold), "with an item, holder and ID of MaxNameLen bytes")
	c.retry(req(item, holder, padded(c.name("r")), 1, longHold), r, "with names of MaxNameLen bytes")
	c.refused(req(item, holder, padded(c.name("r2")), 1, longHold), stock.ErrHolderLimit,
		"of a second unit for a holder of MaxNameLen bytes with a HolderLimit of 1")
	got := c.confirm(r, "of a reservation with names of MaxNameLen bytes")
	require.Equal(c.t, []string{code}, got.Codes, "the code of MaxNameLen bytes")
	c.requireLevel(item, 0, 0, 1, "at the end")
}
