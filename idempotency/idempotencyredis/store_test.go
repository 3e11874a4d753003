package idempotencyredis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/internal/testenv"
)

func newStore(t *testing.T) (*Store, redis.UniversalClient) {
	t.Helper()
	client, prefix := testenv.Redis(t)
	s, err := New(client, Options{Prefix: prefix})
	require.NoError(t, err)
	return s, client
}

func claimed(t *testing.T, s *Store, key, fingerprint string, lease time.Duration) int64 {
	t.Helper()
	c, err := s.Claim(t.Context(), key, fingerprint, lease)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claimed, c.Status)
	return c.Token
}

func TestNew(t *testing.T) {
	// New does not contact Redis, so no server is needed here.
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = client.Close() })

	s, err := New(client, Options{})
	require.NoError(t, err)
	require.Equal(t, DefaultPrefix, s.prefix)

	s, err = New(client, Options{Prefix: "app:idem:"})
	require.NoError(t, err)
	require.Equal(t, "app:idem:", s.prefix)

	for _, prefix := range []string{"{app}:", "app}:", "a{pp:"} {
		_, err = New(client, Options{Prefix: prefix})
		require.ErrorContains(t, err, "brace", "prefix %q", prefix)
	}

	_, err = New(nil, Options{})
	require.Error(t, err)
}

func TestMillis(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want int64
	}{
		{time.Nanosecond, 1},
		{time.Microsecond, 1},
		{time.Millisecond, 1},
		{time.Millisecond + 1, 2},
		{1500 * time.Microsecond, 2},
		{time.Second, 1000},
		{7 * 24 * time.Hour, 7 * 24 * 3600 * 1000},
		{1<<63 - 1, (1<<63-1)/int64(time.Millisecond) + 1},
	}
	for _, tt := range tests {
		got, err := millis("lease", tt.d)
		require.NoError(t, err, "%v", tt.d)
		require.Equal(t, tt.want, got, "%v", tt.d)
	}
	for _, d := range []time.Duration{0, -1, -time.Second} {
		_, err := millis("lease", d)
		require.ErrorContains(t, err, "lease must be positive", "%v", d)
	}
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

func TestHashTag(t *testing.T) {
	// The examples of the Redis cluster specification.
	for key, want := range map[string]string{
		"{user1000}.following": "user1000",
		"foo{}{bar}":           "foo{}{bar}",
		"foo{{bar}}zap":        "{bar",
		"foo{bar}{zap}":        "bar",
		"plain":                "plain",
	} {
		require.Equal(t, want, hashTag(key), key)
	}
}

func braceKeys() []string {
	return []string{
		"", "a", "{", "}", "{}", "}{", "{a}", "{a}b", "a{b}c", "{{a}}",
		"x}y{z", "\x00\xff{\n}", strings.Repeat("{k}", 1000),
	}
}

func TestRecordKeyHashTag(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = client.Close() })
	s, err := New(client, Options{Prefix: "p:"})
	require.NoError(t, err)
	seen := map[string]string{}
	for _, key := range braceKeys() {
		rk := s.recordKey(key)
		sum := sha256.Sum256([]byte(key))
		want := hex.EncodeToString(sum[:])
		require.Equal(t, "p:{"+want+"}", rk, "key %q", key)
		require.Equal(t, want, hashTag(rk), "key %q", key)
		// Any helper key of the record built by appending to it shares
		// the record's slot.
		require.Equal(t, want, hashTag(rk+":lock{x}"), "key %q", key)
		prev, dup := seen[rk]
		require.False(t, dup, "keys %q and %q share a record", prev, key)
		seen[rk] = key
	}
}

func TestBraceKeys(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	keys := braceKeys()
	for i, key := range keys {
		tok := claimed(t, s, key, "fp", time.Minute)
		require.NoError(t, s.Complete(ctx, key, tok, []byte(strconv.Itoa(i)), time.Minute), "key %q", key)
	}
	for i, key := range keys {
		c, err := s.Claim(ctx, key, "fp", time.Minute)
		require.NoError(t, err)
		require.Equal(t, idempotency.Completed, c.Status, "key %q", key)
		require.Equal(t, strconv.Itoa(i), string(c.Result), "key %q", key)
	}
	// One Redis key per record, named as documented.
	n, err := client.Exists(ctx, s.recordKey("{a}"), s.recordKey("{a}b")).Result()
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
}

