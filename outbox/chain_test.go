package outbox_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/outbox"
)

// TestChainOneEffect runs the whole chain: events enqueued in committed
// and rolled-back transactions, relayed at least once (here: every batch
// published twice, as a relay that retries after a lost acknowledgement
// would), consumed with the idempotency middleware. Each committed event
// has exactly one effect, and rolled-back ones none: by message ID, or, on
// a broker that replaces message IDs, by the HeaderID header.
func TestChainOneEffect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		keepIDs  bool
		keyFunc  idempotency.KeyFunc
		relayOpt outbox.Options
	}{
		{"message ID", true, idempotency.KeyFromID, outbox.Options{Notify: true, PollInterval: 50 * time.Millisecond}},
		{"header", false, idempotency.KeyFromHeader(outbox.HeaderID), outbox.Options{PollInterval: 20 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const events = 40
			ctx := t.Context()
			pool, w := newOutbox(t, tc.relayOpt)
			for i := range events {
				tx, err := pool.Begin(ctx)
				require.NoError(t, err)
				require.NoError(t, w.Enqueue(ctx, tx, outbox.Message{
					ID:   fmt.Sprintf("order-%02d-paid", i),
					Key:  fmt.Sprintf("order-%02d", i%7),
					Body: []byte(fmt.Sprintf(`{"order":%d}`, i)),
				}))
				if i%4 == 3 {
					require.NoError(t, tx.Rollback(ctx))
					continue
				}
				require.NoError(t, tx.Commit(ctx))
			}
			committed := events - events/4

			q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
			require.NoError(t, err)
			twice := outbox.PublisherFunc(func(ctx context.Context, _ string, msgs ...consumer.Message) error {
				if !tc.keepIDs {
					msgs = append([]consumer.Message(nil), msgs...)
					for i := range msgs {
						msgs[i].ID = "" // the broker makes up its own
					}
				}
				if err := q.Publish(ctx, msgs...); err != nil {
					return err
				}
				return q.Publish(ctx, msgs...)
			})
			runRelay(t, pool, twice, tc.relayOpt)

			var (
				mu      sync.Mutex
				effects = map[string]int{}
				total   int
			)
			runCtx, stop := context.WithTimeout(ctx, 30*time.Second)
			defer stop()
			dedupe, err := idempotency.Middleware(idempotency.Options{Store: idempotency.NewMemoryStore(), Key: tc.keyFunc})
			require.NoError(t, err)
			obs := newCounter()
			c, err := consumer.New(q, dedupe(consumer.HandlerFunc(func(_ context.Context, m *consumer.Message) error {
				mu.Lock()
				defer mu.Unlock()
				effects[m.Headers[outbox.HeaderID]]++
				total++
				return nil
			})), consumer.Config{MaxInFlight: 8, Observer: obs, Logger: quietLogger()})
			require.NoError(t, err)
			done := make(chan error, 1)
			go func() { done <- c.Run(runCtx) }()
			// Every event twice: the second of each is a skipped duplicate.
			require.Eventually(t, func() bool {
				return obs.get(consumer.MetricProcessed) == int64(2*committed)
			}, 30*time.Second, 5*time.Millisecond)
			stop()
			require.NoError(t, <-done)

			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, committed, total, "effects")
			require.Len(t, effects, committed)
			for i := range events {
				id := fmt.Sprintf("order-%02d-paid", i)
				if i%4 == 3 {
					require.Zero(t, effects[id], "rolled back %s had an effect", id)
				} else {
					require.Equal(t, 1, effects[id], "event %s", id)
				}
			}
		})
	}
}
