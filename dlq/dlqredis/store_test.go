package dlqredis

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/internal/testenv"
)

func newStore(t *testing.T, opts Options) (*Store, redis.UniversalClient) {
	t.Helper()
	client, prefix := testenv.Redis(t)
	opts.Prefix = prefix
	s, err := New(client, opts)
	require.NoError(t, err)
	return s, client
}

var t0 = time.Date(2025, time.March, 14, 9, 26, 53, 0, time.UTC)

func entryAt(id string, last time.Time) dlq.Entry {
	return dlq.Entry{
		ID:            id,
		Message:       consumer.Message{ID: "msg-" + id, Body: []byte("body of " + id)},
		Source:        "orders",
		Reason:        dlq.ReasonPermanent,
		Error:         "failed",
		Attempts:      3,
		FirstFailedAt: last.Add(-time.Minute),
		LastFailedAt:  last,
	}
}

func put(t *testing.T, s *Store, e dlq.Entry) {
	t.Helper()
	require.NoError(t, s.Put(t.Context(), e), "Put(%q)", e.ID)
}

// listAll pages through f, limit at a time, calling between (if not nil)
// after each page that has a Next.
func listAll(t *testing.T, s *Store, f dlq.Filter, limit int, between func(dlq.Page)) []dlq.Entry {
	t.Helper()
	var all []dlq.Entry
	cur := ""
	for range 100000 {
		p, err := s.List(t.Context(), f, cur, limit)
		require.NoError(t, err)
		require.LessOrEqual(t, len(p.Entries), limit)
		all = append(all, p.Entries...)
		if p.Next == "" {
			return all
		}
		if between != nil {
			between(p)
		}
		cur = p.Next
	}
	t.Fatal("listing never ended")
	return nil
}

func entryIDs(es []dlq.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
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

func TestNew(t *testing.T) {
	// New does not contact Redis, so no server is needed here.
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = client.Close() })

	s, err := New(client, Options{})
	require.NoError(t, err)
	require.Equal(t, "idemq:dlq:{default}:", s.base)
	require.Equal(t, "idemq:dlq:{default}:idx", s.idx)
	require.Zero(t, s.max)

	s, err = New(client, Options{Prefix: "p:", Name: "orders", MaxEntries: 7})
	require.NoError(t, err)
	require.Equal(t, "p:{orders}:e:x{y}", s.entryKey("x{y}"))
	require.Equal(t, 7, s.max)

	for _, bad := range []Options{
		{Prefix: "a{b"}, {Prefix: "}"}, {Name: "{x}"}, {Name: "a}"}, {MaxEntries: -1},
	} {
		_, err := New(client, bad)
		require.Error(t, err, "%+v", bad)
	}
	_, err = New(nil, Options{})
	require.Error(t, err)
}

