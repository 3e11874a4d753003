package dlqpg_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqpg"
)

// TestQueryExecModes runs the store on pools configured with each of
// pgx's query modes, which send statements and batches differently (the
// simple protocol, for PgBouncer, inlines arguments and joins a batch
// into one query): the round trip and the cap must hold in every one.
func TestQueryExecModes(t *testing.T) {
	t.Parallel()
	for _, mode := range []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement,
		pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec,
		pgx.QueryExecModeSimpleProtocol,
	} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			_, migrated := newStore(t, dlqpg.Options{})
			cfg := migrated.Config()
			cfg.ConnConfig.DefaultQueryExecMode = mode
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			require.NoError(t, err)
			t.Cleanup(pool.Close) // before the schema is dropped

			s, err := dlqpg.New(pool, dlqpg.Options{MaxEntries: 5})
			require.NoError(t, err)

			e := entry("full", 0)
			e.Message.Body = []byte{0, '\'', '\\', 0xff}
			e.Message.Headers["quote"] = `it's "quoted" \ $1`
			e.ErrorChain = []string{"", "{braces}", `"`, "NULL"}
			require.NoError(t, s.Put(ctx, e))
			got, err := s.Get(ctx, e.ID)
			require.NoError(t, err)
			require.Equal(t, e, got)
			bare := dlq.Entry{ID: "bare", LastFailedAt: base}
			require.NoError(t, s.Put(ctx, bare))
			got, err = s.Get(ctx, "bare")
			require.NoError(t, err)
			require.Equal(t, bare, got)

			var (
				wg   sync.WaitGroup
				errs = make([]error, 16)
			)
			for i := range errs {
				wg.Go(func() { errs[i] = s.Put(ctx, entry(fmt.Sprintf("c%02d", i), time.Second)) })
			}
			wg.Wait()
			stored := 0
			for _, err := range errs {
				if err == nil {
					stored++
				} else {
					require.ErrorIs(t, err, dlq.ErrFull)
				}
			}
			require.Equal(t, 3, stored)
			require.Equal(t, 5, rowCount(t, pool, "idemq_dead_letters"))

			p, err := s.List(ctx, dlq.Filter{Source: "orders", Since: base}, "", 2)
			require.NoError(t, err)
			require.Len(t, p.Entries, 2)
			p, err = s.List(ctx, dlq.Filter{Source: "orders", Since: base}, p.Next, 2)
			require.NoError(t, err)
			require.Len(t, p.Entries, 2)
			tok, err := s.Reserve(ctx, "full", time.Minute)
			require.NoError(t, err)
			require.NoError(t, s.DeleteReserved(ctx, "full", tok))
			n, err := s.Purge(ctx, dlq.Filter{Reason: dlq.ReasonAttemptsExhausted})
			require.NoError(t, err)
			require.Equal(t, 3, n)
		})
	}
}
