package stockpg

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrInvalidPrefix reports a table prefix that is not a plain lower-case
// SQL identifier, optionally schema-qualified, or one too long for the
// names derived from it.
var ErrInvalidPrefix = errors.New("stockpg: invalid table prefix")

//go:embed stock.sql
var schemaFS embed.FS

var schemaTemplate = template.Must(template.ParseFS(schemaFS, "stock.sql"))

// identPattern admits identifiers that mean the same quoted or not, so the
// tables can be queried by hand without quotes.
var identPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// maxIdentLen is PostgreSQL's identifier limit (NAMEDATALEN-1). Longer
// names are truncated silently, which could make the derived names
// collide, so they are refused instead.
const maxIdentLen = 63

// migrateLock serialises Migrate calls, since concurrent CREATE ... IF NOT
// EXISTS of one object can fail with a unique violation in the catalog.
const migrateLock = `SELECT pg_advisory_xact_lock(hashtextextended('idemq/stockpg: migrate', 0));`

// Suffixes of the relations named after the prefix.
const (
	itemsSuffix        = "_items"
	shardsSuffix       = "_shards"
	reservationsSuffix = "_reservations"
	holdersSuffix      = "_holders"
	codesSuffix        = "_codes"

	heldIndexSuffix   = "_reservations_held_idx"
	dueIndexSuffix    = "_reservations_due_idx"
	holderIndexSuffix = "_reservations_holder_idx"
	freeIndexSuffix   = "_codes_free_idx"

	// Reserve's group commit.
	reserveBatchSuffix = "_reserve_batch"

	// Named by PostgreSQL: the primary key of the reservations (whose
	// violation Reserve recognises) and the codes' identity sequence.
	reservationsKeySuffix = "_reservations_pkey"
	codesSeqSuffix        = "_codes_seq_seq"
)

// longestSuffix is the longest name derived from the prefix.
var longestSuffix = max(len(heldIndexSuffix), len(dueIndexSuffix), len(holderIndexSuffix),
	len(freeIndexSuffix), len(reservationsKeySuffix), len(codesSeqSuffix), len(reserveBatchSuffix))

// prefix is a validated table prefix, "prefix" or "schema.prefix".
type prefix struct {
	schema, name string
}

func parsePrefix(s string) (prefix, error) {
	parts := strings.Split(s, ".")
	var p prefix
	switch len(parts) {
	case 1:
		p.name = parts[0]
	case 2:
		p.schema, p.name = parts[0], parts[1]
	default:
		return p, fmt.Errorf("%w %q: want prefix or schema.prefix", ErrInvalidPrefix, s)
	}
	for _, part := range parts {
		if !identPattern.MatchString(part) {
			return p, fmt.Errorf("%w %q: %q is not an identifier matching %s", ErrInvalidPrefix, s, part, identPattern)
		}
		if len(part) > maxIdentLen {
			return p, fmt.Errorf("%w %q: %q is longer than %d bytes", ErrInvalidPrefix, s, part, maxIdentLen)
		}
	}
	if len(p.name)+longestSuffix > maxIdentLen {
		return p, fmt.Errorf("%w %q: %q is longer than %d bytes, the most that leaves room for the suffixes of the derived names",
			ErrInvalidPrefix, s, p.name, maxIdentLen-longestSuffix)
	}
	return p, nil
}

// table is the quoted, possibly qualified identifier of the relation named
// after the prefix with suffix.
func (p prefix) table(suffix string) string {
	if p.schema == "" {
		return pgx.Identifier{p.name + suffix}.Sanitize()
	}
	return pgx.Identifier{p.schema, p.name + suffix}.Sanitize()
}

// local is the quoted unqualified identifier of an index named after the
// prefix with suffix: CREATE INDEX puts it in the table's schema.
func (p prefix) local(suffix string) string {
	return pgx.Identifier{p.name + suffix}.Sanitize()
}

func schemaSQL(p prefix) string {
	var b bytes.Buffer
	err := schemaTemplate.Execute(&b, map[string]string{
		"Items":        p.table(itemsSuffix),
		"Shards":       p.table(shardsSuffix),
		"Reservations": p.table(reservationsSuffix),
		"Holders":      p.table(holdersSuffix),
		"Codes":        p.table(codesSuffix),
		"HeldIndex":    p.local(heldIndexSuffix),
		"DueIndex":     p.local(dueIndexSuffix),
		"HolderIndex":  p.local(holderIndexSuffix),
		"FreeIndex":    p.local(freeIndexSuffix),
		"ReserveBatch": p.table(reserveBatchSuffix),
	})
	if err != nil {
		// The template is embedded and its data are plain strings: a
		// failure is a bug in this package.
		panic(fmt.Sprintf("stockpg: render schema: %v", err))
	}
	return b.String()
}

// Schema returns the SQL that [Migrate] runs for opts, for those who apply
// migrations with their own tool. It is idempotent.
func Schema(opts Options) (string, error) {
	_, p, err := opts.withDefaults()
	if err != nil {
		return "", err
	}
	return schemaSQL(p), nil
}

// Migrate creates the store's tables and indexes, if they do not exist
// yet, and (re)creates the function that makes a batch of reservations. It is safe to run at every start, by many processes at once: the
// statements run as one transaction under an advisory lock. A schema named
// in [Options.Prefix] must exist.
func Migrate(ctx context.Context, db DBTX, opts Options) error {
	if db == nil {
		return errors.New("stockpg: nil DBTX")
	}
	_, p, err := opts.withDefaults()
	if err != nil {
		return err
	}
	// Without arguments pgx sends the text as one simple-protocol query,
	// which PostgreSQL runs as one implicit transaction (or inside db's,
	// when db is a pgx.Tx): the advisory lock is held to the end.
	if _, err := db.Exec(ctx, migrateLock+"\n"+schemaSQL(p)); err != nil {
		return fmt.Errorf("stockpg: migrate %s: %w", p.table("_*"), err)
	}
	return nil
}

// micros converts d to whole microseconds, PostgreSQL's resolution,
// rounding a positive remainder up so that no positive hold becomes zero.
func micros(d time.Duration) int64 {
	us := int64(d / time.Microsecond)
	if d%time.Microsecond > 0 {
		us++
	}
	return us
}