func TestRoundTripBinary(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, Options{})
	ctx := t.Context()

	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	invalid := string([]byte{0xff, 0x00, 0xc3, 0x28, '{', '}', '\n'})
	e := dlq.Entry{
		ID: "id " + invalid,
		Message: consumer.Message{
			ID:         "msg " + invalid,
			Key:        invalid,
			Body:       append(bytes.Repeat(all, 4096), all...), // 1 MiB and then some
			Headers:    map[string]string{invalid: invalid, "": "", "x-empty": ""},
			Attempt:    -3,
			EnqueuedAt: time.Date(1969, time.July, 20, 20, 17, 40, 123456789, time.UTC),
		},
		Source:        "src " + invalid,
		Reason:        dlq.Reason(invalid),
		Error:         invalid,
		ErrorChain:    []string{"", invalid, strings.Repeat("x", 300)},
		Attempts:      1 << 40,
		FirstFailedAt: time.Date(2025, time.March, 14, 9, 0, 0, 123456789, time.UTC),
		LastFailedAt:  time.Date(2025, time.March, 14, 9, 5, 0, 999, time.FixedZone("x", 3600)),
	}
	put(t, s, e)
	got, err := s.Get(ctx, e.ID)
	require.NoError(t, err)

	// Failure times keep whole microseconds, rounded down; all times come
	// back in UTC; the rest is exact.
	want := e
	want.FirstFailedAt = e.FirstFailedAt.Truncate(time.Microsecond).UTC()
	want.LastFailedAt = time.UnixMicro(e.LastFailedAt.UnixMicro()).UTC()
	require.Equal(t, want, got)

	page, err := s.List(ctx, dlq.Filter{Source: e.Source, Reason: e.Reason}, "", 10)
	require.NoError(t, err)
	require.Equal(t, []dlq.Entry{want}, page.Entries)

	// Nil and empty stay apart; zero times stay zero.
	for _, m := range []consumer.Message{
		{ID: "nil"},
		{ID: "empty", Body: []byte{}, Headers: map[string]string{}},
	} {
		e := dlq.Entry{ID: m.ID, Message: m, LastFailedAt: t0}
		if m.Body != nil {
			e.ErrorChain = []string{}
		}
		put(t, s, e)
		got, err := s.Get(ctx, e.ID)
		require.NoError(t, err)
		require.Equal(t, e, got)
		require.Equal(t, m.Body == nil, got.Message.Body == nil)
		require.Equal(t, m.Headers == nil, got.Message.Headers == nil)
		require.Equal(t, e.ErrorChain == nil, got.ErrorChain == nil)
	}

	// A zero LastFailedAt is a time like any other, and the oldest.
	zero := dlq.Entry{ID: "zero"}
	put(t, s, zero)
	got, err = s.Get(ctx, "zero")
	require.NoError(t, err)
	require.Equal(t, zero, got)
	page, err = s.List(ctx, dlq.Filter{}, "", 1)
	require.NoError(t, err)
	require.Equal(t, []string{"zero"}, entryIDs(page.Entries))
}

func TestKeepsEarlierFirstFailedAt(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, Options{})
	ctx := t.Context()
	// Beyond 2^54 µs, where Lua's doubles are 4µs apart and no longer tell
	// these apart: the script compares the decimal strings.
	far := time.Date(3000, time.January, 1, 0, 0, 0, 0, time.UTC)
	first := func() time.Time {
		e, err := s.Get(ctx, "k")
		require.NoError(t, err)
		return e.FirstFailedAt
	}
	for _, tt := range []struct {
		ff, want time.Time
	}{
		{far.Add(time.Microsecond), far.Add(time.Microsecond)},
		{far.Add(2 * time.Microsecond), far.Add(time.Microsecond)},
		{far, far},
		{far.Add(time.Hour), far},
		{t0, t0},                   // the earlier, across the 2^53 line
		{time.Time{}, time.Time{}}, // unknown replaces, as in the memory store
		{t0.Add(time.Second), t0.Add(time.Second)}, // and a known one follows unknown
		{time.UnixMicro(-5), time.UnixMicro(-5)},
		{time.UnixMicro(-4), time.UnixMicro(-5)},
		{time.UnixMicro(-50), time.UnixMicro(-50)},
	} {
		e := entryAt("k", t0)
		e.FirstFailedAt = tt.ff
		put(t, s, e)
		require.True(t, tt.want.Equal(first()), "after ff %v: got %v, want %v", tt.ff, first(), tt.want)
	}
}

func TestCapUnderConcurrency(t *testing.T) {
	t.Parallel()
	const capacity, writers = 10, 32
	s, client := newStore(t, Options{MaxEntries: capacity})
	errs := make([]error, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			<-start
			errs[i] = s.Put(context.Background(), entryAt(fmt.Sprintf("id-%02d", i), t0))
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		require.ErrorIs(t, err, dlq.ErrFull)
	}
	require.Equal(t, capacity, ok)
	n, err := s.Count(t.Context(), dlq.Filter{})
	require.NoError(t, err)
	require.Equal(t, capacity, n)
	// The index and the entries agree.
	keys, err := client.Keys(t.Context(), s.base+"e:*").Result()
	require.NoError(t, err)
	require.Len(t, keys, capacity)
}

