package otel_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/idempotency"
	idemqotel "github.com/idemq/idemq/observe/otel"
)

func newMeter(t *testing.T) (*sdkmetric.MeterProvider, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return mp, reader
}

// point is one data point: a sum's value or a histogram's count.
type point struct {
	kind      string // "counter", "updown" or "histogram"
	value     float64
	sum       float64 // histograms
	unit      string
	bounds    []float64
	monotonic bool
}

func collect(t *testing.T, reader *sdkmetric.ManualReader, attrs ...attribute.KeyValue) map[string]point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	want := attribute.NewSet(attrs...)
	out := map[string]point{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range data.DataPoints {
					if dp.Attributes.Equals(&want) {
						kind := "updown"
						if data.IsMonotonic {
							kind = "counter"
						}
						out[m.Name] = point{kind: kind, value: float64(dp.Value), unit: m.Unit, monotonic: data.IsMonotonic}
					}
				}
			case metricdata.Histogram[float64]:
				for _, dp := range data.DataPoints {
					if dp.Attributes.Equals(&want) {
						out[m.Name] = point{kind: "histogram", value: float64(dp.Count), sum: dp.Sum, unit: m.Unit, bounds: dp.Bounds}
					}
				}
			default:
				t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out
}

// tee forwards to an Observer and closes done once processed reaches
// total.
type tee struct {
	consumer.Observer
	processed atomic.Int64
	total     int64
	done      chan struct{}
}

func (t *tee) Count(name string, delta int64) {
	t.Observer.Count(name, delta)
	if name == consumer.MetricProcessed && t.processed.Add(delta) == t.total {
		close(t.done)
	}
}

// A real run: a consumer on a MemQueue behind the dlq and idempotency
// middleware, with flaky and poison messages and duplicates. The
// collected metrics must show exactly what happened.
func TestMetricsAfterRun(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mp, reader := newMeter(t)
	obs, err := idemqotel.NewObserver(mp.Meter("test"), idemqotel.ObserverOptions{})
	require.NoError(t, err)
	queue := attribute.String("messaging.destination.name", "orders")
	orders := obs.With(queue)

	const (
		unique     = 10
		duplicates = 3 // m0, m1 and m2 again
		flaky      = 2 // m3 and m4 fail their first delivery
		maxAttempt = 3 // m5 always fails: parked on delivery 3
	)
	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	require.NoError(t, err)
	var msgs []consumer.Message
	for i := range unique {
		msgs = append(msgs, consumer.Message{ID: fmt.Sprintf("m%d", i), Body: []byte("body")})
	}
	msgs = append(msgs, msgs[:duplicates]...)
	require.NoError(t, q.Publish(ctx, msgs...))

	var deliveries atomic.Int64
	h := consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		switch {
		case msg.ID == "m5":
			return errors.New("poison")
		case (msg.ID == "m3" || msg.ID == "m4") && msg.Attempt == 1:
			return errors.New("flaky")
		}
		return nil
	})
	counting := func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
			deliveries.Add(1)
			return next.Handle(ctx, msg)
		})
	}
	parked, err := dlq.NewMemoryStore(dlq.MemoryOptions{})
	require.NoError(t, err)
	park, err := dlq.Middleware(dlq.Options{Sink: parked, MaxAttempts: maxAttempt, Observer: orders, Logger: quiet})
	require.NoError(t, err)
	dedupe, err := idempotency.Middleware(idempotency.Options{Store: idempotency.NewMemoryStore(), Observer: orders, Logger: quiet})
	require.NoError(t, err)

	acked := int64(unique + duplicates)
	run := &tee{Observer: orders, total: acked, done: make(chan struct{})}
	c, err := consumer.New(q, consumer.Chain(counting, park, dedupe)(h), consumer.Config{
		MaxInFlight: 1, // originals finish before their duplicates are fetched
		Backoff:     consumer.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond},
		Observer:    run,
		Logger:      quiet,
	})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- c.Run(runCtx) }()
	select {
	case <-run.done:
	case <-ctx.Done():
		t.Fatal("run did not finish")
	}
	stop()
	require.NoError(t, <-errc)

	retries := int64(flaky + (maxAttempt - 1))
	require.Equal(t, acked+retries, deliveries.Load())
	n, err := parked.Count(ctx, dlq.Filter{})
	require.NoError(t, err)
	require.Equal(t, 1, n)

	got := collect(t, reader, queue)
	for name, want := range map[string]point{
		"idemq.processed":                {kind: "counter", value: float64(acked)},
		"idemq.retries_total":            {kind: "counter", value: float64(retries)},
		"idemq.dead_lettered":            {kind: "counter", value: float64(n)},
		"idemq.duplicates_skipped":       {kind: "counter", value: duplicates},
		"idemq.consumer_inflight":        {kind: "updown", value: 0},
		"idemq.handler_duration_seconds": {kind: "histogram", value: float64(deliveries.Load())},
		"idemq.queue_lag_seconds":        {kind: "histogram", value: float64(deliveries.Load())},
	} {
		p, ok := got[name]
		require.True(t, ok, name)
		require.Equal(t, want.kind, p.kind, name)
		require.Equal(t, want.value, p.value, name)
	}
	require.Equal(t, "s", got["idemq.handler_duration_seconds"].unit)
	require.Equal(t, idemqotel.DefaultBuckets, got["idemq.handler_duration_seconds"].bounds)
	_, ok := got["idemq.lease_lost"]
	require.False(t, ok)
}

