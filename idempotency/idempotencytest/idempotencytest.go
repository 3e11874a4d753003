// Package idempotencytest is the conformance suite for [idempotency.Store]
// drivers: any store, ours or yours, proves that it keeps the contract the
// idempotency middleware relies on by passing it.
//
// A driver runs it in one line from an ordinary test, with a [Factory] that
// makes a fresh, empty store for each check:
//
//	func TestConformance(t *testing.T) {
//		idempotencytest.Run(t, func(t *testing.T) idempotency.Store {
//			s, err := mydriver.New(client, mydriver.Config{Prefix: uniqueName(t)})
//			require.NoError(t, err)
//			return s
//		})
//	}
//
// # What it checks
//
// Claim of an absent key answers Claimed with a non-zero token, and of a
// claimed key InProgress with the holder's remaining lease; Complete stores
// its result (any bytes, empty included) for later Claims, which answer
// Completed; Release makes the key absent; tokens of one key only grow;
// Extend, Complete and Release fail with [idempotency.ErrStaleToken] and
// change nothing when the token is wrong, the claim was completed or
// released, the lease ran out, or another holder took the key over;
// Extend sets the lease anew and keeps other claimers out; a completed key
// is kept for its retention and then absent; a key used with another
// fingerprint fails with [idempotency.ErrFingerprintMismatch], and an empty
// fingerprint disables that check; under concurrent claims each key has
// exactly one winner; keys are opaque strings (spaces, unicode, hash-tag
// braces, colons, glob and LIKE characters, 200 bytes); results are the
// caller's own copies; and calls with a cancelled context fail and change
// nothing.
//
// It does not check durability across restarts of the server, behaviour
// across processes whose clocks disagree, or keys longer than 200 bytes
// (a driver may refuse those with [idempotency.ErrKeyTooLong]).
//
// # Timing
//
// Checks never require a call to finish within a short time. Checks about
// expiry use leases and retentions of 300ms and sleep past them with a
// margin of 300ms before looking; the others use a lease and retention of
// minutes, so that an expiry could only hide a bug. Where a check needs a
// short lease to still hold (Extend keeping a claim, a completed key before
// its retention), it only judges calls that returned before the lease could
// have run out, measured from the start of the call that set it; if a slow
// machine makes a run inconclusive, the check starts over with durations
// three times as long, and is skipped after three inconclusive runs.
//
// # Parallelism
//
// The checks run as parallel sub-tests of a sub-test named "Store", so the
// factory is called concurrently and every store it makes must be
// independent of the others. The checks also use keys with a random prefix,
// so stores that share a database are safe too. [Run] returns only once every
// check has finished, so resources shared by the factory may be released
// with defer or t.Cleanup alike.
package idempotencytest

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/idempotency"
)

// Factory returns a fresh, empty store for one check. Keys must not collide
// with those of other checks; the suite also uses random keys to be safe.
// It registers whatever cleanup the store needs with t.Cleanup, and fails t
// if it cannot make the store. It is called concurrently.
type Factory func(t *testing.T) idempotency.Store

const (
	// shortLease is the lease or retention of checks about expiry, and the
	// first one tried by checks that need a short lease to still hold.
	shortLease = 300 * time.Millisecond
	// margin is how long checks wait past a short lease or retention
	// before relying on its end, for clock granularity.
	margin = 300 * time.Millisecond
	// longLease is the lease and retention of every other check: far
	// longer than a check runs, so an expiry could only hide a bug.
	longLease = 3 * time.Minute
	// checkTimeout bounds each check's calls together.
	checkTimeout = time.Minute
	// attempts is how many times a timing-sensitive check runs before it
	// gives up as inconclusive.
	attempts = 3
)

