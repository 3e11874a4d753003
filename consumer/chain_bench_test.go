package consumer_test

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/idempotency"
)

// BenchmarkChain runs the full middleware chain on the in-memory queue:
// DLQ (memory store), Recover, idempotency (memory store) and Retry around
// a no-op handler. b.N distinct messages are published before the timer
// starts.
func BenchmarkChain(b *testing.B) {
	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]consumer.Message, 0, 1024)
	for i := 0; i < b.N; i++ {
		batch = append(batch, consumer.Message{ID: "msg-" + strconv.Itoa(i), Body: []byte(`{"amount":42}`)})
		if len(batch) == cap(batch) || i == b.N-1 {
			if err := q.Publish(context.Background(), batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	quiet := slog.New(slog.DiscardHandler)
	store, err := dlq.NewMemoryStore(dlq.MemoryOptions{})
	if err != nil {
		b.Fatal(err)
	}
	park, err := dlq.Middleware(dlq.Options{Sink: store, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	dedupe, err := idempotency.Middleware(idempotency.Options{Store: idempotency.NewMemoryStore(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	retry, err := consumer.Retry(consumer.RetryOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var handled atomic.Int64
	total := int64(b.N)
	done := make(chan struct{})
	h := consumer.Chain(park, consumer.Recover, dedupe, retry)(consumer.HandlerFunc(
		func(context.Context, *consumer.Message) error {
			if handled.Add(1) == total {
				close(done)
			}
			return nil
		}))
	c, err := consumer.New(q, h, consumer.Config{MaxInFlight: 256, Concurrency: 8, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	<-done
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
