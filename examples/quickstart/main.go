// Command quickstart runs a consumer on the in-memory queue, with no
// servers: a stream of orders in which one fails transiently, one panics,
// one asks to be retried later and three are delivered twice, and every
// order is still charged exactly once.
//
//	go run ./examples/quickstart
//
// The same stream runs on a real broker with -queue:
//
//	go run ./examples/quickstart -queue redis     # Redis Streams at -redis-addr
//	go run ./examples/quickstart -queue postgres  # a Postgres queue table at -postgres-url
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/idempotency"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.queue, "queue", "memory", "queue to run on: memory, redis or postgres")
	flag.StringVar(&cfg.redisAddr, "redis-addr", envOr("IDEMQ_REDIS_ADDR", "127.0.0.1:6379"), "Redis address for -queue redis")
	flag.StringVar(&cfg.postgresURL, "postgres-url", envOr("IDEMQ_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"), "Postgres URL for -queue postgres")
	flag.Parse()
	if err := run(os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type config struct {
	queue       string
	redisAddr   string
	postgresURL string
	name        string // stream or queue name; default one per run
}

func run(out io.Writer, cfg config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if cfg.name == "" {
		cfg.name = fmt.Sprintf("quickstart-%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	queue, err := openQueue(ctx, cfg)
	if err != nil {
		return err
	}
	defer queue.close()
	const orders = 10
	msgs := make([]consumer.Message, orders)
	for i := range msgs {
		msgs[i] = consumer.Message{
			ID:   fmt.Sprintf("order-%d", i+1),
			Key:  fmt.Sprintf("customer-%d", i%3),
			Body: fmt.Appendf(nil, `{"order":%d,"amount":%d}`, i+1, 10*(i+1)),
		}
	}
	// At-least-once brokers deliver some messages twice.
	dups := []consumer.Message{msgs[1], msgs[4], msgs[4]}
	if err := queue.pub.Publish(ctx, append(msgs, dups...)...); err != nil {
		return err
	}
	total := int64(len(msgs) + len(dups))

	var (
		calls     atomic.Int64 // handler invocations, retries included
		panicked  atomic.Bool
		throttled atomic.Bool
		flaky     atomic.Int64
		mu        sync.Mutex
		done      = map[string]int{} // order ID -> delivery that charged it
		charges   = map[string]int{} // order ID -> times charged
		finished  = make(chan struct{})
		obs       = &counter{total: total, done: finished}
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
		charges[m.ID]++
		done[m.ID] = m.Attempt
		return nil
	})

	retry, err := consumer.Retry(consumer.RetryOptions{MaxAttempts: 3, Initial: 10 * time.Millisecond, MaxElapsed: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	// Each order ID is claimed before the handler runs and completed after
	// it succeeds; a second delivery of a completed order is acked unseen.
	dedupe, err := idempotency.Middleware(idempotency.Options{
		Store:    idempotency.NewMemoryStore(),
		Observer: obs,
	})
	if err != nil {
		return err
	}
	c, err := consumer.New(queue.src, consumer.Chain(consumer.Recover, dedupe, retry)(handle), consumer.Config{
		MaxInFlight: 8,
		OrderByKey:  true,
		Backoff:     consumer.Backoff{Initial: 50 * time.Millisecond, Max: time.Second},
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Observer:    obs,
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
		return fmt.Errorf("messages still pending after %s: %w", time.Since(start).Round(time.Millisecond), ctx.Err())
	}
	stop()
	if err := <-errc; err != nil {
		return err
	}

	mu.Lock()
	defer mu.Unlock()
	once := true
	for _, n := range charges {
		once = once && n == 1
	}
	fmt.Fprintf(out, "charged %d of %d orders in %s, each exactly once: %t\n", len(charges), orders, time.Since(start).Round(time.Millisecond), once)
	fmt.Fprintf(out, "  messages acked:       %d (%d orders + %d duplicate deliveries)\n", obs.get(consumer.MetricProcessed), orders, len(dups))
	fmt.Fprintf(out, "  duplicates skipped:   %d\n", obs.get(idempotency.MetricDuplicatesSkipped))
	fmt.Fprintf(out, "  handler calls:        %d (%d extra)\n", calls.Load(), calls.Load()-orders)
	fmt.Fprintf(out, "  order-4 (flaky):      ok after %d calls in delivery %d (in-process retry)\n", flaky.Load(), done["order-4"])
	fmt.Fprintf(out, "  order-7 (panic):      ok on delivery %d (panic recovered, redelivered)\n", done["order-7"])
	fmt.Fprintf(out, "  order-9 (throttled):  ok on delivery %d (redelivered after Retry-After)\n", done["order-9"])
	left, err := queue.left(context.WithoutCancel(ctx))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s queue now holds %d messages\n", cfg.queue, left)
	if len(charges) != orders || !once || left != 0 {
		return errors.New("some orders were not charged exactly once")
	}
	return nil
}

// counter is a consumer.Observer that keeps counts and closes done once
// total messages have been acked.
type counter struct {
	mu     sync.Mutex
	counts map[string]int64
	total  int64
	done   chan struct{}
}

func (c *counter) Count(name string, delta int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int64{}
	}
	c.counts[name] += delta
	if name == consumer.MetricProcessed && c.counts[name] == c.total {
		close(c.done)
	}
}

func (c *counter) Observe(string, time.Duration) {}

func (c *counter) get(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[name]
}
