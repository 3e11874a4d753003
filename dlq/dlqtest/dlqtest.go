// Package dlqtest is the conformance suite for [dlq.Store] drivers: any
// store, ours or yours, proves that it keeps the contract the dlq middleware
// and [dlq.Replay] rely on by passing it.
//
// A driver runs it in one line from an ordinary test, with a [Factory] that
// makes a fresh, empty store for each check:
//
//	func TestConformance(t *testing.T) {
//		dlqtest.Run(t, func(t *testing.T, maxEntries int) dlq.Store {
//			s, err := mydriver.New(client, mydriver.Config{Prefix: uniqueName(t), MaxEntries: maxEntries})
//			require.NoError(t, err)
//			return s
//		})
//	}
//
// # What it checks
//
// Put and Get keep every field of an entry: the message's ID, Key, Body
// (any bytes, 64 KiB included), Headers (empty values included), Attempt and
// EnqueuedAt (a zero one stays zero), and the entry's Source, Reason, Error,
// ErrorChain in order, Attempts and failure times; List returns entries as
// whole as Get does. Get of an unknown ID fails with [dlq.ErrNotFound]. Put
// of an existing ID replaces the entry whole (fields it no longer has, such
// as a header, go) and keeps the earlier FirstFailedAt, whichever Put held
// it, and listing and counting see only the new entry.
//
// List returns oldest LastFailedAt first, ties broken by ID, at most limit
// entries a page, every entry once, and an empty Next on the page that holds
// the last entry when that page is not full; an empty store lists an empty
// page. List, Count and Purge select exactly what [dlq.Filter.Match] selects
// (Since inclusive, Until exclusive, to the microsecond, times compared as
// instants whatever their location; a Source filter matches only that
// source, not one it is a prefix of), and Purge returns how many it removed
// and leaves the rest. Paging neither skips nor repeats an entry present
// throughout while others, the cursor's own entry included, are deleted or
// added between pages.
//
// Delete removes an entry and then fails with ErrNotFound. A store with a
// cap refuses a new ID with [dlq.ErrFull] and evicts nothing, still takes
// replacements of the IDs it holds, takes new IDs again once one is deleted,
// and holds no more than its cap under concurrent Puts.
//
// Reserve returns a token and refuses further Reserves with
// [dlq.ErrReserved] while it holds; Unreserve and DeleteReserved with a wrong
// or stale token fail with ErrReserved and change nothing; Unreserve ends the
// reservation, DeleteReserved removes the entry; a reservation lapses after
// its lease, after which its token is stale; Put of the same ID ends the
// reservation; Reserve of an unknown ID fails with ErrNotFound. Of 16
// concurrent Reserves of an entry exactly one wins; concurrent Puts of
// distinct entries lose none, and concurrent Puts of one ID leave one entry
// that is whole (the fields of a single Put, not a mix) with the earliest
// FirstFailedAt of them all. IDs, sources and message IDs are opaque strings
// (spaces, unicode, hash-tag braces, colons, glob and LIKE characters, line
// breaks, case, 200 bytes) that never share an entry, a reservation or a
// Source filter.
//
// It does not check durability across restarts of the server, behaviour
// across processes whose clocks disagree, what Unreserve and DeleteReserved
// return for an ID that has no entry, whether entries the store returns
// share memory with it, List limits below 1, calls with a cancelled context,
// or strings holding NUL characters (which Postgres text cannot keep).
//
// # Times
//
// Times are compared with [time.Time.Equal] at microsecond precision, as
// Postgres keeps them: a store may drop anything finer, by truncating or by
// rounding (the times the suite writes have a sub-microsecond part that both
// turn into the same microsecond). Their location is not compared. Checks
// of order and of filters use times on whole microseconds. Ties in order are
// broken by ID; the IDs of those checks are [dlq.EntryID] values (lowercase
// hex), so byte order and any database collation agree on them.
//
// # Timing
//
// Checks never require a call to finish within a short time. The one check
// about expiry reserves with a lease of 300ms and waits 300ms past it before
// relying on its end; every other reservation has a lease of minutes, so
// that an expiry could only hide a bug.
//
// # Parallelism
//
// The checks run as parallel sub-tests of a sub-test named "Store", so the
// factory is called concurrently and every store it makes must be
// independent of the others (a unique table, key prefix or database per
// call): checks count entries and expect to see only their own. [Run]
// returns only once every check has finished, so resources shared by the
// factory may be released with defer or t.Cleanup alike.
package dlqtest

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
)

// Factory returns a fresh, empty store for one check. maxEntries > 0 asks
// for a store with that cap (0: no cap). It registers whatever cleanup the
// store needs with t.Cleanup, and fails t if it cannot make the store. It is
// called concurrently.
type Factory func(t *testing.T, maxEntries int) dlq.Store

const (
	// shortLease is the lease of the check about expiry.
	shortLease = 300 * time.Millisecond
	// margin is how long that check waits past the lease before relying on
	// its end, for clock granularity.
	margin = 300 * time.Millisecond
	// longLease is the lease of every other reservation: far longer than a
	// check runs, so an expiry could only hide a bug.
	longLease = 5 * time.Minute
	// checkTimeout bounds each check's calls together.
	checkTimeout = 2 * time.Minute
	// maxPages bounds a listing, so that a store whose cursors never end
	// fails instead of hanging.
	maxPages = 1000
)

// base is the time the checks' failure times are built on: fixed, so that a
// failing check fails the same way each run, and on a whole second.
var base = time.Date(2025, time.March, 14, 9, 26, 53, 0, time.UTC)

// zone is a location other than UTC, for times that must be compared as
// instants.
var zone = time.FixedZone("UTC+05:30", 5*3600+30*60)

// Run runs every conformance check against stores made by newStore, each as
// a parallel sub-test of t. It returns when all of them have finished.
func Run(t *testing.T, newStore Factory) {
	t.Helper()
	require.NotNil(t, newStore, "dlqtest: nil Factory")

	// The group makes Run synchronous: parallel sub-tests of t itself would
	// only start after the caller's test function returned, and after its
	// deferred calls had released what the factory uses.
	t.Run("Store", func(t *testing.T) {
		for _, ch := range checks {
			t.Run(ch.name, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(t.Context(), checkTimeout)
				t.Cleanup(cancel)
				st := newStore(t, ch.maxEntries)
				require.NotNil(t, st, "factory returned a nil Store (maxEntries %d)", ch.maxEntries)
				c := &checker{t: t, st: st, ctx: ctx}
				n := c.count(dlq.Filter{})
				require.Zero(t, n, "the factory must return an empty store, but it holds %d entries", n)
				ch.run(c)
			})
		}
	})
}