func TestReserveRace(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, Options{})
	ctx := t.Context()
	put(t, s, entryAt("e", t0))
	const n = 32
	toks := make([]string, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			toks[i], errs[i] = s.Reserve(context.Background(), "e", time.Minute)
		})
	}
	close(start)
	wg.Wait()
	var won []string
	for i := range n {
		if errs[i] == nil {
			won = append(won, toks[i])
			continue
		}
		require.ErrorIs(t, errs[i], dlq.ErrReserved)
	}
	require.Len(t, won, 1)

	// Only the winner's token acts, and each token once.
	require.ErrorIs(t, s.DeleteReserved(ctx, "e", "other"), dlq.ErrReserved)
	require.NoError(t, s.Unreserve(ctx, "e", won[0]))
	require.ErrorIs(t, s.Unreserve(ctx, "e", won[0]), dlq.ErrReserved)
	tok, err := s.Reserve(ctx, "e", time.Minute)
	require.NoError(t, err)
	require.NotEqual(t, won[0], tok)
	require.ErrorIs(t, s.DeleteReserved(ctx, "e", won[0]), dlq.ErrReserved)
	require.NoError(t, s.DeleteReserved(ctx, "e", tok))
	require.ErrorIs(t, s.DeleteReserved(ctx, "e", tok), dlq.ErrNotFound)
	require.ErrorIs(t, s.Unreserve(ctx, "e", tok), dlq.ErrNotFound)
	_, err = s.Reserve(ctx, "e", time.Minute)
	require.ErrorIs(t, err, dlq.ErrNotFound)
}

func TestReservationUsesServerClock(t *testing.T) {
	t.Parallel()
	s, client := newStore(t, Options{})
	ctx := t.Context()
	put(t, s, entryAt("e", t0))
	now, err := client.Time(ctx).Result()
	require.NoError(t, err)
	_, err = s.Reserve(ctx, "e", time.Hour+time.Nanosecond)
	require.NoError(t, err)
	rx, err := client.HGet(ctx, s.entryKey("e"), "rx").Int64()
	require.NoError(t, err)
	require.InDelta(t, now.Add(time.Hour).UnixMicro(), rx, float64(5*time.Second/time.Microsecond))

	// A lease that is not positive gives a reservation already over.
	put(t, s, entryAt("z", t0))
	tok, err := s.Reserve(ctx, "z", 0)
	require.NoError(t, err)
	require.ErrorIs(t, s.DeleteReserved(ctx, "z", tok), dlq.ErrReserved)
	_, err = s.Reserve(ctx, "z", time.Minute)
	require.NoError(t, err)

	// A short lease runs out on the server.
	put(t, s, entryAt("short", t0))
	_, err = s.Reserve(ctx, "short", time.Millisecond)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := s.Reserve(ctx, "short", time.Minute)
		return err == nil
	}, 5*time.Second, time.Millisecond)
}

