package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/idempotency/idempotencypg"
	"github.com/idemq/idemq/idempotency/idempotencyredis"
	"github.com/idemq/idemq/internal/observetest"
	"github.com/idemq/idemq/internal/testenv"
)

// effectMode is how a scenario wraps its handler: with the idempotency
// middleware over a Store, or with the transactional inbox.
type effectMode struct {
	name string
	// wrap returns the middleware; bump is how the handler applies its
	// effect (add 1 to the message's counter row).
	setup func(t *testing.T, pool *pgxpool.Pool, obs consumer.Observer) (mw consumer.Middleware, bump func(ctx context.Context, id string) error)
}

func storeMode(name string, newStore func(t *testing.T, pool *pgxpool.Pool) idempotency.Store) effectMode {
	return effectMode{name: name, setup: func(t *testing.T, pool *pgxpool.Pool, obs consumer.Observer) (consumer.Middleware, func(context.Context, string) error) {
		mw, err := idempotency.Middleware(idempotency.Options{
			Store: newStore(t, pool), Observer: obs, InProgressDelay: 5 * time.Millisecond, Logger: quietLog,
		})
		require.NoError(t, err)
		return mw, func(ctx context.Context, id string) error {
			_, err := pool.Exec(ctx, "UPDATE counters SET n = n + 1 WHERE id = $1", id)
			return err
		}
	}}
}

func effectModes() []effectMode {
	return []effectMode{
		storeMode("postgres store", func(t *testing.T, pool *pgxpool.Pool) idempotency.Store {
			require.NoError(t, idempotencypg.Migrate(context.Background(), pool, idempotencypg.Options{}))
			s, err := idempotencypg.New(pool, idempotencypg.Options{})
			require.NoError(t, err)
			return s
		}),
		storeMode("redis store", func(t *testing.T, _ *pgxpool.Pool) idempotency.Store {
			client, prefix := testenv.Redis(t)
			s, err := idempotencyredis.New(client, idempotencyredis.Options{Prefix: prefix})
			require.NoError(t, err)
			return s
		}),
		{name: "transactional inbox", setup: func(t *testing.T, pool *pgxpool.Pool, obs consumer.Observer) (consumer.Middleware, func(context.Context, string) error) {
			require.NoError(t, idempotencypg.MigrateInbox(context.Background(), pool, idempotencypg.InboxOptions{}))
			mw, err := idempotencypg.Inbox(pool, idempotencypg.InboxOptions{Observer: obs, Logger: quietLog})
			require.NoError(t, err)
			return mw, func(ctx context.Context, id string) error {
				tx, ok := idempotencypg.TxFromContext(ctx)
				if !ok {
					return errors.New("no inbox transaction in context")
				}
				_, err := tx.Exec(ctx, "UPDATE counters SET n = n + 1 WHERE id = $1", id)
				return err
			}
		}},
	}
}

func counterTable(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	ctx := context.Background()
	_, err := pool.Exec(ctx, "CREATE TABLE counters (id text PRIMARY KEY, n int NOT NULL DEFAULT 0)")
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "INSERT INTO counters (id) SELECT 'm' || g FROM generate_series(0, $1 - 1) g", n)
	require.NoError(t, err)
}

// runConsumers runs k consumers on q with h until obs has seen acks
// messages acked, then stops them.
func runConsumers(t *testing.T, q *consumer.MemQueue, h consumer.Handler, k int, obs *observetest.Counts, acks int64) {
	t.Helper()
	acked := obs.Reached(consumer.MetricProcessed, acks)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, k)
	for range k {
		c, err := consumer.New(q, h, consumer.Config{
			MaxInFlight: 16, Concurrency: 8, Observer: obs, Logger: quietLog,
			Backoff: consumer.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond},
		})
		require.NoError(t, err)
		wg.Add(1)
		go func() { defer wg.Done(); errs <- c.Run(ctx) }()
	}
	select {
	case <-acked:
	case <-time.After(2 * time.Minute):
		t.Errorf("only %d messages acked", obs.Get(consumer.MetricProcessed))
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// TestOneEffectPerMessage delivers 1,000 messages 5 times each, the copies
// racing across 8 consumers that share one store; the handler adds 1 to a
// per-message counter in Postgres. Every counter must end at exactly 1.
func TestOneEffectPerMessage(t *testing.T) {
	const messages, copies, consumers = 1000, 5, 8
	for _, mode := range effectModes() {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			pool := testenv.Postgres(t)
			counterTable(t, pool, messages)
			obs := &observetest.Counts{}
			mw, bump := mode.setup(t, pool, obs)

			q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
			require.NoError(t, err)
			var all []consumer.Message
			for range copies {
				for i := range messages {
					all = append(all, consumer.Message{ID: fmt.Sprintf("m%d", i), Body: []byte("add 1")})
				}
			}
			rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
			require.NoError(t, q.Publish(context.Background(), all...))

			var calls atomic.Int64
			h := mw(consumer.HandlerFunc(func(ctx context.Context, m *consumer.Message) error {
				calls.Add(1)
				return bump(ctx, m.ID)
			}))
			runConsumers(t, q, h, consumers, obs, messages*copies)

			var wrong, total int
			require.NoError(t, pool.QueryRow(context.Background(),
				"SELECT count(*) FILTER (WHERE n <> 1), coalesce(sum(n), 0) FROM counters").Scan(&wrong, &total))
			require.Zero(t, wrong, "counters not exactly 1")
			require.Equal(t, messages, total)
			require.Equal(t, int64(messages), calls.Load(), "handler calls")
			require.Equal(t, int64(messages*(copies-1)), obs.Get(idempotency.MetricDuplicatesSkipped))
			require.Equal(t, consumer.MemQueueStats{}, q.Stats())
		})
	}
}

// TestFailingHandlerIsNotDroppedAsDuplicate: a handler that fails its first
// five attempts and then succeeds takes effect exactly once.
func TestFailingHandlerIsNotDroppedAsDuplicate(t *testing.T) {
	for _, mode := range effectModes() {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			pool := testenv.Postgres(t)
			counterTable(t, pool, 1)
			obs := &observetest.Counts{}
			mw, bump := mode.setup(t, pool, obs)
			q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
			require.NoError(t, err)
			require.NoError(t, q.Publish(context.Background(), consumer.Message{ID: "m0", Body: []byte("add 1")}))
			var calls atomic.Int32
			h := mw(consumer.HandlerFunc(func(ctx context.Context, m *consumer.Message) error {
				if err := bump(ctx, m.ID); err != nil {
					return err
				}
				if calls.Add(1) <= 5 {
					// The effect above is undone: by the rollback under the
					// inbox, by hand for the stores (a failure after a
					// partial effect must clean it up).
					if _, ok := idempotencypg.TxFromContext(ctx); !ok {
						if _, err := pool.Exec(ctx, "UPDATE counters SET n = n - 1 WHERE id = $1", m.ID); err != nil {
							return err
						}
					}
					return fmt.Errorf("attempt %d fails", m.Attempt)
				}
				return nil
			}))
			runConsumers(t, q, h, 1, obs, 1)
			var n int
			require.NoError(t, pool.QueryRow(context.Background(), "SELECT n FROM counters WHERE id = 'm0'").Scan(&n))
			require.Equal(t, 1, n)
			require.Equal(t, int32(6), calls.Load())
			require.Equal(t, int64(5), obs.Get(consumer.MetricRetries))
		})
	}
}
