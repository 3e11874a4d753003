package outbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/internal/pgschema"
)

// Writer enqueues events into an outbox. It holds no connection: each call
// runs on the DBTX it is given, normally the caller's pgx.Tx. A Writer is
// safe for concurrent use.
type Writer struct {
	enqueue string
	requeue string
	channel string // "" without Notify
}

// NewWriter returns a Writer for the outbox opts describes. Only Table and
// Notify of opts matter to it. Run [Migrate] first, once.
func NewWriter(opts Options) (*Writer, error) {
	o, t, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	q := newQueries(t, o.Notify, false)
	w := &Writer{enqueue: q.enqueue, requeue: q.requeue}
	if o.Notify {
		w.channel = channelName(t)
	}
	return w, nil
}

// Enqueue writes msgs to the outbox through tx, in one statement: give it
// the pgx.Tx that makes the business change the events announce, and they
// are published if and only if that transaction commits.
//
// Events that share a Key are published in the order their transactions
// commit, and within one Enqueue in the order given. To keep that order
// without gaps, the first Enqueue on a key in a transaction locks the key
// until the transaction ends: writers of one key commit one at a time, so
// keep those transactions short. One call locks its keys in a fixed order,
// so concurrent calls cannot deadlock each other; a transaction that calls
// Enqueue more than once, on different keys, should do so in a consistent
// key order. Under REPEATABLE READ or SERIALIZABLE, two transactions
// enqueueing on one key make the later one fail with a serialization
// error, to be retried as usual.
//
// An empty ID becomes 32 random hex digits; the caller's msgs are not
// modified. IDs, keys, destinations and headers are stored as text, and
// must be valid UTF-8 without NUL bytes: Enqueue refuses anything else,
// before writing, rather than alter it. Bodies may hold any bytes. With
// [Options.Notify] the same statement notifies the relays, when tx
// commits.
func (w *Writer) Enqueue(ctx context.Context, tx DBTX, msgs ...Message) error {
	if tx == nil {
		return errors.New("outbox: nil DBTX")
	}
	if len(msgs) == 0 {
		return nil
	}
	var (
		ids     = make([]string, len(msgs))
		keys    = make([]string, len(msgs))
		dests   = make([]string, len(msgs))
		bodies  = make([][]byte, len(msgs))
		headers = make([]pgtype.Text, len(msgs))
	)
	for i := range msgs {
		m := &msgs[i]
		id := m.ID
		if id == "" {
			id = consumer.NewMessageID()
		}
		if err := pgschema.CheckText(id); err != nil {
			return fmt.Errorf("outbox: enqueue message %d: ID %q: %w", i, id, err)
		}
		if err := pgschema.CheckText(m.Key); err != nil {
			return fmt.Errorf("outbox: enqueue message %q: key %q: %w", id, m.Key, err)
		}
		if err := pgschema.CheckText(m.Destination); err != nil {
			return fmt.Errorf("outbox: enqueue message %q: destination %q: %w", id, m.Destination, err)
		}
		ids[i], keys[i], dests[i], bodies[i] = id, m.Key, m.Destination, m.Body
		var err error
		if headers[i], err = pgschema.HeadersJSON(m.Headers); err != nil {
			return fmt.Errorf("outbox: enqueue message %q: %w", id, err)
		}
	}
	args := []any{ids, keys, dests, bodies, headers}
	if w.channel != "" {
		args = append(args, w.channel)
	}
	if _, err := tx.Exec(ctx, w.enqueue, args...); err != nil {
		return fmt.Errorf("outbox: enqueue %d messages: %w", len(msgs), err)
	}
	return nil
}

// Requeue moves the failed events with the given message IDs (see
// [Options.OnFailure]) back into the outbox, through tx, and returns how
// many it moved. Each goes to the end of its key's order, behind the
// events its key has now; those that shared a key keep their old order
// among themselves. IDs not in the failed table are ignored. A requeued
// event keeps its ID, so a consumer that did receive it once (a publish can
// fail after the broker took the message) dedupes it.
func (w *Writer) Requeue(ctx context.Context, tx DBTX, ids ...string) (int, error) {
	if tx == nil {
		return 0, errors.New("outbox: nil DBTX")
	}
	if len(ids) == 0 {
		return 0, nil
	}
	args := []any{ids}
	var n int64
	var err error
	if w.channel != "" {
		args = append(args, w.channel)
		err = tx.QueryRow(ctx, w.requeue, args...).Scan(&n, nil)
	} else {
		err = tx.QueryRow(ctx, w.requeue, args...).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("outbox: requeue %d events: %w", len(ids), err)
	}
	return int(n), nil
}