// Run runs every conformance check against stores made by newStore, each as
// a parallel sub-test of t. It returns when all of them have finished.
func Run(t *testing.T, newStore Factory) {
	t.Helper()
	require.NotNil(t, newStore, "idempotencytest: nil Factory")
	prefix := "idemqtest-" + rand.Text()[:10] + ":"

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
	{"ClaimAbsentThenInProgress", (*checker).claimAbsent},
	{"CompleteStoresResult", (*checker).completeStores},
	{"ResultIsACopy", (*checker).resultCopy},
	{"ReleaseMakesAbsent", (*checker).releaseAbsent},
	{"StaleTokens", (*checker).staleTokens},
	{"LeaseExpiryTakeover", (*checker).takeover},
	{"LapsedLeaseIsLost", (*checker).lapsed},
	{"ExtendKeepsClaim", (*checker).extendKeeps},
	{"ExtendSetsLease", (*checker).extendSets},
	{"Retention", (*checker).retention},
	{"Fingerprints", (*checker).fingerprints},
	{"ConcurrentClaims", (*checker).concurrent},
	{"TokensGrow", (*checker).tokensGrow},
	{"OpaqueKeys", (*checker).opaqueKeys},
	{"CancelledContext", (*checker).cancelled},
}

// checker is one check's store, with helpers that fail the check.
type checker struct {
	t      *testing.T
	st     idempotency.Store
	ctx    context.Context
	prefix string
}

func (c *checker) key(name string) string { return c.prefix + name }

func describe(cl idempotency.Claim) string {
	return fmt.Sprintf("{%s token=%d result=%q retryAfter=%s}", cl.Status, cl.Token, cl.Result, cl.RetryAfter)
}

func (c *checker) claim(key, fp string, lease time.Duration) idempotency.Claim {
	c.t.Helper()
	got, err := c.st.Claim(c.ctx, key, fp, lease)
	require.NoError(c.t, err, "Claim(%q, fingerprint %q)", key, fp)
	return got
}

// claimed claims key, which must be absent (why), and returns its token.
func (c *checker) claimed(key, fp string, lease time.Duration, why string) int64 {
	c.t.Helper()
	got := c.claim(key, fp, lease)
	require.Equal(c.t, idempotency.Claimed, got.Status, "Claim(%q) of %s: got %s", key, why, describe(got))
	require.NotZero(c.t, got.Token, "Claim(%q) of %s answered Claimed with a zero token", key, why)
	return got.Token
}

// inProgress checks that key is held by someone else (why) and returns the
// answer.
func (c *checker) inProgress(key, fp, why string) idempotency.Claim {
	c.t.Helper()
	got := c.claim(key, fp, longLease)
	require.Equal(c.t, idempotency.InProgress, got.Status, "Claim(%q, fingerprint %q) %s: got %s", key, fp, why, describe(got))
	require.Positive(c.t, got.RetryAfter, "Claim(%q) %s: InProgress with a RetryAfter that is not positive", key, why)
	return got
}

// completed checks that key is completed with want (why).
func (c *checker) completed(key, fp string, want []byte, why string) {
	c.t.Helper()
	got := c.claim(key, fp, longLease)
	require.Equal(c.t, idempotency.Completed, got.Status, "Claim(%q, fingerprint %q) %s: got %s", key, fp, why, describe(got))
	requireResult(c.t, want, got.Result, "result of %q %s", key, why)
}

func requireResult(t *testing.T, want, got []byte, msgAndArgs ...any) {
	t.Helper()
	if len(want) == 0 {
		require.Empty(t, got, msgAndArgs...)
		return
	}
	require.Equal(t, want, got, msgAndArgs...)
}

func (c *checker) complete(key string, token int64, result []byte, retention time.Duration) {
	c.t.Helper()
	require.NoError(c.t, c.st.Complete(c.ctx, key, token, result, retention),
		"Complete(%q) with the token %d that holds it", key, token)
}

// stale checks that Extend, Complete and Release of key with token all fail
// with ErrStaleToken (why). Extend asks for a lease of a millisecond and
// Complete stores a marker, so that one which wrongly succeeded shows in
// the key's state afterwards too.
func (c *checker) stale(key string, token int64, why string) {
	c.t.Helper()
	require.ErrorIs(c.t, c.st.Extend(c.ctx, key, token, time.Millisecond), idempotency.ErrStaleToken,
		"Extend(%q) with token %d %s", key, token, why)
	require.ErrorIs(c.t, c.st.Complete(c.ctx, key, token, []byte("stale"), longLease), idempotency.ErrStaleToken,
		"Complete(%q) with token %d %s", key, token, why)
	require.ErrorIs(c.t, c.st.Release(c.ctx, key, token), idempotency.ErrStaleToken,
		"Release(%q) with token %d %s", key, token, why)
}

