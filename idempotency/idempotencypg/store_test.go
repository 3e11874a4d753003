package idempotencypg_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/idempotency/idempotencypg"
	"github.com/idemq/idemq/internal/testenv"
)

func TestClaimLifecycle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newStore(t)
	const lease = time.Minute

	c, err := s.Claim(ctx, "k", "fp", lease)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claimed, c.Status)
	require.Positive(t, c.Token)

	again, err := s.Claim(ctx, "k", "fp", lease)
	require.NoError(t, err)
	require.Equal(t, idempotency.InProgress, again.Status)
	require.Zero(t, again.Token)
	require.Positive(t, again.RetryAfter)
	require.LessOrEqual(t, again.RetryAfter, lease)
	require.Greater(t, again.RetryAfter, lease-10*time.Second)

	require.NoError(t, s.Extend(ctx, "k", c.Token, lease))
	require.NoError(t, s.Complete(ctx, "k", c.Token, []byte("result"), time.Hour))

	done, err := s.Claim(ctx, "k", "fp", lease)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claim{Status: idempotency.Completed, Result: []byte("result")}, done)

	// The claim is over: its token holds nothing any more.
	require.ErrorIs(t, s.Extend(ctx, "k", c.Token, lease), idempotency.ErrStaleToken)
	require.ErrorIs(t, s.Complete(ctx, "k", c.Token, nil, time.Hour), idempotency.ErrStaleToken)
	require.ErrorIs(t, s.Release(ctx, "k", c.Token), idempotency.ErrStaleToken)
	done, err = s.Claim(ctx, "k", "", lease)
	require.NoError(t, err)
	require.Equal(t, []byte("result"), done.Result, "a stale Complete changed the result")
}

func TestCompleteEmptyResult(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newStore(t)
	for i, result := range [][]byte{nil, {}} {
		key := fmt.Sprint("k", i)
		c, err := s.Claim(ctx, key, "", time.Minute)
		require.NoError(t, err)
		require.NoError(t, s.Complete(ctx, key, c.Token, result, time.Hour))
		got, err := s.Claim(ctx, key, "", time.Minute)
		require.NoError(t, err)
		require.Equal(t, idempotency.Claim{Status: idempotency.Completed}, got)
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := newStore(t)

	c, err := s.Claim(ctx, "k", "a", time.Minute)
	require.NoError(t, err)
	_, err = s.Claim(ctx, "k", "b", time.Minute)
	require.ErrorIs(t, err, idempotency.ErrFingerprintMismatch)
	// An empty fingerprint on either side skips the check.
	got, err := s.Claim(ctx, "k", "", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.InProgress, got.Status)

	require.NoError(t, s.Complete(ctx, "k", c.Token, []byte("r"), time.Hour))
	_, err = s.Claim(ctx, "k", "b", time.Minute)
	require.ErrorIs(t, err, idempotency.ErrFingerprintMismatch)

	// The mismatch changed nothing.
	got, err = s.Claim(ctx, "k", "a", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claim{Status: idempotency.Completed, Result: []byte("r")}, got)

	// A key stored without a fingerprint accepts any.
	c, err = s.Claim(ctx, "bare", "", time.Minute)
	require.NoError(t, err)
	got, err = s.Claim(ctx, "bare", "x", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.InProgress, got.Status)
	require.NoError(t, s.Release(ctx, "bare", c.Token))

	// An expired key is absent: a new payload may claim it.
	expire(t, pool, "k")
	got, err = s.Claim(ctx, "k", "b", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claimed, got.Status)
}

func TestStaleToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// setup claims "k" and returns the token to try, now stale.
		setup func(t *testing.T, s *idempotencypg.Store, db idempotencypg.DBTX) int64
	}{
		{"wrong token", func(t *testing.T, s *idempotencypg.Store, _ idempotencypg.DBTX) int64 {
			c, err := s.Claim(t.Context(), "k", "", time.Minute)
			require.NoError(t, err)
			return c.Token + 1000
		}},
		{"never claimed", func(*testing.T, *idempotencypg.Store, idempotencypg.DBTX) int64 { return 1 }},
		{"released", func(t *testing.T, s *idempotencypg.Store, _ idempotencypg.DBTX) int64 {
			c, err := s.Claim(t.Context(), "k", "", time.Minute)
			require.NoError(t, err)
			require.NoError(t, s.Release(t.Context(), "k", c.Token))
			return c.Token
		}},
		{"completed", func(t *testing.T, s *idempotencypg.Store, _ idempotencypg.DBTX) int64 {
			c, err := s.Claim(t.Context(), "k", "", time.Minute)
			require.NoError(t, err)
			require.NoError(t, s.Complete(t.Context(), "k", c.Token, nil, time.Hour))
			return c.Token
		}},
		{"lease ran out", func(t *testing.T, s *idempotencypg.Store, db idempotencypg.DBTX) int64 {
			c, err := s.Claim(t.Context(), "k", "", time.Minute)
			require.NoError(t, err)
			expire(t, db, "k")
			return c.Token
		}},
		{"zero lease", func(t *testing.T, s *idempotencypg.Store, _ idempotencypg.DBTX) int64 {
			c, err := s.Claim(t.Context(), "k", "", 0)
			require.NoError(t, err)
			require.Equal(t, idempotency.Claimed, c.Status)
			return c.Token
		}},
		{"claimed since", func(t *testing.T, s *idempotencypg.Store, db idempotencypg.DBTX) int64 {
			c, err := s.Claim(t.Context(), "k", "", time.Minute)
			require.NoError(t, err)
			expire(t, db, "k")
			c2, err := s.Claim(t.Context(), "k", "", time.Minute)
			require.NoError(t, err)
			require.Equal(t, idempotency.Claimed, c2.Status)
			return c.Token
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, pool := newStore(t)
			token := tt.setup(t, s, pool)

			var before []any
			snapshot := func() []any {
				rows, err := pool.Query(ctx, "SELECT key, state, token, result, expires_at FROM idemq_idempotency_keys ORDER BY key")
				require.NoError(t, err)
				defer rows.Close()
				var out []any
				for rows.Next() {
					v, err := rows.Values()
					require.NoError(t, err)
					out = append(out, v)
				}
				require.NoError(t, rows.Err())
				return out
			}
			before = snapshot()
			require.ErrorIs(t, s.Extend(ctx, "k", token, time.Hour), idempotency.ErrStaleToken)
			require.ErrorIs(t, s.Complete(ctx, "k", token, []byte("x"), time.Hour), idempotency.ErrStaleToken)
			require.ErrorIs(t, s.Release(ctx, "k", token), idempotency.ErrStaleToken)
			require.Equal(t, before, snapshot(), "a stale token changed the table")
		})
	}
}

