package consumer_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemq/idemq/consumer"
)

// BenchmarkRuntime measures the runtime's own cost: b.N messages are
// published to the in-memory queue before the timer starts, then a consumer
// with a no-op handler fetches, handles and acks them all.
func BenchmarkRuntime(b *testing.B) {
	for _, tc := range []struct {
		name    string
		ordered bool
	}{{"unordered", false}, {"by-key", true}} {
		b.Run(tc.name, func(b *testing.B) {
			q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
			if err != nil {
				b.Fatal(err)
			}
			msgs := make([]consumer.Message, 0, 1024)
			for i := 0; i < b.N; i++ {
				msgs = append(msgs, consumer.Message{ID: fmt.Sprint(i), Key: fmt.Sprint(i % 64), Body: []byte("x")})
				if len(msgs) == cap(msgs) || i == b.N-1 {
					if err := q.Publish(context.Background(), msgs...); err != nil {
						b.Fatal(err)
					}
					msgs = msgs[:0]
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var handled atomic.Int64
			total := int64(b.N)
			done := make(chan struct{})
			h := consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
				if handled.Add(1) == total {
					close(done)
				}
				return nil
			})
			c, err := consumer.New(q, h, consumer.Config{
				MaxInFlight: 256, Concurrency: 8, OrderByKey: tc.ordered,
				Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				b.Fatal(err)
			}
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
		})
	}
}

// BenchmarkRuntimePublishing also counts the publishing side: a publisher
// goroutine enqueues b.N messages in batches of 256 while the consumer
// drains them.
func BenchmarkRuntimePublishing(b *testing.B) {
	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handled atomic.Int64
	total := int64(b.N)
	done := make(chan struct{})
	c, err := consumer.New(q, consumer.HandlerFunc(func(context.Context, *consumer.Message) error {
		if handled.Add(1) == total {
			close(done)
		}
		return nil
	}), consumer.Config{MaxInFlight: 256, Concurrency: 8, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	body := []byte("x")
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	go func() {
		batch := make([]consumer.Message, 0, 256)
		for i := 0; i < b.N; i++ {
			batch = append(batch, consumer.Message{ID: "m", Body: body})
			if len(batch) == cap(batch) || i == b.N-1 {
				if err := q.Publish(ctx, batch...); err != nil {
					b.Error(err)
					return
				}
				batch = batch[:0]
			}
		}
	}()
	<-done
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
