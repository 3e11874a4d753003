package pgqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/internal/pgschema"
)

// Publisher is a [consumer.Publisher] that inserts into one queue of a
// PostgreSQL table. Give it a pgx.Tx to publish as part of the caller's
// transaction: the messages, and their notification, appear when it
// commits and never if it rolls back. Its methods are safe for concurrent
// use when its DBTX is (a pool is; a pgx.Tx or *pgx.Conn is not).
type Publisher struct {
	db      DBTX
	queue   string
	channel string // "" without Notify
	sql     string
}

var _ consumer.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher that writes to opts.Queue of opts.Table
// through db. Only Table, Queue and Notify of opts matter to it.
func NewPublisher(db DBTX, opts Options) (*Publisher, error) {
	if db == nil {
		return nil, errors.New("pgqueue: nil DBTX")
	}
	o, t, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Publisher{db: db, queue: o.Queue, sql: newQueries(t, o.Notify).publish}
	if o.Notify {
		p.channel = channelName(t, o.Queue)
	}
	return p, nil
}

// Publish inserts msgs in one statement, so they are published all or
// none, in the order given (which Fetch follows among messages that become
// visible together). Attempt is ignored; a zero EnqueuedAt becomes the
// statement's time on the database's clock; an empty ID becomes 32 random
// hex digits. The caller's msgs are not modified. With [Options.Notify]
// the same statement notifies the queue's channel.
//
// IDs, keys and headers are stored as text, and must be valid UTF-8
// without NUL bytes: Publish refuses anything else, before writing, rather
// than alter it. Bodies may hold any bytes. Times keep microseconds.
func (p *Publisher) Publish(ctx context.Context, msgs ...consumer.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	var (
		ids      = make([]string, len(msgs))
		keys     = make([]string, len(msgs))
		bodies   = make([][]byte, len(msgs))
		headers  = make([]pgtype.Text, len(msgs))
		enqueued = make([]pgtype.Timestamptz, len(msgs))
	)
	for i := range msgs {
		m := &msgs[i]
		id := m.ID
		if id == "" {
			id = consumer.NewMessageID()
		}
		if err := checkText(id); err != nil {
			return fmt.Errorf("pgqueue: publish message %d: ID %q: %w", i, id, err)
		}
		if err := checkText(m.Key); err != nil {
			return fmt.Errorf("pgqueue: publish message %q: key %q: %w", id, m.Key, err)
		}
		ids[i], keys[i], bodies[i] = id, m.Key, m.Body
		if m.Headers != nil {
			for k, v := range m.Headers {
				if err := checkText(k); err != nil {
					return fmt.Errorf("pgqueue: publish message %q: header name %q: %w", id, k, err)
				}
				if err := checkText(v); err != nil {
					return fmt.Errorf("pgqueue: publish message %q: header %q: value %q: %w", id, k, v, err)
				}
			}
			b, err := json.Marshal(m.Headers)
			if err != nil { // a map of strings always marshals
				return fmt.Errorf("pgqueue: publish message %q: headers: %w", id, err)
			}
			headers[i] = pgtype.Text{String: string(b), Valid: true}
		}
		if !m.EnqueuedAt.IsZero() {
			enqueued[i] = pgtype.Timestamptz{Time: m.EnqueuedAt, Valid: true}
		}
	}
	args := []any{p.queue, ids, keys, bodies, headers, enqueued}
	if p.channel != "" {
		args = append(args, p.channel)
	}
	if _, err := p.db.Exec(ctx, p.sql, args...); err != nil {
		return fmt.Errorf("pgqueue: publish %d messages to %s: %w", len(msgs), p.queue, err)
	}
	return nil
}

var errText = errors.New("not UTF-8 text without NUL bytes")

// checkText accepts what a PostgreSQL text (and a jsonb string) keeps as
// is.
func checkText(s string) error {
	if !pgschema.IsText(s) {
		return errText
	}
	return nil
}
