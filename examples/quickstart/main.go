// Command quickstart runs a consumer on the in-memory queue, with no
// servers: a stream of orders in which one fails transiently, one panics
// and one asks to be retried later, and every order is still handled.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemq/idemq/consumer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	queue, err := consumer.NewMemQueue(consumer.MemQueueConfig{VisibilityTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	const orders = 10
	msgs := make([]consumer.Message, orders)
	for i := range msgs {
		msgs[i] = consumer.Message{
			ID:   fmt.Sprintf("order-%d", i+1),
			Key:  fmt.Sprintf("customer-%d", i%3),
			Body: fmt.Appendf(nil, `{"order":%d,"amount":%d}`, i+1, 10*(i+1)),
		}
	}
	if err := queue.Publish(ctx, msgs...); err != nil {
		return err
	}

	var (
		calls     atomic.Int64 // handler invocations, retries included
		panicked  atomic.Bool
		throttled atomic.Bool
		flaky     atomic.Int64
		mu        sync.Mutex
		done      = map[string]int{} // order ID -> delivery that handled it
		finished  = make(chan struct{})
	)
	handle := consumer.HandlerFunc(func(ctx context.Context, m *consumer.Message) error {
		calls.Add(1)
		switch m.ID {
		case "order-4":
			// A dependency that drops the first two calls: the Retry
			// middleware absorbs it within the same delivery.
			if flaky.Add(1) <= 2 {
				return errors.New("payment service: connection reset")
			}
		case "order-7":
			// A bug that bites once: the panic is recovered, the message
			// is nacked and comes back as attempt 2.
			if panicked.CompareAndSwap(false, true) {
				panic("nil map write in tax calculation")
			}
		case "order-9":
			// A rate-limited partner says when to come back.
			if throttled.CompareAndSwap(false, true) {
				return consumer.RetryAfter(200*time.Millisecond, errors.New("partner: 429 too many requests"))
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if _, seen := done[m.ID]; !seen {
			done[m.ID] = m.Attempt
			if len(done) == orders {
				close(finished)
			}
		}
		return nil
	})

	retry, err := consumer.Retry(consumer.RetryOptions{MaxAttempts: 3, Initial: 10 * time.Millisecond, MaxElapsed: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	c, err := consumer.New(queue, consumer.Chain(consumer.Recover, retry)(handle), consumer.Config{
		MaxInFlight: 8,
		OrderByKey:  true,
		Backoff:     consumer.Backoff{Initial: 50 * time.Millisecond, Max: time.Second},
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		return err
	}

	start := time.Now()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(runCtx) }()
	select {
	case <-finished:
	case <-ctx.Done():
		return fmt.Errorf("orders still pending after %s: %w", time.Since(start).Round(time.Millisecond), ctx.Err())
	}
	stop()
	if err := <-errc; err != nil {
		return err
	}

	mu.Lock()
	defer mu.Unlock()
	fmt.Printf("handled %d of %d orders in %s\n", len(done), orders, time.Since(start).Round(time.Millisecond))
	fmt.Printf("  handler calls:        %d (%d extra)\n", calls.Load(), calls.Load()-orders)
	fmt.Printf("  order-4 (flaky):      ok after %d calls in delivery %d (in-process retry)\n", flaky.Load(), done["order-4"])
	fmt.Printf("  order-7 (panic):      ok on delivery %d (panic recovered, redelivered)\n", done["order-7"])
	fmt.Printf("  order-9 (throttled):  ok on delivery %d (redelivered after Retry-After)\n", done["order-9"])
	stats := queue.Stats()
	fmt.Printf("queue now: %d ready, %d delayed, %d leased\n", stats.Ready, stats.Delayed, stats.Leased)
	if len(done) != orders || stats != (consumer.MemQueueStats{}) {
		return errors.New("some orders were not acknowledged")
	}
	return nil
}
