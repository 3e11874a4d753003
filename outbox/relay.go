package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/internal/pglisten"
	"github.com/idemq/idemq/internal/pgschema"
)

// Metric names a Relay reports.
const (
	MetricPending       = "outbox_pending"        // gauge: events not yet published, as last counted (see Options.StatsInterval)
	MetricLag           = "outbox_lag_seconds"    // durations: age of the oldest event not yet published, as last measured
	MetricPublished     = "outbox_published"      // counter: events published (a republished event counts again)
	MetricFailures      = "outbox_failures"       // counter: events given up on and moved to the failed table; under Block, events that reached MaxAttempts
	MetricPublishErrors = "outbox_publish_errors" // counter: Publish calls that failed
)

// ErrRunning is returned by [Relay.Run] when the relay is already running.
var ErrRunning = errors.New("outbox: relay already running")

const (
	// unkeyedChunk bounds the events without a key given to one Publish
	// call, so that they are published in parallel.
	unkeyedChunk = 100

	// cleanupBatch bounds the expired events one cleanup statement
	// deletes.
	cleanupBatch = 1000

	// maxErrorLen bounds the error text stored with a failed event.
	maxErrorLen = 2000

	// awakeLinger is how long a relay with Notify goes on looking for
	// events every NotifyThrottle after it last found some or was
	// notified, and promises so to the writers, which do not notify
	// meanwhile. awakeMargin is how much of that promise must be left for
	// a writer to rely on it: the time its transaction has from Enqueue
	// to commit for its events to be seen at once anyway.
	awakeLinger = time.Second
	awakeMargin = awakeLinger / 2
)

// Relay publishes the events of an outbox through a [Publisher]. Any number
// of relays, in any number of processes, may run on one outbox together.
// See the package documentation for what it guarantees.
type Relay struct {
	pool    *pgxpool.Pool
	pub     Publisher
	opts    Options
	q       queries
	leaseUS int64
	channel string // "" without Notify

	wake    pglisten.Waker
	running atomic.Bool

	pending int64 // the MetricPending gauge's value, owned by maintain
}

// NewRelay returns a Relay that publishes the events of the outbox opts
// describes, from pool, through pub. Run [Migrate] first, once.
func NewRelay(pool *pgxpool.Pool, pub Publisher, opts Options) (*Relay, error) {
	if pool == nil {
		return nil, errors.New("outbox: nil pool")
	}
	if pub == nil {
		return nil, errors.New("outbox: nil Publisher")
	}
	o, t, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Relay{
		pool:    pool,
		pub:     pub,
		opts:    o,
		q:       newQueries(t, o.Notify, o.Retention > 0),
		leaseUS: pgschema.Micros(o.Lease),
	}
	if o.Notify {
		r.channel = channelName(t)
	}
	return r, nil
}