// sleep pauses past a lease or retention under test; checks never sleep to
// wait for an outcome they can observe.
func (c *checker) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-c.t.Context().Done():
	}
}

// timed runs a check that needs a short lease or retention d to still hold
// while it makes its calls. run reports false when a call returned too late
// to tell whether d still held; timed then runs it again with a fresh key
// and d three times as long, and skips the check after that fails too often.
func (c *checker) timed(run func(key string, d time.Duration) bool) {
	c.t.Helper()
	d := shortLease
	for i := range attempts {
		if run(c.key(fmt.Sprintf("attempt%d", i)), d) {
			return
		}
		c.t.Logf("attempt %d with %s was inconclusive: a call returned after that much time had passed", i+1, d)
		d *= 3
	}
	c.t.Skipf("inconclusive: in %d attempts, calls kept taking longer than the durations under test (up to %s)", attempts, d/3)
}

func (c *checker) claimAbsent() {
	k := c.key("k")
	tok := c.claimed(k, "", longLease, "an absent key")

	got := c.inProgress(k, "", "of a key claimed for "+longLease.String())
	require.LessOrEqual(c.t, got.RetryAfter, longLease,
		"RetryAfter must be the holder's remaining lease, at most the %s it claimed for", longLease)

	// RetryAfter is the holder's lease, not the asking claimer's, and an
	// InProgress answer leaves the holder's lease as it was.
	got = c.claim(k, "", time.Second)
	require.Equal(c.t, idempotency.InProgress, got.Status, "second Claim with a shorter lease: got %s", describe(got))
	require.Greater(c.t, got.RetryAfter, longLease/2,
		"RetryAfter must be the holder's remaining lease (about %s), not the asking claimer's lease (1s)", longLease)
	got = c.claim(k, "", 10*longLease)
	require.Equal(c.t, idempotency.InProgress, got.Status, "second Claim with a longer lease: got %s", describe(got))
	require.LessOrEqual(c.t, got.RetryAfter, longLease,
		"a Claim answered InProgress must not change the holder's lease; RetryAfter exceeds the holder's %s", longLease)

	c.complete(k, tok, []byte("done"), longLease)
	c.completed(k, "", []byte("done"), "after Complete")
}

func (c *checker) completeStores() {
	k := c.key("k")
	tok := c.claimed(k, "", longLease, "an absent key")
	want := []byte{0x00, '{', '"', 0xff, 0xfe, '\n', 0x80, '\\', 'x', 0x00}
	in := slices.Clone(want)
	c.complete(k, tok, in, longLease)
	clear(in) // Complete has returned: the store must have kept its own copy
	c.completed(k, "", want, "after Complete")

	c.stale(k, tok, "after Complete")
	c.completed(k, "", want, "after stale calls with its completed token")

	for name, result := range map[string][]byte{"nil": nil, "empty": {}} {
		k := c.key(name)
		tok := c.claimed(k, "", longLease, "an absent key")
		c.complete(k, tok, result, longLease)
		c.completed(k, "", nil, "completed with a "+name+" result")
	}
}

func (c *checker) resultCopy() {
	k := c.key("k")
	want := []byte("the stored result")
	tok := c.claimed(k, "", longLease, "an absent key")
	c.complete(k, tok, want, longLease)

	got := c.claim(k, "", longLease)
	require.Equal(c.t, idempotency.Completed, got.Status, "Claim after Complete: got %s", describe(got))
	requireResult(c.t, want, got.Result, "result after Complete")
	// The caller owns the Result it was given: writing to it, or appending
	// to it (which may write past its length), must not reach the store.
	got.Result[0] = '!'
	_ = append(got.Result[:1], "overwritten"...)
	c.completed(k, "", want, "after the caller wrote to the Result an earlier Claim returned")
}