var checks = []struct {
	name       string
	maxEntries int
	run        func(*checker)
}{
	{"RoundTrip", 0, (*checker).roundTrip},
	{"PutReplaces", 0, (*checker).putReplaces},
	{"ListOrder", 0, (*checker).listOrder},
	{"Filters", 0, (*checker).filters},
	{"PagingWhileChanging", 0, (*checker).pagingWhileChanging},
	{"Delete", 0, (*checker).deleteRemoves},
	{"Cap", 3, (*checker).capped},
	{"CapUnderConcurrency", 20, (*checker).cappedConcurrent},
	{"Reserve", 0, (*checker).reservations},
	{"ReservationLapses", 0, (*checker).lapses},
	{"PutEndsReservation", 0, (*checker).putEndsReservation},
	{"ConcurrentReserve", 0, (*checker).concurrentReserve},
	{"ConcurrentPuts", 0, (*checker).concurrentPuts},
	{"ConcurrentReplace", 0, (*checker).concurrentReplace},
	{"OpaqueIDs", 0, (*checker).opaqueIDs},
}

// checker is one check's store, with helpers that fail the check.
type checker struct {
	t   *testing.T
	st  dlq.Store
	ctx context.Context
}

// at is base plus m minutes.
func at(m int) time.Time { return base.Add(time.Duration(m) * time.Minute) }

// entry makes an ordinary entry of msgID from source, parked at last.
func entry(source, msgID string, reason dlq.Reason, last time.Time) dlq.Entry {
	return dlq.Entry{
		ID: dlq.EntryID(source, msgID),
		Message: consumer.Message{
			ID:         msgID,
			Key:        "key of " + msgID,
			Body:       []byte("body of " + msgID),
			Headers:    map[string]string{"message": msgID},
			Attempt:    3,
			EnqueuedAt: last.Add(-time.Hour),
		},
		Source:        source,
		Reason:        reason,
		Error:         "handling " + msgID + ": failed",
		ErrorChain:    []string{"handling " + msgID + ": failed", "failed"},
		Attempts:      3,
		FirstFailedAt: last.Add(-time.Minute),
		LastFailedAt:  last,
	}
}

func cloneEntry(e dlq.Entry) dlq.Entry {
	e.Message.Body = slices.Clone(e.Message.Body)
	e.Message.Headers = maps.Clone(e.Message.Headers)
	e.ErrorChain = slices.Clone(e.ErrorChain)
	return e
}

// listOrder is the order List returns entries in.
func listOrder(a, b dlq.Entry) int {
	return cmp.Or(a.LastFailedAt.Compare(b.LastFailedAt), strings.Compare(a.ID, b.ID))
}

// expect returns the entries of es that f matches, in list order.
func expect(es []dlq.Entry, f dlq.Filter) []dlq.Entry {
	var out []dlq.Entry
	for _, e := range es {
		if f.Match(e) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, listOrder)
	return out
}

