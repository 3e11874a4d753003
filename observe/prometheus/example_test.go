package prometheus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/idemq/idemq/consumer"
	idemqprom "github.com/idemq/idemq/observe/prometheus"
)

// A consumer reports to Prometheus with a queue label. One message fails
// once and is redelivered; the scrape shows three messages acked, one
// retry and four handler calls.
func ExampleNew() {
	reg := prometheus.NewRegistry() // or prometheus.DefaultRegisterer
	obs, err := idemqprom.New(reg, idemqprom.Options{LabelNames: []string{"queue"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	orders, err := obs.With(prometheus.Labels{"queue": "orders"})
	if err != nil {
		fmt.Println(err)
		return
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q, err := consumer.NewMemQueue(consumer.MemQueueConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = q.Publish(ctx,
		consumer.Message{ID: "order-1"},
		consumer.Message{ID: "order-2"},
		consumer.Message{ID: "order-3"},
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	done := 0
	h := consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		if msg.ID == "order-2" && msg.Attempt == 1 {
			return errors.New("payment service unavailable")
		}
		if done++; done == 3 {
			cancel() // Run drains and returns
		}
		return nil
	})
	c, err := consumer.New(q, h, consumer.Config{
		MaxInFlight: 1,
		Backoff:     consumer.Backoff{Initial: time.Millisecond},
		Observer:    orders,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Run(ctx); err != nil {
		fmt.Println(err)
		return
	}

	mfs, err := reg.Gather() // what a scrape of promhttp.HandlerFor(reg, …) shows
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				fmt.Printf("%s{queue=%q} %g\n", mf.GetName(), m.GetLabel()[0].GetValue(), m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				fmt.Printf("%s{queue=%q} %g\n", mf.GetName(), m.GetLabel()[0].GetValue(), m.GetGauge().GetValue())
			case dto.MetricType_HISTOGRAM:
				fmt.Printf("%s_count{queue=%q} %d\n", mf.GetName(), m.GetLabel()[0].GetValue(), m.GetHistogram().GetSampleCount())
			}
		}
	}

	// Output:
	// idemq_consumer_inflight{queue="orders"} 0
	// idemq_handler_duration_seconds_count{queue="orders"} 4
	// idemq_processed_total{queue="orders"} 3
	// idemq_queue_lag_seconds_count{queue="orders"} 4
	// idemq_retries_total{queue="orders"} 1
}