func (c *checker) releaseAbsent() {
	k := c.key("k")
	tok1 := c.claimed(k, "", longLease, "an absent key")
	require.NoError(c.t, c.st.Release(c.ctx, k, tok1), "Release(%q) with the token that holds it", k)
	require.ErrorIs(c.t, c.st.Release(c.ctx, k, tok1), idempotency.ErrStaleToken, "second Release(%q) with the same token", k)
	require.ErrorIs(c.t, c.st.Complete(c.ctx, k, tok1, []byte("late"), longLease), idempotency.ErrStaleToken,
		"Complete(%q) with a token already released", k)

	tok2 := c.claimed(k, "", longLease, "a released key")
	require.Greater(c.t, tok2, tok1, "token of a claim after Release must be greater than the released one")
	c.stale(k, tok1, "after it was released and the key claimed again")
	c.inProgress(k, "", "after stale calls with the released token")
	c.complete(k, tok2, []byte("second"), longLease)
	c.completed(k, "", []byte("second"), "after the new holder completed")
}

func (c *checker) staleTokens() {
	k := c.key("k")
	c.stale(k, 1, "on a key never claimed")
	tok := c.claimed(k, "", longLease, "a key that stale calls must have left absent")

	for _, bad := range []int64{tok + 1000, tok + 1, tok - 1, 0, -1, -tok} {
		if bad == tok {
			continue
		}
		c.stale(k, bad, fmt.Sprintf("while token %d holds it", tok))
		got := c.inProgress(k, "", fmt.Sprintf("after stale calls with token %d", bad))
		require.Greater(c.t, got.RetryAfter, longLease/2,
			"a stale Extend must not change the holder's %s lease", longLease)
	}

	// Tokens need only be unique per key, so another key's token is stale
	// here only if it differs.
	other := c.key("other")
	otherTok := c.claimed(other, "", longLease, "an absent key")
	if otherTok != tok {
		c.stale(k, otherTok, fmt.Sprintf("(token of %q) while token %d holds it", other, tok))
		c.inProgress(k, "", "after stale calls with another key's token")
	}

	require.NoError(c.t, c.st.Extend(c.ctx, k, tok, longLease), "Extend(%q) with its token after stale calls", k)
	c.complete(k, tok, []byte("real"), longLease)
	c.completed(k, "", []byte("real"), "after its holder completed")
}

func (c *checker) takeover() {
	k := c.key("k")
	tok1 := c.claimed(k, "", shortLease, "an absent key")
	c.sleep(shortLease + margin)

	tok2 := c.claimed(k, "", longLease, "a key whose lease ran out")
	require.Greater(c.t, tok2, tok1, "token of a takeover must be greater than the lapsed one")
	c.stale(k, tok1, "after its lease ran out and the key was claimed again")
	c.inProgress(k, "", "after the old holder's stale calls")

	c.complete(k, tok2, []byte("new holder"), longLease)
	c.completed(k, "", []byte("new holder"), "after the new holder completed")
}

func (c *checker) lapsed() {
	// One key per call, so that one call wrongly reviving the lease cannot
	// make the next one look wrong.
	type lapse struct {
		key  string
		tok  int64
		call func(key string, tok int64) error
	}
	cases := map[string]*lapse{
		"Extend": {call: func(k string, tok int64) error { return c.st.Extend(c.ctx, k, tok, longLease) }},
		"Complete": {call: func(k string, tok int64) error {
			return c.st.Complete(c.ctx, k, tok, []byte("late"), longLease)
		}},
		"Release": {call: func(k string, tok int64) error { return c.st.Release(c.ctx, k, tok) }},
	}
	for name, l := range cases {
		l.key = c.key(name)
		l.tok = c.claimed(l.key, "", shortLease, "an absent key")
	}
	c.sleep(shortLease + margin)

	for name, l := range cases {
		require.ErrorIs(c.t, l.call(l.key, l.tok), idempotency.ErrStaleToken,
			"%s(%q) after its lease ran out, with no other claim since: a lapsed lease is lost", name, l.key)
		tok := c.claimed(l.key, "", longLease, fmt.Sprintf("a key whose lease ran out (after the stale %s)", name))
		require.Greater(c.t, tok, l.tok, "token of a claim after a lapsed lease must be greater than the lapsed one")
	}
}

