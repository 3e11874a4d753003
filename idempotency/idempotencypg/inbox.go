package idempotencypg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idemq/idemq/consumer"
	"github.com/idemq/idemq/idempotency"

	"github.com/idemq/idemq/internal/pgschema"
)

// Inbox defaults.
const (
	// DefaultInboxTable is the inbox's table when [InboxOptions.Table] is
	// empty.
	DefaultInboxTable = "idemq_inbox"
	// DefaultMaxKeyLen is the key limit when [InboxOptions.MaxKeyLen] is
	// zero.
	DefaultMaxKeyLen = 256
	// maxMaxKeyLen keeps keys well inside a btree index entry (about 2.7kB).
	maxMaxKeyLen = 2048
)

// rollbackTimeout bounds a rollback that runs after the handler's context
// was cancelled. If it runs out, pgx closes the connection, which rolls
// back too.
const rollbackTimeout = 10 * time.Second

// InboxOptions configures [Inbox] and its schema. Zero fields take the
// documented defaults.
type InboxOptions struct {
	// Table names the processed keys' table, "table" or "schema.table",
	// with the rules of [Options.Table]. Default [DefaultInboxTable].
	Table string

	// Key derives a message's key. Default [idempotency.KeyFromID].
	Key idempotency.KeyFunc

	// MaxKeyLen rejects longer keys, in bytes, as permanent failures
	// ([idempotency.ErrKeyTooLong]). Default [DefaultMaxKeyLen]; at most
	// 2048, to stay inside a btree index entry.
	MaxKeyLen int

	// TxOptions sets the transaction's isolation and access mode. The
	// zero value begins transactions with db.Begin, at the database's
	// default isolation (READ COMMITTED unless configured otherwise),
	// which is what the inbox needs: a duplicate waits for the first
	// delivery's transaction and then sees its key. Under REPEATABLE READ
	// or SERIALIZABLE that duplicate fails with a serialization error
	// instead and is redelivered. A non-zero value needs a db with
	// BeginTx, such as *pgxpool.Pool or *pgx.Conn.
	TxOptions pgx.TxOptions

	// Observer counts the duplicates skipped, as
	// [idempotency.MetricDuplicatesSkipped]. Default none.
	Observer consumer.Observer

	// Logger receives failed rollbacks and the failures
	// [RunInboxReaper] carries on after. Default slog.Default().
	Logger *slog.Logger
}

