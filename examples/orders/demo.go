package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/outbox"
)

// The demonstration's settings.
const (
	demoLease   = time.Second
	demoWork    = 10 * time.Millisecond
	demoKills   = 3 // of the relay, and of the consumer
	demoTimeout = time.Minute

	// restartPause is how long a killed relay or consumer stays down.
	restartPause = 100 * time.Millisecond

	// killedDrain is the DrainTimeout of the demonstration's consumers:
	// a killed one cancels the handlers it is running at once.
	killedDrain = 10 * time.Millisecond
)

// errKilled is what a frozen relay or consumer gets from the broker, the
// database and its own handlers: nothing it does after its death counts.
var errKilled = errors.New("orders: killed")

// demo runs the chain in a schema and a stream of its own while killing
// the relay and the consumer, and checks the effects.
func demo(ctx context.Context, cfg config, out io.Writer, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	cfg.lease = demoLease
	if cfg.work == 0 {
		cfg.work = demoWork
	}
	suffix := strings.ToLower(rand.Text()[:10])
	cfg.stream += "-demo-" + suffix
	schema := pgx.Identifier{"idemq_orders_demo_" + suffix}.Sanitize()

	admin, err := connectPostgres(ctx, cfg.postgresURL, "")
	if err != nil {
		return err
	}
	defer admin.Close()
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return fmt.Errorf("create the demonstration's schema: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE") // best effort: a demonstration's leftovers
	}()
	a, err := openApp(ctx, cfg, "idemq_orders_demo_"+suffix, log)
	if err != nil {
		return err
	}
	defer func() {
		if a.rdb != nil {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = a.rdb.Del(ctx, a.streamKeys()...).Err() // best effort
		}
		a.close()
	}()

	fmt.Fprintf(out, "orders demo: PostgreSQL schema %s, %s, leases of %s\n", schema, a.brokerName(), cfg.lease)
	fmt.Fprintf(out, "writing %d orders at %g/s (1 in 10 rolled back, half of them paid later); relay and consumer killed %d times each\n\n",
		cfg.orders, cfg.rate, demoKills)
	res, err := a.chaos(ctx, chaosPlan{orders: cfg.orders, rate: cfg.rate, kills: demoKills}, out)
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	res.print(out, a)
	if len(res.report.problems()) > 0 {
		return errNotExact
	}
	return nil
}

// chaosPlan is a run of the chain with kills.
type chaosPlan struct {
	orders int
	rate   float64
	kills  int // of the relay, and of the consumer
}

// chaosResult is what happened.
type chaosResult struct {
	written                   written
	relayRuns, consumerRuns   int
	relayKills, consumerKills int
	heldAtKills               int64  // messages the killed consumers held, in all
	report                    report // after the frozen relays woke up
	elapsed                   time.Duration
}