// Run relays events until ctx is done. It claims a batch, publishes it,
// records the outcome and starts again at once while there is work; when
// there is none it sleeps until a notification (with [Options.Notify]) or
// the poll interval. Alongside, it deletes expired published events and
// reports the Metric* statistics.
//
// Once claimed, a batch is published and recorded even if ctx ends
// meanwhile: Run returns after that, and after its background work has
// stopped, with nil. Failed statements do not stop it: it logs them and
// tries again with backoff (100ms doubling to 10s). A Relay runs once at a
// time; a second concurrent Run returns [ErrRunning].
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)
	if ctx.Err() != nil {
		return nil
	}

	mctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.maintain(mctx) })
	defer func() {
		stop()
		wg.Wait()
	}()
	if r.channel != "" {
		// Waited on before the listener starts, so that its first wake-up,
		// once it listens, is never lost: a relay always looks, and
		// lingers, once it listens.
		r.wake.Wait()
		lis := pglisten.Start(r.pool, pglisten.Config{
			Channel:  r.channel,
			Throttle: r.opts.NotifyThrottle,
			Logger:   r.opts.Logger,
			Name:     "outbox",
			Owner:    "Relay",
			Wake:     r.wake.Wake,
		})
		defer lis.Stop()
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var (
		failures int
		// With Notify: activity (events found, a notification) makes the
		// relay look every NotifyThrottle until active; it promises the
		// writers to do so until promised (see Options.Notify).
		active, promised time.Time
	)
	linger := func() {
		if r.channel != "" {
			active = time.Now().Add(awakeLinger)
		}
	}
	for ctx.Err() == nil {
		// Taken before looking, so that a wake-up that comes while we
		// look is not lost.
		wake := r.wake.Wait()
		now := time.Now()
		advertise := active.After(promised.Add(awakeLinger / 4))
		full, found, err := r.cycle(ctx, advertise)
		if err == nil && advertise {
			promised = now.Add(awakeLinger)
		}
		if found {
			linger()
		}
		var wait time.Duration
		switch {
		case err != nil:
			failures++
			wait = pglisten.RetryDelay(failures) // the LISTEN loop's backoff serves the batches too
			wake = nil                           // back off, whatever is announced
			r.opts.Logger.LogAttrs(ctx, slog.LevelError, "outbox: relay batch failed",
				slog.Any("error", err), slog.Duration("retry_in", wait))
		case full:
			failures = 0
			continue // there is probably more
		default:
			// A batch that was not full took everything there was: wait
			// for the next notification, which comes at most once per
			// NotifyThrottle, or while lingering for the end of that
			// interval, so that a busy outbox is relayed in batches
			// rather than an event per round trip.
			failures = 0
			wait = r.opts.PollInterval
			// Keep the promise: look until it ends, and once after.
			if d := time.Until(later(active, promised.Add(r.opts.NotifyThrottle))); d > 0 {
				wait = min(r.opts.NotifyThrottle, d)
			}
		}
		timer.Reset(wait)
		select {
		case <-wake:
			linger()
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// event is one claimed event.
type event struct {
	id, seq     int64 // seq is 0 without a key
	token       int64 // the event's own lease, without a key
	attempts    int   // failed publishes before this claim
	destination string
	msg         consumer.Message
}

// lane is one claimed key and its events, in seq order.
type lane struct {
	key       string
	token     int64
	published int64 // published_seq when claimed
	events    []event
}

// cycle claims a batch, publishes it and records the outcome; with
// advertise, it also promises that this relay stays awake (see
// Options.Notify). It reports whether the batch was full (a claim that took
// as many keys, events of a key or events without a key as it could), and
// whether it found any event.
func (r *Relay) cycle(ctx context.Context, advertise bool) (full, found bool, err error) {
	// A batch, once claimed, is seen through whatever happens to ctx:
	// abandoning it would leave its leases to run out, and its published
	// events to be published again. Every step is bounded instead.
	bctx := context.WithoutCancel(ctx)
	start := time.Now() // before the claim: the lease ends after start+Lease
	cctx, cancel := context.WithTimeout(bctx, r.opts.Lease)
	lanes, singles, err := r.claim(cctx, advertise)
	cancel()
	if err != nil {
		return false, false, err
	}
	if len(lanes) == 0 && len(singles) == 0 {
		return false, false, nil
	}
	full = len(lanes) == r.opts.BatchKeys || len(singles) == r.opts.BatchUnkeyed
	found = len(singles) > 0
	for _, l := range lanes {
		full = full || len(l.events) == r.opts.BatchPerKey
		found = found || len(l.events) > 0
	}

	// Publishing stops at three quarters of the lease, leaving the rest to
	// record the outcome before another relay may claim the same keys.
	pctx, cancel := context.WithDeadline(bctx, start.Add(r.opts.Lease*3/4))
	var out outcome
	r.publishAll(pctx, lanes, singles, &out)
	cancel()

	actx, cancel := context.WithTimeout(bctx, max(r.opts.Lease, 10*time.Second))
	defer cancel()
	return full, found, r.record(actx, &out)
}

// claim leases keys with their pending events, and events without a key,
// in one round trip.
func (r *Relay) claim(ctx context.Context, advertise bool) ([]*lane, []event, error) {
	var (
		lanes   []*lane
		singles []event
		b       pgx.Batch
	)
	if advertise {
		b.Queue(r.q.advertise, pgschema.Micros(awakeLinger))
	}
	b.Queue(r.q.claimKeys, r.opts.BatchKeys, r.leaseUS, r.opts.BatchPerKey).Query(func(rows pgx.Rows) error {
		var (
			key              string
			token, published int64
			id, seq          pgtype.Int8
			msgID, dest      pgtype.Text
			body             []byte
			headers          map[string]string
			enqueued         pgtype.Timestamptz
			attempts         pgtype.Int4
			cur              *lane
		)
		_, err := pgx.ForEachRow(rows, []any{&key, &token, &published, &id, &seq, &msgID, &dest, &body, &headers, &enqueued, &attempts}, func() error {
			if cur == nil || cur.key != key {
				cur = &lane{key: key, token: token, published: published}
				lanes = append(lanes, cur)
			}
			if id.Valid {
				cur.events = append(cur.events, newEvent(id.Int64, seq.Int64, 0, int(attempts.Int32),
					msgID.String, key, dest.String, body, headers, enqueued.Time))
			}
			body, headers = nil, nil // scanned into fresh values for the next row
			return nil
		})
		return err
	})
	b.Queue(r.q.claimUnkeyed, r.opts.BatchUnkeyed, r.leaseUS).Query(func(rows pgx.Rows) error {
		var (
			id, token   int64
			msgID, dest string
			body        []byte
			headers     map[string]string
			enqueued    time.Time
			attempts    int32
		)
		_, err := pgx.ForEachRow(rows, []any{&id, &token, &msgID, &dest, &body, &headers, &enqueued, &attempts}, func() error {
			singles = append(singles, newEvent(id, 0, token, int(attempts), msgID, "", dest, body, headers, enqueued))
			body, headers = nil, nil
			return nil
		})
		return err
	})
	if err := r.pool.SendBatch(ctx, &b).Close(); err != nil {
		// The statements may have committed before reading their rows
		// failed; the leases they took then end on their own.
		return nil, nil, fmt.Errorf("outbox: claim: %w", err)
	}
	slices.SortFunc(singles, func(a, b event) int { return cmp.Compare(a.id, b.id) })
	return lanes, singles, nil
}

func newEvent(id, seq, token int64, attempts int, msgID, key, dest string, body []byte, headers map[string]string, enqueued time.Time) event {
	if headers == nil {
		headers = make(map[string]string, 1)
	}
	headers[HeaderID] = msgID
	return event{
		id:          id,
		seq:         seq,
		token:       token,
		attempts:    attempts,
		destination: dest,
		msg: consumer.Message{
			ID:         msgID,
			Key:        key,
			Body:       body,
			Headers:    headers,
			EnqueuedAt: enqueued,
		},
	}
}

// outcome collects what publishing a batch did, for record.
type outcome struct {
	mu sync.Mutex

	// Keys: how far each got, and when it may be claimed again.
	laneKeys                         []string
	laneTokens, laneSeqs, laneDelays []int64

	// Events without a key that were published.
	doneIDs, doneTokens []int64

	// Events to move to the failed table, and events to try again.
	move, retry []failure

	published, publishErrors, blocked int
}

type failure struct {
	id, token int64
	attempts  int
	err       string
	delay     int64 // microseconds; only used for events without a key
}

// publishAll publishes the claimed keys and events, at most
// Options.Concurrency Publish calls at a time.
func (r *Relay) publishAll(ctx context.Context, lanes []*lane, singles []event, out *outcome) {
	var items []func()
	for _, l := range lanes {
		if len(l.events) == 0 {
			// Nothing committed yet; hand the key back, or drain it.
			out.lane(l.key, l.token, l.published, 0)
			continue
		}
		items = append(items, func() { r.publishLane(ctx, l, out) })
	}
	// Events without a key, in chunks of one destination.
	slices.SortStableFunc(singles, func(a, b event) int { return strings.Compare(a.destination, b.destination) })
	for len(singles) > 0 {
		n := 1
		for n < len(singles) && n < unkeyedChunk && singles[n].destination == singles[0].destination {
			n++
		}
		chunk := singles[:n]
		singles = singles[n:]
		items = append(items, func() { r.publishUnkeyed(ctx, chunk, out) })
	}
	if len(items) == 1 {
		items[0]()
		return
	}
	sem := make(chan struct{}, r.opts.Concurrency)
	var wg sync.WaitGroup
	for _, it := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			it()
		})
	}
	wg.Wait()
}

