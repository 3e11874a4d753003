package dlq_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/dlq/dlqpg"
	"github.com/idemq/idemq/dlq/dlqredis"
	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/internal/testenv"
)

func replayStores() map[string]func(t *testing.T) dlq.Store {
	return map[string]func(t *testing.T) dlq.Store{
		"memory": func(t *testing.T) dlq.Store { return newStore(t) },
		"postgres": func(t *testing.T) dlq.Store {
			pool := testenv.Postgres(t)
			require.NoError(t, dlqpg.Migrate(context.Background(), pool, dlqpg.Options{}))
			s, err := dlqpg.New(pool, dlqpg.Options{})
			require.NoError(t, err)
			return s
		},
		"redis": func(t *testing.T) dlq.Store {
			client, prefix := testenv.Redis(t)
			s, err := dlqredis.New(client, dlqredis.Options{Prefix: prefix})
			require.NoError(t, err)
			return s
		},
	}
}

func park(t *testing.T, s dlq.Store, n int, reason dlq.Reason, idPrefix string) {
	t.Helper()
	at := time.Now().Add(-time.Hour)
	for i := range n {
		id := fmt.Sprintf("%s%d", idPrefix, i)
		require.NoError(t, s.Put(context.Background(), dlq.Entry{
			ID:            dlq.EntryID("orders", id),
			Message:       consumer.Message{ID: id, Key: "k" + id, Body: []byte(id), Headers: map[string]string{"trace": id}, Attempt: 5, EnqueuedAt: at},
			Source:        "orders",
			Reason:        reason,
			Error:         "boom",
			ErrorChain:    []string{"boom"},
			Attempts:      5,
			FirstFailedAt: at,
			LastFailedAt:  at.Add(time.Duration(i) * time.Millisecond),
		}))
	}
}

// TestReplay parks 1,000 entries, replays them to the in-memory queue and
// consumes them: each is processed once, and a second replay enqueues
// nothing.
func TestReplay(t *testing.T) {
	for name, newStore := range replayStores() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			const n = 1000
			store := newStore(t)
			park(t, store, n, dlq.ReasonAttemptsExhausted, "r")
			park(t, store, 10, dlq.ReasonUndecodable, "u")
			q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
			require.NoError(t, err)

			res, err := dlq.Replay(context.Background(), store, q, dlq.Filter{Reason: dlq.ReasonAttemptsExhausted})
			require.NoError(t, err)
			require.Equal(t, dlq.ReplayResult{Replayed: n}, res)
			require.Equal(t, n, q.Stats().Ready)
			left, err := store.Count(context.Background(), dlq.Filter{})
			require.NoError(t, err)
			require.Equal(t, 10, left, "entries outside the filter stay parked")

			res, err = dlq.Replay(context.Background(), store, q, dlq.Filter{Reason: dlq.ReasonAttemptsExhausted})
			require.NoError(t, err)
			require.Equal(t, dlq.ReplayResult{}, res, "a second replay enqueues nothing")
			require.Equal(t, n, q.Stats().Ready)

			var mu sync.Mutex
			seen := map[string]int{}
			var handled atomic.Int32
			done := make(chan struct{})
			dedupe, err := idempotency.Middleware(idempotency.Options{Store: idempotency.NewMemoryStore(), Logger: quiet})
			require.NoError(t, err)
			h := dedupe(consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
				mu.Lock()
				seen[m.ID]++
				mu.Unlock()
				if m.Attempt != 1 || string(m.Body) != m.ID || m.Headers["trace"] != m.ID || m.Key != "k"+m.ID {
					return consumer.Permanent(fmt.Errorf("replayed message %q arrived changed: %+v", m.ID, m))
				}
				if handled.Add(1) == n {
					close(done)
				}
				return nil
			}))
			c, err := consumer.New(q, h, consumer.Config{Logger: quiet})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- c.Run(ctx) }()
			<-done
			cancel()
			require.NoError(t, <-errc)
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, seen, n)
			for id, k := range seen {
				require.Equal(t, 1, k, "message %s", id)
			}
			require.Equal(t, consumer.MemQueueStats{}, q.Stats())
		})
	}
}

// TestConcurrentReplays: replays running at once publish every entry once
// between them.
func TestConcurrentReplays(t *testing.T) {
	for name, newStore := range replayStores() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			const n, replays = 300, 4
			store := newStore(t)
			park(t, store, n, dlq.ReasonPermanent, "c")
			q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
			require.NoError(t, err)
			var wg sync.WaitGroup
			results := make([]dlq.ReplayResult, replays)
			errs := make([]error, replays)
			for i := range replays {
				wg.Go(func() {
					results[i], errs[i] = dlq.Replay(context.Background(), store, q, dlq.Filter{})
				})
			}
			wg.Wait()
			replayed := 0
			for i, r := range results {
				require.NoError(t, errs[i])
				replayed += r.Replayed
			}
			require.Equal(t, n, replayed)
			require.Equal(t, n, q.Stats().Ready, "each entry enqueued once")
		})
	}
}

// failAfter is a publisher that fails from its n+1-th call on.
type failAfter struct {
	consumer.Publisher
	n atomic.Int32
}

func (p *failAfter) Publish(ctx context.Context, msgs ...consumer.Message) error {
	if p.n.Add(-1) < 0 {
		return errors.New("broker down")
	}
	return p.Publisher.Publish(ctx, msgs...)
}

// TestReplayPublishFailure: a failed publish stops the replay, keeps the
// entry parked and free for the next replay.
func TestReplayPublishFailure(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	park(t, store, 5, dlq.ReasonPermanent, "f")
	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	require.NoError(t, err)
	pub := &failAfter{Publisher: q}
	pub.n.Store(2)
	res, err := dlq.Replay(context.Background(), store, pub, dlq.Filter{})
	require.Error(t, err)
	require.Equal(t, dlq.ReplayResult{Replayed: 2}, res)
	left, err := store.Count(context.Background(), dlq.Filter{})
	require.NoError(t, err)
	require.Equal(t, 3, left)

	res, err = dlq.Replay(context.Background(), store, q, dlq.Filter{})
	require.NoError(t, err)
	require.Equal(t, dlq.ReplayResult{Replayed: 3}, res, "the failed entry was not left reserved")
	require.Equal(t, 5, q.Stats().Ready)
}
