package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/outbox"
)

// settlePoll is how often -role all looks whether everything has drained.
const settlePoll = 100 * time.Millisecond

// errNotExact is returned when a check finds effects missing or doubled.
var errNotExact = errors.New("not every committed event took effect exactly once")

// runRelay relays the outbox to the broker until ctx is done.
func (a *app) runRelay(ctx context.Context) error {
	pub, err := a.brokerPublisher()
	if err != nil {
		return err
	}
	r, err := outbox.NewRelay(a.pool, outbox.To(pub), a.outbox)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// runRoles runs cfg's roles. The relay and the consumer run until ctx is
// done, or, with the writer beside them (-role all), until the writer is
// done and every event it and earlier runs committed has drained; then
// the effects are checked.
func runRoles(ctx context.Context, cfg config, out io.Writer, log *slog.Logger) error {
	a, err := openApp(ctx, cfg, "", log)
	if err != nil {
		return err
	}
	defer a.close()

	if cfg.has(roleCheck) {
		r, err := a.check(ctx, nil)
		if err != nil {
			return err
		}
		r.print(out, a.brokerName())
		if len(r.problems()) > 0 {
			return errNotExact
		}
		return nil
	}

	all := cfg.has(roleWriter) && cfg.has(roleRelay) && cfg.has(roleConsumer)
	bg, stop := context.WithCancel(ctx)
	defer stop()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(role string, err error) {
		if err != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("%s: %w", role, err))
			mu.Unlock()
			stop() // one role failing stops the others
		}
	}
	start := time.Now()
	if cfg.has(roleRelay) {
		wg.Go(func() { fail(roleRelay, a.runRelay(bg)) })
	}
	if cfg.has(roleConsumer) {
		wg.Go(func() { fail(roleConsumer, a.runConsumer(bg)) })
	}
	fmt.Fprintf(out, "orders: %v on %s\n", cfg.roles, a.brokerName())

	var w written
	if cfg.has(roleWriter) {
		w, err = a.write(bg, cfg.orders, cfg.rate)
		fail(roleWriter, err)
		fmt.Fprintf(out, "writer    %d orders committed, %d rolled back, %d paid: %d events, in %s\n",
			w.committed, w.rolledBack, w.paid, w.events(), time.Since(start).Round(time.Millisecond))
	}
	settled := false
	if all && bg.Err() == nil {
		settled = a.waitSettled(bg)
	}
	if cfg.has(roleRelay) || cfg.has(roleConsumer) {
		if !all {
			<-bg.Done() // until interrupted, or a role fails
		}
		stop()
		wg.Wait()
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if cfg.has(roleRelay) {
		fmt.Fprintf(out, "relay     %d messages published\n", a.stats.get(metricBrokerPublished))
	}
	if cfg.has(roleConsumer) {
		fmt.Fprintf(out, "consumer  %d effects seen to commit, %d not, %d duplicates skipped\n",
			a.stats.get(metricEffectsCommitted),
			a.stats.get(metricEffectsTried)-a.stats.get(metricEffectsCommitted),
			a.stats.get(idempotency.MetricDuplicatesSkipped))
	}
	if !all {
		if w.interrupted {
			fmt.Fprintln(out, "writer interrupted; its committed orders stand, a new run writes new ones")
		}
		return nil
	}
	if !settled {
		fmt.Fprintln(out, "interrupted before everything drained; run again (-orders 0 to write nothing) to finish")
		return nil
	}
	r, err := a.check(context.WithoutCancel(ctx), w.rolledBackIDs)
	if err != nil {
		return err
	}
	r.print(out, a.brokerName())
	if len(r.problems()) > 0 {
		return errNotExact
	}
	return nil
}

// waitSettled waits until the outbox and the broker are empty, and reports
// whether they are (false: ctx ended first). Failed checks are logged and
// tried again.
func (a *app) waitSettled(ctx context.Context) bool {
	t := time.NewTicker(settlePoll)
	defer t.Stop()
	for {
		r, err := a.check(ctx, nil)
		switch {
		case err == nil && r.settled():
			return true
		case err != nil && ctx.Err() == nil:
			a.log.Warn("orders: check failed; trying again", slog.Any("error", err))
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		}
	}
}
