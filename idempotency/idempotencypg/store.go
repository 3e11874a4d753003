package idempotencypg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idemq/idemq/idempotency"

	"github.com/idemq/idemq/internal/pgschema"
)

// DefaultTable is the store's table when [Options.Table] is empty.
const DefaultTable = "idemq_idempotency_keys"

// Options configures a [Store] and its schema. Zero fields take the
// documented defaults.
type Options struct {
	// Table names the keys' table, "table" or "schema.table": lower-case
	// letters, digits and underscores, not starting with a digit. The
	// token sequence and the expiry index are named after it. Default
	// [DefaultTable].
	Table string

	// Logger receives the failures [Store.RunReaper] carries on after.
	// Default slog.Default().
	Logger *slog.Logger
}

// withDefaults fills in defaults and returns the validated table name.
func (o Options) withDefaults() (Options, pgschema.Name, error) {
	if o.Table == "" {
		o.Table = DefaultTable
	}
	t, err := parseTable(o.Table, seqSuffix, expiresIndexSuffix)
	if err != nil {
		return o, t, err
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, t, nil
}

// Store is an [idempotency.Store] in a PostgreSQL table. Its methods are
// safe for concurrent use, by any number of processes sharing the table.
type Store struct {
	db     DBTX
	logger *slog.Logger
	q      queries
}

var _ idempotency.Store = (*Store)(nil)

// New returns a store that keeps its keys in opts.Table through db. Run
// [Migrate] first, once, to create the table.
func New(db DBTX, opts Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("idempotencypg: nil DBTX")
	}
	o, t, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Store{db: db, logger: o.Logger, q: newQueries(t)}, nil
}

// The state column's values.
const (
	stateInProgress = "in progress"
	stateCompleted  = "completed"
)

// Every deadline is computed from statement_timestamp(): the database's
// clock, the same for every client. Outside a transaction it is now(); in
// one (a pgx.Tx passed as DBTX) it still moves from statement to
// statement, where now() would stay at the transaction's start and make
// new leases look older than they are.
//
// A row is live while expires_at > statement_timestamp(); otherwise it is
// treated as absent, whether or not the reaper has deleted it yet.
type queries struct {
	claim, lookup, extend, complete, release, deleteExpired string
}

func newQueries(t pgschema.Name) queries {
	r := strings.NewReplacer(
		"{table}", t.Ident(),
		"{seq}", pgschema.Literal(t.Sibling(seqSuffix)),
		"{ts}", "statement_timestamp()",
	)
	return queries{
		// One statement: the insert takes an absent key; a live row makes
		// it answer no row; an expired one is taken over as if absent. The
		// token is drawn in the update, after the row lock is held, so it
		// is greater than the token being replaced.
		claim: r.Replace(`
INSERT INTO {table} AS k (key, fingerprint, state, token, expires_at, created_at)
VALUES ($1, $2, 'in progress', nextval({seq}), {ts} + $3::bigint * interval '1 microsecond', {ts})
ON CONFLICT (key) DO UPDATE
SET fingerprint = EXCLUDED.fingerprint,
    state       = 'in progress',
    token       = nextval({seq}),
    result      = NULL,
    expires_at  = EXCLUDED.expires_at,
    created_at  = EXCLUDED.created_at
WHERE k.expires_at <= {ts}
RETURNING k.token`),

		lookup: r.Replace(`
SELECT state, fingerprint, result,
       ((extract(epoch FROM expires_at) - extract(epoch FROM {ts})) * 1000000)::bigint
FROM {table}
WHERE key = $1 AND expires_at > {ts}`),

		extend: r.Replace(`
UPDATE {table}
SET expires_at = {ts} + $3::bigint * interval '1 microsecond'
WHERE key = $1 AND token = $2 AND state = 'in progress' AND expires_at > {ts}`),

		complete: r.Replace(`
UPDATE {table}
SET state = 'completed', result = $3, expires_at = {ts} + $4::bigint * interval '1 microsecond'
WHERE key = $1 AND token = $2 AND state = 'in progress' AND expires_at > {ts}`),

		release: r.Replace(`
DELETE FROM {table}
WHERE key = $1 AND token = $2 AND state = 'in progress' AND expires_at > {ts}`),

		// SKIP LOCKED leaves rows that a claim is taking over to it; the
		// row lock re-checks expires_at against the row's newest version.
		deleteExpired: r.Replace(`
DELETE FROM {table}
WHERE key IN (
    SELECT key FROM {table}
    WHERE expires_at <= {ts}
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)`),
	}
}