func TestClaimRace(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	const n = 32
	const lease = time.Minute
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		claims [n]idempotency.Claim
		errs   [n]error
	)
	for i := range n {
		wg.Go(func() {
			<-start
			claims[i], errs[i] = s.Claim(context.Background(), "race", "fp", lease)
		})
	}
	close(start)
	wg.Wait()
	won := 0
	for i := range n {
		require.NoError(t, errs[i])
		switch claims[i].Status {
		case idempotency.Claimed:
			won++
			require.Positive(t, claims[i].Token)
		case idempotency.InProgress:
			require.Positive(t, claims[i].RetryAfter)
			require.LessOrEqual(t, claims[i].RetryAfter, lease)
		default:
			t.Fatalf("claim %d: status %v", i, claims[i].Status)
		}
	}
	require.Equal(t, 1, won)
}

func TestStaleTokens(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	tok := claimed(t, s, "k", "fp", time.Minute)

	for _, bad := range []int64{tok - 1, tok + 1, 0, -tok} {
		require.ErrorIs(t, s.Extend(ctx, "k", bad, time.Minute), idempotency.ErrStaleToken)
		require.ErrorIs(t, s.Complete(ctx, "k", bad, nil, time.Minute), idempotency.ErrStaleToken)
		require.ErrorIs(t, s.Release(ctx, "k", bad), idempotency.ErrStaleToken)
	}
	// A key never claimed has no claim to hold.
	require.ErrorIs(t, s.Extend(ctx, "other", tok, time.Minute), idempotency.ErrStaleToken)
	require.ErrorIs(t, s.Complete(ctx, "other", tok, nil, time.Minute), idempotency.ErrStaleToken)
	require.ErrorIs(t, s.Release(ctx, "other", tok), idempotency.ErrStaleToken)

	// A different fingerprint changes nothing; an empty one skips the check.
	_, err := s.Claim(ctx, "k", "other-fp", time.Minute)
	require.ErrorIs(t, err, idempotency.ErrFingerprintMismatch)
	c, err := s.Claim(ctx, "k", "", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.InProgress, c.Status)

	require.NoError(t, s.Extend(ctx, "k", tok, time.Minute))
	require.NoError(t, s.Complete(ctx, "k", tok, []byte("done"), time.Minute))

	// Completed: the token holds nothing any more.
	require.ErrorIs(t, s.Extend(ctx, "k", tok, time.Minute), idempotency.ErrStaleToken)
	require.ErrorIs(t, s.Complete(ctx, "k", tok, []byte("again"), time.Minute), idempotency.ErrStaleToken)
	require.ErrorIs(t, s.Release(ctx, "k", tok), idempotency.ErrStaleToken)

	c, err = s.Claim(ctx, "k", "fp", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claim{Status: idempotency.Completed, Result: []byte("done")}, c)
	_, err = s.Claim(ctx, "k", "other-fp", time.Minute)
	require.ErrorIs(t, err, idempotency.ErrFingerprintMismatch)

	// Released: likewise.
	tok = claimed(t, s, "r", "", time.Minute)
	require.NoError(t, s.Release(ctx, "r", tok))
	require.ErrorIs(t, s.Extend(ctx, "r", tok, time.Minute), idempotency.ErrStaleToken)
	require.ErrorIs(t, s.Complete(ctx, "r", tok, nil, time.Minute), idempotency.ErrStaleToken)
	require.ErrorIs(t, s.Release(ctx, "r", tok), idempotency.ErrStaleToken)
	// A released key is absent, whatever fingerprint comes next.
	claimed(t, s, "r", "new-fp", time.Minute)
}