// withDefaults fills in defaults and returns the validated table name.
func (o InboxOptions) withDefaults() (InboxOptions, pgschema.Name, error) {
	if o.Table == "" {
		o.Table = DefaultInboxTable
	}
	t, err := parseTable(o.Table, processedIndexSuffix)
	if err != nil {
		return o, t, err
	}
	if o.Key == nil {
		o.Key = idempotency.KeyFromID
	}
	switch {
	case o.MaxKeyLen < 0:
		return o, t, fmt.Errorf("idempotencypg: negative MaxKeyLen %d", o.MaxKeyLen)
	case o.MaxKeyLen == 0:
		o.MaxKeyLen = DefaultMaxKeyLen
	case o.MaxKeyLen > maxMaxKeyLen:
		return o, t, fmt.Errorf("idempotencypg: MaxKeyLen %d is over %d, too long for a btree index entry", o.MaxKeyLen, maxMaxKeyLen)
	}
	if o.Observer == nil {
		o.Observer = consumer.NopObserver{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, t, nil
}

type txCtxKey struct{}

// TxFromContext returns the transaction of the message being handled
// under [Inbox]. The handler's business writes must go through it to
// commit together with the message's key. The handler must not commit or
// roll it back itself.
func TxFromContext(ctx context.Context) (pgx.Tx, bool) {
	tx, ok := ctx.Value(txCtxKey{}).(pgx.Tx)
	return tx, ok
}

// Inbox returns middleware that runs each message in a transaction of db
// together with a row for its key in the inbox table, so that a message's
// writes commit once however many times it is delivered:
//
//   - the key's row is inserted first (ON CONFLICT DO NOTHING);
//   - if the key was processed before, the transaction is rolled back and
//     the message acked (nil) without running the handler;
//   - a concurrent delivery of the same key waits on the primary key until
//     the first one's transaction ends: after a commit it sees the key and
//     is skipped, after a rollback it runs;
//   - otherwise the handler runs with the transaction in its context (see
//     [TxFromContext]); nil commits, and a failed commit is returned, so
//     the message is redelivered;
//   - a handler error or panic rolls everything back, the key included, so
//     the redelivery runs the handler again; the error is returned and the
//     panic goes on after the rollback;
//   - a key that cannot be derived, is empty, is longer than MaxKeyLen or
//     is not UTF-8 text without NUL bytes is a [consumer.Permanent]
//     failure.
//
// Only writes through the transaction are covered: a handler's calls to
// other systems happen again when its transaction rolls back. Run
// [MigrateInbox] first, once, to create the table.
func Inbox(db TxBeginner, opts InboxOptions) (consumer.Middleware, error) {
	if db == nil {
		return nil, errors.New("idempotencypg: nil TxBeginner")
	}
	o, t, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	begin := db.Begin
	if o.TxOptions != (pgx.TxOptions{}) {
		b, ok := db.(txOptionsBeginner)
		if !ok {
			return nil, fmt.Errorf("idempotencypg: InboxOptions.TxOptions needs a db with BeginTx, and %T has none", db)
		}
		txOpts := o.TxOptions
		begin = func(ctx context.Context) (pgx.Tx, error) { return b.BeginTx(ctx, txOpts) }
	}
	insert := strings.ReplaceAll(`INSERT INTO {table} (key) VALUES ($1) ON CONFLICT (key) DO NOTHING`,
		"{table}", t.Ident())
	return func(next consumer.Handler) consumer.Handler {
		return &inbox{o: o, begin: begin, insert: insert, next: next}
	}, nil
}

type inbox struct {
	o      InboxOptions
	begin  func(context.Context) (pgx.Tx, error)
	insert string
	next   consumer.Handler
}

func (h *inbox) key(msg *consumer.Message) (string, error) {
	k, err := h.o.Key(msg)
	if err != nil {
		return "", err
	}
	if k == "" {
		return "", fmt.Errorf("idempotencypg: empty key for message %q", msg.ID)
	}
	if len(k) > h.o.MaxKeyLen {
		return "", fmt.Errorf("%w: %d bytes for message %q, limit %d", idempotency.ErrKeyTooLong, len(k), msg.ID, h.o.MaxKeyLen)
	}
	// PostgreSQL text refuses these; as a permanent failure they reach a
	// dead-letter queue instead of failing at every redelivery.
	if !pgschema.IsText(k) {
		return "", fmt.Errorf("idempotencypg: key for message %q is not UTF-8 text without NUL bytes", msg.ID)
	}
	return k, nil
}

func (h *inbox) Handle(ctx context.Context, msg *consumer.Message) error {
	key, err := h.key(msg)
	if err != nil {
		return consumer.Permanent(err)
	}
	tx, err := h.begin(ctx)
	if err != nil {
		return fmt.Errorf("idempotencypg: inbox: begin: %w", err)
	}
	finished := false
	defer func() {
		// Runs on every path but a commit: errors, duplicates, and a
		// panic or runtime.Goexit in the handler, which carries on
		// unrecovered after the rollback.
		if !finished {
			h.rollback(ctx, tx, key)
		}
	}()

	tag, err := tx.Exec(ctx, h.insert, key)
	if err != nil {
		return fmt.Errorf("idempotencypg: inbox: insert key %q: %w", key, err)
	}
	if tag.RowsAffected() == 0 {
		h.o.Observer.Count(idempotency.MetricDuplicatesSkipped, 1)
		return nil
	}

	if err := h.next.Handle(context.WithValue(ctx, txCtxKey{}, tx), msg); err != nil {
		return err
	}
	finished = true
	if err := tx.Commit(ctx); err != nil {
		// The outcome of a commit whose answer was lost is unknown; the
		// redelivery finds out: the key is there if it committed.
		return fmt.Errorf("idempotencypg: inbox: commit key %q: %w", key, err)
	}
	return nil
}

func (h *inbox) rollback(ctx context.Context, tx pgx.Tx, key string) {
	// The rollback must run even when ctx is cancelled (a lost lease, a
	// timeout), or pgx would close the connection instead.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if err := tx.Rollback(rctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		h.o.Logger.LogAttrs(ctx, slog.LevelWarn, "idempotencypg: inbox: rollback failed; the connection was closed, which rolls back",
			slog.String("key", key), slog.Any("error", err))
	}
}

// DeleteInboxOlderThan deletes up to batch processed keys older than age
// from the inbox table of opts, and returns how many it deleted. A batch
// of zero or less means [DefaultReapBatch].
//
// A key deleted too early lets a late duplicate run again: age must be
// longer than the longest time after which the same message can still
// arrive, which is the broker's redelivery horizon plus the time a message
// can spend in a dead-letter queue before it is replayed (and any producer
// retries). Days or weeks, not minutes.
func DeleteInboxOlderThan(ctx context.Context, db DBTX, opts InboxOptions, age time.Duration, batch int) (int64, error) {
	_, t, err := opts.withDefaults()
	if err != nil {
		return 0, err
	}
	if age <= 0 {
		return 0, fmt.Errorf("idempotencypg: inbox age %s is not positive", age)
	}
	if batch <= 0 {
		batch = DefaultReapBatch
	}
	sql := strings.ReplaceAll(`
DELETE FROM {table}
WHERE key IN (
    SELECT key FROM {table}
    WHERE processed_at < statement_timestamp() - $1::bigint * interval '1 microsecond'
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)`, "{table}", t.Ident())
	tag, err := db.Exec(ctx, sql, pgschema.Micros(age), batch)
	if err != nil {
		return 0, fmt.Errorf("idempotencypg: delete inbox keys: %w", err)
	}
	return tag.RowsAffected(), nil
}

// RunInboxReaper calls [DeleteInboxOlderThan] until ctx is done, as
// [Store.RunReaper] calls [Store.DeleteExpired]. It returns ctx's error
// when ctx is done, and an error at once for invalid opts or age.
func RunInboxReaper(ctx context.Context, db DBTX, opts InboxOptions, age, interval time.Duration, batch int) error {
	o, _, err := opts.withDefaults()
	if err != nil {
		return err
	}
	if age <= 0 {
		return fmt.Errorf("idempotencypg: inbox age %s is not positive", age)
	}
	if interval <= 0 {
		interval = DefaultReapInterval
	}
	if batch <= 0 {
		batch = DefaultReapBatch
	}
	return runReaper(ctx, interval, o.Logger, "idempotencypg: deleting inbox keys failed; retrying after the interval",
		func(ctx context.Context) (int64, error) { return DeleteInboxOlderThan(ctx, db, opts, age, batch) }, int64(batch))
}
