package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a [Consumer]. Zero fields take the documented defaults.
type Config struct {
	// MaxInFlight bounds the deliveries the consumer holds at once,
	// counting those fetched ahead (prefetch) and those being handled.
	// Default 64.
	MaxInFlight int

	// Concurrency bounds the handlers running at once. Default MaxInFlight;
	// it cannot exceed MaxInFlight.
	Concurrency int

	// OrderByKey makes messages that share a non-empty Key run one at a
	// time, in the order they were fetched, while other keys run in
	// parallel. The order holds among the messages this consumer holds: a
	// failed message is redelivered later and may be overtaken by newer
	// messages of its key, and several consumers on one queue each order
	// only their own share unless the broker partitions keys among them.
	OrderByKey bool

	// Backoff sets the redelivery delay after a failure, from the
	// message's Attempt. An error built with [RetryAfter] overrides it.
	Backoff Backoff

	// DrainTimeout bounds how long Run waits, once its context is done,
	// for running handlers to finish. Handlers still running then have
	// their contexts cancelled (cause [ErrDrainTimeout]) and their messages
	// are nacked for immediate redelivery. Default 30s.
	DrainTimeout time.Duration

	// Logger receives fetch, ack and lease failures and handler errors.
	// Default slog.Default().
	Logger *slog.Logger

	// Observer receives the Metric* counts and durations. Default none.
	Observer Observer
}