// eventuallyClaimed claims key until the claim is taken, for keys waiting
// on a short lease or retention to run out on the server's clock.
func eventuallyClaimed(t *testing.T, s *Store, key string, lease time.Duration) int64 {
	t.Helper()
	var tok int64
	require.Eventually(t, func() bool {
		c, err := s.Claim(t.Context(), key, "fp", lease)
		require.NoError(t, err)
		tok = c.Token
		return c.Status == idempotency.Claimed
	}, 5*time.Second, time.Millisecond)
	return tok
}

func TestTakeoverAfterLeaseExpiry(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	old := claimed(t, s, "k", "fp", 20*time.Millisecond)
	tok := eventuallyClaimed(t, s, "k", time.Minute)
	require.Greater(t, tok, old)

	require.ErrorIs(t, s.Extend(ctx, "k", old, time.Minute), idempotency.ErrStaleToken)
	require.ErrorIs(t, s.Complete(ctx, "k", old, nil, time.Minute), idempotency.ErrStaleToken)
	require.ErrorIs(t, s.Release(ctx, "k", old), idempotency.ErrStaleToken)
	require.NoError(t, s.Complete(ctx, "k", tok, []byte("new"), time.Minute))

	// A lease that ran out is stale even before anyone claims again.
	old = claimed(t, s, "lapsed", "fp", time.Millisecond)
	require.Eventually(t, func() bool {
		n, err := client.Exists(ctx, s.recordKey("lapsed")).Result()
		require.NoError(t, err)
		return n == 0
	}, 5*time.Second, time.Millisecond)
	require.ErrorIs(t, s.Extend(ctx, "lapsed", old, time.Minute), idempotency.ErrStaleToken)
	require.ErrorIs(t, s.Complete(ctx, "lapsed", old, nil, time.Minute), idempotency.ErrStaleToken)
	require.ErrorIs(t, s.Release(ctx, "lapsed", old), idempotency.ErrStaleToken)
}

func TestTokensGrow(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()

	t.Run("after release", func(t *testing.T) {
		var last int64
		for range 200 {
			tok := claimed(t, s, "released", "fp", time.Minute)
			require.Greater(t, tok, last)
			require.NoError(t, s.Release(ctx, "released", tok))
			last = tok
		}
	})

	t.Run("after expiry", func(t *testing.T) {
		var last int64
		for range 5 {
			tok := eventuallyClaimed(t, s, "expired", time.Millisecond)
			require.Greater(t, tok, last)
			last = tok
		}
		tok := claimed(t, s, "done", "fp", time.Minute)
		require.NoError(t, s.Complete(ctx, "done", tok, nil, time.Millisecond))
		require.Greater(t, eventuallyClaimed(t, s, "done", time.Minute), tok)
	})

	t.Run("clock behind the released token", func(t *testing.T) {
		// Stand in for a server clock that stepped back: the released
		// record's token is far ahead of the clock, and the next claim
		// must still be larger.
		tok := claimed(t, s, "ahead", "fp", time.Minute)
		require.NoError(t, s.Release(ctx, "ahead", tok))
		ahead := tok + int64(time.Hour/time.Microsecond)
		require.NoError(t, client.HSet(ctx, s.recordKey("ahead"), "t", ahead).Err())
		require.Equal(t, ahead+1, claimed(t, s, "ahead", "other-fp", time.Minute))
	})

	t.Run("near the server clock", func(t *testing.T) {
		now, err := client.Time(ctx).Result()
		require.NoError(t, err)
		tok := claimed(t, s, "clock", "", time.Minute)
		require.GreaterOrEqual(t, tok, now.UnixMicro())
		require.Less(t, tok, now.Add(time.Minute).UnixMicro())
	})
}

