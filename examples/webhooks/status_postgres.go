package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// statusTable holds the events' statuses in -queue postgres.
const statusTable = "idemq_webhook_events"

// pgStatus is a statusStore in a PostgreSQL table, for -queue postgres:
// one row per event, each change one statement, timestamps from the
// database's clock. Rows are kept until deleted; a real service would
// prune those older than its dedupe window.
type pgStatus struct {
	pool *pgxpool.Pool
}

var _ statusStore = (*pgStatus)(nil)

// migrateStatus creates the table if it does not exist.
func migrateStatus(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+statusTable+` (
	id          text        PRIMARY KEY,
	source      text        NOT NULL DEFAULT '',
	status      text        NOT NULL,
	attempts    integer     NOT NULL DEFAULT 0,
	deliveries  integer     NOT NULL DEFAULT 0,
	error       text        NOT NULL DEFAULT '',
	reason      text        NOT NULL DEFAULT '',
	dlq_entry   text        NOT NULL DEFAULT '',
	received_at timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now()
)`)
	if err != nil {
		return fmt.Errorf("create table %s: %w", statusTable, err)
	}
	return nil
}

func (s *pgStatus) Accept(ctx context.Context, id, source string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO `+statusTable+` (id, source, status) VALUES ($1, $2, 'processing')
ON CONFLICT (id) DO NOTHING`, id, source)
	if err != nil {
		return false, fmt.Errorf("status of %q: accept: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

func (s *pgStatus) Attempt(ctx context.Context, id, source string, delivery int) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO `+statusTable+` AS e (id, source, status, attempts, deliveries)
VALUES ($1, $2, 'processing', 1, $3)
ON CONFLICT (id) DO UPDATE SET
	status = 'processing',
	attempts = e.attempts + 1,
	deliveries = greatest(e.deliveries, excluded.deliveries),
	reason = '',
	dlq_entry = '',
	updated_at = now()`, id, source, delivery)
	if err != nil {
		return fmt.Errorf("status of %q: attempt: %w", id, err)
	}
	return nil
}

func (s *pgStatus) exec(ctx context.Context, op, sql string, args ...any) error {
	if _, err := s.pool.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("status of %q: %s: %w", args[0], op, err)
	}
	return nil
}

func (s *pgStatus) Retrying(ctx context.Context, id, errText string) error {
	return s.exec(ctx, "retrying", `UPDATE `+statusTable+` SET error = $2, updated_at = now() WHERE id = $1`, id, errText)
}

func (s *pgStatus) Done(ctx context.Context, id string) error {
	return s.exec(ctx, "done", `UPDATE `+statusTable+` SET status = 'done', error = '', updated_at = now() WHERE id = $1`, id)
}

func (s *pgStatus) Failed(ctx context.Context, id, reason, errText, dlqEntry string) error {
	return s.exec(ctx, "failed", `UPDATE `+statusTable+`
SET status = 'failed', reason = $2, error = $3, dlq_entry = $4, updated_at = now() WHERE id = $1`,
		id, reason, errText, dlqEntry)
}

func (s *pgStatus) Get(ctx context.Context, id string) (eventStatus, error) {
	var st eventStatus
	err := s.pool.QueryRow(ctx, `SELECT id, source, status, attempts, deliveries, error, reason, dlq_entry, received_at, updated_at
FROM `+statusTable+` WHERE id = $1`, id).Scan(
		&st.ID, &st.Source, &st.Status, &st.Attempts, &st.Deliveries, &st.Error, &st.Reason, &st.DLQEntry, &st.ReceivedAt, &st.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventStatus{}, errUnknownEvent
	}
	if err != nil {
		return eventStatus{}, fmt.Errorf("status of %q: get: %w", id, err)
	}
	st.ReceivedAt, st.UpdatedAt = st.ReceivedAt.UTC(), st.UpdatedAt.UTC()
	return st, nil
}

func (s *pgStatus) Delete(ctx context.Context, id string) error {
	return s.exec(ctx, "delete", `DELETE FROM `+statusTable+` WHERE id = $1`, id)
}
