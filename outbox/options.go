package outbox

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/idemq/idemq/consumer"

	"github.com/idemq/idemq/internal/pgschema"
)

// Defaults of [Options].
const (
	DefaultTable           = "idemq_outbox"
	DefaultLease           = 30 * time.Second
	DefaultPollInterval    = time.Second
	DefaultNotifyThrottle  = 10 * time.Millisecond
	DefaultBatchKeys       = 100
	DefaultBatchPerKey     = 100
	DefaultBatchUnkeyed    = 500
	DefaultConcurrency     = 16
	DefaultMaxAttempts     = 10
	DefaultCleanupInterval = time.Minute
	DefaultStatsInterval   = 10 * time.Second
)

// FailurePolicy says what a [Relay] does with an event that keeps failing
// to publish.
type FailurePolicy int

const (
	// Skip moves an event that failed MaxAttempts times (or once, with a
	// [consumer.Permanent] error) to the failed table and goes on with its
	// key's later events: the key is not blocked, but that one event is
	// out of order if it is ever requeued. It is the default.
	Skip FailurePolicy = iota
	// Block retries an event forever, with backoff, and its key waits:
	// order is kept at the cost of availability. The event is counted in
	// [MetricFailures] once, when it reaches MaxAttempts.
	Block
)

// Options configures the schema, a [Writer] and a [Relay]. Zero fields take
// the documented defaults. Give every Writer and Relay of one outbox the
// same Table (spelled the same way) and Notify; the other fields only
// matter to a Relay.
type Options struct {
	// Table names the events' table, "table" or "schema.table": lower-case
	// letters, digits and underscores, not starting with a digit. The other
	// relations are named after it (see the package documentation).
	// Default [DefaultTable].
	Table string

	// Notify makes Enqueue send a notification, delivered when its
	// transaction commits, and each Relay LISTEN for it on a connection of
	// its own, so that an event is relayed within milliseconds of its
	// commit rather than at the next poll. A relay that has just been busy
	// looks every NotifyThrottle for a second and says so, and writers do
	// not notify meanwhile, since notifying commits are serialised (see
	// Waking up in the package documentation). It needs a session that
	// outlives a transaction, so it does not work through PgBouncer in
	// transaction mode (polling still does). Default off.
	Notify bool

	// Lease is how long a Relay holds the keys (and unkeyed events) it
	// claimed, by the database's clock. A relay that dies holding them
	// loses them to another relay when the lease ends. Publishing a batch
	// is cut off at three quarters of the lease, so that a hung Publisher
	// does not outlive it. Default [DefaultLease].
	Lease time.Duration

	// PollInterval bounds how long an idle Relay sleeps before it looks for
	// events again. Polling is always on, with or without Notify. Default
	// [DefaultPollInterval].
	PollInterval time.Duration

	// NotifyThrottle is the least time between two wake-ups a Relay takes
	// from notifications; those in between are folded into one. Default
	// [DefaultNotifyThrottle]. Used only with Notify.
	NotifyThrottle time.Duration

	// BatchKeys bounds the keys a Relay claims at once, BatchPerKey the
	// events of one key it reads per claim, and BatchUnkeyed the events
	// without a key it claims at once. Defaults [DefaultBatchKeys],
	// [DefaultBatchPerKey], [DefaultBatchUnkeyed].
	BatchKeys, BatchPerKey, BatchUnkeyed int

	// Concurrency bounds the Publish calls a Relay makes at once: keys are
	// published in parallel, each key's events one call after the other.
	// Default [DefaultConcurrency].
	Concurrency int

	// MaxAttempts is how many failed publishes of one event the [Skip]
	// policy allows before it moves the event aside. Default
	// [DefaultMaxAttempts].
	MaxAttempts int

	// OnFailure chooses between [Skip] (the default) and [Block].
	OnFailure FailurePolicy

	// Backoff sets the delay before an event that failed to publish is
	// tried again, from its number of failed attempts. An error built
	// with [consumer.RetryAfter] sets the delay itself. Zero fields take
	// [consumer.Backoff]'s defaults (1s doubling to 5m, full jitter).
	Backoff consumer.Backoff

	// Retention keeps published events in the table, marked with the time
	// they were published, for this long; a Relay deletes them in batches
	// afterwards. Zero deletes an event as soon as it is published.
	Retention time.Duration

	// CleanupInterval is how often a Relay deletes expired published
	// events. Default [DefaultCleanupInterval].
	CleanupInterval time.Duration

	// StatsInterval is how often a Relay counts the pending events and
	// measures the oldest one's age for [MetricPending] and [MetricLag]. A
	// negative value turns this off: with several relays on one observer,
	// let one of them report. Default [DefaultStatsInterval].
	StatsInterval time.Duration

	// Observer receives the Metric* counts and durations. Default none.
	Observer consumer.Observer

	// Logger receives what a Relay carries on after: failed statements,
	// failed publishes, a broken LISTEN connection. Default slog.Default().
	Logger *slog.Logger
}