func TestRecordTTL(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	pttl := func() time.Duration {
		d, err := client.PTTL(ctx, s.recordKey("k")).Result()
		require.NoError(t, err)
		return d
	}

	tok := claimed(t, s, "k", "fp", 10*time.Second)
	require.InDelta(t, 10*time.Second, pttl(), float64(time.Second))

	c, err := s.Claim(ctx, "k", "fp", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.InProgress, c.Status)
	require.InDelta(t, 10*time.Second, c.RetryAfter, float64(time.Second))

	require.NoError(t, s.Extend(ctx, "k", tok, time.Hour))
	require.InDelta(t, time.Hour, pttl(), float64(time.Second))

	require.NoError(t, s.Complete(ctx, "k", tok, nil, 48*time.Hour))
	require.InDelta(t, 48*time.Hour, pttl(), float64(time.Second))

	// A released record is a tombstone for the rest of its lease only.
	tok = claimed(t, s, "r", "fp", 10*time.Second)
	require.NoError(t, s.Release(ctx, "r", tok))
	d, err := client.PTTL(ctx, s.recordKey("r")).Result()
	require.NoError(t, err)
	require.InDelta(t, 10*time.Second, d, float64(time.Second))
}

func TestResults(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	for name, result := range map[string][]byte{
		"nil":    nil,
		"empty":  {},
		"binary": {0, 0xff, '{', '}', '\n', 0},
		"large":  []byte(strings.Repeat("x", 1<<20)),
	} {
		tok := claimed(t, s, name, "fp", time.Minute)
		require.NoError(t, s.Complete(ctx, name, tok, result, time.Minute))
		c, err := s.Claim(ctx, name, "fp", time.Minute)
		require.NoError(t, err)
		require.Equal(t, idempotency.Completed, c.Status)
		require.Equal(t, len(result), len(c.Result), name)
		require.Equal(t, string(result), string(c.Result), name)
	}
}

func TestNonPositiveDurations(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	for _, d := range []time.Duration{0, -time.Second} {
		_, err := s.Claim(ctx, "k", "fp", d)
		require.ErrorContains(t, err, "lease must be positive")
	}
	n, err := client.Exists(ctx, s.recordKey("k")).Result()
	require.NoError(t, err)
	require.Zero(t, n, "a rejected claim wrote a record")

	tok := claimed(t, s, "k", "fp", time.Minute)
	require.ErrorContains(t, s.Extend(ctx, "k", tok, 0), "lease must be positive")
	require.ErrorContains(t, s.Complete(ctx, "k", tok, nil, -1), "retention must be positive")
	c, err := s.Claim(ctx, "k", "fp", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.InProgress, c.Status)
	require.Greater(t, c.RetryAfter, 50*time.Second)
	require.NoError(t, s.Complete(ctx, "k", tok, nil, time.Minute))
}

func TestSubMillisecondLease(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	// TestMillis checks the rounding up to 1ms; this checks that such a
	// lease is accepted and runs out on the server.
	claimed(t, s, "k", "fp", time.Microsecond)
	eventuallyClaimed(t, s, "k", time.Minute)
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
	tok := claimed(t, s, "k", "fp", time.Minute)
	flush()
	require.NoError(t, s.Extend(ctx, "k", tok, time.Minute))
	flush()
	require.NoError(t, s.Release(ctx, "k", tok))
	flush()
	tok = claimed(t, s, "k", "fp", time.Minute)
	flush()
	require.NoError(t, s.Complete(ctx, "k", tok, []byte("ok"), time.Minute))
	flush()
	c, err := s.Claim(ctx, "k", "fp", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Completed, c.Status)
}

