package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/idemq/idemq/outbox"
)

// Event types, and the suffix each gives its event's ID.
const (
	typeCreated = "order.created"
	typePaid    = "order.paid"

	// destination is every event's outbox destination: the relay sends
	// them all to -stream (outbox.To), so it only names them.
	destination = "orders"
)

// order is one order as the writer makes it.
type order struct {
	ID       string
	Customer string
	Amount   int64 // cents
}

// event is the body of an event.
type event struct {
	Type     string `json:"type"`
	Order    string `json:"order"`
	Customer string `json:"customer"`
	Amount   int64  `json:"amount_cents"`
}

// eventID is the ID of an order's event of type typ, such as
// "ord-x1y2z3-0007:created": the inbox's key for its effect.
func eventID(orderID, typ string) string {
	return orderID + ":" + strings.TrimPrefix(typ, "order.")
}

// message returns the outbox message of o's event of type typ. Its key is
// the order, so that an order's events are published in commit order.
func message(typ string, o order) outbox.Message {
	body, _ := json.Marshal(event{Type: typ, Order: o.ID, Customer: o.Customer, Amount: o.Amount}) // cannot fail
	return outbox.Message{
		ID:          eventID(o.ID, typ),
		Key:         o.ID,
		Destination: destination,
		Body:        body,
		Headers:     map[string]string{"content-type": "application/json", "event-type": typ},
	}
}

// Transient failures that a transaction is retried after: PostgreSQL
// aborted it to let another go on.
const (
	sqlSerializationFailure = "40001"
	sqlDeadlockDetected     = "40P01"
	maxTxAttempts           = 5
)

// retryTx runs f, a whole transaction, again when PostgreSQL aborted it as
// a deadlock victim or for a serialization failure: with live writers,
// these come from other transactions (another process's migration taking
// its locks, for one) and the next attempt goes through. Nothing of an
// aborted attempt was committed, so running it again is safe.
func retryTx(ctx context.Context, f func() error) error {
	for attempt := 1; ; attempt++ {
		err := f()
		var pgErr *pgconn.PgError
		if err == nil || attempt == maxTxAttempts || !errors.As(err, &pgErr) ||
			(pgErr.Code != sqlSerializationFailure && pgErr.Code != sqlDeadlockDetected) {
			return err
		}
		t := time.NewTimer(time.Duration(attempt) * 20 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

// createOrder inserts o and enqueues its order.created event in one
// transaction, and commits it, or, without commit, rolls it back: then
// neither the order nor its event ever existed. A transaction aborted by
// a deadlock is tried again.
func (a *app) createOrder(ctx context.Context, o order, commit bool) error {
	return retryTx(ctx, func() error { return a.createOrderOnce(ctx, o, commit) })
}

func (a *app) createOrderOnce(ctx context.Context, o order, commit bool) error {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("order %s: %w", o.ID, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // after a commit, a no-op
	if _, err := tx.Exec(ctx, `INSERT INTO orders (id, customer, amount_cents) VALUES ($1, $2, $3)`, o.ID, o.Customer, o.Amount); err != nil {
		return fmt.Errorf("order %s: %w", o.ID, err)
	}
	if err := a.writer.Enqueue(ctx, tx, message(typeCreated, o)); err != nil {
		return fmt.Errorf("order %s: %w", o.ID, err)
	}
	if !commit {
		return tx.Rollback(ctx)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("order %s: commit: %w", o.ID, err)
	}
	return nil
}

// payOrder marks order id paid and enqueues its order.paid event in one
// transaction. An order that does not exist, or is paid already, is an
// error and changes nothing. A transaction aborted by a deadlock is tried
// again.
func (a *app) payOrder(ctx context.Context, id string) error {
	return retryTx(ctx, func() error { return a.payOrderOnce(ctx, id) })
}

func (a *app) payOrderOnce(ctx context.Context, id string) error {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pay %s: %w", id, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	o := order{ID: id}
	err = tx.QueryRow(ctx, `UPDATE orders SET status = 'paid', paid_at = now() WHERE id = $1 AND status = 'created' RETURNING customer, amount_cents`, id).
		Scan(&o.Customer, &o.Amount)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("pay %s: no unpaid order with that ID", id)
	}
	if err != nil {
		return fmt.Errorf("pay %s: %w", id, err)
	}
	if err := a.writer.Enqueue(ctx, tx, message(typePaid, o)); err != nil {
		return fmt.Errorf("pay %s: %w", id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pay %s: commit: %w", id, err)
	}
	return nil
}

// written is what a writer did.
type written struct {
	committed, rolledBack, paid int
	rolledBackIDs               []string
	interrupted                 bool // ctx ended before the last order
}

func (w written) events() int { return w.committed + w.paid }

// write creates n orders, rate a second (0: as fast as it can), each in a
// transaction of its own: nine in ten commit, the tenth rolls back, and
// every other order (the even-numbered ones, which all commit) is then
// paid in a second transaction. Order
// IDs are new on every call, so a restarted writer never collides with an
// earlier one. It stops early, without an error, when ctx ends.
func (a *app) write(ctx context.Context, n int, rate float64) (written, error) {
	var (
		w     written
		run   = strings.ToLower(rand.Text()[:6])
		start = time.Now()
		// Orders come in bursts, up to ten a second, as they do from a
		// checkout: each burst is the orders due since the last one.
		tick  time.Duration
		burst = 1
	)
	if rate > 0 {
		tick = time.Duration(float64(time.Second) / rate)
		if rate > 10 {
			burst = int(rate / 10)
			tick = time.Duration(float64(time.Second) * float64(burst) / rate)
		}
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := range n {
		if tick > 0 && i%burst == 0 {
			timer.Reset(time.Until(start.Add(time.Duration(i/burst) * tick)))
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			w.interrupted = true
			return w, nil
		}
		o := order{
			ID:       fmt.Sprintf("ord-%s-%04d", run, i),
			Customer: fmt.Sprintf("cust-%02d", i*7%12),
			Amount:   500 + int64(i*389%9500),
		}
		declined := i%10 == 9
		if err := a.createOrder(ctx, o, !declined); err != nil {
			if ctx.Err() != nil {
				w.interrupted = true
				return w, nil
			}
			return w, err
		}
		if declined {
			w.rolledBack++
			w.rolledBackIDs = append(w.rolledBackIDs, o.ID)
			continue
		}
		w.committed++
		if i%2 == 0 {
			if err := a.payOrder(ctx, o.ID); err != nil {
				if ctx.Err() != nil {
					w.interrupted = true
					return w, nil
				}
				return w, err
			}
			w.paid++
		}
	}
	return w, nil
}
