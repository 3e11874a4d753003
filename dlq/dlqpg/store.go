package dlqpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idemq/idemq/dlq"

	"github.com/idemq/idemq/internal/pgschema"
)

// DefaultTable is the store's table when [Options.Table] is empty.
const DefaultTable = "idemq_dead_letters"

// Options configures a [Store] and its schema. Zero fields take the
// documented defaults.
type Options struct {
	// Table names the entries' table, "table" or "schema.table": lower-case
	// letters, digits and underscores, not starting with a digit. Its
	// indexes are named after it. Default [DefaultTable].
	Table string

	// MaxEntries caps the entries the table holds: Put refuses a new entry
	// with [dlq.ErrFull] when the table holds MaxEntries or more, and never
	// evicts one. Replacing an entry is always allowed. Zero means no cap.
	// A cap needs a DBTX that is also a [Batcher], run at READ COMMITTED;
	// capped Puts run one at a time per table, and each counts up to
	// MaxEntries rows, so keep the cap to what the table should hold.
	// [Schema] and [Migrate] ignore it.
	MaxEntries int
}

// withDefaults fills in defaults and returns the validated table name.
func (o Options) withDefaults() (Options, pgschema.Name, error) {
	if o.Table == "" {
		o.Table = DefaultTable
	}
	t, err := parseTable(o.Table)
	if err != nil {
		return o, t, err
	}
	if o.MaxEntries < 0 {
		return o, t, fmt.Errorf("dlqpg: negative MaxEntries %d", o.MaxEntries)
	}
	return o, t, nil
}

// Store is a [dlq.Store] in a PostgreSQL table. Its methods are safe for
// concurrent use, by any number of processes sharing the table.
type Store struct {
	db    DBTX
	batch Batcher // db, when the store has a cap
	max   int
	q     queries
}

var _ dlq.Store = (*Store)(nil)

// New returns a store that keeps its entries in opts.Table through db. Run
// [Migrate] first, once, to create the table.
func New(db DBTX, opts Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("dlqpg: nil DBTX")
	}
	o, t, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, max: o.MaxEntries, q: newQueries(t)}
	if o.MaxEntries > 0 {
		b, ok := db.(Batcher)
		if !ok {
			return nil, fmt.Errorf("dlqpg: MaxEntries needs a DBTX with SendBatch (*pgxpool.Pool, *pgx.Conn or pgx.Tx), got %T", db)
		}
		s.batch = b
	}
	return s, nil
}

// columns are the entry's columns, in the order of putArgs and scanEntry.
const columns = `id, message_id, message_key, body, headers, attempt, enqueued_at,
    source, reason, error, error_chain, attempts, first_failed_at, last_failed_at`

// typedParams are the parameters of an insert, cast so that they can stand
// in a SELECT list as well as in VALUES.
const typedParams = `$1::text, $2::text, $3::text, $4::bytea, $5::jsonb, $6::bigint, $7::timestamptz,
    $8::text, $9::text, $10::text, $11::text[], $12::bigint, $13::timestamptz, $14::timestamptz`

// Every reservation deadline is computed from statement_timestamp(): the
// database's clock, the same for every client. Outside a transaction it is
// now(); in one (a pgx.Tx passed as DBTX) it still moves from statement to
// statement, where now() would stay at the transaction's start.
type queries struct {
	table string // quoted identifier, for the statements built per filter

	put, putCapped, capLock, get, del string

	reserve, unreserve, deleteReserved string
}