// chaos writes plan.orders orders while a relay and a consumer run, kills
// each of them plan.kills times in the middle of a batch and restarts it,
// waits until everything has drained, wakes the frozen relays, and checks.
// It tells what happens on out as it goes.
func (a *app) chaos(ctx context.Context, plan chaosPlan, out io.Writer) (chaosResult, error) {
	var (
		res   chaosResult
		start = time.Now()
		outMu sync.Mutex
	)
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, "  %5.2fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	// Each run that is to be killed dies after about a fifth of the
	// events: all the kills happen while there is work left.
	events := plan.orders * 9 / 10 * 3 / 2
	budget := int64(max(1, events/(plan.kills+2)))

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	release := make(chan struct{}) // wakes the frozen relays
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		errs     []error
		zombies  []*relayRun
		finished []chan error // of every consumer run
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		stop()
	}
	pause := func() bool {
		t := time.NewTimer(restartPause)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-runCtx.Done():
			return false
		}
	}

	wg.Go(func() { // the relay and its successors
		for n := 1; ; n++ {
			b := int64(0)
			if n <= plan.kills {
				b = budget
			}
			r, err := a.startRelay(runCtx, b, release)
			if err != nil {
				fail(err)
				return
			}
			mu.Lock()
			res.relayRuns = n
			mu.Unlock()
			select {
			case <-r.pub.dead:
				r.cancel() // it never claims anything again
				mu.Lock()
				zombies = append(zombies, r)
				res.relayKills++
				mu.Unlock()
				r.pub.quiesce()
				unrecorded, err := a.unrecorded(runCtx, r.pub.sentIDs())
				if err != nil {
					fail(err)
					return
				}
				say("relay %d frozen mid-batch after handing %d messages to the broker, %d of them not recorded yet: they go out again",
					n, r.pub.budget, unrecorded)
				if !pause() {
					return
				}
			case <-runCtx.Done():
				r.cancel()
				if err := <-r.done; err != nil {
					fail(err)
				}
				return
			}
		}
	})

	wg.Go(func() { // the consumer and its successors
		for n := 1; ; n++ {
			b := int64(0)
			if n <= plan.kills {
				// Two thirds of the relay's, so that the kills come at
				// other moments.
				b = max(1, budget*2/3)
			}
			c, err := a.startConsumer(runCtx, b)
			if err != nil {
				fail(err)
				return
			}
			mu.Lock()
			res.consumerRuns = n
			finished = append(finished, c.done)
			mu.Unlock()
			select {
			case <-c.dead:
				mu.Lock()
				res.consumerKills++
				res.heldAtKills += c.heldAtDeath
				mu.Unlock()
				say("consumer %d killed inside an effect's transaction, with %d messages held: their effects roll back, or commit unacknowledged",
					n, c.heldAtDeath)
				if !pause() {
					return
				}
			case <-runCtx.Done():
				return
			}
		}
	})

	w, err := a.write(runCtx, plan.orders, plan.rate)
	res.written = w
	if err != nil {
		fail(fmt.Errorf("writer: %w", err))
	} else {
		say("writer done: %d orders committed, %d rolled back, %d paid: %d events", w.committed, w.rolledBack, w.paid, w.events())
	}
	settled := runCtx.Err() == nil && a.waitSettled(runCtx)
	if settled {
		say("outbox and %s empty: every event was relayed and consumed", a.brokerNoun())
	}
	stop()
	wg.Wait()
	for _, done := range finished {
		if err := <-done; err != nil && !errors.Is(err, consumer.ErrDrainTimeout) {
			errs = append(errs, fmt.Errorf("consumer: %w", err))
		}
	}
	// The frozen relays wake up, as a paused process would, and find that
	// their leases have passed to others: what they record changes nothing.
	close(release)
	for _, z := range zombies {
		if err := <-z.done; err != nil {
			errs = append(errs, fmt.Errorf("relay: %w", err))
		}
	}
	if len(zombies) > 0 {
		say("the %d frozen relays woke up; their late records changed nothing", len(zombies))
	}
	if len(errs) > 0 {
		return res, errors.Join(errs...)
	}
	if !settled {
		return res, fmt.Errorf("the chain did not drain: %w", context.Cause(ctx))
	}
	res.elapsed = time.Since(start)
	res.report, err = a.check(ctx, w.rolledBackIDs)
	return res, err
}

func (res chaosResult) print(out io.Writer, a *app) {
	w, s := res.written, a.stats
	published := s.get(metricBrokerPublished)
	// An effect not seen to commit was rolled back, or committed while its
	// consumer was killed before the answer came (PostgreSQL's counts in
	// the report are the truth).
	tried, committed := s.get(metricEffectsTried), s.get(metricEffectsCommitted)
	fmt.Fprintf(out, "writer    %d order transactions: %d committed, %d rolled back; %d paid: %d events\n",
		w.committed+w.rolledBack, w.committed, w.rolledBack, w.paid, w.events())
	fmt.Fprintf(out, "relay     %d runs, %d killed mid-batch; %d messages published for %d events (%d again)\n",
		res.relayRuns, res.relayKills, published, w.events(), published-int64(w.events()))
	fmt.Fprintf(out, "consumer  %d runs, %d killed mid-batch; %d effects written, %d seen to commit, %d not; %d duplicates skipped\n",
		res.consumerRuns, res.consumerKills, tried, committed, tried-committed, s.get(idempotency.MetricDuplicatesSkipped))
	res.report.print(out, a.brokerName())
	fmt.Fprintf(out, "(%s)\n", res.elapsed.Round(10*time.Millisecond))
}

// relayRun is one relay of the demonstration.
type relayRun struct {
	pub    *crashPublisher
	cancel context.CancelFunc
	done   chan error // Run's result
}

// startRelay starts a relay that freezes once it has handed budget
// messages to the broker (never, for 0).
func (a *app) startRelay(ctx context.Context, budget int64, release <-chan struct{}) (*relayRun, error) {
	pub, err := a.brokerPublisher()
	if err != nil {
		return nil, err
	}
	cp := &crashPublisher{next: pub, budget: budget, release: release, dead: make(chan struct{})}
	relay, err := outbox.NewRelay(a.pool, outbox.To(cp), a.outbox)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &relayRun{pub: cp, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- relay.Run(ctx) }()
	return r, nil
}

// crashPublisher freezes its relay in the middle of a Publish call: the
// call that reaches the budget hands part of its messages to the broker
// (at least one) and never returns until release, like a process killed
// between publishing and recording; so does every call after it. Then it
// reports errKilled, having published nothing more.
type crashPublisher struct {
	next    consumer.Publisher
	budget  int64 // 0: never
	release <-chan struct{}
	out     atomic.Int64 // messages taken by calls so far

	dead   chan struct{} // closed at the kill
	active atomic.Int64  // calls that may still hand messages to the broker

	mu   sync.Mutex
	sent []string // IDs of the messages the broker took
}

// sentIDs returns the IDs of the messages the broker took from p.
func (p *crashPublisher) sentIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.sent)
}

