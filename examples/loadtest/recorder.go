package main

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/idemq/idemq/backpressure"
	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/idempotency"
)

// seqHeader numbers each published copy of a message, duplicates included,
// so that the recorder can follow it; the message ID is the idempotency key
// and is shared by duplicates.
const seqHeader = "loadtest-seq"

// phases is how many equal windows the load is cut into for the verdict;
// one more window collects what happens during the drain.
const phases = 20

// Counters the load test keeps besides the library's metrics.
const (
	cntPublished     = "published"            // copies published, duplicates included
	cntDuplicates    = "duplicates_published" // of which duplicates
	cntAccepted      = "accepted"             // deliveries that reached the handler
	cntFailed        = "failed"               // accepted deliveries that ended in an error
	cntInProcRetries = "inprocess_retries"    // extra handler calls made by consumer.Retry
	cntDeferAdmit    = "deferred_admission"   // deliveries put off by the admission limiter
	cntDeferBreaker  = "deferred_breaker"     // deliveries put off by the open breaker
	cntDeferBusy     = "deferred_in_progress" // duplicates put off while their original ran
	cntFinished      = "finished"             // copies acked: done, skipped as duplicates or parked
	cntBreakerOpened = "breaker_opened"       // times the breaker opened
)

// stats is one window's worth of samples.
type stats struct {
	accepted histogram // accepted work: delivery visible -> handler done
	lag      histogram // queue lag at handler start: now - EnqueuedAt
	counts   map[string]int64
}

func (s *stats) count(name string, delta int64) {
	if s.counts == nil {
		s.counts = make(map[string]int64)
	}
	s.counts[name] += delta
}

func (s *stats) merge(o *stats) {
	s.accepted.merge(&o.accepted)
	s.lag.merge(&o.lag)
	for k, v := range o.counts {
		s.count(k, v)
	}
}

// msgState follows one published copy.
type msgState struct {
	enqueued time.Time // first published
	visible  time.Time // when its current delivery became available
	finished bool
}

// recorder collects the run's measurements: it is the consumer.Observer of
// the runtime and every middleware, wraps the source to see redelivery
// delays, and provides the outermost middleware that times each delivery.
// Every method is safe for concurrent use.
type recorder struct {
	start time.Time
	width time.Duration // of a phase

	mu     sync.Mutex
	msgs   []msgState
	oldest int // every copy before it is finished
	total  stats
	tick   stats // since the last progress line
	phase  [phases + 1]stats
	wait   histogram // accepted work: delivery visible -> handler start
	e2e    histogram // first enqueue -> acked, per copy
}

var _ consumer.Observer = (*recorder)(nil)

func newRecorder(start time.Time, load time.Duration) *recorder {
	return &recorder{start: start, width: max(load/phases, time.Nanosecond)}
}

func (r *recorder) phaseOf(t time.Time) *stats {
	i := int(t.Sub(r.start) / r.width)
	return &r.phase[min(max(i, 0), phases)]
}

// countLocked adds delta to name in the totals, the tick and t's phase.
func (r *recorder) countLocked(t time.Time, name string, delta int64) {
	r.total.count(name, delta)
	r.tick.count(name, delta)
	r.phaseOf(t).count(name, delta)
}

// Count implements consumer.Observer. Gauges are left out: the report
// is made of counters.
func (r *recorder) Count(name string, delta int64) {
	switch name {
	case consumer.MetricInflight, backpressure.MetricAdmissionInflight,
		backpressure.MetricBreakerState, backpressure.MetricConcurrencyLimit:
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.countLocked(now, name, delta)
}

// Observe implements consumer.Observer. Only the queue lag is kept; the
// handler's own duration is measured by the middleware, which knows
// whether the work was accepted.
func (r *recorder) Observe(name string, d time.Duration) {
	if name != consumer.MetricQueueLag {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total.lag.add(d)
	r.tick.lag.add(d)
	r.phaseOf(now).lag.add(d)
}

// register numbers n copies about to be published at t and returns the
// first number.
func (r *recorder) register(t time.Time, n, dups int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	first := len(r.msgs)
	for range n {
		r.msgs = append(r.msgs, msgState{enqueued: t, visible: t})
	}
	r.countLocked(t, cntPublished, int64(n))
	r.countLocked(t, cntDuplicates, int64(dups))
	return first
}

// unregister takes back copies whose publish failed.
func (r *recorder) unregister(t time.Time, first, n, dups int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := first; i < first+n; i++ {
		r.finishLocked(i)
	}
	r.countLocked(t, cntPublished, -int64(n))
	r.countLocked(t, cntDuplicates, -int64(dups))
}

func (r *recorder) finishLocked(seq int) {
	r.msgs[seq].finished = true
	for r.oldest < len(r.msgs) && r.msgs[r.oldest].finished {
		r.oldest++
	}
}

// nacked notes that copy seq becomes available again at visible.
func (r *recorder) nacked(seq int, visible time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq >= 0 && seq < len(r.msgs) {
		r.msgs[seq].visible = visible
	}
}

// delivered records the outcome of one delivery of copy seq, handled from
// start to done with calls handler calls and result err.
func (r *recorder) delivered(seq int, start, done time.Time, calls int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq < 0 || seq >= len(r.msgs) {
		return
	}
	m := &r.msgs[seq]
	ph := r.phaseOf(done)
	switch {
	case calls > 0:
		lat := done.Sub(m.visible)
		r.total.accepted.add(lat)
		r.tick.accepted.add(lat)
		ph.accepted.add(lat)
		r.wait.add(start.Sub(m.visible))
		r.countLocked(done, cntAccepted, 1)
		r.countLocked(done, cntInProcRetries, int64(calls-1))
		if err != nil {
			r.countLocked(done, cntFailed, 1)
		}
	case errors.Is(err, backpressure.ErrOpen):
		r.countLocked(done, cntDeferBreaker, 1)
	case errors.Is(err, idempotency.ErrInProgress):
		r.countLocked(done, cntDeferBusy, 1)
	case errors.Is(err, backpressure.ErrRejected):
		r.countLocked(done, cntDeferAdmit, 1)
	}
	if err == nil && !m.finished {
		r.e2e.add(done.Sub(m.enqueued))
		r.countLocked(done, cntFinished, 1)
		r.finishLocked(seq)
	}
}

// progress returns the tick's stats and starts a new tick, with the copies
// not yet finished and the age of the oldest of them at now.
func (r *recorder) progress(now time.Time) (tick stats, backlog int64, oldest time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tick, r.tick = r.tick, stats{}
	backlog, oldest = r.backlogLocked(now)
	return tick, backlog, oldest
}

func (r *recorder) backlogLocked(now time.Time) (int64, time.Duration) {
	n := r.total.counts[cntPublished] - r.total.counts[cntFinished]
	if r.oldest >= len(r.msgs) {
		return n, 0
	}
	return n, now.Sub(r.msgs[r.oldest].enqueued)
}

func (r *recorder) backlog(now time.Time) (int64, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.backlogLocked(now)
}

// window merges the phases [from, to).
func (r *recorder) window(from, to int) stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s stats
	for i := from; i < to; i++ {
		s.merge(&r.phase[i])
	}
	return s
}

// measure is the outermost middleware: it times each delivery and tells
// accepted work (the handler ran) from deliveries put off by the stack.
func (r *recorder) measure(next consumer.Handler) consumer.Handler {
	return consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		seq := seqOf(msg)
		p := &probe{}
		start := time.Now()
		err := next.Handle(context.WithValue(ctx, probeKey{}, p), msg)
		r.delivered(seq, start, time.Now(), p.calls, err)
		return err
	})
}

