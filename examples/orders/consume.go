package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/idempotency/idempotencypg"
)

// paidTooSoon is how long a paid event whose order's created event has not
// taken effect yet waits before it is delivered again.
const paidTooSoon = 200 * time.Millisecond

// newConsumer returns a consumer of src that applies each event's effect
// through the inbox. hook, if not nil, runs inside each effect's
// transaction after its writes, and an error from it rolls them back: the
// demonstration kills consumers there. drain is the consumer's
// DrainTimeout (0: the default, 30s).
func (a *app) newConsumer(src consumer.Source, hook func(context.Context) error, drain time.Duration) (*consumer.Consumer, error) {
	inbox, err := idempotencypg.Inbox(a.pool, a.inbox)
	if err != nil {
		return nil, err
	}
	effect := consumer.HandlerFunc(func(ctx context.Context, m *consumer.Message) error {
		return a.apply(ctx, m, hook)
	})
	return consumer.New(src, consumer.Chain(a.countCommits, inbox)(effect), consumer.Config{
		MaxInFlight: 4 * concurrency,
		Concurrency: concurrency,
		// An order's events one at a time, in the order they came.
		OrderByKey:   true,
		Backoff:      consumer.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second},
		DrainTimeout: drain,
		Logger:       a.log,
		Observer:     a.stats,
	})
}

// runConsumer consumes until ctx is done.
func (a *app) runConsumer(ctx context.Context) error {
	src, closeSrc, err := a.newSource(ctx)
	if err != nil {
		return err
	}
	defer closeSrc()
	c, err := a.newConsumer(src, nil, 0)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

type appliedKey struct{}

// countCommits counts the effects whose inbox transaction committed: the
// handler ran (apply says so through the context) and the inbox, outside
// it, returned nil.
func (a *app) countCommits(next consumer.Handler) consumer.Handler {
	return consumer.HandlerFunc(func(ctx context.Context, m *consumer.Message) error {
		var applied bool
		err := next.Handle(context.WithValue(ctx, appliedKey{}, &applied), m)
		if err == nil && applied {
			a.stats.Count(metricEffectsCommitted, 1)
		}
		return err
	})
}

// errNoTx is a programming error: apply runs under the inbox.
var errNoTx = errors.New("orders: no inbox transaction in the handler's context")

// apply writes m's effect in the inbox's transaction, which also holds m's
// key and commits both when apply returns nil.
func (a *app) apply(ctx context.Context, m *consumer.Message, hook func(context.Context) error) error {
	tx, ok := idempotencypg.TxFromContext(ctx)
	if !ok {
		return consumer.Permanent(errNoTx)
	}
	var ev event
	if err := json.Unmarshal(m.Body, &ev); err != nil || ev.Order == "" {
		return consumer.Permanent(fmt.Errorf("message %s: undecodable event: %v", m.ID, err))
	}
	switch ev.Type {
	case typeCreated:
		if _, err := tx.Exec(ctx, `INSERT INTO shipments (order_id, customer) VALUES ($1, $2)`, ev.Order, ev.Customer); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
INSERT INTO customers (customer, orders) VALUES ($1, 1)
ON CONFLICT (customer) DO UPDATE SET orders = customers.orders + 1`, ev.Customer); err != nil {
			return err
		}
	case typePaid:
		tag, err := tx.Exec(ctx, `UPDATE shipments SET status = 'ready' WHERE order_id = $1`, ev.Order)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			// Its created event did not take effect yet: the consumer that
			// had it was killed, and it will be delivered again. Both roll
			// back; this one comes back a little later.
			return consumer.RetryAfter(paidTooSoon, fmt.Errorf("order %s paid before its creation took effect", ev.Order))
		}
		if _, err := tx.Exec(ctx, `
UPDATE customers SET paid = paid + 1, spent_cents = spent_cents + $2 WHERE customer = $1`, ev.Customer, ev.Amount); err != nil {
			return err
		}
	default:
		return consumer.Permanent(fmt.Errorf("message %s: unknown event type %q", m.ID, ev.Type))
	}
	if a.cfg.work > 0 {
		t := time.NewTimer(a.cfg.work)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		}
	}
	a.stats.Count(metricEffectsTried, 1)
	if hook != nil {
		if err := hook(ctx); err != nil {
			return err
		}
	}
	if p, ok := ctx.Value(appliedKey{}).(*bool); ok {
		*p = true
	}
	return nil
}
