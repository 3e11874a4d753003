package pgqueue

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/idemq/idemq/internal/pgschema"
)

// Defaults of [Options].
const (
	DefaultTable             = "idemq_queue"
	DefaultQueue             = "default"
	DefaultVisibilityTimeout = 30 * time.Second
	DefaultPollInterval      = time.Second
	DefaultNotifyThrottle    = 20 * time.Millisecond
)

// Options configures a [Source], a [Publisher] and the schema. Zero fields
// take the documented defaults. A Source and the Publishers that feed it
// must agree on Table (spelled the same way), Queue and Notify.
type Options struct {
	// Table names the messages' table, "table" or "schema.table": lower-case
	// letters, digits and underscores, not starting with a digit. Its
	// lease-token sequence and fetch index are named after it. Default
	// [DefaultTable].
	Table string

	// Queue selects one logical queue among those sharing the table: a
	// Source fetches only the rows of its queue, a Publisher writes rows of
	// its queue. Any non-empty UTF-8 text without NUL bytes. Default
	// [DefaultQueue].
	Queue string

	// VisibilityTimeout is the lease a delivery gets from Fetch and from
	// each Extend, measured by the database's clock. Default
	// [DefaultVisibilityTimeout]. Publishers ignore it.
	VisibilityTimeout time.Duration

	// PollInterval bounds how long a Fetch on an empty queue sleeps before
	// it looks again. Polling is always on, with or without Notify, so a
	// Source behind PgBouncer in transaction mode, or one whose LISTEN
	// connection broke, still sees every message. A Fetch also wakes for
	// the earliest lease end or Nack delay it knows of, so those are not
	// rounded up to the poll interval. Default [DefaultPollInterval].
	// Publishers ignore it.
	PollInterval time.Duration

	// Notify turns on LISTEN/NOTIFY wake-ups: a Publisher sends a
	// notification on the queue's channel with each Publish (delivered
	// when its transaction commits), and a Source keeps one connection of
	// its pool for LISTEN, so that a Fetch waiting on an empty queue
	// wakes at once. It needs a session that outlives a transaction, so
	// it does not work through PgBouncer in transaction mode (polling
	// still does). Default off.
	Notify bool

	// NotifyThrottle is the least time between two wake-ups a Source takes
	// from notifications: those that arrive sooner are folded into one
	// wake-up at the end of the interval, so a burst of publishes costs
	// waiting consumers one query each, not one per message. Default
	// [DefaultNotifyThrottle]. Used only with Notify.
	NotifyThrottle time.Duration

	// Logger receives what a Source's background LISTEN loop carries on
	// after: a broken connection and its reconnection. Default
	// slog.Default(). Used only with Notify.
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
	if o.Queue == "" {
		o.Queue = DefaultQueue
	}
	if !pgschema.IsText(o.Queue) {
		return o, t, fmt.Errorf("pgqueue: Queue %q is not UTF-8 text without NUL bytes", o.Queue)
	}
	switch {
	case o.VisibilityTimeout < 0:
		return o, t, fmt.Errorf("pgqueue: negative VisibilityTimeout %s", o.VisibilityTimeout)
	case o.PollInterval < 0:
		return o, t, fmt.Errorf("pgqueue: negative PollInterval %s", o.PollInterval)
	case o.NotifyThrottle < 0:
		return o, t, fmt.Errorf("pgqueue: negative NotifyThrottle %s", o.NotifyThrottle)
	}
	if o.VisibilityTimeout == 0 {
		o.VisibilityTimeout = DefaultVisibilityTimeout
	}
	if o.VisibilityTimeout < time.Millisecond {
		// Shorter leases end before a round trip to the database does.
		return o, t, fmt.Errorf("pgqueue: VisibilityTimeout %s is below 1ms", o.VisibilityTimeout)
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.NotifyThrottle == 0 {
		o.NotifyThrottle = DefaultNotifyThrottle
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, t, nil
}

// channelName is the LISTEN/NOTIFY channel of a table's queue:
// "pgqueue:<table>:<queue>" with the table as given in Options, or, when
// that is longer than PostgreSQL's 63-byte limit on identifiers,
// "pgqueue:" and 32 hex digits of its SHA-256. Channels are per database,
// so tables of the same name in two schemas, spelled unqualified, share
// one: that costs spurious wake-ups, never lost ones.
func channelName(t pgschema.Name, queue string) string {
	name := "pgqueue:" + t.String() + ":" + queue
	if len(name) <= pgschema.MaxIdentLen {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "pgqueue:" + hex.EncodeToString(sum[:16])
}
