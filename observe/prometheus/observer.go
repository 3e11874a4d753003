package prometheus

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idemq/idemq/backpressure"
	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/idempotency"
)

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
// Options.Buckets is empty: prometheus.DefBuckets extended to five minutes,
// because queue lag is often counted in minutes when a consumer falls
// behind.
var DefaultBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// help describes the names the idemq packages report; other names get a
// generic help string.
var help = map[string]string{
	consumer.MetricInflight:               "Deliveries the consumer holds (fetched and not yet settled).",
	consumer.MetricProcessed:              "Messages acknowledged.",
	consumer.MetricRetries:                "Messages nacked for redelivery.",
	consumer.MetricLeaseLost:              "Deliveries whose lease was lost while held.",
	consumer.MetricFetchErrors:            "Failed fetches from the source.",
	consumer.MetricHandlerDuration:        "Duration of handler calls, in seconds.",
	consumer.MetricQueueLag:               "Time from a message's first publication to the start of its handling, in seconds.",
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

// Options configures [New]. Zero fields take the documented defaults.
type Options struct {
	// Namespace is the prefix of every metric name ("idemq_processed_total").
	// Default "idemq".
	Namespace string

	// ConstLabels are attached to every metric.
	ConstLabels prometheus.Labels

	// LabelNames declares the variable labels, such as "queue", whose
	// values [Observer.With] sets. The Observer New returns reports them
	// empty.
	LabelNames []string

	// Buckets are the histogram upper bounds, in seconds, strictly
	// increasing. Default [DefaultBuckets].
	Buckets []float64

	// Gauges names more Count names to export as gauges, in addition to
	// [DefaultGauges].
	Gauges []string

	// Logger receives, once per name, a metric that could not be
	// registered (usually a name clash with another collector); that
	// metric is then dropped. Default slog.Default().
	Logger *slog.Logger
}

// Observer exports the counts and durations of the idemq packages as
// Prometheus metrics. Instruments are created and registered lazily, the
// first time a name is reported, so names this package does not know
// (those of newer packages, or your own) work too:
//
//   - Count on a gauge name ([DefaultGauges], Options.Gauges) adds delta to
//     a Gauge named namespace_name;
//   - Count on any other name adds delta to a Counter named
//     namespace_name_total ("_total" is not doubled). Counters only go
//     up: a negative delta on a counter name is ignored;
//   - Observe records the duration in seconds in a Histogram named
//     namespace_name_seconds ("_seconds" is not doubled). A negative
//     duration, from clocks that disagree, is recorded as 0.
//
// Characters not allowed in metric names become '_'. A metric appears once
// its name is first reported, not before.
//
// An Observer is safe for concurrent use. After the first report of a name
// it costs a map lookup and an atomic add.
type Observer struct {
	r        *registry
	values   []string // label values, in Options.LabelNames order
	counts   sync.Map // name → func(int64)
	observes sync.Map // name → prometheus.Observer
}

var _ consumer.Observer = (*Observer)(nil)

// registry holds what an Observer and its children share.
type registry struct {
	reg    prometheus.Registerer
	o      Options
	gauges map[string]bool

	mu      sync.Mutex
	vecs    map[string]any // metric name → *CounterVec, *GaugeVec, *HistogramVec or nil (dropped)
	dropped map[string]bool
}

// New returns an Observer that registers its metrics with reg (default
// prometheus.DefaultRegisterer). It validates opts.
//
// Two Observers with the same options may share a registry: the second
// reuses the first one's metrics.
func New(reg prometheus.Registerer, opts Options) (*Observer, error) {
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	if opts.Namespace == "" {
		opts.Namespace = "idemq"
	}
	if !validName(opts.Namespace) {
		return nil, fmt.Errorf("prometheus: invalid Namespace %q", opts.Namespace)
	}
	for name := range opts.ConstLabels {
		if !validLabel(name) {
			return nil, fmt.Errorf("prometheus: invalid const label name %q", name)
		}
	}
	for i, name := range opts.LabelNames {
		switch {
		case !validLabel(name):
			return nil, fmt.Errorf("prometheus: invalid label name %q", name)
		case slices.Contains(opts.LabelNames[:i], name):
			return nil, fmt.Errorf("prometheus: duplicate label name %q", name)
		}
		if _, ok := opts.ConstLabels[name]; ok {
			return nil, fmt.Errorf("prometheus: label %q is both constant and variable", name)
		}
	}
	if len(opts.Buckets) == 0 {
		opts.Buckets = DefaultBuckets
	}
	for i := 1; i < len(opts.Buckets); i++ {
		if !(opts.Buckets[i] > opts.Buckets[i-1]) {
			return nil, errors.New("prometheus: Buckets must be strictly increasing")
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.LabelNames = slices.Clone(opts.LabelNames)
	opts.Buckets = slices.Clone(opts.Buckets)

	gauges := make(map[string]bool, len(DefaultGauges)+len(opts.Gauges))
	for _, g := range DefaultGauges {
		gauges[g] = true
	}
	for _, g := range opts.Gauges {
		gauges[g] = true
	}
	r := &registry{reg: reg, o: opts, gauges: gauges, vecs: make(map[string]any)}
	return &Observer{r: r, values: make([]string, len(opts.LabelNames))}, nil
}

// With returns an Observer whose metrics carry labels, which must be among
// Options.LabelNames; labels not given keep this Observer's values. It
// shares this Observer's metrics: give each consumer and middleware of one
// queue the same child, for instance With(prometheus.Labels{"queue":
// "orders"}).
func (o *Observer) With(labels prometheus.Labels) (*Observer, error) {
	values := slices.Clone(o.values)
	for name, v := range labels {
		i := slices.Index(o.r.o.LabelNames, name)
		if i < 0 {
			return nil, fmt.Errorf("prometheus: label %q is not in Options.LabelNames", name)
		}
		values[i] = v
	}
	return &Observer{r: o.r, values: values}, nil
}

// Count adds delta to the gauge or counter called name; see [Observer].
func (o *Observer) Count(name string, delta int64) {
	add, ok := o.counts.Load(name)
	if !ok {
		add, _ = o.counts.LoadOrStore(name, o.r.adder(name, o.values))
	}
	add.(func(int64))(delta)
}

// Observe records d in seconds in the histogram called name; see
// [Observer].
func (o *Observer) Observe(name string, d time.Duration) {
	h, ok := o.observes.Load(name)
	if !ok {
		h, _ = o.observes.LoadOrStore(name, o.r.observer(name, o.values))
	}
	h.(prometheus.Observer).Observe(max(d, 0).Seconds())
}

func (r *registry) adder(name string, values []string) func(int64) {
	if r.gauges[name] {
		fq := prometheus.BuildFQName(r.o.Namespace, "", sanitize(name))
		vec := r.vec(fq, func() prometheus.Collector {
			return prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: fq, Help: helpFor(name), ConstLabels: r.o.ConstLabels,
			}, r.o.LabelNames)
		})
		if vec == nil {
			return func(int64) {} // logged by vec
		}
		g, ok := vec.(*prometheus.GaugeVec)
		if !ok {
			return r.drop(fq, fmt.Errorf("a different collector is registered under %s", fq))
		}
		m, err := g.GetMetricWithLabelValues(values...)
		if err != nil {
			return r.drop(fq, err)
		}
		return func(delta int64) { m.Add(float64(delta)) }
	}
	fq := prometheus.BuildFQName(r.o.Namespace, "", withSuffix(sanitize(name), "_total"))
	vec := r.vec(fq, func() prometheus.Collector {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: fq, Help: helpFor(name), ConstLabels: r.o.ConstLabels,
		}, r.o.LabelNames)
	})
	if vec == nil {
		return func(int64) {}
	}
	c, ok := vec.(*prometheus.CounterVec)
	if !ok {
		return r.drop(fq, fmt.Errorf("a different collector is registered under %s", fq))
	}
	m, err := c.GetMetricWithLabelValues(values...)
	if err != nil {
		return r.drop(fq, err)
	}
	return func(delta int64) {
		if delta > 0 {
			m.Add(float64(delta))
		}
	}
}