func ids(es []dlq.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func describe(f dlq.Filter) string {
	var parts []string
	if f.Reason != "" {
		parts = append(parts, fmt.Sprintf("Reason=%q", f.Reason))
	}
	if f.Source != "" {
		parts = append(parts, fmt.Sprintf("Source=%q", f.Source))
	}
	if !f.Since.IsZero() {
		parts = append(parts, "Since="+f.Since.Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		parts = append(parts, "Until="+f.Until.Format(time.RFC3339Nano))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// put parks a copy of e, so that the checks compare what comes back with
// what they meant to park even if Put writes to its argument.
func (c *checker) put(e dlq.Entry) {
	c.t.Helper()
	require.NoError(c.t, c.st.Put(c.ctx, cloneEntry(e)), "Put(%q)", e.ID)
}

func (c *checker) putAll(es []dlq.Entry) {
	c.t.Helper()
	for _, e := range es {
		c.put(e)
	}
}

func (c *checker) get(id string) dlq.Entry {
	c.t.Helper()
	got, err := c.st.Get(c.ctx, id)
	require.NoError(c.t, err, "Get(%q)", id)
	return got
}

// requireEntry checks that Get(want.ID) returns want (why).
func (c *checker) requireEntry(want dlq.Entry, why string) {
	c.t.Helper()
	requireSameEntry(c.t, want, c.get(want.ID), "Get "+why)
}

func (c *checker) requireNotFound(id, why string) {
	c.t.Helper()
	got, err := c.st.Get(c.ctx, id)
	require.ErrorIs(c.t, err, dlq.ErrNotFound, "Get(%q) %s: got entry %+v", id, why, got)
}

func (c *checker) count(f dlq.Filter) int {
	c.t.Helper()
	n, err := c.st.Count(c.ctx, f)
	require.NoError(c.t, err, "Count(%s)", describe(f))
	return n
}

func (c *checker) delete(id string) {
	c.t.Helper()
	require.NoError(c.t, c.st.Delete(c.ctx, id), "Delete(%q) of a parked entry", id)
}

func (c *checker) reserve(id string, lease time.Duration, why string) string {
	c.t.Helper()
	tok, err := c.st.Reserve(c.ctx, id, lease)
	require.NoError(c.t, err, "Reserve(%q) %s", id, why)
	require.NotEmpty(c.t, tok, "Reserve(%q) %s returned an empty token", id, why)
	return tok
}

func (c *checker) requireReserved(id, why string) {
	c.t.Helper()
	tok, err := c.st.Reserve(c.ctx, id, longLease)
	require.ErrorIs(c.t, err, dlq.ErrReserved, "Reserve(%q) %s: got token %q", id, why, tok)
}

// stale checks that Unreserve and DeleteReserved of id with tok fail with
// ErrReserved (why) and leave the entry, which is want.
func (c *checker) stale(want dlq.Entry, tok, why string) {
	c.t.Helper()
	require.ErrorIs(c.t, c.st.DeleteReserved(c.ctx, want.ID, tok), dlq.ErrReserved,
		"DeleteReserved(%q) with token %q %s", want.ID, tok, why)
	c.requireEntry(want, fmt.Sprintf("after a DeleteReserved with token %q %s", tok, why))
	require.ErrorIs(c.t, c.st.Unreserve(c.ctx, want.ID, tok), dlq.ErrReserved,
		"Unreserve(%q) with token %q %s", want.ID, tok, why)
}

// listAll pages through the entries that match f, limit at a time, and
// checks what every listing must be: pages of at most limit entries, each
// entry once, oldest LastFailedAt first with ties broken by ID. between, if
// not nil, runs after each page that has a Next.
func (c *checker) listAll(f dlq.Filter, limit int, between func(dlq.Page)) ([]dlq.Entry, []dlq.Page) {
	c.t.Helper()
	var (
		all   []dlq.Entry
		pages []dlq.Page
		seen  = map[string]int{} // ID → page
		cur   string
	)
	for i := 0; ; i++ {
		require.Less(c.t, i, maxPages, "List(%s, limit %d) still returned a Next cursor after %d pages (%d entries)",
			describe(f), limit, maxPages, len(all))
		p, err := c.st.List(c.ctx, f, cur, limit)
		require.NoError(c.t, err, "List(%s, cursor %q, limit %d), page %d", describe(f), cur, limit, i+1)
		require.LessOrEqual(c.t, len(p.Entries), limit, "List(%s, limit %d) page %d holds more than limit entries: %v",
			describe(f), limit, i+1, ids(p.Entries))
		for _, e := range p.Entries {
			if prev, ok := seen[e.ID]; ok {
				require.Failf(c.t, "List returned an entry twice", "List(%s, limit %d) returned %q on page %d and again on page %d",
					describe(f), limit, e.ID, prev, i+1)
			}
			seen[e.ID] = i + 1
			if n := len(all); n > 0 {
				prev := all[n-1]
				require.Negative(c.t, listOrder(prev, e),
					"List(%s, limit %d) page %d: %q (LastFailedAt %s) came after %q (LastFailedAt %s); want oldest LastFailedAt first, ties by ID",
					describe(f), limit, i+1, e.ID, e.LastFailedAt.Format(time.RFC3339Nano), prev.ID, prev.LastFailedAt.Format(time.RFC3339Nano))
			}
			all = append(all, e)
		}
		pages = append(pages, p)
		if p.Next == "" {
			return all, pages
		}
		if between != nil {
			between(p)
		}
		cur = p.Next
	}
}

// requireList checks that List (at limit a page) and Count of f give want,
// in order and whole.
func (c *checker) requireList(f dlq.Filter, limit int, want []dlq.Entry, why string) {
	c.t.Helper()
	got, _ := c.listAll(f, limit, nil)
	require.Equal(c.t, ids(want), ids(got), "IDs listed by List(%s, limit %d) %s", describe(f), limit, why)
	for i := range want {
		requireSameEntry(c.t, want[i], got[i], fmt.Sprintf("List(%s) %s", describe(f), why))
	}
	require.Equal(c.t, len(want), c.count(f), "Count(%s) %s", describe(f), why)
}

// requireSameEntry checks that got is want, times at microsecond precision
// and nil the same as empty (where).
func requireSameEntry(t *testing.T, want, got dlq.Entry, where string) {
	t.Helper()
	require.Equal(t, want.ID, got.ID, "%s: ID", where)
	what := fmt.Sprintf("%s: entry %q", where, want.ID)
	wm, gm := want.Message, got.Message
	require.Equal(t, wm.ID, gm.ID, "%s: Message.ID", what)
	require.Equal(t, wm.Key, gm.Key, "%s: Message.Key", what)
	requireSame(t, wm.Body, gm.Body, "%s: Message.Body", what)
	if len(wm.Headers) == 0 {
		require.Empty(t, gm.Headers, "%s: Message.Headers", what)
	} else {
		require.Equal(t, wm.Headers, gm.Headers, "%s: Message.Headers", what)
	}
	require.Equal(t, wm.Attempt, gm.Attempt, "%s: Message.Attempt", what)
	requireTime(t, wm.EnqueuedAt, gm.EnqueuedAt, what+": Message.EnqueuedAt")
	require.Equal(t, want.Source, got.Source, "%s: Source", what)
	require.Equal(t, want.Reason, got.Reason, "%s: Reason", what)
	require.Equal(t, want.Error, got.Error, "%s: Error", what)
	requireSame(t, want.ErrorChain, got.ErrorChain, "%s: ErrorChain", what)
	require.Equal(t, want.Attempts, got.Attempts, "%s: Attempts", what)
	requireTime(t, want.FirstFailedAt, got.FirstFailedAt, what+": FirstFailedAt")
	requireTime(t, want.LastFailedAt, got.LastFailedAt, what+": LastFailedAt")
}

// requireSame compares slices, nil the same as empty.
func requireSame[S ~[]E, E any](t *testing.T, want, got S, msg string, args ...any) {
	t.Helper()
	if len(want) == 0 {
		require.Empty(t, got, append([]any{msg}, args...)...)
		return
	}
	require.Equal(t, want, got, append([]any{msg}, args...)...)
}

// requireTime compares times as instants at microsecond precision. A zero
// want must come back zero.
func requireTime(t *testing.T, want, got time.Time, what string) {
	t.Helper()
	if want.IsZero() {
		require.True(t, got.IsZero(), "%s: got %s, want the zero time", what, got.Format(time.RFC3339Nano))
		return
	}
	w, g := want.Truncate(time.Microsecond), got.Truncate(time.Microsecond)
	require.True(t, w.Equal(g), "%s: got %s, want %s (compared at microsecond precision)",
		what, got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
}

// sleep pauses past a lease under test; checks never sleep to wait for an
// outcome they can observe.
func (c *checker) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-c.t.Context().Done():
	}
}

func (c *checker) roundTrip() {
	big := make([]byte, 64<<10)
	for i := range big {
		big[i] = byte(i * 7 % 251)
	}
	// Sub-microsecond parts below 500ns: truncating and rounding to the
	// microsecond agree on them.
	full := dlq.Entry{
		ID: dlq.EntryID("orders", "msg-full"),
		Message: consumer.Message{
			ID:   "msg-full",
			Key:  "order-42",
			Body: []byte{0x00, 0xff, 0xfe, '\n', 0x80, '"', '\\', '{', '}', 0xc3, 0x28, 0x00},
			Headers: map[string]string{
				"content-type": "application/json",
				"traceparent":  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
				"x-empty":      "",
				"x-unicode":    "héllo, 世界 🚀",
				"x-quotes":     `'"` + "`\\",
			},
			Attempt:    5,
			EnqueuedAt: time.Date(2025, time.March, 14, 7, 1, 2, 123456321, time.UTC),
		},
		Source:     "orders",
		Reason:     dlq.ReasonAttemptsExhausted,
		Error:      `charging order 42: payment gateway: dial tcp 10.0.0.7:443: connection refused`,
		ErrorChain: []string{"payment gateway: dial tcp 10.0.0.7:443: connection refused", "dial tcp 10.0.0.7:443: connection refused", "connection refused"},
		Attempts:   5,
		// Another location: the store must keep the instant.
		FirstFailedAt: time.Date(2025, time.March, 14, 13, 0, 0, 999999499, zone),
		LastFailedAt:  time.Date(2025, time.March, 14, 13, 5, 30, 250, zone),
	}
	minimal := dlq.Entry{
		ID:            dlq.EntryID("payments", "msg-minimal"),
		Message:       consumer.Message{ID: "msg-minimal"}, // nil Body and Headers, zero EnqueuedAt
		Source:        "payments",
		Reason:        "custom_reason",
		Attempts:      1,
		FirstFailedAt: time.Date(2025, time.March, 14, 8, 0, 0, 1000, time.UTC),
		LastFailedAt:  time.Date(2025, time.March, 14, 8, 0, 0, 1000, time.UTC),
	}
	odd := dlq.Entry{
		ID: dlq.EntryID("{refunds}:eu", "msg-odd"),
		Message: consumer.Message{
			ID:         "msg-odd",
			Key:        "ünïcødé key",
			Body:       []byte{},
			Headers:    map[string]string{},
			Attempt:    1,
			EnqueuedAt: time.Date(1999, time.December, 31, 23, 59, 59, 999999000, time.UTC),
		},
		Source:        "{refunds}:eu",
		Reason:        dlq.ReasonUndecodable,
		Error:         "decoding: invalid character '\\n' in string literal\n\tline 2: \"quoted\" 世界",
		ErrorChain:    []string{"decoding: invalid character '\\n' in string literal\n\tline 2: \"quoted\" 世界"},
		Attempts:      1,
		FirstFailedAt: time.Date(2025, time.March, 14, 8, 30, 0, 0, time.UTC),
		LastFailedAt:  time.Date(2025, time.March, 14, 9, 0, 0, 0, time.UTC),
	}
	large := entry("orders", "msg-large", dlq.ReasonPermanent, at(1))
	large.Message.Body = big
	large.ErrorChain = nil
	for i := range 20 { // in no sorted order, so that a store must keep the order it was given
		large.ErrorChain = append(large.ErrorChain, fmt.Sprintf("layer %02d", i*7%20))
	}
	entries := []dlq.Entry{full, minimal, odd, large}

	c.putAll(entries)
	for _, e := range entries {
		c.requireEntry(e, "after Put")
	}
	c.requireList(dlq.Filter{}, 10, expect(entries, dlq.Filter{}), "after Put")

	c.requireNotFound(dlq.EntryID("orders", "never-parked"), "of an ID never put")
	c.requireNotFound(full.ID[:len(full.ID)/2], "of a prefix of a parked entry's ID")
	c.requireNotFound(full.ID+"0", "of a parked entry's ID with a character added")
	c.requireNotFound(strings.ToUpper(full.ID), "of a parked entry's ID in upper case")
}

func (c *checker) putReplaces() {
	v1 := entry("orders", "m", dlq.ReasonPermanent, at(10))
	v1.Message.Headers = map[string]string{"a": "1", "b": "2"}
	v1.ErrorChain = []string{"one", "two", "three"}
	v1.FirstFailedAt = at(8)

	// The new entry failed first earlier than the one it replaces: its
	// FirstFailedAt is the earlier.
	v2 := entry("orders", "m", dlq.ReasonAttemptsExhausted, at(20))
	v2.Message.Key = "key 2"
	v2.Message.Body = []byte("second body")
	v2.Message.Headers = map[string]string{"b": "22", "c": "3"}
	v2.Message.Attempt = 6
	v2.Error = "second error"
	v2.ErrorChain = []string{"second error", "cause"}
	v2.Attempts = 6
	v2.FirstFailedAt = at(5)

	// The new entry failed first later than the kept FirstFailedAt: the
	// kept one stays.
	v3 := entry("orders", "m", dlq.ReasonUndecodable, at(30))
	v3.Message.Body = nil
	v3.Message.Headers = nil
	v3.Message.Attempt = 9
	v3.Error = "third error"
	v3.ErrorChain = nil
	v3.Attempts = 9
	v3.FirstFailedAt = at(15)

	c.put(v1)
	c.requireEntry(v1, "after the first Put")

	c.put(v2)
	want := v2 // v2's FirstFailedAt is the earlier
	c.requireEntry(want, "after a Put of the same ID whose FirstFailedAt is earlier")
	require.Equal(c.t, 1, c.count(dlq.Filter{}), "Count after two Puts of one ID")
	c.requireList(dlq.Filter{}, 10, []dlq.Entry{want}, "after two Puts of one ID")

	c.put(v3)
	want = v3
	want.FirstFailedAt = v2.FirstFailedAt
	c.requireEntry(want, "after a Put of the same ID whose FirstFailedAt is later than the kept one")
	require.Equal(c.t, 1, c.count(dlq.Filter{}), "Count after three Puts of one ID")
	c.requireList(dlq.Filter{}, 10, []dlq.Entry{want}, "after three Puts of one ID")

	// Indexes must follow the replacement: the old reasons and failure
	// times select nothing any more.
	for _, f := range []dlq.Filter{
		{Reason: dlq.ReasonPermanent},
		{Reason: dlq.ReasonAttemptsExhausted},
		{Until: at(25)},
		{Since: at(9), Until: at(21)},
	} {
		c.requireList(f, 10, nil, "after the entry was replaced by one this filter does not match")
	}
	for _, f := range []dlq.Filter{
		{Reason: dlq.ReasonUndecodable},
		{Since: at(30)},
		{Source: "orders", Since: at(25), Until: at(31)},
	} {
		c.requireList(f, 10, []dlq.Entry{want}, "after the entry was replaced by one this filter matches")
	}
}

func (c *checker) listOrder() {
	// An empty store lists an empty page.
	for _, f := range []dlq.Filter{{}, {Source: "orders"}} {
		p, err := c.st.List(c.ctx, f, "", 3)
		require.NoError(c.t, err, "List(%s) of an empty store", describe(f))
		require.Empty(c.t, p.Entries, "List(%s) of an empty store", describe(f))
		require.Empty(c.t, p.Next, "List(%s) of an empty store must have no Next", describe(f))
	}

	// Ties at 3 minutes span pages of 3; every other time is in another
	// location, to be ordered as an instant.
	minutes := []int{4, 1, 3, 3, 3, 7, 1, 9, 0, 3}
	entries := make([]dlq.Entry, len(minutes))
	for i, m := range minutes {
		last := at(m)
		if i%2 == 1 {
			last = last.In(zone)
		}
		entries[i] = entry("orders", fmt.Sprintf("m%02d", i), dlq.ReasonPermanent, last)
	}
	for i := len(entries) - 1; i >= 0; i-- {
		c.put(entries[i])
	}
	want := expect(entries, dlq.Filter{})

	for _, limit := range []int{3, 1, 4, 10, 11, 100} {
		got, pages := c.listAll(dlq.Filter{}, limit, nil)
		require.Equal(c.t, ids(want), ids(got), "IDs listed by List at %d a page: want oldest LastFailedAt first, ties by ID", limit)
		for i := range want {
			requireSameEntry(c.t, want[i], got[i], fmt.Sprintf("List at %d a page", limit))
		}
		// The page that holds the last entry ends the listing unless it is
		// full (a store may not know that nothing follows a full page).
		last := len(pages) - 1
		for last > 0 && len(pages[last].Entries) == 0 {
			last--
		}
		if n := len(pages[last].Entries); n < limit {
			require.Equal(c.t, len(pages)-1, last,
				"List at %d a page: page %d holds the last entry and only %d entries, but its Next is %q (want empty)",
				limit, last+1, n, pages[last].Next)
		}
	}
	require.Equal(c.t, len(entries), c.count(dlq.Filter{}), "Count")
}

func (c *checker) filters() {
	sources := []string{"orders", "payments", "orders:eu"}
	reasons := []dlq.Reason{dlq.ReasonPermanent, dlq.ReasonAttemptsExhausted, dlq.ReasonUndecodable, "custom"}
	var entries []dlq.Entry
	for i := range 12 { // every source with every reason, two at each minute
		last := at(i / 2)
		if i%4 == 1 {
			last = last.In(zone)
		}
		entries = append(entries, entry(sources[i%3], fmt.Sprintf("m%02d", i), reasons[i%4], last))
	}
	c.putAll(entries)

	us := time.Microsecond
	for _, f := range []dlq.Filter{
		{},
		{Reason: dlq.ReasonPermanent},
		{Reason: "custom"},
		{Reason: "no_such_reason"},
		{Reason: "Permanent"},
		{Source: "orders"},
		{Source: "orders:eu"},
		{Source: "order"},
		{Source: "ORDERS"},
		{Source: "orders:*"},
		{Since: at(3)},
		{Until: at(3)},
		{Since: at(2), Until: at(4)},
		{Since: at(2).Add(us), Until: at(4).Add(us)},
		{Since: at(2).Add(-us), Until: at(4).Add(-us)},
		{Since: at(1).In(zone), Until: at(5).In(zone)},
		{Since: at(3), Until: at(3)},
		{Since: at(100)},
		{Until: at(-1)},
		{Reason: dlq.ReasonPermanent, Source: "orders"},
		{Reason: dlq.ReasonAttemptsExhausted, Source: "payments", Since: at(0), Until: at(6)},
		{Reason: dlq.ReasonUndecodable, Source: "orders:eu", Since: at(1), Until: at(3)},
		{Source: "payments", Since: at(1), Until: at(5)},
	} {
		want := expect(entries, f)
		c.requireList(f, 2, want, "of the entries put")
		c.requireList(f, 100, want, "of the entries put")
	}

	remaining := entries
	for _, f := range []dlq.Filter{
		{Reason: "no_such_reason"},
		{Source: "order"},
		{Source: "payments", Since: at(1), Until: at(5)},
		{Source: "orders", Until: at(3)},
		{Reason: dlq.ReasonPermanent},
		{Since: at(2), Until: at(2)},
		{Since: at(4)},
		{},
	} {
		var removed, kept []dlq.Entry
		for _, e := range remaining {
			if f.Match(e) {
				removed = append(removed, e)
			} else {
				kept = append(kept, e)
			}
		}
		n, err := c.st.Purge(c.ctx, f)
		require.NoError(c.t, err, "Purge(%s)", describe(f))
		require.Equal(c.t, len(removed), n, "Purge(%s) must return how many entries it removed: want %v removed",
			describe(f), ids(removed))
		why := "after Purge(" + describe(f) + ")"
		c.requireList(dlq.Filter{}, 5, expect(kept, dlq.Filter{}), why)
		for _, e := range removed {
			c.requireNotFound(e.ID, why)
		}
		remaining = kept
	}
	require.Empty(c.t, remaining)
}

func (c *checker) pagingWhileChanging() {
	// Four entries a minute, so ties span pages of 3.
	var entries []dlq.Entry
	for i := range 16 {
		entries = append(entries, entry("orders", fmt.Sprintf("m%02d", i), dlq.ReasonPermanent, at(i/4)))
	}
	for i := len(entries) - 1; i >= 0; i-- {
		c.put(entries[i])
	}
	order := expect(entries, dlq.Filter{})

	var (
		shown   = map[string]bool{}
		deleted = map[string]bool{}
		added   int
	)
	del := func(id string) {
		c.t.Helper()
		c.delete(id)
		deleted[id] = true
	}
	got, _ := c.listAll(dlq.Filter{}, 3, func(p dlq.Page) {
		if len(p.Entries) == 0 {
			return
		}
		for _, e := range p.Entries {
			shown[e.ID] = true
		}
		// The cursor's own entry, an entry shown earlier, and the entry
		// that should come next.
		del(p.Entries[len(p.Entries)-1].ID)
		for _, e := range order {
			if shown[e.ID] && !deleted[e.ID] {
				del(e.ID)
				break
			}
		}
		for _, e := range order {
			if !shown[e.ID] && !deleted[e.ID] {
				del(e.ID)
				break
			}
		}
		// New entries, before the cursor and after every other, may be
		// missed or shown.
		added++
		c.put(entry("orders", fmt.Sprintf("added-early-%d", added), dlq.ReasonPermanent, at(-added)))
		c.put(entry("orders", fmt.Sprintf("added-late-%d", added), dlq.ReasonPermanent, at(100+added)))
	})

	listed := map[string]bool{}
	for _, e := range got {
		listed[e.ID] = true
	}
	throughout := 0
	for _, e := range order {
		if deleted[e.ID] {
			continue
		}
		throughout++
		require.True(c.t, listed[e.ID],
			"entry %q (LastFailedAt %s), present throughout, was skipped by List at 3 a page while entries were deleted and added between pages; listed %v",
			e.ID, e.LastFailedAt.Format(time.RFC3339Nano), ids(got))
	}
	require.Positive(c.t, throughout, "the check deleted every entry; it must leave some")
	require.NotEmpty(c.t, deleted)
}

func (c *checker) deleteRemoves() {
	a := entry("orders", "a", dlq.ReasonPermanent, at(1))
	b := entry("orders", "b", dlq.ReasonPermanent, at(2))
	c.putAll([]dlq.Entry{a, b})

	c.delete(a.ID)
	c.requireNotFound(a.ID, "after Delete")
	c.requireEntry(b, "after Delete of another entry")
	c.requireList(dlq.Filter{}, 10, []dlq.Entry{b}, "after Delete of another entry")
	require.ErrorIs(c.t, c.st.Delete(c.ctx, a.ID), dlq.ErrNotFound, "second Delete(%q)", a.ID)
	require.ErrorIs(c.t, c.st.Delete(c.ctx, dlq.EntryID("orders", "never-parked")), dlq.ErrNotFound, "Delete of an ID never put")
	c.requireEntry(b, "after failed Deletes of other IDs")

	c.put(a)
	c.requireEntry(a, "after a Put of a deleted ID")
	require.Equal(c.t, 2, c.count(dlq.Filter{}), "Count after a Put of a deleted ID")
}

func (c *checker) capped() {
	var entries []dlq.Entry
	for i := range 6 {
		entries = append(entries, entry("orders", fmt.Sprintf("m%d", i), dlq.ReasonPermanent, at(i)))
	}
	held := entries[:3]
	c.putAll(held)

	err := c.st.Put(c.ctx, cloneEntry(entries[3]))
	require.ErrorIs(c.t, err, dlq.ErrFull, "Put of a 4th ID into a store with a cap of 3")
	require.Equal(c.t, 3, c.count(dlq.Filter{}), "Count after a Put refused with ErrFull")
	c.requireNotFound(entries[3].ID, "of the entry a full store refused")
	for _, e := range held {
		c.requireEntry(e, "after a full store refused a new entry: a store must refuse rather than evict")
	}

	// A replacement is no new entry.
	repl := entry("orders", "m1", dlq.ReasonAttemptsExhausted, at(10))
	repl.Attempts = 7
	require.NoError(c.t, c.st.Put(c.ctx, cloneEntry(repl)), "Put replacing an entry of a full store")
	want := repl
	want.FirstFailedAt = held[1].FirstFailedAt
	c.requireEntry(want, "after a Put replacing an entry of a full store")
	require.Equal(c.t, 3, c.count(dlq.Filter{}), "Count after a replacement in a full store")

	c.delete(held[0].ID)
	c.put(entries[4])
	c.requireEntry(entries[4], "after a Put into a full store that an entry was deleted from")
	require.ErrorIs(c.t, c.st.Put(c.ctx, cloneEntry(entries[5])), dlq.ErrFull,
		"Put of a new ID into a store with a cap of 3, full again after a Delete and a Put")
	c.requireList(dlq.Filter{}, 10, expect([]dlq.Entry{want, held[2], entries[4]}, dlq.Filter{}), "at the end")
}

func (c *checker) cappedConcurrent() {
	const (
		capacity  = 20 // the check's maxEntries
		writers   = 32
		perWriter = 5
	)
	errs := make([][perWriter]error, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			<-start
			for j := range perWriter {
				e := entry(fmt.Sprintf("src-%02d", w), fmt.Sprintf("m%d", j), dlq.ReasonPermanent, at(j))
				errs[w][j] = c.st.Put(c.ctx, e)
			}
		})
	}
	close(start)
	wg.Wait()

	var accepted []string
	for w := range writers {
		for j, err := range errs[w] {
			id := dlq.EntryID(fmt.Sprintf("src-%02d", w), fmt.Sprintf("m%d", j))
			if err == nil {
				accepted = append(accepted, id)
				continue
			}
			require.ErrorIs(c.t, err, dlq.ErrFull, "concurrent Put(%q) into a store with a cap of %d", id, capacity)
			c.requireNotFound(id, "of an entry refused with ErrFull")
		}
	}
	require.Equal(c.t, capacity, len(accepted),
		"%d writers put %d new entries each at once into a store with a cap of %d: it must accept exactly %d",
		writers, perWriter, capacity, capacity)
	require.Equal(c.t, capacity, c.count(dlq.Filter{}), "Count after concurrent Puts into a store with a cap of %d", capacity)
	got, _ := c.listAll(dlq.Filter{}, 100, nil)
	require.ElementsMatch(c.t, accepted, ids(got), "entries listed after concurrent Puts: want those accepted")
}

func (c *checker) reservations() {
	e := entry("orders", "m", dlq.ReasonPermanent, at(1))
	other := entry("orders", "other", dlq.ReasonPermanent, at(2))
	c.putAll([]dlq.Entry{e, other})

	tok1 := c.reserve(e.ID, longLease, "of a parked entry")
	c.requireReserved(e.ID, "while it is reserved")
	for _, bad := range []string{tok1 + "x", "", "not-a-token"} {
		if bad == tok1 {
			continue
		}
		c.stale(e, bad, "(a wrong token) while another reserves it")
		c.requireReserved(e.ID, fmt.Sprintf("after Unreserve and DeleteReserved with wrong token %q", bad))
	}

	// Reservations are per entry.
	tokOther := c.reserve(other.ID, longLease, "of another entry while the first is reserved")
	if tokOther != tok1 {
		c.stale(e, tokOther, "(another entry's token)")
		c.requireReserved(e.ID, "after Unreserve and DeleteReserved with another entry's token")
	}

	require.NoError(c.t, c.st.Unreserve(c.ctx, e.ID, tok1), "Unreserve(%q) with the token that reserves it", e.ID)
	c.requireEntry(e, "after Unreserve")
	c.stale(e, tok1, "after it was unreserved")

	tok2 := c.reserve(e.ID, longLease, "of an unreserved entry")
	if tok2 != tok1 {
		c.stale(e, tok1, "(the token of an ended reservation) while a new one holds it")
	}
	c.requireReserved(e.ID, "while a second reservation holds it")
	require.NoError(c.t, c.st.DeleteReserved(c.ctx, e.ID, tok2), "DeleteReserved(%q) with the token that reserves it", e.ID)
	c.requireNotFound(e.ID, "after DeleteReserved")
	require.Error(c.t, c.st.DeleteReserved(c.ctx, e.ID, tok2), "second DeleteReserved(%q) with the same token", e.ID)

	_, err := c.st.Reserve(c.ctx, e.ID, longLease)
	require.ErrorIs(c.t, err, dlq.ErrNotFound, "Reserve(%q) after DeleteReserved", e.ID)
	_, err = c.st.Reserve(c.ctx, dlq.EntryID("orders", "never-parked"), longLease)
	require.ErrorIs(c.t, err, dlq.ErrNotFound, "Reserve of an ID never put")

	c.requireEntry(other, "after its neighbour's reservations")
	require.NoError(c.t, c.st.DeleteReserved(c.ctx, other.ID, tokOther), "DeleteReserved(%q) with the token that reserves it", other.ID)
	require.Zero(c.t, c.count(dlq.Filter{}), "Count after both entries were deleted")
}

func (c *checker) lapses() {
	// a lapses with nobody reserving it since; b lapses and is reserved
	// again.
	a := entry("orders", "a", dlq.ReasonPermanent, at(1))
	b := entry("orders", "b", dlq.ReasonPermanent, at(2))
	c.putAll([]dlq.Entry{a, b})
	tokA := c.reserve(a.ID, shortLease, "of a parked entry")
	tokB := c.reserve(b.ID, shortLease, "of a parked entry")
	c.sleep(shortLease + margin)

	c.stale(a, tokA, fmt.Sprintf("after its %s lease ran out, with no reservation since", shortLease))
	tok := c.reserve(a.ID, longLease, "after its lease ran out and stale calls")
	require.NoError(c.t, c.st.DeleteReserved(c.ctx, a.ID, tok), "DeleteReserved(%q) with the token of a new reservation", a.ID)
	c.requireNotFound(a.ID, "after DeleteReserved")

	tokB2 := c.reserve(b.ID, longLease, fmt.Sprintf("after its %s lease ran out", shortLease))
	if tokB2 != tokB {
		c.stale(b, tokB, fmt.Sprintf("after its %s lease ran out and the entry was reserved again", shortLease))
	}
	c.requireReserved(b.ID, "while a new reservation holds it")
	require.NoError(c.t, c.st.DeleteReserved(c.ctx, b.ID, tokB2), "DeleteReserved(%q) with the token of the new reservation", b.ID)
	c.requireNotFound(b.ID, "after DeleteReserved")
}

func (c *checker) putEndsReservation() {
	v1 := entry("orders", "m", dlq.ReasonAttemptsExhausted, at(1))
	c.put(v1)
	tok := c.reserve(v1.ID, longLease, "of a parked entry")

	// The message failed again while a Replay held its entry.
	v2 := entry("orders", "m", dlq.ReasonPermanent, at(5))
	v2.Message.Attempt = 1
	v2.Message.Body = []byte("the newer failure")
	v2.Error = "newer failure"
	v2.Attempts = 1
	v2.FirstFailedAt = at(5)
	c.put(v2)
	want := v2
	want.FirstFailedAt = v1.FirstFailedAt

	c.stale(want, tok, "after a Put of the same ID ended its reservation")
	tok2 := c.reserve(v1.ID, longLease, "after a Put of the same ID ended its reservation")
	require.NoError(c.t, c.st.DeleteReserved(c.ctx, v1.ID, tok2), "DeleteReserved(%q) with the token of the new reservation", v1.ID)
	c.requireNotFound(v1.ID, "after DeleteReserved")
}

func (c *checker) concurrentReserve() {
	const (
		nEntries = 10
		perEntry = 16 // goroutines reserving each entry at once
	)
	var entries []dlq.Entry
	for i := range nEntries {
		entries = append(entries, entry("orders", fmt.Sprintf("m%02d", i), dlq.ReasonPermanent, at(i)))
	}
	c.putAll(entries)

	type outcome struct {
		tok string
		err error
	}
	outcomes := make([][perEntry]outcome, nEntries)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range nEntries {
		for j := range perEntry {
			wg.Go(func() {
				<-start
				o := &outcomes[i][j]
				o.tok, o.err = c.st.Reserve(c.ctx, entries[i].ID, longLease)
			})
		}
	}
	close(start)
	wg.Wait()

	for i, e := range entries {
		var winners []string
		for _, o := range outcomes[i] {
			if o.err == nil {
				winners = append(winners, o.tok)
				continue
			}
			require.ErrorIs(c.t, o.err, dlq.ErrReserved, "concurrent Reserve(%q)", e.ID)
		}
		require.Len(c.t, winners, 1, "of %d concurrent Reserves of %q exactly one must succeed; these did, with tokens %q",
			perEntry, e.ID, winners)
		require.NotEmpty(c.t, winners[0], "the winning Reserve(%q) returned an empty token", e.ID)
		require.NoError(c.t, c.st.DeleteReserved(c.ctx, e.ID, winners[0]), "DeleteReserved(%q) with the winner's token", e.ID)
	}
	require.Zero(c.t, c.count(dlq.Filter{}), "Count after every entry was deleted by its reserver")
}

func (c *checker) concurrentPuts() {
	const (
		writers   = 32
		perWriter = 50
	)
	all := make([][]dlq.Entry, writers)
	errs := make([][perWriter]error, writers)
	for w := range writers {
		for j := range perWriter {
			// Many ties, which the order breaks by ID.
			last := base.Add(time.Duration((w*perWriter+j)%37) * time.Second)
			all[w] = append(all[w], entry(fmt.Sprintf("src-%02d", w), fmt.Sprintf("m%03d", j), dlq.Reason(fmt.Sprintf("reason-%d", j%3)), last))
		}
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			<-start
			for j, e := range all[w] {
				errs[w][j] = c.st.Put(c.ctx, cloneEntry(e))
			}
		})
	}
	close(start)
	wg.Wait()

	var flat []dlq.Entry
	for w := range writers {
		for j, err := range errs[w] {
			require.NoError(c.t, err, "concurrent Put(%q)", all[w][j].ID)
		}
		flat = append(flat, all[w]...)
	}
	require.Equal(c.t, writers*perWriter, c.count(dlq.Filter{}),
		"Count after %d writers put %d distinct entries each at once", writers, perWriter)
	want := expect(flat, dlq.Filter{})
	got, _ := c.listAll(dlq.Filter{}, 100, nil)
	require.Equal(c.t, ids(want), ids(got), "IDs listed at 100 a page after concurrent Puts")
	for _, f := range []dlq.Filter{{Source: "src-07"}, {Reason: "reason-1"}, {Source: "src-31", Reason: "reason-2"}} {
		require.Equal(c.t, len(expect(flat, f)), c.count(f), "Count(%s) after concurrent Puts", describe(f))
	}
}

