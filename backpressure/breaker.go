package backpressure

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/idemq/idemq/consumer"
)

// State is a circuit breaker's state.
type State int

const (
	// StateClosed lets every call through and counts failures.
	StateClosed State = iota
	// StateOpen rejects every call until OpenTimeout has passed (or, when
	// opened by hand, until [Breaker.Close]).
	StateOpen
	// StateHalfOpen lets HalfOpenProbes calls through to test the
	// dependency and rejects the rest.
	StateHalfOpen
)

// String names the state: "closed", "open" or "half-open".
func (s State) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateOpen:
		return "open"
	case StateHalfOpen:
		return "half-open"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Breaker defaults, documented on [BreakerOptions].
const (
	defaultBreakerConsecutiveFailures = 5
	defaultBreakerMinRequests         = 20
	defaultBreakerWindow              = 10 * time.Second
	defaultBreakerOpenTimeout         = 30 * time.Second
	defaultBreakerHalfOpenProbes      = 1

	// breakerBuckets is how many buckets the failure-ratio window is kept
	// in: it rolls in steps of Window/breakerBuckets.
	breakerBuckets = 10
	// breakerMinRetryAfter is the smallest RetryAfter a rejection carries,
	// so that a hint is never zero.
	breakerMinRetryAfter = time.Millisecond
	// breakerMaxProbingRetryAfter caps the RetryAfter of a rejection while
	// half-open; see [Breaker.Allow].
	breakerMaxProbingRetryAfter = time.Second
)

// Reasons of a breaker's [RejectedError].
const (
	breakerReasonOpen    = "circuit open"
	breakerReasonProbing = "half-open probes in flight"
)

// BreakerOptions configures a [Breaker]. Zero fields take the documented
// defaults; negative ones are an error from [NewBreaker].
type BreakerOptions struct {
	// Name names the dependency the breaker protects, in errors and in
	// OnStateChange.
	Name string

	// ConsecutiveFailures trips the breaker after this many failures in
	// a row; a success resets the run. Default 5. It applies even when
	// FailureRatio is set; to trip on the ratio alone, set it very high.
	ConsecutiveFailures int

	// FailureRatio trips the breaker when, over the last Window, at
	// least MinRequests results were recorded and failures/total is at
	// least FailureRatio. It is checked after every counted result, so
	// the success that brings the window to MinRequests can trip it.
	// Zero turns the ratio off; it must not exceed 1.
	FailureRatio float64

	// MinRequests is the fewest results in the window for FailureRatio to
	// apply. Default 20.
	MinRequests int

	// Window is the rolling window of FailureRatio, default 10s. It is
	// kept in 10 buckets and rolls in steps of Window/10: a result counts
	// for between 0.9 and 1 Window.
	Window time.Duration

	// OpenTimeout is how long a tripped breaker stays open before it lets
	// probes through (half-open). Default 30s.
	OpenTimeout time.Duration

	// HalfOpenProbes is how many calls a half-open breaker lets through.
	// All of them must succeed to close it; any failure opens it again for
	// a fresh OpenTimeout. Default 1.
	HalfOpenProbes int

	// IsFailure tells whether a call's non-nil error counts against the
	// dependency; a non-nil error it rejects counts as a success, except
	// a context.Canceled, which is ignored: neither success nor failure,
	// since the caller gave up, not the dependency. The default counts
	// every error except context.Canceled, so context.DeadlineExceeded
	// (the dependency was too slow) is a failure. It is never called with
	// nil, and must be safe for concurrent use.
	IsFailure func(error) bool

	// OnStateChange, if set, is called on every transition, in order, one
	// call at a time, outside the breaker's lock: it may call the breaker.
	// It runs on the goroutine of the call that caused the transition or,
	// if another goroutine is already reporting transitions of this
	// breaker, on that one.
	OnStateChange func(name string, from, to State)

	// Observer counts MetricBreakerTransitions, MetricBreakerRejects and
	// the MetricBreakerState gauge (+1 on entering open, -1 on leaving
	// it). Nil means none.
	Observer consumer.Observer

	now func() time.Time // clock hook for tests; nil means time.Now
}

