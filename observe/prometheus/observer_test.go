package prometheus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/idempotency"
	idemqprom "github.com/idemq/idemq/observe/prometheus"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// sample is the value of a counter or gauge, or the sample count of a
// histogram, with the given labels.
func sample(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount()), true
			default:
				t.Fatalf("%s: unexpected type %s", name, mf.GetType())
			}
		}
	}
	return 0, false
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func metricType(t *testing.T, g prometheus.Gatherer, name string) dto.MetricType {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetType()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
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
// middleware, with flaky and poison messages and duplicates. The scrape
// must show exactly what happened.
func TestScrapeAfterRun(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	reg := prometheus.NewPedanticRegistry()
	obs, err := idemqprom.New(reg, idemqprom.Options{LabelNames: []string{"queue"}})
	require.NoError(t, err)
	orders, err := obs.With(prometheus.Labels{"queue": "orders"})
	require.NoError(t, err)

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

	var calls, deliveries atomic.Int64
	h := consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		calls.Add(1)
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

	acked := int64(unique + duplicates) // parked messages are acked too
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
	require.Equal(t, int64(unique+flaky+(maxAttempt-1)), calls.Load())
	n, err := parked.Count(ctx, dlq.Filter{})
	require.NoError(t, err)
	require.Equal(t, 1, n)

	queue := map[string]string{"queue": "orders"}
	for name, want := range map[string]float64{
		"idemq_processed_total":          float64(acked),
		"idemq_retries_total":            float64(retries),
		"idemq_dead_lettered_total":      float64(n),
		"idemq_duplicates_skipped_total": duplicates,
		"idemq_handler_duration_seconds": float64(deliveries.Load()),
		"idemq_queue_lag_seconds":        float64(deliveries.Load()),
		"idemq_consumer_inflight":        0,
	} {
		got, ok := sample(t, reg, name, queue)
		require.True(t, ok, name)
		require.Equal(t, want, got, name)
	}
	require.Equal(t, dto.MetricType_GAUGE, metricType(t, reg, "idemq_consumer_inflight"))
	require.Equal(t, dto.MetricType_HISTOGRAM, metricType(t, reg, "idemq_handler_duration_seconds"))
	_, ok := sample(t, reg, "idemq_lease_lost_total", nil)
	require.False(t, ok, "a metric is absent until its first event")
}

func TestKindsAndNames(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	obs, err := idemqprom.New(reg, idemqprom.Options{
		Namespace:   "app",
		ConstLabels: prometheus.Labels{"service": "billing"},
		Gauges:      []string{"stock_display_level"},
	})
	require.NoError(t, err)

	obs.Count("circuit_open", 1)
	obs.Count("circuit_open", 1)
	obs.Count("circuit_open", -1)
	obs.Count("outbox_pending", 5)
	obs.Count("stock_display_level", 7) // a gauge by Options.Gauges
	obs.Count("stock_reserved", 2)      // unknown: a counter
	obs.Count("stock_reserved", -5)     // ignored: counters only go up
	obs.Count("retries_total", 1)       // "_total" not doubled
	obs.Count("stock.sold-out", 1)      // sanitized
	obs.Observe("outbox_lag", 2*time.Second)
	obs.Observe("outbox_lag", -time.Second) // recorded as 0
	obs.Observe("queue_lag_seconds", time.Millisecond)

	service := map[string]string{"service": "billing"}
	for _, tc := range []struct {
		name string
		typ  dto.MetricType
		want float64
	}{
		{"app_circuit_open", dto.MetricType_GAUGE, 1},
		{"app_outbox_pending", dto.MetricType_GAUGE, 5},
		{"app_stock_display_level", dto.MetricType_GAUGE, 7},
		{"app_stock_reserved_total", dto.MetricType_COUNTER, 2},
		{"app_retries_total", dto.MetricType_COUNTER, 1},
		{"app_stock_sold_out_total", dto.MetricType_COUNTER, 1},
		{"app_outbox_lag_seconds", dto.MetricType_HISTOGRAM, 2},
		{"app_queue_lag_seconds", dto.MetricType_HISTOGRAM, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := sample(t, reg, tc.name, service)
			require.True(t, ok)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.typ, metricType(t, reg, tc.name))
		})
	}

	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "app_outbox_lag_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			require.Equal(t, 2.0, h.GetSampleSum())
			require.Equal(t, uint64(1), h.GetBucket()[0].GetCumulativeCount(), "the negative duration lands in the first bucket as 0")
		}
	}
}