func TestObserverKindsAndNames(t *testing.T) {
	t.Parallel()
	mp, reader := newMeter(t)
	obs, err := idemqotel.NewObserver(mp.Meter("test"), idemqotel.ObserverOptions{
		Prefix:  "app",
		Gauges:  []string{"stock_display_level"},
		Buckets: []float64{1, 2, 3},
	})
	require.NoError(t, err)

	obs.Count("circuit_open", 1)
	obs.Count("circuit_open", 1)
	obs.Count("circuit_open", -1)
	obs.Count("outbox_pending", 5)
	obs.Count("stock_display_level", 7) // a gauge by Options.Gauges
	obs.Count("stock_reserved", 2)      // unknown: a counter
	obs.Count("stock_reserved", -5)     // ignored: counters only go up
	obs.Count("stock sold out", 1)      // sanitized
	obs.Observe("outbox_lag", 2*time.Second)
	obs.Observe("outbox_lag", -time.Second) // recorded as 0

	got := collect(t, reader)
	for name, want := range map[string]point{
		"app.circuit_open":        {kind: "updown", value: 1},
		"app.outbox_pending":      {kind: "updown", value: 5},
		"app.stock_display_level": {kind: "updown", value: 7},
		"app.stock_reserved":      {kind: "counter", value: 2},
		"app.stock_sold_out":      {kind: "counter", value: 1},
		"app.outbox_lag":          {kind: "histogram", value: 2},
	} {
		p, ok := got[name]
		require.True(t, ok, name)
		require.Equal(t, want.kind, p.kind, name)
		require.Equal(t, want.value, p.value, name)
	}
	require.Equal(t, 2.0, got["app.outbox_lag"].sum)
	require.Equal(t, []float64{1, 2, 3}, got["app.outbox_lag"].bounds)
}

func TestObserverWith(t *testing.T) {
	t.Parallel()
	mp, reader := newMeter(t)
	obs, err := idemqotel.NewObserver(mp.Meter("test"), idemqotel.ObserverOptions{})
	require.NoError(t, err)
	orders := obs.With(attribute.String("queue", "orders"))
	orders0 := orders.With(attribute.Int("partition", 0))
	moved := orders0.With(attribute.String("queue", "payments")) // later wins

	obs.Count(consumer.MetricProcessed, 1)
	orders.Count(consumer.MetricProcessed, 2)
	orders0.Count(consumer.MetricProcessed, 3)
	moved.Count(consumer.MetricProcessed, 4)

	require.Equal(t, 1.0, collect(t, reader)["idemq.processed"].value)
	require.Equal(t, 2.0, collect(t, reader, attribute.String("queue", "orders"))["idemq.processed"].value)
	require.Equal(t, 3.0, collect(t, reader, attribute.String("queue", "orders"), attribute.Int("partition", 0))["idemq.processed"].value)
	require.Equal(t, 4.0, collect(t, reader, attribute.String("queue", "payments"), attribute.Int("partition", 0))["idemq.processed"].value)
}

func TestNewObserverValidates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts idemqotel.ObserverOptions
		want string
	}{
		{"prefix", idemqotel.ObserverOptions{Prefix: "1st"}, "invalid Prefix"},
		{"prefix chars", idemqotel.ObserverOptions{Prefix: "my app"}, "invalid Prefix"},
		{"buckets", idemqotel.ObserverOptions{Buckets: []float64{2, 1}}, "strictly increasing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := idemqotel.NewObserver(nil, tc.opts)
			require.ErrorContains(t, err, tc.want)
		})
	}
	obs, err := idemqotel.NewObserver(nil, idemqotel.ObserverOptions{}) // the global meter
	require.NoError(t, err)
	obs.Count(consumer.MetricProcessed, 1)
}

func TestObserverConcurrent(t *testing.T) {
	t.Parallel()
	mp, reader := newMeter(t)
	obs, err := idemqotel.NewObserver(mp.Meter("test"), idemqotel.ObserverOptions{})
	require.NoError(t, err)
	const workers, each = 8, 1000
	var wg sync.WaitGroup
	for w := range workers {
		child := obs.With(attribute.Int("queue", w%2))
		wg.Go(func() {
			for range each {
				child.Count(consumer.MetricProcessed, 1)
				child.Count(consumer.MetricInflight, 1)
				child.Count(consumer.MetricInflight, -1)
				child.Observe(consumer.MetricHandlerDuration, time.Millisecond)
			}
		})
	}
	wg.Wait()
	for q := range 2 {
		got := collect(t, reader, attribute.Int("queue", q))
		require.Equal(t, float64(workers/2*each), got["idemq.processed"].value)
		require.Equal(t, 0.0, got["idemq.consumer_inflight"].value)
		require.Equal(t, float64(workers/2*each), got["idemq.handler_duration_seconds"].value)
	}
}
