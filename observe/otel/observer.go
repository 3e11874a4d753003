package otel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/idemq/idemq/backpressure"
	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/idempotency"
)

// ScopeName is the instrumentation scope of the meter and tracer used when
// none is given.
const ScopeName = "github.com/idemq/idemq/observe/otel"

// DefaultGauges are the names whose Count deltas are levels that go up and
// down rather than events. Every other name given to Count is a counter.
var DefaultGauges = []string{
	consumer.MetricInflight,              // consumer_inflight
	backpressure.MetricAdmissionInflight, // admission_inflight
	backpressure.MetricConcurrencyLimit,  // concurrency_limit
	backpressure.MetricBreakerState,      // circuit_open
	"outbox_pending",                     // package outbox
}

// DefaultBuckets are the histogram bounds, in seconds, used when
// ObserverOptions.Buckets is empty. The SDK's own default bounds (0 to
// 10000) suit milliseconds, not seconds. They reach five minutes because
// queue lag is often counted in minutes when a consumer falls behind.
var DefaultBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// descriptions describe the names the idemq packages report.
var descriptions = map[string]string{
	consumer.MetricInflight:               "Deliveries the consumer holds (fetched and not yet settled).",
	consumer.MetricProcessed:              "Messages acknowledged.",
	consumer.MetricRetries:                "Messages nacked for redelivery.",
	consumer.MetricLeaseLost:              "Deliveries whose lease was lost while held.",
	consumer.MetricFetchErrors:            "Failed fetches from the source.",
	consumer.MetricHandlerDuration:        "Duration of handler calls.",
	consumer.MetricQueueLag:               "Time from a message's first publication to the start of its handling.",
	idempotency.MetricDuplicatesSkipped:   "Deliveries acknowledged without running the handler because their key was already completed.",
	dlq.MetricDeadLettered:                "Messages parked in the dead-letter queue.",
	dlq.MetricDeadLetterFailures:          "Parkings that failed; the message stayed on its queue.",
	backpressure.MetricAdmissionRejects:   "Calls rejected by a limiter.",
	backpressure.MetricAdmissionInflight:  "Calls holding an admission slot.",
	backpressure.MetricConcurrencyLimit:   "An adaptive limiter's current concurrency limit.",
	backpressure.MetricBackpressureDrops:  "Calls an adaptive limiter counted as drops.",
	backpressure.MetricBreakerState:       "Circuit breakers currently open.",
	backpressure.MetricBreakerTransitions: "Circuit breaker state changes.",
	backpressure.MetricBreakerRejects:     "Calls rejected by an open circuit breaker.",
}

// ObserverOptions configures [NewObserver]. Zero fields take the
// documented defaults.
type ObserverOptions struct {
	// Prefix is put in front of every instrument name, followed by a dot
	// ("idemq.processed"). Default "idemq".
	Prefix string

	// Buckets are the explicit histogram bounds, in seconds, strictly
	// increasing. Default [DefaultBuckets]. A view configured in the SDK
	// takes precedence.
	Buckets []float64

	// Gauges names more Count names to record as gauges, in addition to
	// [DefaultGauges].
	Gauges []string
}

// Observer records the counts and durations of the idemq packages with
// OpenTelemetry instruments, created the first time a name is reported, so
// names this package does not know (those of newer packages, or your own)
// work too:
//
//   - Count on a gauge name ([DefaultGauges], ObserverOptions.Gauges)
//     adds delta to an Int64UpDownCounter named prefix.name;
//   - Count on any other name adds delta to an Int64Counter named
//     prefix.name. Counters only go up: a negative delta on a counter name
//     is ignored;
//   - Observe records the duration in seconds (unit "s") in a
//     Float64Histogram named prefix.name. A negative duration, from
//     clocks that disagree, is recorded as 0.
//
// Characters not allowed in instrument names become '_'. An instrument the
// meter refuses is reported to otel.Handle and dropped; reporting never
// fails or panics.
//
// An Observer is safe for concurrent use. Measurements carry no trace
// context: the consumer.Observer interface has no context to give.
type Observer struct {
	s       *instruments
	set     attribute.Set
	addOpts []metric.AddOption
	recOpts []metric.RecordOption
}

var _ consumer.Observer = (*Observer)(nil)

// instruments holds what an Observer and its children share.
type instruments struct {
	meter   metric.Meter
	o       ObserverOptions
	gauges  map[string]bool
	mu      sync.Mutex // serializes creation
	counts  sync.Map   // name → counter
	records sync.Map   // name → metric.Float64Histogram
}

// adder is what Int64Counter and Int64UpDownCounter have in common.
type adder interface {
	Add(ctx context.Context, incr int64, options ...metric.AddOption)
}