// publishLane publishes one key's events in order, consecutive events of
// one destination in one call. When a call of several events fails, they
// are published again one at a time, to find the one that fails. An event
// that fails is retried later, with its key waiting, or given up on, and
// its key goes on.
func (r *Relay) publishLane(ctx context.Context, l *lane, out *outcome) {
	var (
		seq   = l.published
		evs   = l.events
		alone = 0 // the next events go one per call
		delay time.Duration
		res   laneResult
	)
	for len(evs) > 0 && ctx.Err() == nil { // out of time: the rest waits for the next claim
		n := 1
		// An event that failed before goes alone.
		if alone == 0 && evs[0].attempts == 0 {
			for n < len(evs) && evs[n].destination == evs[0].destination && evs[n].attempts == 0 {
				n++
			}
		}
		err := r.publish(ctx, evs[0].destination, evs[:n])
		if err == nil {
			res.published += n
			seq = evs[n-1].seq
			evs = evs[n:]
			alone = max(0, alone-n)
			continue
		}
		res.publishErrors++
		if n > 1 && ctx.Err() == nil {
			alone = n
			continue
		}
		alone = max(0, alone-1)
		e := evs[0]
		f := failure{id: e.id, token: l.token, attempts: e.attempts + 1, err: errorText(err)}
		if r.giveUp(err, f.attempts) {
			res.move = append(res.move, f)
			seq = e.seq
			evs = evs[1:]
			continue
		}
		if r.opts.OnFailure == Block && f.attempts == r.opts.MaxAttempts {
			res.blocked++
		}
		res.retry = append(res.retry, f)
		delay = r.retryDelay(err, f.attempts)
		r.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "outbox: publish failed; the key waits for a retry",
			slog.String("key", l.key), slog.String("id", e.msg.ID), slog.Int("attempts", f.attempts),
			slog.Any("error", err), slog.Duration("retry_in", delay))
		break
	}
	out.add(res)
	out.lane(l.key, l.token, seq, pgschema.Micros(delay))
}