func (c Config) withDefaults() (Config, error) {
	switch {
	case c.MaxInFlight < 0:
		return c, fmt.Errorf("consumer: negative MaxInFlight %d", c.MaxInFlight)
	case c.Concurrency < 0:
		return c, fmt.Errorf("consumer: negative Concurrency %d", c.Concurrency)
	case c.DrainTimeout < 0:
		return c, fmt.Errorf("consumer: negative DrainTimeout %s", c.DrainTimeout)
	}
	if err := c.Backoff.validate(); err != nil {
		return c, err
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 64
	}
	if c.Concurrency == 0 {
		c.Concurrency = c.MaxInFlight
	}
	if c.Concurrency > c.MaxInFlight {
		return c, fmt.Errorf("consumer: Concurrency %d exceeds MaxInFlight %d", c.Concurrency, c.MaxInFlight)
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	c.Backoff = c.Backoff.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Observer == nil {
		c.Observer = NopObserver{}
	}
	return c, nil
}

// Consumer fetches messages from a [Source] and runs a [Handler] on each:
// nil acknowledges, an error nacks with a delay from the backoff.
//
// While a delivery is held, the consumer extends its lease before it ends.
// If an extension fails for good, the handler's context is cancelled with
// cause [ErrLeaseLost] and the delivery is neither acked nor nacked: the
// message belongs to whoever the source gives it to next. A handler panic is
// recovered and treated as an error, so the message is redelivered and the
// consumer keeps running.
//
// Delivery is at least once: a message can be handled again after a crash,
// a lost lease or a failed ack. Make handlers idempotent (package
// idempotency) so that the effect happens once.
type Consumer struct {
	src     Source
	h       Handler
	cfg     Config
	running atomic.Bool
}

// New returns a consumer of src that runs h. It validates cfg.
func New(src Source, h Handler, cfg Config) (*Consumer, error) {
	if src == nil {
		return nil, errors.New("consumer: nil Source")
	}
	if h == nil {
		return nil, errors.New("consumer: nil Handler")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Consumer{src: src, h: h, cfg: cfg}, nil
}

// Run consumes until ctx is done, then shuts down: it stops fetching, nacks
// fetched messages that have not started for immediate redelivery, and waits
// up to DrainTimeout for running handlers. It returns nil after a clean
// drain and [ErrDrainTimeout] when it had to give up on running handlers
// (whose goroutines may outlive Run if they ignore their context).
//
// Errors from the source do not stop Run: it logs them and tries again
// with backoff. A Consumer runs once at a time; a second concurrent Run
// returns [ErrRunning].
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer c.running.Store(false)
	r := newRun(c, ctx)
	return r.run(ctx)
}

// Task states. A task moves from queued to running to done; the heartbeat
// moves a queued or running task to lost, and shutdown moves it to
// abandoned. Whoever wins the compare-and-swap owns the delivery's outcome.
const (
	taskQueued int32 = iota
	taskRunning
	taskDone
	taskLost
	taskAbandoned
)

type task struct {
	d      Delivery
	msg    *Message
	state  atomic.Int32
	cancel context.CancelCauseFunc // set before the task becomes running

	// Guarded by run.mu.
	deadline   time.Time
	extendAt   time.Time // zero: the lease does not need extending
	prev, next *task     // the tracked list
}

type lane struct{ q []*task }

type run struct {
	c   *Consumer
	cfg Config
	log *slog.Logger
	obs Observer

	srcCtx     context.Context // for acks, nacks and extensions; outlives the drain
	srcCancel  context.CancelFunc
	hardCtx    context.Context // parent of handler contexts; cancelled after the drain timeout
	hardCancel context.CancelCauseFunc

	work     chan *task
	slot     chan struct{} // a task finished
	poke     chan struct{} // a task wants an earlier heartbeat
	stopBeat chan struct{}
	inflight atomic.Int64
	workers  sync.WaitGroup
	beatDone chan struct{}

	mu        sync.Mutex
	head      *task
	tracked   int
	nextBeat  time.Time
	lanes     map[string]*lane
	freeLanes []*lane
}

func newRun(c *Consumer, ctx context.Context) *run {
	r := &run{
		c:        c,
		cfg:      c.cfg,
		log:      c.cfg.Logger,
		obs:      c.cfg.Observer,
		work:     make(chan *task, c.cfg.MaxInFlight),
		slot:     make(chan struct{}, 1),
		poke:     make(chan struct{}, 1),
		stopBeat: make(chan struct{}),
		beatDone: make(chan struct{}),
	}
	base := context.WithoutCancel(ctx)
	r.srcCtx, r.srcCancel = context.WithCancel(base)
	r.hardCtx, r.hardCancel = context.WithCancelCause(base)
	if c.cfg.OrderByKey {
		r.lanes = make(map[string]*lane)
	}
	return r
}

func (r *run) run(ctx context.Context) error {
	defer r.srcCancel()
	for range r.cfg.Concurrency {
		r.workers.Add(1)
		go r.worker()
	}
	go r.heartbeat()

	r.fetchLoop(ctx)
	err := r.drain()

	close(r.stopBeat)
	<-r.beatDone
	close(r.work)
	if err == nil {
		r.workers.Wait()
	}
	return err
}

func (r *run) fetchLoop(ctx context.Context) {
	max := int64(r.cfg.MaxInFlight)
	var failures int
	for {
		n := max - r.inflight.Load()
		if n <= 0 {
			select {
			case <-r.slot:
				continue
			case <-ctx.Done():
				return
			}
		}
		ds, err := r.c.src.Fetch(ctx, int(n))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			r.obs.Count(MetricFetchErrors, 1)
			wait := fetchRetryDelay(failures)
			r.log.LogAttrs(ctx, slog.LevelError, "consumer: fetch failed",
				slog.Any("error", err), slog.Duration("retry_in", wait))
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		failures = 0
		if len(ds) > int(n) {
			// A source that ignores max still gets its deliveries handled;
			// the bound is restored as they finish.
			r.log.LogAttrs(ctx, slog.LevelWarn, "consumer: source returned more deliveries than asked",
				slog.Int("asked", int(n)), slog.Int("got", len(ds)))
		}
		r.inflight.Add(int64(len(ds)))
		r.obs.Count(MetricInflight, int64(len(ds)))
		for _, d := range ds {
			r.dispatch(d)
		}
	}
}

// fetchRetryDelay backs off from consecutive fetch failures: 100ms doubling
// to 5s, with equal jitter.
func fetchRetryDelay(failures int) time.Duration {
	return Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: EqualJitter}.Delay(failures)
}

func (r *run) dispatch(d Delivery) {
	t := &task{d: d, msg: d.Message()}
	deadline := d.Deadline()
	now := time.Now()
	r.mu.Lock()
	r.trackLocked(t, now, deadline)
	if r.lanes != nil && t.msg.Key != "" {
		if l, ok := r.lanes[t.msg.Key]; ok {
			l.q = append(l.q, t)
			r.mu.Unlock()
			return
		}
		r.lanes[t.msg.Key] = r.newLaneLocked()
	}
	r.mu.Unlock()
	r.work <- t // never blocks: the channel holds MaxInFlight tasks
}

