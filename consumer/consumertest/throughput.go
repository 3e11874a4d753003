package consumertest

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
)

// ThroughputConfig describes a run of [Throughput].
type ThroughputConfig struct {
	// Publisher publishes the messages to the queue the Sources consume.
	Publisher consumer.Publisher

	// Sources are Sources of one queue, set up already where the driver
	// has a setup step, so that the timer does not count it. Throughput
	// runs a Consumer on each.
	Sources []consumer.Source

	// MaxInFlight is each Consumer's [consumer.Config.MaxInFlight].
	// Default 256.
	MaxInFlight int

	// Batch is how many messages each Publish carries. Default 500.
	Batch int

	// PublishFirst publishes every message before the Consumers start,
	// rather than while they run, and reports the two halves as well:
	// publish-msgs/s and consume-msgs/s.
	PublishFirst bool
}

// Throughput measures a driver end to end: it publishes b.N messages, in
// batches of cfg.Batch from one goroutine, while one [consumer.Consumer]
// per Source fetches them, handles them with a handler that does nothing
// and acknowledges them. The timer runs from the first publish to the last
// acknowledgement, and msgs/s is b.N over that time; stopping the Consumers
// afterwards is not counted. Run it with a fixed count, such as
// -benchtime 20000x, so that b.N messages are worth measuring.
func Throughput(b *testing.B, cfg ThroughputConfig) {
	b.Helper()
	require.NotEmpty(b, cfg.Sources, "consumertest: ThroughputConfig.Sources")
	require.NotNil(b, cfg.Publisher, "consumertest: ThroughputConfig.Publisher")
	batch := cmp.Or(cfg.Batch, 500)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	var acked atomic.Int64
	done := make(chan struct{})
	onAck := func(*consumer.Message) {
		if acked.Add(1) == int64(b.N) {
			close(done)
		}
	}
	h := consumer.HandlerFunc(func(context.Context, *consumer.Message) error { return nil })
	cs := make([]*consumer.Consumer, len(cfg.Sources))
	for i, src := range cfg.Sources {
		var err error
		cs[i], err = consumer.New(ackCounter{src, onAck}, h, consumer.Config{
			MaxInFlight: cmp.Or(cfg.MaxInFlight, 256), Logger: slog.New(slog.DiscardHandler),
		})
		require.NoError(b, err)
	}
	body := []byte(`{"order":12345,"status":"placed"}`)
	publish := func() error {
		msgs := make([]consumer.Message, 0, batch)
		for i := range b.N {
			msgs = append(msgs, consumer.Message{ID: fmt.Sprint("m", i), Key: "k", Body: body})
			if len(msgs) == batch || i == b.N-1 {
				if err := cfg.Publisher.Publish(ctx, msgs...); err != nil {
					if ctx.Err() != nil { // all acknowledged before the last Publish returned
						return nil
					}
					return fmt.Errorf("publish: %w", err)
				}
				msgs = msgs[:0]
			}
		}
		return nil
	}

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var published time.Time
	errs := make(chan error, len(cs)+1)
	if cfg.PublishFirst {
		require.NoError(b, publish())
		published = time.Now()
	} else {
		wg.Go(func() {
			if err := publish(); err != nil {
				errs <- err
			}
		})
	}
	for _, c := range cs {
		wg.Go(func() { errs <- c.Run(ctx) })
	}
	select {
	case <-done:
	case err := <-errs:
		b.Fatalf("stopped before the last acknowledgement: %v", err)
	}
	end := time.Now()
	b.StopTimer()
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
	b.ReportMetric(float64(b.N)/end.Sub(start).Seconds(), "msgs/s")
	if cfg.PublishFirst {
		b.ReportMetric(float64(b.N)/published.Sub(start).Seconds(), "publish-msgs/s")
		b.ReportMetric(float64(b.N)/end.Sub(published).Seconds(), "consume-msgs/s")
	}
}