// observation is one Claim made while another holder kept extending.
type observation struct {
	got     idempotency.Claim
	err     error
	elapsed time.Duration // from the start of the last renewal known before the Claim began to its return
}

func (c *checker) extendKeeps() {
	c.timed(func(k string, lease time.Duration) bool {
		start := time.Now()
		tok := c.claimed(k, "", lease, "an absent key")

		var mu sync.Mutex
		renewed := start // start of the last call that set the lease
		lastRenewal := func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return renewed
		}

		// Another consumer keeps claiming the key meanwhile.
		var (
			obs  []observation
			wg   sync.WaitGroup
			stop = make(chan struct{})
		)
		wg.Go(func() {
			for {
				r := lastRenewal()
				got, err := c.st.Claim(c.ctx, k, "", lease)
				obs = append(obs, observation{got, err, time.Since(r)})
				if err != nil || got.Status != idempotency.InProgress {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(lease / 10):
				}
			}
		})
		stopClaimer := sync.OnceFunc(func() { close(stop); wg.Wait() })
		defer stopClaimer()

		for time.Since(start) < 3*lease {
			c.sleep(lease / 3)
			r := lastRenewal()
			callStart := time.Now()
			err := c.st.Extend(c.ctx, k, tok, lease)
			if err != nil {
				require.GreaterOrEqual(c.t, time.Since(r), lease,
					"Extend(%q) every %s of a %s lease failed %s after the previous renewal began: %v",
					k, lease/3, lease, time.Since(r), err)
				return false
			}
			mu.Lock()
			renewed = callStart
			mu.Unlock()
		}
		stopClaimer()

		require.NotEmpty(c.t, obs)
		for i, o := range obs {
			require.NoError(c.t, o.err, "Claim %d of %q while another holder extended it", i+1, k)
			if o.got.Status != idempotency.InProgress {
				require.GreaterOrEqual(c.t, o.elapsed, lease,
					"Claim %d of %q, held by another consumer extending its %s lease every %s, answered %s %s after the last renewal began",
					i+1, k, lease, lease/3, describe(o.got), o.elapsed)
				return false
			}
			require.LessOrEqual(c.t, o.got.RetryAfter, lease, "RetryAfter of Claim %d of %q, whose lease is %s", i+1, k, lease)
		}

		r := lastRenewal()
		if err := c.st.Complete(c.ctx, k, tok, []byte("kept"), longLease); err != nil {
			require.GreaterOrEqual(c.t, time.Since(r), lease,
				"Complete(%q) after three leases of Extends failed %s after the last renewal began: %v", k, time.Since(r), err)
			return false
		}
		c.completed(k, "", []byte("kept"), "after its holder kept it for three leases and completed")
		return true
	})
}

func (c *checker) extendSets() {
	k := c.key("k")
	tok := c.claimed(k, "", longLease, "an absent key")
	require.NoError(c.t, c.st.Extend(c.ctx, k, tok, 5*longLease), "Extend(%q) with its token", k)
	got := c.inProgress(k, "", "after its holder extended it")
	require.Greater(c.t, got.RetryAfter, longLease,
		"Extend to %s must set the lease to that from now; RetryAfter is still within the %s claimed", 5*longLease, longLease)
	require.LessOrEqual(c.t, got.RetryAfter, 5*longLease, "RetryAfter after Extend to %s", 5*longLease)
	c.complete(k, tok, []byte("extended"), longLease)
	c.completed(k, "", []byte("extended"), "after its holder completed")
}