func (r *run) newLaneLocked() *lane {
	if n := len(r.freeLanes); n > 0 {
		l := r.freeLanes[n-1]
		r.freeLanes = r.freeLanes[:n-1]
		return l
	}
	return &lane{}
}

// nextInLane returns the task that waits behind t in its key's lane, or
// closes the lane.
func (r *run) nextInLane(t *task) *task {
	if r.lanes == nil || t.msg.Key == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.lanes[t.msg.Key]
	if len(l.q) > 0 {
		n := l.q[0]
		l.q[0] = nil
		l.q = l.q[1:]
		return n
	}
	delete(r.lanes, t.msg.Key)
	l.q = l.q[:0:0]
	if len(r.freeLanes) < 1024 {
		r.freeLanes = append(r.freeLanes, l)
	}
	return nil
}

func (r *run) worker() {
	defer r.workers.Done()
	for t := range r.work {
		for t != nil {
			r.process(t)
			next := r.nextInLane(t)
			r.finish(t)
			t = next
		}
	}
}

func (r *run) process(t *task) {
	ctx, cancel := context.WithCancelCause(r.hardCtx)
	t.cancel = cancel
	if !t.state.CompareAndSwap(taskQueued, taskRunning) {
		cancel(nil) // lost or abandoned before it started
		return
	}
	began := time.Now()
	if !t.msg.EnqueuedAt.IsZero() {
		r.obs.Observe(MetricQueueLag, began.Sub(t.msg.EnqueuedAt))
	}
	err := r.call(ctx, t.msg)
	cancel(nil)
	r.obs.Observe(MetricHandlerDuration, time.Since(began))
	if !t.state.CompareAndSwap(taskRunning, taskDone) {
		return // the lease was lost or shutdown nacked it meanwhile
	}
	if err == nil {
		if aerr := t.d.Ack(r.srcCtx); aerr != nil {
			r.log.LogAttrs(r.srcCtx, slog.LevelWarn, "consumer: ack failed; the message will be redelivered",
				slog.String("message_id", t.msg.ID), slog.Any("error", aerr))
			return
		}
		r.obs.Count(MetricProcessed, 1)
		return
	}
	delay, level := r.delay(t.msg, err)
	r.log.LogAttrs(r.srcCtx, level, "consumer: handler failed",
		slog.String("message_id", t.msg.ID), slog.String("key", t.msg.Key),
		slog.Int("attempt", t.msg.Attempt), slog.Duration("redeliver_in", delay), slog.Any("error", err))
	if nerr := t.d.Nack(r.srcCtx, delay); nerr != nil {
		r.log.LogAttrs(r.srcCtx, slog.LevelWarn, "consumer: nack failed; the message will be redelivered when its lease ends",
			slog.String("message_id", t.msg.ID), slog.Any("error", nerr))
		return
	}
	r.obs.Count(MetricRetries, 1)
}

// delay picks the redelivery delay for a failed message.
func (r *run) delay(msg *Message, err error) (time.Duration, slog.Level) {
	if d, ok := RetryAfterDelay(err); ok {
		return d, slog.LevelInfo
	}
	if IsPermanent(err) {
		// Retrying cannot fix it and nothing parked it: redeliver as late
		// as the backoff allows rather than drop it.
		return r.cfg.Backoff.Max, slog.LevelError
	}
	return r.cfg.Backoff.Delay(msg.Attempt), slog.LevelWarn
}

func (r *run) call(ctx context.Context, msg *Message) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return r.c.h.Handle(ctx, msg)
}

func (r *run) finish(t *task) {
	r.mu.Lock()
	r.untrackLocked(t)
	r.mu.Unlock()
	r.inflight.Add(-1)
	r.obs.Count(MetricInflight, -1)
	select {
	case r.slot <- struct{}{}:
	default:
	}
}

func (r *run) trackLocked(t *task, now, deadline time.Time) {
	t.deadline = deadline
	if !deadline.IsZero() {
		t.extendAt = now.Add(deadline.Sub(now) / 2)
		if r.nextBeat.IsZero() || t.extendAt.Before(r.nextBeat) {
			r.nextBeat = t.extendAt
			select {
			case r.poke <- struct{}{}:
			default:
			}
		}
	}
	t.next = r.head
	if r.head != nil {
		r.head.prev = t
	}
	r.head = t
	r.tracked++
}