func (c *checker) concurrentReplace() {
	const (
		nIDs    = 8
		writers = 16
	)
	// Writer w's version of an entry has fields that all name w, so that
	// an entry mixed from two Puts shows.
	version := func(i, w int) dlq.Entry {
		e := entry("orders", fmt.Sprintf("m%d", i), dlq.ReasonPermanent, at(60).Add(time.Duration(w)*time.Second))
		e.Message.Key = fmt.Sprintf("key of writer %d", w)
		e.Message.Body = fmt.Appendf(nil, "body of writer %d", w)
		e.Message.Headers = map[string]string{fmt.Sprintf("writer-%d", w): fmt.Sprint(w)}
		e.Message.Attempt = w + 1
		e.Reason = dlq.Reason(fmt.Sprintf("reason-%d", w))
		e.Error = fmt.Sprintf("error of writer %d", w)
		e.ErrorChain = slices.Repeat([]string{e.Error}, w%3+1)
		e.Attempts = w + 1
		// Writer 5 failed first; the others in a jumbled order.
		e.FirstFailedAt = at(1 + (w+16-5)%16*3%16)
		return e
	}
	errs := make([][nIDs]error, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			<-start
			for k := range nIDs {
				i := (k + w) % nIDs // writers start on different IDs
				errs[w][i] = c.st.Put(c.ctx, version(i, w))
			}
		})
	}
	close(start)
	wg.Wait()

	for w := range writers {
		for i, err := range errs[w] {
			require.NoError(c.t, err, "concurrent Put of %q by writer %d", version(i, w).ID, w)
		}
	}
	require.Equal(c.t, nIDs, c.count(dlq.Filter{}), "Count after %d writers put the same %d IDs at once", writers, nIDs)
	earliest := version(0, 5).FirstFailedAt
	for w := range writers {
		require.False(c.t, version(0, w).FirstFailedAt.Before(earliest), "the check's own versions: writer 5 must fail first")
	}
	for i := range nIDs {
		got := c.get(version(i, 0).ID)
		w := got.Attempts - 1
		require.True(c.t, w >= 0 && w < writers, "Get(%q) after concurrent Puts: Attempts %d is no writer's", got.ID, got.Attempts)
		want := version(i, w)
		want.FirstFailedAt = earliest
		requireSameEntry(c.t, want, got,
			fmt.Sprintf("Get after concurrent Puts of one ID (must be one writer's whole entry, writer %d's by its Attempts, with the earliest FirstFailedAt)", w))
	}
}

