package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/idemq/idemq/backpressure"
	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/idempotency"
)

// Settings of the stack that are not flags.
const (
	admissionWait       = 50 * time.Millisecond  // the bounded wait for an admission slot
	admissionRetryAfter = 500 * time.Millisecond // when a rejected message comes back
	dlqAttempts         = 5
)

// buildStack assembles the middleware around the handler and describes it.
func buildStack(cfg config, rec *recorder, dep *dependency, logger *slog.Logger) (consumer.Handler, string, error) {
	store, err := dlq.NewMemoryStore(dlq.MemoryOptions{})
	if err != nil {
		return nil, "", err
	}
	park, err := dlq.Middleware(dlq.Options{Sink: store, Source: "loadtest", MaxAttempts: dlqAttempts, Observer: rec, Logger: logger})
	if err != nil {
		return nil, "", err
	}
	var guard backpressure.Guard
	var guardDesc string
	switch cfg.admission {
	case "on":
		guard, err = backpressure.NewAdmission(backpressure.AdmissionOptions{
			Name: "partner", Limit: cfg.capacity, MaxWait: admissionWait, MaxQueue: cfg.capacity,
			RetryAfter: admissionRetryAfter, Observer: rec,
		})
		guardDesc = fmt.Sprintf("admission(limit %d, wait <= %s, retry after %s)", cfg.capacity, admissionWait, admissionRetryAfter)
	case "aimd":
		guard, err = backpressure.NewAIMD(backpressure.AIMDOptions{
			Name: "partner", Initial: cfg.capacity, Min: 1, Max: max(cfg.inflight, cfg.capacity),
			Timeout: cfg.budget / 2, MaxWait: admissionWait, MaxQueue: cfg.capacity,
			RetryAfter: admissionRetryAfter, Observer: rec,
		})
		guardDesc = fmt.Sprintf("aimd(initial %d, drop above %s, wait <= %s, retry after %s)",
			cfg.capacity, cfg.budget/2, admissionWait, admissionRetryAfter)
	}
	if err != nil {
		return nil, "", err
	}
	// The breaker counts only refused connections: slowness is the
	// limiter's business and scattered 500s are Retry's, but a partner
	// that refuses every call is dead and should not be called for a
	// while.
	openFor := min(max(cfg.duration/20, 100*time.Millisecond), 5*time.Second)
	breaker, err := backpressure.NewBreaker(backpressure.BreakerOptions{
		Name:                "partner",
		ConsecutiveFailures: 5,
		OpenTimeout:         openFor,
		IsFailure:           func(err error) bool { return errors.Is(err, errUnavailable) },
		OnStateChange: func(_ string, _, to backpressure.State) {
			if to == backpressure.StateOpen {
				rec.Count(cntBreakerOpened, 1)
			}
		},
		Observer: rec,
	})
	if err != nil {
		return nil, "", err
	}
	dedupe, err := idempotency.Middleware(idempotency.Options{Store: idempotency.NewMemoryStore(), Observer: rec, Logger: logger})
	if err != nil {
		return nil, "", err
	}
	retry, err := consumer.Retry(consumer.RetryOptions{MaxAttempts: 3, Initial: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond, MaxElapsed: 100 * time.Millisecond})
	if err != nil {
		return nil, "", err
	}

	mws := []consumer.Middleware{rec.measure, park, consumer.Recover}
	desc := fmt.Sprintf("dlq(%d deliveries) > recover", dlqAttempts)
	if cfg.jitter {
		mws = append(mws, spreadDeferrals)
		desc += " > spread deferrals"
	}
	if guard != nil {
		mws = append(mws, backpressure.Middleware(guard))
		desc += " > " + guardDesc
	} else {
		desc += " > (no admission)"
	}
	mws = append(mws, backpressure.Middleware(breaker), dedupe, retry, consumer.Timeout(cfg.budget))
	desc += fmt.Sprintf(" > breaker(5 refusals, open %s) > idempotency > retry(3 calls) > timeout(%s); %d deliveries in flight",
		openFor, cfg.budget, cfg.inflight)

	handle := consumer.HandlerFunc(func(ctx context.Context, _ *consumer.Message) error {
		called(ctx)
		return dep.Call(ctx)
	})
	return consumer.Chain(mws...)(handle), desc, nil
}

// spreadDeferrals stretches the Retry-After of a deferred message (one put
// off by admission, the breaker or a duplicate in progress) by a random
// 0-50%, for -jitter. The library nacks a deferral with the exact hint, so
// the messages rejected together come back together: an open breaker sends
// every deferred message back at the instant it half-opens, and after an
// outage the backlog returns in waves that the admission limit mostly
// rejects again while the dependency idles between them. Spreading the
// hint, never shortening it, breaks the waves up.
func spreadDeferrals(next consumer.Handler) consumer.Handler {
	return consumer.HandlerFunc(func(ctx context.Context, msg *consumer.Message) error {
		err := next.Handle(ctx, msg)
		if d, ok := consumer.RetryAfterDelay(err); ok && d > 0 && errors.Is(err, consumer.ErrDeferred) {
			return consumer.RetryAfter(d+rand.N(d/2+1), err)
		}
		return err
	})
}
