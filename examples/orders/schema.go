package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ordersSchema holds the business tables: orders, written by the writer,
// and the consumer's effects, shipments and customers.
//
// shipments.order_id is deliberately not unique, and the customers'
// counters are additions: none of the effects is idempotent by itself, so
// an effect applied twice shows up in the counts instead of being absorbed
// by a constraint. Exactly once is the inbox's doing.
const ordersSchema = `
CREATE TABLE IF NOT EXISTS orders (
    id           text        PRIMARY KEY,
    customer     text        NOT NULL,
    amount_cents bigint      NOT NULL,
    status       text        NOT NULL DEFAULT 'created', -- created | paid
    created_at   timestamptz NOT NULL DEFAULT now(),
    paid_at      timestamptz
);

CREATE TABLE IF NOT EXISTS shipments (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   text        NOT NULL,                  -- not unique: see above
    customer   text        NOT NULL,
    status     text        NOT NULL DEFAULT 'pending', -- pending | ready (paid)
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS shipments_order_id_idx ON shipments (order_id);

CREATE TABLE IF NOT EXISTS customers (
    customer    text   PRIMARY KEY,
    orders      bigint NOT NULL DEFAULT 0, -- order.created effects
    paid        bigint NOT NULL DEFAULT 0, -- order.paid effects
    spent_cents bigint NOT NULL DEFAULT 0  -- their amounts
);
`

// migrateOrders creates the business tables if they do not exist. Processes
// that start together take turns, under an advisory lock: concurrent
// CREATE TABLE IF NOT EXISTS can fail.
func migrateOrders(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('idemq/examples/orders: migrate', 0))`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	// CREATE INDEX IF NOT EXISTS locks its table even when the index
	// exists, waiting for (and holding up) the transactions that write to
	// it: look first, so that a restart among live consumers takes no lock.
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('orders') IS NOT NULL AND to_regclass('customers') IS NOT NULL
    AND to_regclass('shipments') IS NOT NULL AND to_regclass('shipments_order_id_idx') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if exists {
		return nil
	}
	if _, err := tx.Exec(ctx, ordersSchema); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