func (c *checker) retention() {
	c.timed(func(k string, d time.Duration) bool {
		// kShort is completed with a retention of d; kLong is claimed with
		// a lease of d and completed with a long retention, which the lease
		// must not cut short.
		kShort, kLong := k+":short-retention", k+":outlives-lease"
		tokShort := c.claimed(kShort, "", longLease, "an absent key")

		start := time.Now()
		tokLong := c.claimed(kLong, "", d, "an absent key")
		if err := c.st.Complete(c.ctx, kLong, tokLong, []byte("long"), longLease); err != nil {
			require.GreaterOrEqual(c.t, time.Since(start), d,
				"Complete(%q) within its %s lease failed: %v", kLong, d, err)
			return false
		}

		start = time.Now()
		c.complete(kShort, tokShort, []byte("short"), d)
		got := c.claim(kShort, "", longLease)
		if got.Status != idempotency.Completed {
			require.GreaterOrEqual(c.t, time.Since(start), d,
				"Claim(%q) completed with a retention of %s answered %s %s after Complete began",
				kShort, d, describe(got), time.Since(start))
			return false
		}
		requireResult(c.t, []byte("short"), got.Result, "result of %q within its retention", kShort)

		c.sleep(d + margin)
		tok := c.claimed(kShort, "", longLease, fmt.Sprintf("a key whose %s retention has passed", d))
		require.Greater(c.t, tok, tokShort, "token of a claim after the retention passed must be greater than the first")
		c.completed(kLong, "", []byte("long"), fmt.Sprintf("completed with a long retention, after its %s lease would have run out", d))
		return true
	})
}

func (c *checker) fingerprints() {
	mismatch := func(key, fp, why string) {
		c.t.Helper()
		got, err := c.st.Claim(c.ctx, key, fp, longLease)
		require.ErrorIs(c.t, err, idempotency.ErrFingerprintMismatch,
			"Claim(%q) with fingerprint %q %s: got %s", key, fp, why, describe(got))
	}

	k := c.key("k")
	tok := c.claimed(k, "a", longLease, "an absent key")
	mismatch(k, "b", "while it is held with fingerprint \"a\"")
	c.inProgress(k, "a", "with its own fingerprint")
	c.inProgress(k, "", "with an empty fingerprint, which disables the check")
	c.complete(k, tok, []byte("fp"), longLease) // the mismatch changed nothing
	mismatch(k, "b", "after it was completed with fingerprint \"a\"")
	c.completed(k, "a", []byte("fp"), "with its own fingerprint")
	c.completed(k, "", []byte("fp"), "with an empty fingerprint")

	k = c.key("empty")
	tok = c.claimed(k, "", longLease, "an absent key")
	c.inProgress(k, "x", "claimed with an empty fingerprint")
	c.inProgress(k, "y", "claimed with an empty fingerprint, after a Claim with \"x\"")
	c.complete(k, tok, []byte("any"), longLease)
	c.completed(k, "x", []byte("any"), "claimed with an empty fingerprint")
	c.completed(k, "y", []byte("any"), "claimed with an empty fingerprint")

	// A released key is absent, and its fingerprint goes with it.
	k = c.key("released")
	tok = c.claimed(k, "a", longLease, "an absent key")
	require.NoError(c.t, c.st.Release(c.ctx, k, tok), "Release(%q) with the token that holds it", k)
	tok = c.claimed(k, "b", longLease, "a released key, with another fingerprint")
	mismatch(k, "a", "after it was claimed again with fingerprint \"b\"")
	c.complete(k, tok, nil, longLease)
}

