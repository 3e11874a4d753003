package consumer

import "time"

// Observer receives counts and durations from the runtime and middleware,
// under the metric names listed below (and those other packages document).
// Adapters turn them into Prometheus or OpenTelemetry instruments; the
// observer an adapter returns usually carries fixed labels, such as the
// queue's name. Implementations must be safe for concurrent use and fast:
// they are called on every message.
type Observer interface {
	// Count adds delta to the counter or gauge called name.
	Count(name string, delta int64)
	// Observe records one duration sample for name.
	Observe(name string, d time.Duration)
}

// Metric names the Consumer reports.
const (
	MetricInflight        = "consumer_inflight"        // gauge: deliveries held
	MetricProcessed       = "processed"                // counter: messages acked
	MetricRetries         = "retries_total"            // counter: messages nacked for redelivery
	MetricLeaseLost       = "lease_lost"               // counter: deliveries whose lease was lost
	MetricFetchErrors     = "fetch_errors"             // counter: failed fetches
	MetricHandlerDuration = "handler_duration_seconds" // durations of handler calls
	MetricQueueLag        = "queue_lag_seconds"        // durations from EnqueuedAt to the handler's start
)

// NopObserver discards everything.
type NopObserver struct{}

// Count does nothing.
func (NopObserver) Count(string, int64) {}

// Observe does nothing.
func (NopObserver) Observe(string, time.Duration) {}

var _ Observer = NopObserver{}