// TestPagingEqualTimestamps lists many entries with one LastFailedAt, more
// than a scan chunk, whose IDs hold bytes Lua's locale-aware comparison
// would order differently from Redis and Go.
func TestPagingEqualTimestamps(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, Options{})
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("aAbB_-.:{}éÉ\x00\x01\x7f\x80\xff zZ09")
	seen := map[string]bool{}
	var entries []dlq.Entry
	for len(entries) < 2*scanChunk+37 {
		b := make([]byte, 1+rng.IntN(6))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		id := string(b)
		if seen[id] {
			continue
		}
		seen[id] = true
		e := entryAt(id, t0)
		if len(entries)%3 == 0 {
			e.Reason = dlq.ReasonUndecodable
		}
		entries = append(entries, e)
	}
	// A few neighbours in time, to either side.
	entries = append(entries, entryAt("before", t0.Add(-time.Microsecond)), entryAt("after", t0.Add(time.Microsecond)))
	for _, e := range entries {
		put(t, s, e)
	}
	order := func(es []dlq.Entry) []string {
		es = slices.Clone(es)
		slices.SortFunc(es, func(a, b dlq.Entry) int {
			if c := a.LastFailedAt.Compare(b.LastFailedAt); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
		return entryIDs(es)
	}
	want := order(entries)
	for _, limit := range []int{1, 7, 100, scanChunk, 5000} {
		require.Equal(t, want, entryIDs(listAll(t, s, dlq.Filter{}, limit, nil)), "limit %d", limit)
	}

	var undecodable []dlq.Entry
	for _, e := range entries {
		if e.Reason == dlq.ReasonUndecodable {
			undecodable = append(undecodable, e)
		}
	}
	f := dlq.Filter{Reason: dlq.ReasonUndecodable}
	require.Equal(t, order(undecodable), entryIDs(listAll(t, s, f, 9, nil)))
	n, err := s.Count(ctx, f)
	require.NoError(t, err)
	require.Equal(t, len(undecodable), n)

	// Time bounds at the microsecond, sub-microsecond bounds rounding the
	// right way: Since <= LastFailedAt < Until.
	for _, tt := range []struct {
		f    dlq.Filter
		want int
	}{
		{dlq.Filter{Since: t0}, len(entries) - 1},
		{dlq.Filter{Since: t0.Add(1)}, 1},
		{dlq.Filter{Since: t0.Add(-1)}, len(entries) - 1},
		{dlq.Filter{Until: t0}, 1},
		{dlq.Filter{Until: t0.Add(1)}, len(entries) - 1},
		{dlq.Filter{Since: t0, Until: t0.Add(time.Microsecond)}, len(entries) - 2},
		{dlq.Filter{Since: t0, Until: t0}, 0},
	} {
		n, err := s.Count(ctx, tt.f)
		require.NoError(t, err)
		require.Equal(t, tt.want, n, "%+v", tt.f)
		require.Len(t, listAll(t, s, tt.f, 50, nil), tt.want, "%+v", tt.f)
	}

	// Replay's pattern: delete each page, the cursor's entry included,
	// before asking for the next.
	got := listAll(t, s, dlq.Filter{}, 13, func(p dlq.Page) {
		for _, e := range p.Entries {
			require.NoError(t, s.Delete(ctx, e.ID))
		}
	})
	require.Equal(t, want, entryIDs(got))
}

func TestPurge(t *testing.T) {
	t.Parallel()
	s, client := newStore(t, Options{})
	ctx := t.Context()
	const total = 3*scanChunk + 11
	wantReason := 0
	for i := range total {
		e := entryAt(fmt.Sprintf("id-%04d", i), t0.Add(time.Duration(i%17)*time.Second))
		if i%4 == 0 {
			e.Reason = dlq.ReasonUndecodable
			wantReason++
		}
		put(t, s, e)
	}
	tok, err := s.Reserve(ctx, "id-0000", time.Minute)
	require.NoError(t, err)

	n, err := s.Purge(ctx, dlq.Filter{Reason: dlq.ReasonUndecodable})
	require.NoError(t, err)
	require.Equal(t, wantReason, n)
	n, err = s.Count(ctx, dlq.Filter{})
	require.NoError(t, err)
	require.Equal(t, total-wantReason, n)
	// A reserved entry is purged too; its token then finds nothing.
	require.ErrorIs(t, s.DeleteReserved(ctx, "id-0000", tok), dlq.ErrNotFound)

	n, err = s.Purge(ctx, dlq.Filter{Reason: dlq.ReasonUndecodable})
	require.NoError(t, err)
	require.Zero(t, n)

	n, err = s.Purge(ctx, dlq.Filter{Since: t0.Add(10 * time.Second)})
	require.NoError(t, err)
	left, err := s.Count(ctx, dlq.Filter{})
	require.NoError(t, err)
	require.Equal(t, total-wantReason, n+left)

	n, err = s.Purge(ctx, dlq.Filter{})
	require.NoError(t, err)
	require.Equal(t, left, n)
	// Nothing is left but receipts, which expire.
	keys, err := client.Keys(ctx, s.base+"*").Result()
	require.NoError(t, err)
	for _, k := range keys {
		require.True(t, strings.HasPrefix(k, s.base+"r:"), "key %q left after purging everything", k)
		ttl, err := client.PTTL(ctx, k).Result()
		require.NoError(t, err)
		require.Positive(t, ttl)
	}
}

// TestKeysShareHashTag checks that every key the store writes, whatever
// the IDs, carries the store's hash tag, so that its scripts run on Redis
// Cluster.
func TestKeysShareHashTag(t *testing.T) {
	t.Parallel()
	s, client := newStore(t, Options{Name: "orders:eu"})
	ctx := t.Context()
	for _, id := range []string{"plain", "{x}", "}{", "{", "a{b}c", "{}"} {
		put(t, s, entryAt(id, t0))
		tok, err := s.Reserve(ctx, id, time.Minute)
		require.NoError(t, err)
		require.NoError(t, s.Unreserve(ctx, id, tok))
	}
	require.NoError(t, s.Delete(ctx, "plain"))
	_, err := s.Purge(ctx, dlq.Filter{Source: "orders"})
	require.NoError(t, err)
	put(t, s, entryAt("again", t0))

	var keys []string
	iter := client.Scan(ctx, 0, strings.TrimSuffix(s.base, "{orders:eu}:")+"*", 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	require.NoError(t, iter.Err())
	require.NotEmpty(t, keys)
	for _, k := range keys {
		require.Equal(t, "orders:eu", hashTag(k), "key %q", k)
	}
	// An index, the entry left, and receipts.
	require.Contains(t, keys, s.idx)
	require.Contains(t, keys, s.entryKey("again"))
}

func TestNoScript(t *testing.T) {
	t.Parallel()
	s, client := newStore(t, Options{MaxEntries: 5})
	ctx := t.Context()
	flush := func() {
		// SCRIPT FLUSH is server-wide: other tests running at the same
		// time see NOSCRIPT too, which go-redis answers with EVAL.
		require.NoError(t, client.ScriptFlush(ctx).Err())
	}
	flush()
	put(t, s, entryAt("a", t0))
	flush()
	put(t, s, entryAt("b", t0))
	flush()
	tok, err := s.Reserve(ctx, "a", time.Minute)
	require.NoError(t, err)
	flush()
	require.NoError(t, s.Unreserve(ctx, "a", tok))
	flush()
	tok, err = s.Reserve(ctx, "a", time.Minute)
	require.NoError(t, err)
	flush()
	require.NoError(t, s.DeleteReserved(ctx, "a", tok))
	flush()
	p, err := s.List(ctx, dlq.Filter{Source: "orders"}, "", 10)
	require.NoError(t, err)
	require.Equal(t, []string{"b"}, entryIDs(p.Entries))
	flush()
	n, err := s.Count(ctx, dlq.Filter{Source: "orders"})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	flush()
	require.NoError(t, s.Delete(ctx, "b"))
	put(t, s, entryAt("c", t0))
	flush()
	n, err = s.Purge(ctx, dlq.Filter{})
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

// TestRetriedCalls runs each write script twice with one receipt, as
// go-redis does when a reply is lost: the second run must report the first
// run's result.
func TestRetriedCalls(t *testing.T) {
	t.Parallel()
	s, client := newStore(t, Options{})
	ctx := t.Context()
	ttl := receiptTTL.Milliseconds()
	twice := func(script *redis.Script, keys []string, args ...any) (int64, int64) {
		a, err := script.Run(ctx, client, keys, args...).Int64()
		require.NoError(t, err)
		b, err := script.Run(ctx, client, keys, args...).Int64()
		require.NoError(t, err)
		return a, b
	}
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		put(t, s, entryAt(id, t0))
	}

	a, b := twice(deleteScript, []string{s.entryKey("a"), s.idx, s.receiptKey("n1")}, "a", ttl)
	require.Equal(t, [2]int64{1, 1}, [2]int64{a, b})
	require.ErrorIs(t, s.Delete(ctx, "a"), dlq.ErrNotFound) // a new call, a new receipt

	a, b = twice(reserveScript, []string{s.entryKey("b")}, "tok", 60_000_000)
	require.Equal(t, [2]int64{1, 1}, [2]int64{a, b})
	require.ErrorIs(t, s.Unreserve(ctx, "b", "other"), dlq.ErrReserved)
	a, b = twice(unreserveScript, []string{s.entryKey("b"), s.receiptKey("n2")}, "tok", ttl)
	require.Equal(t, [2]int64{1, 1}, [2]int64{a, b})
	require.ErrorIs(t, s.Unreserve(ctx, "b", "tok"), dlq.ErrReserved)

	tok, err := s.Reserve(ctx, "c", time.Minute)
	require.NoError(t, err)
	a, b = twice(deleteReservedScript, []string{s.entryKey("c"), s.receiptKey("n3"), s.idx}, tok, ttl, "c")
	require.Equal(t, [2]int64{1, 1}, [2]int64{a, b})
	require.ErrorIs(t, s.DeleteReserved(ctx, "c", tok), dlq.ErrNotFound)

	chunk, err := s.rangeChunk(ctx, position{}, "-inf", "+inf", 10)
	require.NoError(t, err)
	require.Equal(t, []string{"b", "d", "e"}, []string{chunk[0].id, chunk[1].id, chunk[2].id})
	keys := []string{s.idx, s.receiptKey("n4")}
	args := []any{"", "", ttl}
	for _, m := range chunk {
		keys = append(keys, s.entryKey(m.id))
		args = append(args, m.id, m.score)
	}
	a, b = twice(purgeScript, keys, args...)
	require.Equal(t, [2]int64{3, 3}, [2]int64{a, b})
	n, err := s.Count(ctx, dlq.Filter{})
	require.NoError(t, err)
	require.Zero(t, n)
}

// TestFetchSkipsMoved checks that an entry replaced between reading the
// index and reading the entries (so its score changed) is left for its new
// position rather than listed out of order.
func TestFetchSkipsMoved(t *testing.T) {
	t.Parallel()
	s, client := newStore(t, Options{})
	ctx := t.Context()
	put(t, s, entryAt("a", t0))
	put(t, s, entryAt("b", t0))
	chunk, err := s.rangeChunk(ctx, position{}, "-inf", "+inf", 10)
	require.NoError(t, err)
	require.Len(t, chunk, 2)
	put(t, s, entryAt("a", t0.Add(time.Hour)))

	keys, scores := s.keysAndScores(chunk)
	v, err := fetchScript.RunRO(ctx, client, keys, append([]any{"", "", 10}, scores...)...).Slice()
	require.NoError(t, err)
	require.Len(t, v, 2)
	require.Equal(t, int64(2), v[0], "only b, the second member, still has its score")

	n, err := countScript.RunRO(ctx, client, keys, append([]any{"", ""}, scores...)...).Int()
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, []string{"b", "a"}, entryIDs(listAll(t, s, dlq.Filter{}, 1, nil)))
}

func TestBadCursorAndLimit(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, Options{})
	ctx := t.Context()
	for _, c := range []string{"!", "AA", "not base64 at all"} {
		_, err := s.List(ctx, dlq.Filter{}, c, 10)
		require.ErrorContains(t, err, "invalid cursor", c)
	}
	for _, limit := range []int{0, -1} {
		_, err := s.List(ctx, dlq.Filter{}, "", limit)
		require.ErrorContains(t, err, "limit must be positive")
	}
	_, err := s.List(ctx, dlq.Filter{}, "", int(^uint(0)>>1)) // MaxInt
	require.NoError(t, err)
	require.Error(t, s.Put(ctx, dlq.Entry{}))
}

func TestContextCanceled(t *testing.T) {
	t.Parallel()
	s, client := newStore(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, s.Put(ctx, entryAt("e", t0)), context.Canceled)
	_, err := s.Get(ctx, "e")
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.List(ctx, dlq.Filter{}, "", 10)
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Count(ctx, dlq.Filter{Source: "x"})
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Purge(ctx, dlq.Filter{})
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Reserve(ctx, "e", time.Minute)
	require.ErrorIs(t, err, context.Canceled)
	n, err := client.Exists(t.Context(), s.entryKey("e"), s.idx).Result()
	require.NoError(t, err)
	require.Zero(t, n)
}
