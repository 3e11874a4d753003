package idempotencypg

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/internal/testenv"
)

// racingDB runs statements on a real database, with another client's
// writes slipped in just before the chosen ones, to reproduce races that
// are otherwise too rare to hit on purpose.
type racingDB struct {
	DBTX
	before map[string]func(ctx context.Context) // by SQL text
}

func (r racingDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if f := r.before[sql]; f != nil {
		f(ctx)
	}
	return r.DBTX.QueryRow(ctx, sql, args...)
}

func TestClaimRowGoneBetweenStatements(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := testenv.Postgres(t)
	require.NoError(t, Migrate(ctx, pool, Options{}))
	s, err := New(pool, Options{})
	require.NoError(t, err)
	exec := func(ctx context.Context, sql string) {
		_, err := pool.Exec(ctx, sql)
		require.NoError(t, err)
	}

	held, err := s.Claim(ctx, "k", "", time.Minute)
	require.NoError(t, err)

	// The holder releases after the claim's insert found its row, before
	// the claim reads it: the key is absent, so the claim takes it.
	released := false
	racing := &Store{db: racingDB{DBTX: pool, before: map[string]func(context.Context){
		s.q.lookup: func(ctx context.Context) {
			if !released {
				released = true
				require.NoError(t, s.Release(ctx, "k", held.Token))
			}
		},
	}}, q: s.q, logger: s.logger}
	got, err := racing.Claim(ctx, "k", "", time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claimed, got.Status)
	require.Greater(t, got.Token, held.Token)
	require.True(t, released)

	// A key that keeps changing hands makes Claim give up, with an error
	// rather than a wrong answer.
	churn := &Store{db: racingDB{DBTX: pool, before: map[string]func(context.Context){
		s.q.claim: func(ctx context.Context) {
			exec(ctx, `INSERT INTO idemq_idempotency_keys (key, state, token, expires_at)
				VALUES ('churn', 'in progress', nextval('idemq_idempotency_keys_token_seq'), now() + interval '1 minute')`)
		},
		s.q.lookup: func(ctx context.Context) {
			exec(ctx, `DELETE FROM idemq_idempotency_keys WHERE key = 'churn'`)
		},
	}}, q: s.q, logger: s.logger}
	_, err = churn.Claim(ctx, "churn", "", time.Minute)
	require.ErrorContains(t, err, "changed hands")
}