// publish hands msgs to the broker and notes them.
func (p *crashPublisher) publish(ctx context.Context, msgs []consumer.Message) error {
	if err := p.next.Publish(ctx, msgs...); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		p.sent = append(p.sent, m.ID)
	}
	return nil
}

func (p *crashPublisher) Publish(ctx context.Context, msgs ...consumer.Message) error {
	// Counted before looking at dead, so that once dead is closed and
	// active is zero, no call is left that could still publish.
	p.active.Add(1)
	defer p.active.Add(-1)
	if isClosed(p.dead) {
		return p.frozen()
	}
	if p.budget > 0 {
		n := p.out.Add(int64(len(msgs)))
		before := n - int64(len(msgs))
		switch {
		case before >= p.budget: // the kill is under way in another call
			return p.frozen()
		case n >= p.budget:
			k := int(p.budget - before) // 1 to len(msgs)
			_ = p.publish(ctx, msgs[:k])
			close(p.dead)
			return p.frozen()
		}
	}
	return p.publish(ctx, msgs)
}

// unrecorded counts the messages among ids that are still in the outbox:
// published, but not recorded as such.
func (a *app) unrecorded(ctx context.Context, ids []string) (int64, error) {
	var n int64
	err := a.pool.QueryRow(ctx, `SELECT count(*) FROM `+outboxTable+` WHERE message_id = ANY($1)`, ids).Scan(&n)
	return n, err
}

// frozen blocks until release, like a process that will never run again.
func (p *crashPublisher) frozen() error {
	p.active.Add(-1)
	defer p.active.Add(1) // for Publish's deferred decrement
	<-p.release
	return errKilled
}

// quiesce waits, after the kill, for the calls that were handing messages
// to the broker at that moment to finish: those are published too. It
// polls, briefly: they are a few round trips from done.
func (p *crashPublisher) quiesce() {
	for range 200 {
		if p.active.Load() == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// consumerRun is one consumer of the demonstration.
type consumerRun struct {
	dead        chan struct{} // closed at the kill
	heldAtDeath int64         // set before dead is closed
	done        chan error    // Run's result
}

// startConsumer starts a consumer that is killed when it has written
// budget effects (never, for 0): inside the transaction of the last one,
// which rolls back. From then on its source neither fetches nor
// acknowledges anything, and its handlers roll back, so what it held is
// delivered again once its lease ends.
func (a *app) startConsumer(ctx context.Context, budget int64) (*consumerRun, error) {
	src, closeSrc, err := a.newSource(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	cs := &crashSource{Source: src}
	c := &consumerRun{dead: make(chan struct{}), done: make(chan error, 1)}
	cs.dead = c.dead
	var (
		once  sync.Once
		tried atomic.Int64
	)
	kill := func() {
		once.Do(func() {
			c.heldAtDeath = cs.held.Load()
			close(c.dead)
			cancel()
		})
	}
	hook := func(context.Context) error {
		if isClosed(c.dead) {
			return errKilled
		}
		if budget > 0 && tried.Add(1) == budget {
			kill()
			return errKilled
		}
		return nil
	}
	run, err := a.newConsumer(cs, hook, killedDrain)
	if err != nil {
		cancel()
		closeSrc()
		return nil, err
	}
	go func() {
		err := run.Run(ctx)
		cancel()
		closeSrc()
		c.done <- err
	}()
	return c, nil
}

// crashSource is a Source that dies with its consumer: after the kill,
// whatever it fetches stays with it, and its acknowledgements, Nacks and
// lease extensions never reach the broker.
type crashSource struct {
	consumer.Source
	dead <-chan struct{}
	held atomic.Int64 // deliveries fetched and not yet acked or nacked
}

func (s *crashSource) Fetch(ctx context.Context, max int) ([]consumer.Delivery, error) {
	ds, err := s.Source.Fetch(ctx, max)
	if isClosed(s.dead) {
		return nil, errKilled // what it took is the dead consumer's until its lease ends
	}
	if err != nil {
		return nil, err
	}
	s.held.Add(int64(len(ds)))
	for i, d := range ds {
		ds[i] = &crashDelivery{Delivery: d, s: s}
	}
	return ds, nil
}

type crashDelivery struct {
	consumer.Delivery
	s *crashSource
}

func (d *crashDelivery) Ack(ctx context.Context) error {
	if isClosed(d.s.dead) {
		return errKilled
	}
	err := d.Delivery.Ack(ctx)
	if err == nil {
		d.s.held.Add(-1)
	}
	return err
}

func (d *crashDelivery) Nack(ctx context.Context, delay time.Duration) error {
	if isClosed(d.s.dead) {
		return errKilled
	}
	err := d.Delivery.Nack(ctx, delay)
	if err == nil {
		d.s.held.Add(-1)
	}
	return err
}

func (d *crashDelivery) Extend(ctx context.Context) error {
	if isClosed(d.s.dead) {
		return errKilled
	}
	return d.Delivery.Extend(ctx)
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