func TestTakeoverAfterExpiry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := newStore(t)

	first, err := s.Claim(ctx, "k", "a", time.Minute)
	require.NoError(t, err)
	expire(t, pool, "k")

	second, err := s.Claim(ctx, "k", "b", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claimed, second.Status)
	require.Greater(t, second.Token, first.Token)
	require.ErrorIs(t, s.Complete(ctx, "k", first.Token, nil, time.Hour), idempotency.ErrStaleToken)
	require.NoError(t, s.Complete(ctx, "k", second.Token, []byte("second"), time.Hour))

	// A completed key whose retention ran out is absent too; the takeover
	// clears the old result.
	expire(t, pool, "k")
	third, err := s.Claim(ctx, "k", "c", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claimed, third.Status)
	require.Greater(t, third.Token, second.Token)
	var result []byte
	var state string
	require.NoError(t, pool.QueryRow(ctx, "SELECT state, result FROM idemq_idempotency_keys WHERE key = 'k'").Scan(&state, &result))
	require.Equal(t, "in progress", state)
	require.Nil(t, result)
}

func TestTokensGrow(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newStore(t)

	var last int64
	for i := range 20 {
		c, err := s.Claim(ctx, "k", "", time.Minute)
		require.NoError(t, err)
		require.Equal(t, idempotency.Claimed, c.Status)
		require.Greater(t, c.Token, last, "claim %d", i)
		last = c.Token
		switch i % 3 {
		case 0:
			require.NoError(t, s.Release(ctx, "k", c.Token))
		case 1:
			// Completed, expired and reaped: the row is gone, the
			// sequence is not.
			require.NoError(t, s.Complete(ctx, "k", c.Token, nil, 0))
			n, err := s.DeleteExpired(ctx, 10)
			require.NoError(t, err)
			require.EqualValues(t, 1, n)
		case 2:
			require.NoError(t, s.Extend(ctx, "k", c.Token, -time.Second))
		}
	}
}