func TestWith(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	obs, err := idemqprom.New(reg, idemqprom.Options{LabelNames: []string{"queue", "partition"}})
	require.NoError(t, err)
	orders, err := obs.With(prometheus.Labels{"queue": "orders"})
	require.NoError(t, err)
	orders0, err := orders.With(prometheus.Labels{"partition": "0"})
	require.NoError(t, err)

	obs.Count(consumer.MetricProcessed, 1)
	orders.Count(consumer.MetricProcessed, 2)
	orders0.Count(consumer.MetricProcessed, 3)

	for _, tc := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"queue": "", "partition": ""}, 1},
		{map[string]string{"queue": "orders", "partition": ""}, 2},
		{map[string]string{"queue": "orders", "partition": "0"}, 3},
	} {
		got, ok := sample(t, reg, "idemq_processed_total", tc.labels)
		require.True(t, ok, tc.labels)
		require.Equal(t, tc.want, got, tc.labels)
	}

	_, err = obs.With(prometheus.Labels{"topic": "x"})
	require.ErrorContains(t, err, `label "topic" is not in Options.LabelNames`)
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts idemqprom.Options
		want string
	}{
		{"namespace", idemqprom.Options{Namespace: "my-app"}, "invalid Namespace"},
		{"const label", idemqprom.Options{ConstLabels: prometheus.Labels{"a b": "x"}}, "invalid const label name"},
		{"reserved label", idemqprom.Options{LabelNames: []string{"__name"}}, "invalid label name"},
		{"duplicate label", idemqprom.Options{LabelNames: []string{"queue", "queue"}}, "duplicate label name"},
		{"const and variable", idemqprom.Options{ConstLabels: prometheus.Labels{"queue": "x"}, LabelNames: []string{"queue"}}, "both constant and variable"},
		{"buckets", idemqprom.Options{Buckets: []float64{1, 1}}, "strictly increasing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := idemqprom.New(prometheus.NewRegistry(), tc.opts)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// Two Observers with the same options share one registry's metrics.
func TestSharedRegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	a, err := idemqprom.New(reg, idemqprom.Options{})
	require.NoError(t, err)
	b, err := idemqprom.New(reg, idemqprom.Options{})
	require.NoError(t, err)
	a.Count(consumer.MetricProcessed, 1)
	b.Count(consumer.MetricProcessed, 1)
	got, ok := sample(t, reg, "idemq_processed_total", nil)
	require.True(t, ok)
	require.Equal(t, 2.0, got)
}

// A name taken by a different collector is dropped, not a panic.
func TestClashIsDropped(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "idemq_processed_total", Help: "mine"}))
	obs, err := idemqprom.New(reg, idemqprom.Options{Logger: quiet})
	require.NoError(t, err)
	obs.Count(consumer.MetricProcessed, 1)
	obs.Count(consumer.MetricProcessed, 1)
	got, ok := sample(t, reg, "idemq_processed_total", nil)
	require.True(t, ok)
	require.Equal(t, 0.0, got, "the user's gauge is untouched")
}

func TestConcurrent(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	obs, err := idemqprom.New(reg, idemqprom.Options{LabelNames: []string{"queue"}})
	require.NoError(t, err)
	const workers, each = 8, 1000
	var wg sync.WaitGroup
	for w := range workers {
		child, err := obs.With(prometheus.Labels{"queue": fmt.Sprint(w % 2)})
		require.NoError(t, err)
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
	for _, q := range []string{"0", "1"} {
		labels := map[string]string{"queue": q}
		got, _ := sample(t, reg, "idemq_processed_total", labels)
		require.Equal(t, float64(workers/2*each), got)
		got, _ = sample(t, reg, "idemq_consumer_inflight", labels)
		require.Equal(t, 0.0, got)
		got, _ = sample(t, reg, "idemq_handler_duration_seconds", labels)
		require.Equal(t, float64(workers/2*each), got)
	}
}