// publishUnkeyed publishes events without a key, all of one destination:
// in one call, or one at a time when that fails or some failed before.
func (r *Relay) publishUnkeyed(ctx context.Context, evs []event, out *outcome) {
	var res laneResult
	defer func() { out.add(res) }()
	fresh := !slices.ContainsFunc(evs, func(e event) bool { return e.attempts > 0 })
	if len(evs) > 1 && fresh {
		if err := r.publish(ctx, evs[0].destination, evs); err == nil {
			res.published += len(evs)
			res.done = evs
			return
		}
		res.publishErrors++
	}
	for i := range evs {
		e := evs[i]
		if ctx.Err() != nil {
			// Out of time: the rest is released, as it was, for the next
			// claim.
			res.retry = append(res.retry, failure{id: e.id, token: e.token, attempts: e.attempts})
			continue
		}
		err := r.publish(ctx, e.destination, evs[i:i+1])
		if err == nil {
			res.published++
			res.done = append(res.done, e)
			continue
		}
		res.publishErrors++
		f := failure{id: e.id, token: e.token, attempts: e.attempts + 1, err: errorText(err)}
		if r.giveUp(err, f.attempts) {
			res.move = append(res.move, f)
			continue
		}
		if r.opts.OnFailure == Block && f.attempts == r.opts.MaxAttempts {
			res.blocked++
		}
		d := r.retryDelay(err, f.attempts)
		f.delay = pgschema.Micros(d)
		res.retry = append(res.retry, f)
		r.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "outbox: publish failed; the event waits for a retry",
			slog.String("id", e.msg.ID), slog.Int("attempts", f.attempts),
			slog.Any("error", err), slog.Duration("retry_in", d))
	}
}

// publish calls the Publisher, turning a panic into an error: the batch
// must still be recorded.
func (r *Relay) publish(ctx context.Context, dest string, evs []event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("outbox: Publisher panicked: %v", p)
		}
	}()
	msgs := make([]consumer.Message, len(evs))
	for i := range evs {
		msgs[i] = evs[i].msg
	}
	return r.pub.Publish(ctx, dest, msgs...)
}

// giveUp decides whether an event that just failed its attempts-th time is
// moved aside.
func (r *Relay) giveUp(err error, attempts int) bool {
	return r.opts.OnFailure == Skip && (attempts >= r.opts.MaxAttempts || consumer.IsPermanent(err))
}

// retryDelay is the wait before the next attempt: the error's own
// RetryAfter delay, or the backoff's.
func (r *Relay) retryDelay(err error, attempts int) time.Duration {
	if d, ok := consumer.RetryAfterDelay(err); ok {
		return max(d, 0)
	}
	return r.opts.Backoff.Delay(attempts)
}

// errorText is err's text as stored: valid UTF-8 without NUL bytes, and
// not too long.
func errorText(err error) string {
	s := strings.ToValidUTF8(err.Error(), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) > maxErrorLen {
		s = strings.ToValidUTF8(s[:maxErrorLen], "") + "…"
	}
	return s
}

// laneResult is what one work item did, added to the outcome at once.
type laneResult struct {
	published, publishErrors, blocked int
	done                              []event
	move, retry                       []failure
}

func (o *outcome) add(res laneResult) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.published += res.published
	o.publishErrors += res.publishErrors
	o.blocked += res.blocked
	for _, e := range res.done {
		o.doneIDs = append(o.doneIDs, e.id)
		o.doneTokens = append(o.doneTokens, e.token)
	}
	o.move = append(o.move, res.move...)
	o.retry = append(o.retry, res.retry...)
}

func (o *outcome) lane(key string, token, seq, delay int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.laneKeys = append(o.laneKeys, key)
	o.laneTokens = append(o.laneTokens, token)
	o.laneSeqs = append(o.laneSeqs, seq)
	o.laneDelays = append(o.laneDelays, delay)
}