func (r *run) untrackLocked(t *task) {
	if t.prev != nil {
		t.prev.next = t.next
	} else {
		r.head = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	}
	t.prev, t.next = nil, nil
	r.tracked--
}

// heartbeat extends each held delivery's lease when half of it has passed.
func (r *run) heartbeat() {
	defer close(r.beatDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []*task
	for {
		select {
		case <-r.stopBeat:
			return
		case <-r.poke:
		case <-timer.C:
		}
		now := time.Now()
		due = due[:0]
		r.mu.Lock()
		for t := r.head; t != nil; t = t.next {
			if !t.extendAt.IsZero() && !t.extendAt.After(now) {
				due = append(due, t)
			}
		}
		r.mu.Unlock()

		for _, t := range due {
			r.extend(t)
		}

		r.mu.Lock()
		var next time.Time
		for t := r.head; t != nil; t = t.next {
			if !t.extendAt.IsZero() && (next.IsZero() || t.extendAt.Before(next)) {
				next = t.extendAt
			}
		}
		r.nextBeat = next
		r.mu.Unlock()
		clear(due)

		wait := time.Hour
		if !next.IsZero() {
			wait = time.Until(next)
		}
		timer.Reset(wait)
	}
}

func (r *run) extend(t *task) {
	err := t.d.Extend(r.srcCtx)
	now := time.Now()
	var deadline time.Time
	if err == nil {
		deadline = t.d.Deadline()
	}
	r.mu.Lock()
	lost := false
	switch {
	case err == nil:
		t.deadline = deadline
		t.extendAt = now.Add(deadline.Sub(now) / 2)
	case errors.Is(err, ErrLeaseLost) || !now.Before(t.deadline):
		t.extendAt = time.Time{}
		lost = true
	default:
		// A transient failure: try again before the lease ends.
		retry := t.deadline.Sub(now) / 4
		t.extendAt = now.Add(max(retry, 10*time.Millisecond))
	}
	r.mu.Unlock()
	if err == nil {
		return
	}
	if !lost {
		r.log.LogAttrs(r.srcCtx, slog.LevelWarn, "consumer: lease extension failed; retrying",
			slog.String("message_id", t.msg.ID), slog.Any("error", err))
		return
	}
	r.obs.Count(MetricLeaseLost, 1)
	if t.state.CompareAndSwap(taskQueued, taskLost) {
		r.log.LogAttrs(r.srcCtx, slog.LevelWarn, "consumer: lease lost before the handler started",
			slog.String("message_id", t.msg.ID), slog.Any("error", err))
		return
	}
	if t.state.CompareAndSwap(taskRunning, taskLost) {
		r.log.LogAttrs(r.srcCtx, slog.LevelWarn, "consumer: lease lost; cancelling the handler",
			slog.String("message_id", t.msg.ID), slog.Any("error", err))
		t.cancel(ErrLeaseLost)
	}
}

// drain runs once fetching has stopped.
func (r *run) drain() error {
	for _, t := range r.snapshot() {
		if t.state.CompareAndSwap(taskQueued, taskAbandoned) {
			r.nackNow(t, "not started at shutdown")
		}
	}
	timer := time.NewTimer(r.cfg.DrainTimeout)
	defer timer.Stop()
	for r.inflight.Load() > 0 {
		select {
		case <-r.slot:
		case <-timer.C:
			return r.abandon()
		}
	}
	return nil
}

// abandon nacks what is still running after the drain timeout and cancels
// the handlers.
func (r *run) abandon() error {
	for _, t := range r.snapshot() {
		if t.state.CompareAndSwap(taskRunning, taskAbandoned) || t.state.CompareAndSwap(taskQueued, taskAbandoned) {
			r.nackNow(t, "still running at the drain timeout")
		}
	}
	r.hardCancel(ErrDrainTimeout)
	return ErrDrainTimeout
}

func (r *run) nackNow(t *task, why string) {
	if err := t.d.Nack(r.srcCtx, 0); err != nil {
		r.log.LogAttrs(r.srcCtx, slog.LevelWarn, "consumer: nack at shutdown failed; the message will be redelivered when its lease ends",
			slog.String("message_id", t.msg.ID), slog.String("reason", why), slog.Any("error", err))
	}
}

func (r *run) snapshot() []*task {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*task, 0, r.tracked)
	for t := r.head; t != nil; t = t.next {
		out = append(out, t)
	}
	return out
}