// TestRetriedCalls runs each script twice with one nonce, as go-redis does
// when a reply is lost: the second run must report the first run's
// success, while a different call with the same token stays stale.
func TestRetriedCalls(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	run := func(script *redis.Script, key string, args ...any) *redis.Cmd {
		return script.Run(ctx, client, []string{s.recordKey(key)}, args...)
	}

	claim := func(nonce string) idempotency.Claim {
		v, err := run(claimScript, "k", "fp", 60000, nonce).Slice()
		require.NoError(t, err)
		c, err := parseClaim(v)
		require.NoError(t, err)
		return c
	}
	first := claim("n1")
	require.Equal(t, idempotency.Claimed, first.Status)
	require.Equal(t, first, claim("n1"))
	require.Equal(t, idempotency.InProgress, claim("n2").Status)

	tok := strconv.FormatInt(first.Token, 10)
	require.NoError(t, held("complete", run(completeScript, "k", tok, "r", 60000, "n3")))
	require.NoError(t, held("complete", run(completeScript, "k", tok, "r", 60000, "n3")))
	require.ErrorIs(t, held("complete", run(completeScript, "k", tok, "r", 60000, "n4")), idempotency.ErrStaleToken)
	require.ErrorIs(t, s.Complete(ctx, "k", first.Token, nil, time.Minute), idempotency.ErrStaleToken)
	require.ErrorIs(t, held("release", run(releaseScript, "k", tok, "n3")), idempotency.ErrStaleToken)

	rel := claimed(t, s, "r", "fp", time.Minute)
	tok = strconv.FormatInt(rel, 10)
	require.NoError(t, held("release", run(releaseScript, "r", tok, "n5")))
	require.NoError(t, held("release", run(releaseScript, "r", tok, "n5")))
	require.ErrorIs(t, held("release", run(releaseScript, "r", tok, "n6")), idempotency.ErrStaleToken)
	require.ErrorIs(t, s.Release(ctx, "r", rel), idempotency.ErrStaleToken)
	require.ErrorIs(t, held("complete", run(completeScript, "r", tok, "r", 60000, "n5")), idempotency.ErrStaleToken)
	require.Greater(t, claimed(t, s, "r", "fp", time.Minute), rel)
}

func TestContextCanceled(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Claim(ctx, "k", "fp", time.Minute)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, s.Extend(ctx, "k", 1, time.Minute), context.Canceled)
	require.ErrorIs(t, s.Complete(ctx, "k", 1, nil, time.Minute), context.Canceled)
	require.ErrorIs(t, s.Release(ctx, "k", 1), context.Canceled)
	n, err := client.Exists(t.Context(), s.recordKey("k")).Result()
	require.NoError(t, err)
	require.Zero(t, n)
}

// TestNoScriptInBatches flushes the script cache while 64 goroutines claim
// and complete distinct keys, so NOSCRIPT replies arrive inside pipelined
// batches: every call must still succeed exactly once, and cancelled
// callers must take nothing.
func TestNoScriptInBatches(t *testing.T) {
	t.Parallel()
	s, client := newStore(t)
	ctx := t.Context()
	const workers, perWorker = 64, 30
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				if i%10 == 0 && w == 0 {
					if err := client.ScriptFlush(ctx).Err(); err != nil {
						errs <- err
					}
				}
				key := fmt.Sprintf("b-%d-%d", w, i)
				c, err := s.Claim(ctx, key, "fp", time.Minute)
				if err != nil {
					errs <- fmt.Errorf("claim %s: %w", key, err)
					continue
				}
				if c.Status != idempotency.Claimed {
					errs <- fmt.Errorf("claim %s: %v", key, c.Status)
					continue
				}
				if err := s.Complete(ctx, key, c.Token, []byte(key), time.Minute); err != nil {
					errs <- fmt.Errorf("complete %s: %w", key, err)
				}
			}
		})
	}
	// Callers whose context is already done take nothing.
	done, cancel := context.WithCancel(ctx)
	cancel()
	for i := range 50 {
		_, err := s.Claim(done, fmt.Sprintf("cancelled-%d", i), "", time.Minute)
		require.ErrorIs(t, err, context.Canceled)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for w := range workers {
		for i := range perWorker {
			key := fmt.Sprintf("b-%d-%d", w, i)
			c, err := s.Claim(ctx, key, "fp", time.Minute)
			require.NoError(t, err)
			require.Equal(t, idempotency.Completed, c.Status, key)
			require.Equal(t, []byte(key), c.Result)
		}
	}
	for i := range 50 {
		c, err := s.Claim(ctx, fmt.Sprintf("cancelled-%d", i), "", time.Minute)
		require.NoError(t, err)
		require.Equal(t, idempotency.Claimed, c.Status, "a cancelled call left nothing behind")
	}
}