// record writes the outcome of a batch in one round trip and one
// transaction. What it records is conditional on the leases: keys and
// events another relay claimed meanwhile (after this relay's lease ended)
// are left to that relay, which publishes them again.
func (r *Relay) record(ctx context.Context, out *outcome) error {
	obs := r.opts.Observer
	obs.Count(MetricPublished, int64(out.published))
	if out.publishErrors > 0 {
		obs.Count(MetricPublishErrors, int64(out.publishErrors))
	}
	if out.blocked > 0 {
		obs.Count(MetricFailures, int64(out.blocked))
	}

	var (
		b                    pgx.Batch
		moved, lanes, events int64
	)
	if len(out.laneKeys) > 0 {
		b.Queue(r.q.lockLanes, out.laneKeys, out.laneTokens)
	}
	if len(out.move) > 0 {
		ids, tokens, attempts, errs, _ := failureArgs(out.move)
		b.Queue(r.q.moveFailed, ids, tokens, attempts, errs).Exec(func(ct pgconn.CommandTag) error {
			moved = ct.RowsAffected()
			return nil
		})
	}
	if len(out.retry) > 0 {
		ids, tokens, attempts, errs, delays := failureArgs(out.retry)
		b.Queue(r.q.recordRetries, ids, tokens, attempts, errs, delays)
	}
	if len(out.laneKeys) > 0 {
		b.Queue(r.q.ackLanes, out.laneKeys, out.laneTokens, out.laneSeqs, out.laneDelays).QueryRow(func(row pgx.Row) error {
			return row.Scan(&lanes)
		})
	}
	if len(out.doneIDs) > 0 {
		b.Queue(r.q.ackUnkeyed, out.doneIDs, out.doneTokens).Exec(func(ct pgconn.CommandTag) error {
			events = ct.RowsAffected()
			return nil
		})
	}
	if err := r.pool.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("outbox: record %d published events (they will be published again): %w", out.published, err)
	}
	if moved > 0 {
		obs.Count(MetricFailures, moved)
		r.opts.Logger.LogAttrs(ctx, slog.LevelError, "outbox: gave up on events; moved them to the failed table",
			slog.Int64("events", moved), slog.String("last_error", out.move[0].err))
	}
	if lost := int64(len(out.laneKeys)) - lanes + int64(len(out.doneIDs)) - events; lost > 0 {
		r.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "outbox: leases ended before the relay recorded its progress; those events will be published again",
			slog.Int64("keys_and_events", lost))
	}
	return nil
}

func failureArgs(fs []failure) (ids, tokens []int64, attempts []int32, errs []string, delays []int64) {
	for _, f := range fs {
		ids = append(ids, f.id)
		tokens = append(tokens, f.token)
		attempts = append(attempts, int32(f.attempts))
		errs = append(errs, f.err)
		delays = append(delays, f.delay)
	}
	return
}

// maintain deletes expired published events and reports the statistics,
// until ctx ends.
func (r *Relay) maintain(ctx context.Context) {
	var statsC <-chan time.Time
	if r.opts.StatsInterval > 0 {
		t := time.NewTicker(r.opts.StatsInterval)
		defer t.Stop()
		statsC = t.C
		r.stats(ctx)
		defer func() {
			// A stopped relay's count is no longer current.
			r.opts.Observer.Count(MetricPending, -r.pending)
			r.pending = 0
		}()
	}
	cleanup := time.NewTicker(r.opts.CleanupInterval)
	defer cleanup.Stop()
	r.cleanup(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-statsC:
			r.stats(ctx)
		case <-cleanup.C:
			r.cleanup(ctx)
		}
	}
}

func (r *Relay) stats(ctx context.Context) {
	var n, us int64
	if err := r.pool.QueryRow(ctx, r.q.stats).Scan(&n, &us); err != nil {
		if ctx.Err() == nil {
			r.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "outbox: count pending events", slog.Any("error", err))
		}
		return
	}
	r.opts.Observer.Count(MetricPending, n-r.pending)
	r.pending = n
	r.opts.Observer.Observe(MetricLag, time.Duration(us)*time.Microsecond)
}

// cleanup deletes the published events whose retention has passed, a
// batch at a time.
func (r *Relay) cleanup(ctx context.Context) {
	for ctx.Err() == nil {
		ct, err := r.pool.Exec(ctx, r.q.cleanup, pgschema.Micros(r.opts.Retention), cleanupBatch)
		if err != nil {
			if ctx.Err() == nil {
				r.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "outbox: delete expired published events", slog.Any("error", err))
			}
			return
		}
		if ct.RowsAffected() < cleanupBatch {
			return
		}
	}
}