func (c *checker) concurrent() {
	const (
		nKeys   = 200
		perKey  = 16 // goroutines claiming each key at once
		workers = 64
		groups  = workers / perKey // worker w claims every key i with i%groups == w%groups
	)
	type outcome struct {
		got         idempotency.Claim
		err         error
		result      []byte // the winner's
		completeErr error  // the winner's
	}
	keys := make([]string, nKeys)
	outcomes := make([][perKey]outcome, nKeys)
	for i := range keys {
		keys[i] = c.key(fmt.Sprintf("k%03d", i))
	}

	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := w % groups; i < nKeys; i += groups {
				o := &outcomes[i][w/groups]
				o.got, o.err = c.st.Claim(c.ctx, keys[i], "fp", longLease)
				if o.err == nil && o.got.Status == idempotency.Claimed {
					o.result = fmt.Appendf(nil, "won by worker %d with token %d", w, o.got.Token)
					o.completeErr = c.st.Complete(c.ctx, keys[i], o.got.Token, o.result, longLease)
				}
			}
		})
	}
	close(start)
	wg.Wait()

	for i, k := range keys {
		var winner *outcome
		for j := range outcomes[i] {
			o := &outcomes[i][j]
			require.NoError(c.t, o.err, "concurrent Claim(%q)", k)
			if o.got.Status != idempotency.Claimed {
				continue
			}
			if winner != nil {
				require.Failf(c.t, "two concurrent Claims of one key answered Claimed",
					"%d goroutines claimed %q at once: %s and %s", perKey, k, describe(winner.got), describe(o.got))
			}
			winner = o
		}
		require.NotNil(c.t, winner, "none of %d concurrent Claims of absent key %q answered Claimed", perKey, k)
		require.NoError(c.t, winner.completeErr, "Complete(%q) by the only claimer", k)
		for _, o := range outcomes[i] {
			switch o.got.Status {
			case idempotency.Claimed:
			case idempotency.InProgress:
				require.Positive(c.t, o.got.RetryAfter, "concurrent Claim(%q) answered InProgress: %s", k, describe(o.got))
			case idempotency.Completed:
				requireResult(c.t, winner.result, o.got.Result, "concurrent Claim(%q) answered Completed with another result", k)
			default:
				require.Failf(c.t, "concurrent Claim answered an unknown status", "Claim(%q): %s", k, describe(o.got))
			}
		}
		c.completed(k, "fp", winner.result, "after concurrent claims")
	}
}

func (c *checker) tokensGrow() {
	k := c.key("k")
	var last int64
	for i := range 3 {
		tok := c.claimed(k, "", longLease, fmt.Sprintf("a key released %d times", i))
		if i > 0 {
			require.Greater(c.t, tok, last, "token of claim %d of %q after Release", i+1, k)
		}
		last = tok
		if i < 2 {
			require.NoError(c.t, c.st.Release(c.ctx, k, tok), "Release(%q) with the token that holds it", k)
		}
	}
}

func (c *checker) opaqueKeys() {
	base := c.key("")
	var keys []string
	for _, s := range []string{
		"with space", " padded ", "trailing ", "trailing", "ünïcødé 世界 🚀", "{braces}", "{", "}", "}{", "{a}:b", "a:b", "a:b:c", ":",
		"*?[glob]\\", "%_like", `quotes'"` + "`", "line\nbreak\ttab", "UPPER", "upper",
	} {
		keys = append(keys, base+s, s+base) // the random part last and first
	}
	long := base + strings.Repeat("x", 200-len(base))
	require.Len(c.t, long, 200)
	keys = append(keys, long, long[:199], long[:199]+"y")

	// Each key is claimed before any is completed, so two keys the store
	// confused would show as one of them InProgress.
	tokens := make(map[string]int64, len(keys))
	for _, k := range keys {
		tokens[k] = c.claimed(k, "", longLease, "a distinct absent key (no other key of this check may share its claim)")
	}
	for _, k := range keys {
		c.complete(k, tokens[k], []byte(k), longLease)
	}
	for _, k := range keys {
		c.completed(k, "", []byte(k), "completed with its own key as result")
	}
}

func (c *checker) cancelled() {
	ctx, cancel := context.WithCancel(c.ctx)
	cancel()
	k := c.key("k")
	got, err := c.st.Claim(ctx, k, "", longLease)
	require.Error(c.t, err, "Claim(%q) with a cancelled context: got %s", k, describe(got))
	tok := c.claimed(k, "", longLease, "a key whose only Claim had a cancelled context")

	require.Error(c.t, c.st.Extend(ctx, k, tok, time.Millisecond), "Extend(%q) with a cancelled context", k)
	require.Error(c.t, c.st.Complete(ctx, k, tok, []byte("cancelled"), longLease), "Complete(%q) with a cancelled context", k)
	require.Error(c.t, c.st.Release(ctx, k, tok), "Release(%q) with a cancelled context", k)
	got = c.inProgress(k, "", "after Extend, Complete and Release with a cancelled context")
	require.Greater(c.t, got.RetryAfter, longLease/2, "an Extend with a cancelled context must not change the lease")

	c.complete(k, tok, []byte("done"), longLease)
	c.completed(k, "", []byte("done"), "after its holder completed")
}