func (c *checker) opaqueIDs() {
	odd := []string{
		"with space", " padded ", "trailing ", "trailing", "ünïcødé 世界 🚀", "{braces}", "{", "}", "}{", "{a}:b", "a:b", "a:b:c", ":",
		"*?[glob]\\", "%_like", `quotes'"` + "`", "line\nbreak\ttab", "UPPER", "upper",
	}
	var entries []dlq.Entry
	next := 0
	add := func(e dlq.Entry) {
		// Distinct times, so that the order does not depend on how a
		// database collates these IDs.
		e.LastFailedAt = base.Add(time.Duration(next) * time.Second)
		e.FirstFailedAt = e.LastFailedAt.Add(-time.Minute)
		next++
		entries = append(entries, e)
	}
	for _, s := range odd {
		// The ID itself is odd.
		e := entry("raw-ids", s, dlq.ReasonPermanent, base)
		e.ID = s
		add(e)
		// The source and message ID are odd, and the ID derived from them.
		add(entry(s, s, dlq.ReasonAttemptsExhausted, base))
		add(entry(s, s+":"+s, dlq.ReasonAttemptsExhausted, base))
	}
	long := strings.Repeat("x", 200)
	add(entry(long, long, dlq.ReasonPermanent, base))
	add(entry(long[:199], long, dlq.ReasonPermanent, base))
	add(entry(long[:199]+"y", long, dlq.ReasonPermanent, base))

	// Reserve each entry as it is put: two IDs the store confused would
	// show as a refused Reserve or a replaced entry.
	tokens := make(map[string]string, len(entries))
	for _, e := range entries {
		c.put(e)
		tokens[e.ID] = c.reserve(e.ID, longLease, "of a distinct entry (no other entry of this check may share its reservation)")
	}
	require.Equal(c.t, len(entries), c.count(dlq.Filter{}), "Count of entries with distinct IDs")
	for _, e := range entries {
		c.requireEntry(e, "of an entry among others with odd IDs")
	}
	c.requireList(dlq.Filter{}, 7, expect(entries, dlq.Filter{}), "of entries with odd IDs")
	for _, s := range append(odd, "raw-ids", long, long[:199], long[:199]+"y", "x", "*", "%", "{}") {
		f := dlq.Filter{Source: s}
		c.requireList(f, 100, expect(entries, f), "of entries with odd sources")
	}

	// Delete every other entry; the rest must stay whole.
	var kept []dlq.Entry
	for i, e := range entries {
		if i%2 == 0 {
			require.NoError(c.t, c.st.DeleteReserved(c.ctx, e.ID, tokens[e.ID]), "DeleteReserved(%q) with its token", e.ID)
			c.requireNotFound(e.ID, "after DeleteReserved")
		} else {
			kept = append(kept, e)
		}
	}
	for _, e := range kept {
		c.requireEntry(e, "after its neighbours were deleted")
		c.requireReserved(e.ID, "after its neighbours were deleted")
	}
	c.requireList(dlq.Filter{}, 100, expect(kept, dlq.Filter{}), "after every other entry was deleted")
}