// table validates and returns the table name.
func (o Options) table() (pgschema.Name, error) {
	if o.Table == "" {
		o.Table = DefaultTable
	}
	return parseTable(o.Table)
}

// withDefaults fills in defaults, validates every field and returns the
// table name.
func (o Options) withDefaults() (Options, pgschema.Name, error) {
	t, err := o.table()
	if err != nil {
		return o, t, err
	}
	if o.Table == "" {
		o.Table = DefaultTable
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"Lease", o.Lease}, {"PollInterval", o.PollInterval}, {"NotifyThrottle", o.NotifyThrottle},
		{"Retention", o.Retention}, {"CleanupInterval", o.CleanupInterval},
	} {
		if d.v < 0 {
			return o, t, fmt.Errorf("outbox: negative %s %s", d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"BatchKeys", o.BatchKeys}, {"BatchPerKey", o.BatchPerKey}, {"BatchUnkeyed", o.BatchUnkeyed},
		{"Concurrency", o.Concurrency}, {"MaxAttempts", o.MaxAttempts},
	} {
		if n.v < 0 {
			return o, t, fmt.Errorf("outbox: negative %s %d", n.name, n.v)
		}
	}
	if o.OnFailure != Skip && o.OnFailure != Block {
		return o, t, fmt.Errorf("outbox: unknown FailurePolicy %d", o.OnFailure)
	}
	if err := validateBackoff(o.Backoff); err != nil {
		return o, t, err
	}
	setDefault(&o.Lease, DefaultLease)
	setDefault(&o.PollInterval, DefaultPollInterval)
	setDefault(&o.NotifyThrottle, DefaultNotifyThrottle)
	setDefault(&o.CleanupInterval, DefaultCleanupInterval)
	setDefault(&o.StatsInterval, DefaultStatsInterval)
	setDefault(&o.BatchKeys, DefaultBatchKeys)
	setDefault(&o.BatchPerKey, DefaultBatchPerKey)
	setDefault(&o.BatchUnkeyed, DefaultBatchUnkeyed)
	setDefault(&o.Concurrency, DefaultConcurrency)
	setDefault(&o.MaxAttempts, DefaultMaxAttempts)
	if o.Lease < 10*time.Millisecond {
		// Shorter leases end before a batch can be read and published.
		return o, t, fmt.Errorf("outbox: Lease %s is below 10ms", o.Lease)
	}
	if o.Observer == nil {
		o.Observer = consumer.NopObserver{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, t, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// validateBackoff refuses what [consumer.Backoff] would: its own check is
// unexported.
func validateBackoff(b consumer.Backoff) error {
	switch {
	case b.Initial < 0:
		return fmt.Errorf("outbox: negative backoff Initial %s", b.Initial)
	case b.Max < 0:
		return fmt.Errorf("outbox: negative backoff Max %s", b.Max)
	case b.Max > 0 && b.Initial > b.Max:
		return fmt.Errorf("outbox: backoff Initial %s exceeds Max %s", b.Initial, b.Max)
	case b.Multiplier != 0 && b.Multiplier < 1:
		return fmt.Errorf("outbox: backoff Multiplier %g is below 1", b.Multiplier)
	case b.Jitter < consumer.FullJitter || b.Jitter > consumer.NoJitter:
		return fmt.Errorf("outbox: unknown backoff Jitter %d", b.Jitter)
	}
	return nil
}

// channelName is the LISTEN/NOTIFY channel of an outbox: "outbox:<table>"
// with the table as given in Options, or, when that is longer than
// PostgreSQL's 63-byte limit on identifiers, "outbox:" and 32 hex digits of
// its SHA-256. Channels are per database, so tables of the same name in two
// schemas, spelled unqualified, share one: that costs spurious wake-ups,
// never lost ones.
func channelName(t pgschema.Name) string {
	name := "outbox:" + t.String()
	if len(name) <= pgschema.MaxIdentLen {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "outbox:" + hex.EncodeToString(sum[:16])
}