func newQueries(t pgschema.Name) queries {
	r := strings.NewReplacer(
		"{table}", t.Ident(),
		"{regclass}", pgschema.Literal(t.Ident())+"::regclass",
		"{columns}", columns,
		"{params}", typedParams,
		"{ts}", "statement_timestamp()",
	)
	// Replacing an entry keeps the earlier first failure (LEAST ignores
	// NULL, the unknown one) and ends any reservation, so that a replay
	// still finishing cannot delete the newer failure.
	const upsert = `
ON CONFLICT (id) DO UPDATE
SET message_id      = EXCLUDED.message_id,
    message_key     = EXCLUDED.message_key,
    body            = EXCLUDED.body,
    headers         = EXCLUDED.headers,
    attempt         = EXCLUDED.attempt,
    enqueued_at     = EXCLUDED.enqueued_at,
    source          = EXCLUDED.source,
    reason          = EXCLUDED.reason,
    error           = EXCLUDED.error,
    error_chain     = EXCLUDED.error_chain,
    attempts        = EXCLUDED.attempts,
    first_failed_at = LEAST(d.first_failed_at, EXCLUDED.first_failed_at),
    last_failed_at  = EXCLUDED.last_failed_at,
    reserved_token  = NULL,
    reserved_until  = NULL`

	// The held statements answer whether they changed the row, and whether
	// it exists at all, to tell ErrReserved from ErrNotFound in one round
	// trip.
	const heldResult = `
SELECT EXISTS (SELECT FROM r), EXISTS (SELECT FROM {table} WHERE id = $1)`

	return queries{
		table: t.Ident(),

		put: r.Replace(`
INSERT INTO {table} AS d ({columns})
VALUES ({params})` + upsert),

		// The cap's lock: one per table (its oid), taken for the
		// transaction. The insert that follows in the same transaction
		// runs after the lock is held, so its snapshot (at READ COMMITTED,
		// one per statement) holds every entry the previous holder
		// committed: concurrent Puts count one after another.
		capLock: r.Replace(`
SELECT current_setting('transaction_isolation')
FROM pg_advisory_xact_lock(hashtextextended('idemq/dlqpg: put', {regclass}::oid::bigint))`),

		// The count stops at the cap, so a table over it (after the cap
		// was lowered) costs no more to check than a full one.
		putCapped: r.Replace(`
INSERT INTO {table} AS d ({columns})
SELECT {params}
WHERE current_setting('transaction_isolation') = 'read committed'
  AND (EXISTS (SELECT FROM {table} WHERE id = $1)
       OR (SELECT count(*) FROM (SELECT FROM {table} LIMIT $15) n) < $15)` + upsert),

		get: r.Replace(`SELECT {columns} FROM {table} WHERE id = $1`),

		del: r.Replace(`DELETE FROM {table} WHERE id = $1`),

		reserve: r.Replace(`
WITH r AS (
    UPDATE {table}
    SET reserved_token = $2,
        reserved_until = {ts} + $3::bigint * interval '1 microsecond'
    WHERE id = $1 AND (reserved_until IS NULL OR reserved_until <= {ts})
    RETURNING id
)` + heldResult),

		unreserve: r.Replace(`
WITH r AS (
    UPDATE {table}
    SET reserved_token = NULL, reserved_until = NULL
    WHERE id = $1 AND reserved_token = $2 AND reserved_until > {ts}
    RETURNING id
)` + heldResult),

		deleteReserved: r.Replace(`
WITH r AS (
    DELETE FROM {table}
    WHERE id = $1 AND reserved_token = $2 AND reserved_until > {ts}
    RETURNING id
)` + heldResult),
	}
}

// Put implements [dlq.Store]. Without a cap it is one INSERT ... ON
// CONFLICT DO UPDATE statement. With one, a batch of two statements run
// as one transaction: a per-table advisory lock, then the insert, which
// takes a new ID only while the table holds fewer than MaxEntries rows.
func (s *Store) Put(ctx context.Context, e dlq.Entry) error {
	args, err := putArgs(e)
	if err != nil {
		return err
	}
	if s.max == 0 {
		if _, err := s.db.Exec(ctx, s.q.put, args...); err != nil {
			return fmt.Errorf("dlqpg: put %s: %w", e.ID, err)
		}
		return nil
	}

	b := &pgx.Batch{}
	b.Queue(s.q.capLock)
	b.Queue(s.q.putCapped, append(args, s.max)...)
	br := s.batch.SendBatch(ctx, b)
	var isolation string
	err = br.QueryRow().Scan(&isolation)
	if err != nil {
		_ = br.Close() // err says why
		return fmt.Errorf("dlqpg: put %s: lock for the cap: %w", e.ID, err)
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("dlqpg: put %s: %w", e.ID, err)
	}
	if tag.RowsAffected() == 0 {
		if isolation != "read committed" {
			// Its snapshot could miss entries committed meanwhile, and let
			// the table grow past the cap.
			return fmt.Errorf("dlqpg: put %s: a capped store needs READ COMMITTED, the transaction runs at %s", e.ID, isolation)
		}
		return dlq.ErrFull
	}
	return nil
}

