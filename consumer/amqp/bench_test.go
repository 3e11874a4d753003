package amqp_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/consumer/amqp"
)

// BenchmarkAMQP measures the driver end to end: one goroutine publishes
// b.N messages in batches of 500 (each batch waits for its publisher
// confirms) while four Consumers, each on a Source of its own (prefetch and
// MaxInFlight 256), fetch, handle with a no-op handler and acknowledge
// them. The timer covers everything from the first publish to the last
// acknowledgement; msgs/s is b.N over that time.
func BenchmarkAMQP(b *testing.B) {
	const (
		consumers   = 4
		maxInFlight = 256
		batch       = 500
	)
	url := amqp.BrokerURL(b)
	q := amqp.TempQueue(b, url)
	pub, err := amqp.NewPublisher(amqp.PublisherOptions{URL: url, Queue: q})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := pub.Setup(ctx); err != nil {
		b.Fatal(err)
	}

	var acked atomic.Int64
	total := int64(b.N)
	done := make(chan struct{})
	onAck := func(*consumer.Message) {
		if acked.Add(1) == total {
			close(done)
		}
	}
	h := consumer.HandlerFunc(func(context.Context, *consumer.Message) error { return nil })
	cs := make([]*consumer.Consumer, consumers)
	for i := range cs {
		src, err := amqp.New(amqp.Options{URL: url, Queue: q, Prefetch: maxInFlight})
		if err != nil {
			b.Fatal(err)
		}
		defer src.Close()
		if err := src.Setup(ctx); err != nil {
			b.Fatal(err)
		}
		cs[i], err = consumer.New(ackCounter{src, onAck}, h, consumer.Config{
			MaxInFlight: maxInFlight, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	body := []byte(`{"order":12345,"status":"placed"}`)
	msgs := make([]consumer.Message, 0, batch)

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, consumers+1)
	for _, c := range cs {
		wg.Go(func() { errs <- c.Run(ctx) })
	}
	wg.Go(func() {
		for i := 0; i < b.N; i++ {
			msgs = append(msgs, consumer.Message{ID: fmt.Sprint("m", i), Key: "k", Body: body})
			if len(msgs) == batch || i == b.N-1 {
				if err := pub.Publish(ctx, msgs...); err != nil {
					if ctx.Err() == nil { // not the last confirm outrun by the last ack
						errs <- err
					}
					return
				}
				msgs = msgs[:0]
			}
		}
	})
	select {
	case <-done:
	case err := <-errs:
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
