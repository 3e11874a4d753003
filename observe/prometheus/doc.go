// Package prometheus exports the metrics of the idemq packages to
// Prometheus.
//
// It is a module of its own (github.com/idemq/idemq/observe/prometheus),
// so that programs that do not import it do not depend on
// github.com/prometheus/client_golang. Its package name clashes with
// client_golang's; import it under another name:
//
//	import idemqprom "github.com/idemq/idemq/observe/prometheus"
//
// # Usage
//
// [New] returns an [Observer], a consumer.Observer. Give it to the
// consumer and to every middleware that takes an Observer:
//
//	obs, err := idemqprom.New(prometheus.DefaultRegisterer, idemqprom.Options{
//		LabelNames: []string{"queue"},
//	})
//	orders, err := obs.With(prometheus.Labels{"queue": "orders"})
//	c, err := consumer.New(src, h, consumer.Config{Observer: orders})
//	dedupe, err := idempotency.Middleware(idempotency.Options{Store: store, Observer: orders})
//
// Then serve the registry as usual, with promhttp.Handler().
//
// # Metrics
//
// The names follow the idemq packages' Metric constants, under the
// namespace "idemq": Count on a gauge name ([DefaultGauges], such as
// consumer_inflight) is a Gauge; Count on any other name is a Counter
// with the suffix "_total" (idemq_processed_total, idemq_retries_total,
// idemq_dead_lettered_total, idemq_duplicates_skipped_total); Observe is a
// Histogram in seconds (idemq_handler_duration_seconds,
// idemq_queue_lag_seconds). Instruments are registered the first time
// their name is reported, so names this package does not know work too,
// and a metric is absent until its first event.
//
// # What it does not do
//
// Counters only go up: a negative Count on a counter name is ignored, not
// exported. A metric that cannot be registered (its name is taken by a
// different collector) is logged once and dropped; reporting never fails
// or panics.
package prometheus