// putArgs are e's values for the put statements' first 14 parameters.
// Nil and empty slices and maps are kept apart (NULL and empty), and zero
// times of fields that may be unknown are stored as NULL.
func putArgs(e dlq.Entry) ([]any, error) {
	if e.ID == "" {
		return nil, errors.New("dlqpg: put of an entry without an ID")
	}
	var headers any
	if e.Message.Headers != nil {
		// encoding/json would replace invalid UTF-8 silently, and jsonb
		// refuses the \u0000 it writes for a NUL byte.
		for k, v := range e.Message.Headers {
			if !pgschema.IsText(k) || !pgschema.IsText(v) {
				return nil, fmt.Errorf("dlqpg: put %s: header %q: not UTF-8 text without NUL bytes", e.ID, k)
			}
		}
		b, err := json.Marshal(e.Message.Headers)
		if err != nil {
			return nil, fmt.Errorf("dlqpg: put %s: encode headers: %w", e.ID, err)
		}
		headers = string(b)
	}
	return []any{
		e.ID,
		e.Message.ID,
		e.Message.Key,
		e.Message.Body,
		headers,
		int64(e.Message.Attempt),
		nullTime(e.Message.EnqueuedAt),
		e.Source,
		string(e.Reason),
		e.Error,
		e.ErrorChain,
		int64(e.Attempts),
		nullTime(e.FirstFailedAt),
		e.LastFailedAt,
	}, nil
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// scanEntry reads a row of the columns listed in [columns]. Times come
// back in UTC, to PostgreSQL's microsecond.
func scanEntry(row pgx.Row) (dlq.Entry, error) {
	var (
		e                 dlq.Entry
		headers           []byte
		attempt, attempts int64
		enqueued, first   *time.Time
		last              time.Time
		reason            string
	)
	err := row.Scan(&e.ID, &e.Message.ID, &e.Message.Key, &e.Message.Body, &headers,
		&attempt, &enqueued, &e.Source, &reason, &e.Error, &e.ErrorChain,
		&attempts, &first, &last)
	if err != nil {
		return dlq.Entry{}, err
	}
	if headers != nil {
		if err := json.Unmarshal(headers, &e.Message.Headers); err != nil {
			return dlq.Entry{}, fmt.Errorf("entry %s: decode headers: %w", e.ID, err)
		}
	}
	e.Message.Attempt = int(attempt)
	if enqueued != nil {
		e.Message.EnqueuedAt = enqueued.UTC()
	}
	e.Reason = dlq.Reason(reason)
	e.Attempts = int(attempts)
	if first != nil {
		e.FirstFailedAt = first.UTC()
	}
	e.LastFailedAt = last.UTC()
	return e, nil
}

// Get implements [dlq.Store].
func (s *Store) Get(ctx context.Context, id string) (dlq.Entry, error) {
	e, err := scanEntry(s.db.QueryRow(ctx, s.q.get, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return dlq.Entry{}, dlq.ErrNotFound
	}
	if err != nil {
		return dlq.Entry{}, fmt.Errorf("dlqpg: get %s: %w", id, err)
	}
	return e, nil
}

// Delete implements [dlq.Store]. It deletes the entry whether or not a
// replay holds it.
func (s *Store) Delete(ctx context.Context, id string) error {
	tag, err := s.db.Exec(ctx, s.q.del, id)
	if err != nil {
		return fmt.Errorf("dlqpg: delete %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return dlq.ErrNotFound
	}
	return nil
}

// Count implements [dlq.Store].
func (s *Store) Count(ctx context.Context, f dlq.Filter) (int, error) {
	w := filterWhere(f)
	var n int64
	if err := s.db.QueryRow(ctx, "SELECT count(*) FROM "+s.q.table+w.sql(), w.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("dlqpg: count: %w", err)
	}
	return int(n), nil
}

// Purge implements [dlq.Store]. It is one DELETE statement, so it removes
// every entry that matched when it ran, reserved or not, and counts
// exactly what it removed.
func (s *Store) Purge(ctx context.Context, f dlq.Filter) (int, error) {
	w := filterWhere(f)
	tag, err := s.db.Exec(ctx, "DELETE FROM "+s.q.table+w.sql(), w.args...)
	if err != nil {
		return 0, fmt.Errorf("dlqpg: purge: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
