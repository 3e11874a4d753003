package main

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// report is what the database says about the chain: what was committed,
// what took effect, and what is still on its way.
type report struct {
	orders, paid int64 // committed orders, and those paid
	processed    int64 // inbox keys: events whose effect committed
	shipments    int64
	customers    int64

	// Effects that are not exact; all zero when every committed event
	// took effect once.
	noShipment      int64 // orders without a shipment: an effect missing, or not there yet
	extraShipments  int64 // orders with more than one: an effect applied twice
	orphanShipments int64 // shipments of no committed order
	orphanKeys      int64 // inbox keys of no committed event
	wrongStatus     int64 // shipments whose status is not their order's
	wrongCustomers  int64 // customers whose totals are not their orders'
	rolledBack      int64 // orders, inbox keys and shipments of rolled-back order IDs

	pending int64 // events in the outbox, not yet published (and recorded)
	failed  int64 // events the relay gave up on
	queued  int64 // messages in the broker, not yet acknowledged
}

// events is the number of committed events: one per order, one more per
// paid order.
func (r report) events() int64 { return r.orders + r.paid }

// settled reports whether nothing is on its way any more: every event has
// left the outbox, and the broker holds no message.
func (r report) settled() bool { return r.pending == 0 && r.queued == 0 }

// problems lists what is not exact. Events still on their way count as
// missing effects.
func (r report) problems() []string {
	var ps []string
	add := func(n int64, format string, args ...any) {
		if n != 0 {
			ps = append(ps, fmt.Sprintf(format, args...))
		}
	}
	add(r.events()-r.processed, "%d committed events, %d processed", r.events(), r.processed)
	add(r.noShipment, "%d orders without a shipment", r.noShipment)
	add(r.extraShipments, "%d orders with more than one shipment", r.extraShipments)
	add(r.orphanShipments, "%d shipments of no committed order", r.orphanShipments)
	add(r.orphanKeys, "%d inbox keys of no committed event", r.orphanKeys)
	add(r.wrongStatus, "%d shipments whose status is not their order's", r.wrongStatus)
	add(r.wrongCustomers, "%d customers whose totals are off", r.wrongCustomers)
	add(r.rolledBack, "%d rows or keys of rolled-back orders", r.rolledBack)
	add(r.failed, "%d events the relay gave up on (in %s_failed)", r.failed, outboxTable)
	add(r.pending, "%d events still in the outbox", r.pending)
	add(r.queued, "%d messages still in the broker", r.queued)
	return ps
}

// checkQuery computes the report's database counts in one statement. $1
// is the list of rolled-back order IDs the caller knows of.
const checkQuery = `
WITH want AS (
    SELECT customer,
           count(*) AS orders,
           count(*) FILTER (WHERE status = 'paid') AS paid,
           coalesce(sum(amount_cents) FILTER (WHERE status = 'paid'), 0) AS spent
    FROM orders GROUP BY customer
), per_order AS (
    SELECT o.id, (SELECT count(*) FROM shipments s WHERE s.order_id = o.id) AS n
    FROM orders o
)
SELECT
    (SELECT count(*) FROM orders),
    (SELECT count(*) FROM orders WHERE status = 'paid'),
    (SELECT count(*) FROM ` + inboxTable + `),
    (SELECT count(*) FROM shipments),
    (SELECT count(*) FROM customers),
    (SELECT count(*) FROM per_order WHERE n = 0),
    (SELECT count(*) FROM per_order WHERE n > 1),
    (SELECT count(*) FROM shipments s WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = s.order_id)),
    (SELECT count(*) FROM ` + inboxTable + ` i WHERE NOT EXISTS (
        SELECT 1 FROM orders o
        WHERE i.key = o.id || ':created' OR (o.status = 'paid' AND i.key = o.id || ':paid'))),
    (SELECT count(*) FROM orders o JOIN shipments s ON s.order_id = o.id
        WHERE (o.status = 'paid') <> (s.status = 'ready')),
    (SELECT count(*) FROM want w FULL JOIN customers c USING (customer)
        WHERE w.orders IS DISTINCT FROM c.orders
           OR w.paid IS DISTINCT FROM c.paid
           OR w.spent IS DISTINCT FROM c.spent_cents),
    (SELECT count(*) FROM orders WHERE id = ANY($1))
      + (SELECT count(*) FROM shipments WHERE order_id = ANY($1))
      + (SELECT count(*) FROM ` + inboxTable + ` WHERE split_part(key, ':', 1) = ANY($1)),
    (SELECT count(*) FROM ` + outboxTable + `),
    (SELECT count(*) FROM ` + outboxTable + `_failed)`

// check reads the report. rolledBack are order IDs known to have been
// rolled back, whose traces it counts; the other counts cover every order
// in the database.
func (a *app) check(ctx context.Context, rolledBack []string) (report, error) {
	var r report
	if rolledBack == nil {
		rolledBack = []string{}
	}
	err := a.pool.QueryRow(ctx, checkQuery, rolledBack).Scan(
		&r.orders, &r.paid, &r.processed, &r.shipments, &r.customers,
		&r.noShipment, &r.extraShipments, &r.orphanShipments, &r.orphanKeys, &r.wrongStatus, &r.wrongCustomers,
		&r.rolledBack, &r.pending, &r.failed)
	if err != nil {
		return r, fmt.Errorf("check: %w", err)
	}
	if r.queued, err = a.queued(ctx); err != nil {
		return r, fmt.Errorf("check: count the broker's messages: %w", err)
	}
	return r, nil
}

// print writes the report for people, and the verdict.
func (r report) print(out io.Writer, broker string) {
	fmt.Fprintf(out, "check     %d orders committed, %d of them paid: %d events; %d took effect (inbox keys)\n",
		r.orders, r.paid, r.events(), r.processed)
	fmt.Fprintf(out, "          %d shipments for %d orders: %d orders without one, %d with more; %d customers, %d with totals off\n",
		r.shipments, r.orders, r.noShipment, r.extraShipments, r.customers, r.wrongCustomers)
	fmt.Fprintf(out, "          on the way: %d events in the outbox (%d given up), %d messages in the %s\n",
		r.pending, r.failed, r.queued, broker)
	if ps := r.problems(); len(ps) > 0 {
		yet := ""
		if !r.settled() {
			yet = " (yet: events are still on their way; check again once the relays and consumers have drained them)"
		}
		fmt.Fprintf(out, "NOT EXACT%s:\n  %s\n", yet, strings.Join(ps, "\n  "))
		return
	}
	fmt.Fprintln(out, "ok: every committed event took effect exactly once; nothing of a rolled-back order did")
}