// claimAttempts bounds Claim's retries when the row that blocked its
// insert is gone (expired or released) by the time it is read.
const claimAttempts = 5

// Claim implements [idempotency.Store]. The claim is one INSERT ... ON
// CONFLICT statement; only when the key is live is its row read, by a
// second statement, to answer Completed or InProgress.
func (s *Store) Claim(ctx context.Context, key, fingerprint string, lease time.Duration) (idempotency.Claim, error) {
	for range claimAttempts {
		var token int64
		err := s.db.QueryRow(ctx, s.q.claim, key, fingerprint, pgschema.Micros(lease)).Scan(&token)
		if err == nil {
			return idempotency.Claim{Status: idempotency.Claimed, Token: token}, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return idempotency.Claim{}, fmt.Errorf("idempotencypg: claim: %w", err)
		}

		var (
			state, storedFP string
			result          []byte
			leftMicros      int64
		)
		err = s.db.QueryRow(ctx, s.q.lookup, key).Scan(&state, &storedFP, &result, &leftMicros)
		if errors.Is(err, pgx.ErrNoRows) {
			// The row expired or was released between the statements:
			// the key is absent now, so claim again.
			continue
		}
		if err != nil {
			return idempotency.Claim{}, fmt.Errorf("idempotencypg: claim: read key: %w", err)
		}
		if fingerprint != "" && storedFP != "" && fingerprint != storedFP {
			return idempotency.Claim{}, idempotency.ErrFingerprintMismatch
		}
		switch state {
		case stateCompleted:
			if len(result) == 0 {
				result = nil // as stored by Complete(nil) or Complete([]byte{})
			}
			return idempotency.Claim{Status: idempotency.Completed, Result: result}, nil
		case stateInProgress:
			return idempotency.Claim{
				Status:     idempotency.InProgress,
				RetryAfter: time.Duration(leftMicros) * time.Microsecond,
			}, nil
		default:
			return idempotency.Claim{}, fmt.Errorf("idempotencypg: claim: key has unknown state %q", state)
		}
	}
	return idempotency.Claim{}, fmt.Errorf("idempotencypg: claim: key changed hands %d times while being claimed", claimAttempts)
}

// Extend implements [idempotency.Store].
func (s *Store) Extend(ctx context.Context, key string, token int64, lease time.Duration) error {
	return s.held(ctx, "extend", s.q.extend, key, token, pgschema.Micros(lease))
}

// Complete implements [idempotency.Store].
func (s *Store) Complete(ctx context.Context, key string, token int64, result []byte, retention time.Duration) error {
	return s.held(ctx, "complete", s.q.complete, key, token, result, pgschema.Micros(retention))
}

// Release implements [idempotency.Store]. It deletes the row, so the key
// is absent at once.
func (s *Store) Release(ctx context.Context, key string, token int64) error {
	return s.held(ctx, "release", s.q.release, key, token)
}

// held runs a statement conditional on token holding key's claim.
func (s *Store) held(ctx context.Context, op, sql string, args ...any) error {
	tag, err := s.db.Exec(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("idempotencypg: %s: %w", op, err)
	}
	if tag.RowsAffected() == 0 {
		return idempotency.ErrStaleToken
	}
	return nil
}