// probe counts the handler calls of one delivery. The calls of a delivery
// run one after another on one goroutine, so it needs no lock.
type probe struct{ calls int }

type probeKey struct{}

// called counts a handler call in ctx's delivery.
func called(ctx context.Context) {
	if p, ok := ctx.Value(probeKey{}).(*probe); ok {
		p.calls++
	}
}

func seqOf(msg *consumer.Message) int {
	n, err := strconv.Atoi(msg.Headers[seqHeader])
	if err != nil {
		return -1
	}
	return n
}

// tracedSource hands out deliveries whose Nack tells the recorder when the
// message becomes available again, so that accepted work is timed from
// when its delivery could first have started, not from a deferral long
// past.
type tracedSource struct {
	src consumer.Source
	rec *recorder
}

var _ consumer.Source = tracedSource{}

func (s tracedSource) Fetch(ctx context.Context, max int) ([]consumer.Delivery, error) {
	ds, err := s.src.Fetch(ctx, max)
	for i, d := range ds {
		ds[i] = tracedDelivery{Delivery: d, rec: s.rec, seq: seqOf(d.Message())}
	}
	return ds, err
}

type tracedDelivery struct {
	consumer.Delivery
	rec *recorder
	seq int
}

func (d tracedDelivery) Nack(ctx context.Context, delay time.Duration) error {
	// Noted before the nack: once nacked, the message can be fetched and
	// handled again before a note made afterwards would land.
	d.rec.nacked(d.seq, time.Now().Add(max(delay, 0)))
	return d.Delivery.Nack(ctx, delay)
}

// report sums up the run: loaded is how long the load ran, elapsed the
// whole run, oldestAtEnd the age of the oldest waiting message when the
// load stopped.
func (r *recorder) report(loaded, elapsed, oldestAtEnd time.Duration) *report {
	base := r.window(0, baselineTo)
	mid := r.window(middleFrom, middleTo)
	last := r.window(lastFrom, phases)

	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.total.counts
	rep := &report{
		Load:               loaded,
		Elapsed:            elapsed,
		Published:          c[cntPublished],
		Duplicates:         c[cntDuplicates],
		Processed:          c[consumer.MetricProcessed],
		Unfinished:         c[cntPublished] - c[cntFinished],
		Accepted:           r.total.accepted.summary(),
		Wait:               r.wait.summary(),
		EndToEnd:           r.e2e.summary(),
		LagMax:             r.total.lag.max,
		LagFinal:           max(r.phase[phases-1].lag.max, oldestAtEnd),
		Nacks:              c[consumer.MetricRetries],
		Failed:             c[cntFailed],
		InProcessRetries:   c[cntInProcRetries],
		DeferredAdmission:  c[cntDeferAdmit],
		DeferredBreaker:    c[cntDeferBreaker],
		DeferredInProgress: c[cntDeferBusy],
		AdmissionRejects:   c[backpressure.MetricAdmissionRejects],
		BreakerRejects:     c[backpressure.MetricBreakerRejects],
		BreakerOpened:      c[cntBreakerOpened],
		DeadLettered:       c[dlq.MetricDeadLettered],
		DuplicatesSkipped:  c[idempotency.MetricDuplicatesSkipped],
	}
	if elapsed > 0 {
		rep.Throughput = float64(rep.Processed) / elapsed.Seconds()
	}
	if rep.Published > 0 {
		rep.DLQRate = float64(rep.DeadLettered) / float64(rep.Published)
	}
	rep.Checks = judge(base, mid, last, oldestAtEnd, rep.Published, rep.DeadLettered)
	rep.Green = true
	for _, ch := range rep.Checks {
		rep.Green = rep.Green && ch.OK
	}
	return rep
}