// TestConcurrentClaim checks that of many simultaneous claims of one key,
// absent or expired, exactly one wins.
func TestConcurrentClaim(t *testing.T) {
	t.Parallel()
	const workers = 32
	ctx := t.Context()
	s, pool := newStore(t)

	race := func(key string) (winners int, token int64) {
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			start = make(chan struct{})
		)
		for range workers {
			wg.Go(func() {
				<-start
				c, err := s.Claim(ctx, key, "fp", time.Minute)
				mu.Lock()
				defer mu.Unlock()
				if !assertNoError(t, err) {
					return
				}
				switch c.Status {
				case idempotency.Claimed:
					winners++
					token = c.Token
				case idempotency.InProgress:
				default:
					t.Errorf("unexpected status %v", c.Status)
				}
			})
		}
		close(start)
		wg.Wait()
		return winners, token
	}

	for round := range 5 {
		key := fmt.Sprint("fresh-", round)
		winners, _ := race(key)
		require.Equal(t, 1, winners, "absent key %s", key)
	}
	var last int64
	for round := range 5 {
		if round > 0 {
			expire(t, pool, "shared")
		}
		winners, token := race("shared")
		require.Equal(t, 1, winners, "round %d", round)
		require.Greater(t, token, last)
		last = token
	}
}

func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

// TestDurations checks that leases and retentions reach the database as
// exact intervals from the database's clock.
func TestDurations(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := newStore(t)

	// expiry returns expires_at - statement time of the write, in µs:
	// created_at is the claim's statement time, and for the later writes
	// the test compares against a fresh claim of another key.
	span := func(key string) int64 {
		var us int64
		require.NoError(t, pool.QueryRow(ctx,
			`SELECT ((extract(epoch FROM expires_at) - extract(epoch FROM created_at)) * 1000000)::bigint
			 FROM idemq_idempotency_keys WHERE key = $1`, key).Scan(&us))
		return us
	}
	tests := []struct {
		lease time.Duration
		want  int64 // µs
	}{
		{time.Second, 1_000_000},
		{90*time.Minute + 1234567*time.Microsecond, 90*60*1_000_000 + 1234567},
		{400 * 24 * time.Hour, 400 * 24 * 3600 * 1_000_000},
		{1500 * time.Nanosecond, 2}, // rounded up, never to zero
		{time.Nanosecond, 1},
		{0, 0},
		{-time.Minute, -60_000_000},
	}
	for i, tt := range tests {
		key := fmt.Sprint("k", i)
		_, err := s.Claim(ctx, key, "", tt.lease)
		require.NoError(t, err)
		require.Equal(t, tt.want, span(key), "lease %s", tt.lease)
	}

	// Extend and Complete count from the database's now: compare with
	// expires_at - statement_timestamp() read right after.
	left := func(key string) time.Duration {
		var us int64
		require.NoError(t, pool.QueryRow(ctx,
			`SELECT ((extract(epoch FROM expires_at) - extract(epoch FROM statement_timestamp())) * 1000000)::bigint
			 FROM idemq_idempotency_keys WHERE key = $1`, key).Scan(&us))
		return time.Duration(us) * time.Microsecond
	}
	c, err := s.Claim(ctx, "ext", "", time.Second)
	require.NoError(t, err)
	require.NoError(t, s.Extend(ctx, "ext", c.Token, 48*time.Hour))
	require.InDelta(t, float64(48*time.Hour), float64(left("ext")), float64(10*time.Second))
	require.NoError(t, s.Complete(ctx, "ext", c.Token, nil, 30*24*time.Hour))
	require.InDelta(t, float64(30*24*time.Hour), float64(left("ext")), float64(10*time.Second))
}

// TestStoreInTx checks the store through a pgx.Tx: deadlines move with each
// statement, not with the transaction's start.
func TestStoreInTx(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := testenv.Postgres(t)
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	require.NoError(t, idempotencypg.Migrate(ctx, tx, idempotencypg.Options{}))
	s, err := idempotencypg.New(tx, idempotencypg.Options{})
	require.NoError(t, err)

	// Let the transaction's now() fall behind the statement clock.
	_, err = tx.Exec(ctx, "SELECT pg_sleep(0.2)")
	require.NoError(t, err)
	c, err := s.Claim(ctx, "k", "", 100*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claimed, c.Status)
	var alive bool
	require.NoError(t, tx.QueryRow(ctx, "SELECT expires_at > now() + interval '150 milliseconds' FROM idemq_idempotency_keys WHERE key = 'k'").Scan(&alive))
	require.True(t, alive, "the lease was counted from the transaction's start")
	require.NoError(t, s.Complete(ctx, "k", c.Token, []byte("r"), time.Hour))
	got, err := s.Claim(ctx, "k", "", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Completed, got.Status)
}

func TestNewRejectsNilDB(t *testing.T) {
	t.Parallel()
	_, err := idempotencypg.New(nil, idempotencypg.Options{})
	require.Error(t, err)
}
