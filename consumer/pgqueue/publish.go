package pgqueue

import (
	"context"
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
		if err := pgschema.CheckText(id); err != nil {
			return fmt.Errorf("pgqueue: publish message %d: ID %q: %w", i, id, err)
		}
		if err := pgschema.CheckText(m.Key); err != nil {
			return fmt.Errorf("pgqueue: publish message %q: key %q: %w", id, m.Key, err)
		}
		ids[i], keys[i], bodies[i] = id, m.Key, m.Body
		var err error
		if headers[i], err = pgschema.HeadersJSON(m.Headers); err != nil {
			return fmt.Errorf("pgqueue: publish message %q: %w", id, err)
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