func (r *registry) observer(name string, values []string) prometheus.Observer {
	fq := prometheus.BuildFQName(r.o.Namespace, "", withSuffix(sanitize(name), "_seconds"))
	vec := r.vec(fq, func() prometheus.Collector {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: fq, Help: helpFor(name), ConstLabels: r.o.ConstLabels, Buckets: r.o.Buckets,
		}, r.o.LabelNames)
	})
	if vec == nil {
		return nopObserver{}
	}
	h, ok := vec.(*prometheus.HistogramVec)
	if !ok {
		r.drop(fq, fmt.Errorf("a different collector is registered under %s", fq))
		return nopObserver{}
	}
	m, err := h.GetMetricWithLabelValues(values...)
	if err != nil {
		r.drop(fq, err)
		return nopObserver{}
	}
	return m
}

// vec returns the collector registered under fq, creating and registering
// it on first use. It returns nil when registration failed, after logging
// it once.
func (r *registry) vec(fq string, create func() prometheus.Collector) any {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.vecs[fq]; ok {
		return v
	}
	c := create()
	if err := r.reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			c = are.ExistingCollector // another Observer with the same options
		} else {
			r.o.Logger.Error("prometheus: cannot register metric; dropping it",
				slog.String("metric", fq), slog.Any("error", err))
			c = nil
		}
	}
	r.vecs[fq] = c
	return c
}

func (r *registry) drop(fq string, err error) func(int64) {
	r.mu.Lock()
	logged := r.dropped[fq]
	if r.dropped == nil {
		r.dropped = make(map[string]bool)
	}
	r.dropped[fq] = true
	r.mu.Unlock()
	if !logged {
		r.o.Logger.Error("prometheus: cannot use metric; dropping it",
			slog.String("metric", fq), slog.Any("error", err))
	}
	return func(int64) {}
}

type nopObserver struct{}

func (nopObserver) Observe(float64) {}

func helpFor(name string) string {
	if h, ok := help[name]; ok {
		return h
	}
	return "idemq " + name + "."
}

func withSuffix(name, suffix string) string {
	if strings.HasSuffix(name, suffix) {
		return name
	}
	return name + suffix
}

// sanitize maps name to a valid metric name: characters other than
// [a-zA-Z0-9_:] become '_'. A leading digit is fine: the namespace comes
// first.
func sanitize(name string) string {
	if name == "" {
		return "unnamed"
	}
	return strings.Map(func(c rune) rune {
		if c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			return c
		}
		return '_'
	}, name)
}

func validName(s string) bool {
	for i, c := range s {
		ok := c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9'
		if !ok {
			return false
		}
	}
	return s != ""
}

// validLabel reports whether s is a label name in the classic character
// set, not reserved ("__" prefix).
func validLabel(s string) bool {
	return validName(s) && !strings.Contains(s, ":") && !strings.HasPrefix(s, "__")
}