// breakerConfig is a validated BreakerOptions, shared by every breaker of a
// [Breakers].
type breakerConfig struct {
	consecutive   int
	ratio         float64
	minRequests   int
	bucketWidth   time.Duration
	openTimeout   time.Duration
	probes        int
	isFailure     func(error) bool
	onStateChange func(name string, from, to State)
	obs           consumer.Observer
	now           func() time.Time
}

func (o BreakerOptions) config() (*breakerConfig, error) {
	switch {
	case o.ConsecutiveFailures < 0:
		return nil, errors.New("backpressure: breaker ConsecutiveFailures is negative")
	case !(o.FailureRatio >= 0 && o.FailureRatio <= 1): // also rejects NaN
		return nil, errors.New("backpressure: breaker FailureRatio must lie in [0, 1]")
	case o.MinRequests < 0:
		return nil, errors.New("backpressure: breaker MinRequests is negative")
	case o.Window < 0:
		return nil, errors.New("backpressure: breaker Window is negative")
	case o.OpenTimeout < 0:
		return nil, errors.New("backpressure: breaker OpenTimeout is negative")
	case o.HalfOpenProbes < 0:
		return nil, errors.New("backpressure: breaker HalfOpenProbes is negative")
	}
	c := &breakerConfig{
		consecutive:   o.ConsecutiveFailures,
		ratio:         o.FailureRatio,
		minRequests:   o.MinRequests,
		openTimeout:   o.OpenTimeout,
		probes:        o.HalfOpenProbes,
		isFailure:     o.IsFailure,
		onStateChange: o.OnStateChange,
		obs:           o.Observer,
		now:           o.now,
	}
	if c.consecutive == 0 {
		c.consecutive = defaultBreakerConsecutiveFailures
	}
	if c.minRequests == 0 {
		c.minRequests = defaultBreakerMinRequests
	}
	window := o.Window
	if window == 0 {
		window = defaultBreakerWindow
	}
	c.bucketWidth = max(window/breakerBuckets, 1)
	if c.openTimeout == 0 {
		c.openTimeout = defaultBreakerOpenTimeout
	}
	if c.probes == 0 {
		c.probes = defaultBreakerHalfOpenProbes
	}
	if c.isFailure == nil {
		c.isFailure = breakerDefaultIsFailure
	}
	if c.obs == nil {
		c.obs = consumer.NopObserver{}
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

func breakerDefaultIsFailure(err error) bool { return !errors.Is(err, context.Canceled) }

// Breaker is a circuit breaker: it stops calls to a dependency that keeps
// failing, so the dependency gets room to recover and callers fail fast
// with a hint of when to come back, instead of queueing on timeouts.
//
// Closed, it lets calls through and trips open after ConsecutiveFailures
// failures in a row or, if FailureRatio is set, on a failure ratio over a
// rolling window. Open, it rejects calls for OpenTimeout, then turns
// half-open and lets HalfOpenProbes calls through: if they all succeed it
// closes, if one fails it opens again. [Breaker.Open] and [Breaker.Close]
// force it open or closed by hand.
//
// Use [Breaker.Do], or [Breaker.Allow] and then [Breaker.Record] with the
// call's result. Results are tied to the state they were admitted in: a
// result recorded after the breaker changed state (a slow call admitted
// before it tripped, say) is ignored.
//
// A Breaker is safe for concurrent use. Allow and Record in the closed
// state take one short lock each and allocate nothing.
type Breaker struct {
	cfg  *breakerConfig
	name string
	base time.Time // start of the ratio window's bucket 0

	mu            sync.Mutex
	state         State
	manual        bool   // opened by hand: stays open until Close
	gen           uint64 // bumped on every transition; 0 is never used
	inflight      int    // tickets issued and not yet recorded
	consecutive   int    // failures in a row while closed
	openUntil     time.Time
	probesIssued  int
	probesOK      int
	probeDeadline time.Time // OpenTimeout after the last probe; unrecorded probes are presumed lost then
	head          int64     // bucket number of the newest bucket
	total         int       // results in the window
	failures      int       // failures in the window
	buckets       [breakerBuckets]breakerBucket
	gaugeHeld     bool // this breaker added 1 to MetricBreakerState
	retired       bool // evicted from its Breakers; no longer in the gauge
	events        []breakerEvent
	eventsHead    int
	notifying     bool // a goroutine is reporting events

	// Owned by group.mu; group is set at creation.
	group   *Breakers
	key     string
	prev    *Breaker // towards the most recently used
	next    *Breaker // towards the least recently used
	where   breakerPlace
	pinHold bool // Breakers.Open is pinning it; see Breakers.reconcile
}

type breakerBucket struct{ total, failures int32 } // int32: a breaker per key adds up

// breakerEvent is a transition or gauge change waiting to be reported
// outside the lock.
type breakerEvent struct {
	from, to   State
	transition bool
	gauge      int8
}

type breakerOutcome uint8

const (
	breakerSuccess breakerOutcome = iota
	breakerFailure
	breakerIgnored
)

// Ticket ties a call admitted by [Breaker.Allow] to the state it was
// admitted in. It is a small value; the zero Ticket, returned with a
// rejection, is ignored by [Breaker.Record].
type Ticket struct {
	gen uint64
}

// NewBreaker returns a closed breaker, or an error if opts is invalid.
func NewBreaker(opts BreakerOptions) (*Breaker, error) {
	cfg, err := opts.config()
	if err != nil {
		return nil, err
	}
	return newBreaker(cfg, opts.Name), nil
}

func newBreaker(cfg *breakerConfig, name string) *Breaker {
	return &Breaker{cfg: cfg, name: name, base: cfg.now(), gen: 1}
}

// Allow admits a call or rejects it. An admitted call must be reported
// with [Breaker.Record] exactly once, with the returned Ticket; a
// half-open breaker waits for its probes' results.
//
// A rejection is a [*RejectedError] that matches [ErrOpen], [ErrRejected]
// and [consumer.ErrDeferred]. While open, its Reason is "circuit open"
// and its RetryAfter is [Breaker.RemainingDelay] (at least 1ms). While
// half-open with every probe in flight, its Reason is "half-open probes
// in flight" and its RetryAfter is OpenTimeout capped at one second: the
// probes' outcome is not known yet, and a second is long enough not to
// spin on rejections, short enough not to hold calls up long once the
// probes close the breaker. When every probe is in flight and none has been recorded for
// OpenTimeout since the last one was let through, the unrecorded probes
// are presumed lost and their slots go to the next calls, so a call that
// never returns cannot hold the breaker half-open for ever.
func (b *Breaker) Allow() (Ticket, error) {
	b.mu.Lock()
	if b.state == StateClosed {
		b.inflight++
		t := Ticket{gen: b.gen}
		b.mu.Unlock()
		return t, nil
	}
	return b.allowSlow()
}

// allowSlow is Allow when not closed; b.mu is held.
func (b *Breaker) allowSlow() (Ticket, error) {
	now := b.cfg.now()
	b.advanceLocked(now)
	var reason string
	var retryAfter time.Duration
	switch b.state {
	case StateClosed: // not reached: advanceLocked only leaves open for half-open
		b.inflight++
		t := Ticket{gen: b.gen}
		b.unlockAndNotify()
		return t, nil
	case StateHalfOpen:
		if b.probesIssued >= b.cfg.probes && !now.Before(b.probeDeadline) {
			b.probesIssued = b.probesOK // the unrecorded probes are presumed lost
		}
		if b.probesIssued < b.cfg.probes {
			b.probesIssued++
			b.probeDeadline = now.Add(b.cfg.openTimeout)
			b.inflight++
			t := Ticket{gen: b.gen}
			b.unlockAndNotify()
			return t, nil
		}
		reason, retryAfter = breakerReasonProbing, min(b.cfg.openTimeout, breakerMaxProbingRetryAfter)
	default:
		reason, retryAfter = breakerReasonOpen, b.remainingLocked(now)
	}
	b.unlockAndNotify()
	b.cfg.obs.Count(MetricBreakerRejects, 1)
	return Ticket{}, &RejectedError{
		Name:       b.name,
		Reason:     reason,
		RetryAfter: max(retryAfter, breakerMinRetryAfter),
		open:       true,
	}
}

// Record reports the result of a call admitted with t. A result admitted
// before the breaker last changed state, or with the zero Ticket, is
// ignored. See [BreakerOptions.IsFailure] for which errors count.
func (b *Breaker) Record(t Ticket, err error) {
	if t.gen == 0 {
		return
	}
	b.record(t, b.classify(err))
}

func (b *Breaker) classify(err error) breakerOutcome {
	switch {
	case err == nil:
		return breakerSuccess
	case b.cfg.isFailure(err):
		return breakerFailure
	case errors.Is(err, context.Canceled):
		return breakerIgnored
	}
	return breakerSuccess
}

func (b *Breaker) record(t Ticket, out breakerOutcome) {
	var now time.Time
	if b.cfg.ratio > 0 && out != breakerIgnored {
		now = b.cfg.now() // read before the lock, to keep it short
	}
	b.mu.Lock()
	if b.inflight > 0 {
		b.inflight--
	}
	if t.gen != b.gen {
		b.mu.Unlock()
		return
	}
	switch b.state {
	case StateClosed:
		if out == breakerIgnored {
			break
		}
		trip := false
		if out == breakerFailure {
			b.consecutive++
			trip = b.consecutive >= b.cfg.consecutive
		} else {
			b.consecutive = 0
		}
		if b.cfg.ratio > 0 {
			b.countLocked(now, out == breakerFailure)
			trip = trip || (b.total >= b.cfg.minRequests &&
				float64(b.failures)/float64(b.total) >= b.cfg.ratio)
		}
		if !trip {
			b.mu.Unlock()
			return
		}
		if now.IsZero() {
			now = b.cfg.now()
		}
		b.transitionLocked(StateOpen, now)
	case StateHalfOpen:
		switch out {
		case breakerIgnored:
			if b.probesIssued > b.probesOK {
				b.probesIssued-- // give the slot to another probe
			}
		case breakerSuccess:
			b.probesOK++
			if b.probesOK >= b.cfg.probes {
				b.transitionLocked(StateClosed, now)
			}
		case breakerFailure:
			if now.IsZero() {
				now = b.cfg.now()
			}
			b.transitionLocked(StateOpen, now)
		}
	}
	b.unlockAndNotify()
}

// countLocked adds a result to the ratio window at now, first dropping the
// buckets that have rolled out of it. A clock that went backwards counts
// into the newest bucket.
func (b *Breaker) countLocked(now time.Time, failed bool) {
	if n := int64(now.Sub(b.base) / b.cfg.bucketWidth); n > b.head {
		if n-b.head >= breakerBuckets {
			b.clearWindowLocked()
		} else {
			for i := b.head + 1; i <= n; i++ {
				bk := &b.buckets[i%breakerBuckets]
				b.total -= int(bk.total)
				b.failures -= int(bk.failures)
				*bk = breakerBucket{}
			}
		}
		b.head = n
	}
	bk := &b.buckets[b.head%breakerBuckets]
	bk.total++
	b.total++
	if failed {
		bk.failures++
		b.failures++
	}
}

func (b *Breaker) clearWindowLocked() {
	b.buckets = [breakerBuckets]breakerBucket{}
	b.total, b.failures = 0, 0
}

// Do calls fn if the breaker allows it and records its result, which it
// returns. A rejection is returned as by [Breaker.Allow], without calling
// fn. If ctx is already done, Do returns its error and leaves the breaker
// as it was. A panic in fn counts as a failure and is not recovered.
func (b *Breaker) Do(ctx context.Context, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := b.Allow()
	if err != nil {
		return err
	}
	recorded := false
	defer func() {
		if !recorded { // fn panicked
			b.record(t, breakerFailure)
		}
	}()
	err = fn(ctx)
	recorded = true
	b.Record(t, err)
	return err
}

// State returns the breaker's state. An open breaker whose OpenTimeout has
// passed turns half-open here, as it would on the next Allow.
func (b *Breaker) State() State {
	b.mu.Lock()
	if b.state == StateOpen {
		b.advanceLocked(b.cfg.now())
	}
	s := b.state
	b.unlockAndNotify()
	return s
}

// RemainingDelay returns how long an open breaker stays open before it
// turns half-open, and 0 when it is closed or half-open. For a breaker
// opened by hand, which stays open until [Breaker.Close], it returns
// OpenTimeout as a hint of when to look again.
func (b *Breaker) RemainingDelay() time.Duration {
	b.mu.Lock()
	var d time.Duration
	if b.state == StateOpen {
		now := b.cfg.now()
		b.advanceLocked(now)
		d = b.remainingLocked(now)
	}
	b.unlockAndNotify()
	return d
}

func (b *Breaker) remainingLocked(now time.Time) time.Duration {
	switch {
	case b.state != StateOpen:
		return 0
	case b.manual:
		return b.cfg.openTimeout
	}
	return max(b.openUntil.Sub(now), 0)
}

// advanceLocked turns an open breaker half-open once its time is up.
func (b *Breaker) advanceLocked(now time.Time) {
	if b.state == StateOpen && !b.manual && !now.Before(b.openUntil) {
		b.transitionLocked(StateHalfOpen, now)
	}
}

// Open forces the breaker open: it rejects every call at once, and stays
// open, without turning half-open, until [Breaker.Close]. Results of calls
// admitted before are ignored.
func (b *Breaker) Open() {
	b.mu.Lock()
	if b.state != StateOpen {
		b.transitionLocked(StateOpen, b.cfg.now())
	}
	b.manual = true
	b.unlockAndNotify()
	if b.group != nil {
		b.group.reconcile(b)
	}
}

// Close forces the breaker closed, whether it tripped or was opened by
// hand, and forgets the failures counted so far. Results of calls
// admitted in another state are ignored.
func (b *Breaker) Close() {
	b.mu.Lock()
	b.manual = false
	if b.state != StateClosed {
		b.transitionLocked(StateClosed, time.Time{})
	} else {
		b.resetCountsLocked()
	}
	b.unlockAndNotify()
	if b.group != nil {
		b.group.reconcile(b)
	}
}

func (b *Breaker) resetCountsLocked() {
	b.consecutive = 0
	b.clearWindowLocked()
}

// transitionLocked moves to state to, starting a new generation, and
// queues the transition to be reported.
func (b *Breaker) transitionLocked(to State, now time.Time) {
	from := b.state
	b.state = to
	b.gen++
	switch to {
	case StateOpen:
		b.openUntil = now.Add(b.cfg.openTimeout)
	case StateHalfOpen:
		b.probesIssued, b.probesOK = 0, 0
	case StateClosed:
		b.resetCountsLocked()
	}
	ev := breakerEvent{from: from, to: to, transition: true}
	switch {
	case to == StateOpen && !b.gaugeHeld && !b.retired:
		b.gaugeHeld, ev.gauge = true, 1
	case to != StateOpen && b.gaugeHeld:
		b.gaugeHeld, ev.gauge = false, -1
	}
	b.events = append(b.events, ev)
}

// retireLocked takes an evicted breaker out of the gauge: whoever still
// holds it may use it, but it no longer counts as an open dependency.
func (b *Breaker) retireLocked() {
	b.retired = true
	if b.gaugeHeld {
		b.gaugeHeld = false
		b.events = append(b.events, breakerEvent{gauge: -1})
	}
}

// unlockAndNotify releases b.mu and reports the queued events, unless
// another goroutine is already reporting them: one goroutine at a time
// reports, so they arrive in order.
func (b *Breaker) unlockAndNotify() {
	report := !b.notifying && b.eventsHead < len(b.events)
	if report {
		b.notifying = true
	}
	b.mu.Unlock()
	if report {
		b.reportEvents()
	}
}

func (b *Breaker) reportEvents() {
	done := false
	defer func() {
		if !done { // a callback panicked: let the next caller report the rest
			b.mu.Lock()
			b.notifying = false
			b.mu.Unlock()
		}
	}()
	for {
		b.mu.Lock()
		if b.eventsHead == len(b.events) {
			b.events, b.eventsHead = b.events[:0], 0
			b.notifying = false
			b.mu.Unlock()
			done = true
			return
		}
		ev := b.events[b.eventsHead]
		b.eventsHead++
		b.mu.Unlock()

		if ev.transition {
			b.cfg.obs.Count(MetricBreakerTransitions, 1)
		}
		if ev.gauge != 0 {
			b.cfg.obs.Count(MetricBreakerState, int64(ev.gauge))
		}
		if ev.transition && b.cfg.onStateChange != nil {
			b.cfg.onStateChange(b.name, ev.from, ev.to)
		}
		if ev.transition && b.group != nil {
			b.group.reconcile(b)
		}
	}
}