type counter struct {
	add       adder
	monotonic bool
}

// NewObserver returns an Observer that creates its instruments with meter
// (default otel.Meter([ScopeName])). It validates opts.
func NewObserver(meter metric.Meter, opts ObserverOptions) (*Observer, error) {
	if meter == nil {
		meter = otel.Meter(ScopeName)
	}
	if opts.Prefix == "" {
		opts.Prefix = "idemq"
	}
	if !validName(opts.Prefix) {
		return nil, fmt.Errorf("otel: invalid Prefix %q", opts.Prefix)
	}
	if len(opts.Buckets) == 0 {
		opts.Buckets = DefaultBuckets
	}
	for i := 1; i < len(opts.Buckets); i++ {
		if !(opts.Buckets[i] > opts.Buckets[i-1]) {
			return nil, errors.New("otel: Buckets must be strictly increasing")
		}
	}
	opts.Buckets = slices.Clone(opts.Buckets)
	gauges := make(map[string]bool, len(DefaultGauges)+len(opts.Gauges))
	for _, g := range DefaultGauges {
		gauges[g] = true
	}
	for _, g := range opts.Gauges {
		gauges[g] = true
	}
	return &Observer{s: &instruments{meter: meter, o: opts, gauges: gauges}, set: *attribute.EmptySet()}, nil
}

// With returns an Observer whose measurements carry attrs in addition to
// this Observer's, for instance attribute.String("messaging.destination.name",
// "orders"). It shares this Observer's instruments.
func (o *Observer) With(attrs ...attribute.KeyValue) *Observer {
	// Later attributes win over earlier ones with the same key.
	set := attribute.NewSet(append(o.set.ToSlice(), attrs...)...)
	opt := metric.WithAttributeSet(set)
	return &Observer{s: o.s, set: set, addOpts: []metric.AddOption{opt}, recOpts: []metric.RecordOption{opt}}
}

// Count adds delta to the counter or up-down counter called name; see
// [Observer].
func (o *Observer) Count(name string, delta int64) {
	c, ok := o.s.counts.Load(name)
	if !ok {
		c = o.s.counter(name)
	}
	cc := c.(counter)
	if cc.monotonic && delta < 0 {
		return
	}
	cc.add.Add(context.Background(), delta, o.addOpts...)
}

// Observe records d in seconds in the histogram called name; see
// [Observer].
func (o *Observer) Observe(name string, d time.Duration) {
	h, ok := o.s.records.Load(name)
	if !ok {
		h = o.s.histogram(name)
	}
	h.(metric.Float64Histogram).Record(context.Background(), max(d, 0).Seconds(), o.recOpts...)
}

func (s *instruments) counter(name string) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.counts.Load(name); ok {
		return c
	}
	full := s.o.Prefix + "." + sanitize(name)
	desc := metric.WithDescription(describe(name))
	var c counter
	var err error
	if s.gauges[name] {
		c.add, err = s.meter.Int64UpDownCounter(full, desc)
	} else {
		c.monotonic = true
		c.add, err = s.meter.Int64Counter(full, desc)
	}
	if err != nil {
		// Meters return a usable instrument with the error; report it.
		otel.Handle(fmt.Errorf("otel: instrument %s: %w", full, err))
	}
	if c.add == nil {
		c.add = noop.Int64Counter{}
	}
	s.counts.Store(name, c)
	return c
}

func (s *instruments) histogram(name string) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.records.Load(name); ok {
		return h
	}
	full := s.o.Prefix + "." + sanitize(name)
	h, err := s.meter.Float64Histogram(full,
		metric.WithDescription(describe(name)),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(s.o.Buckets...))
	if err != nil {
		otel.Handle(fmt.Errorf("otel: instrument %s: %w", full, err))
	}
	if h == nil {
		h = noop.Float64Histogram{}
	}
	s.records.Store(name, h)
	return h
}

func describe(name string) string {
	if d, ok := descriptions[name]; ok {
		return d
	}
	return "idemq " + name + "."
}

// sanitize maps name to the instrument name syntax: characters other than
// [A-Za-z0-9_./-] become '_'.
func sanitize(name string) string {
	if name == "" {
		return "unnamed"
	}
	return strings.Map(func(c rune) rune {
		if validChar(c) {
			return c
		}
		return '_'
	}, name)
}

func validChar(c rune) bool {
	return c == '_' || c == '.' || c == '/' || c == '-' ||
		'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// validName reports whether s can start an instrument name: a letter, then
// instrument name characters.
func validName(s string) bool {
	if s == "" || !('a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z') {
		return false
	}
	for _, c := range s {
		if !validChar(c) {
			return false
		}
	}
	return true
}
