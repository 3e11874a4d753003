package idempotencypg

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

// ErrInvalidTable reports a table name that is not a plain lower-case SQL
// identifier, optionally schema-qualified.
var ErrInvalidTable = errors.New("idempotencypg: invalid table name")

//go:embed store.sql inbox.sql
var schemaFS embed.FS

var schemaTemplates = template.Must(template.ParseFS(schemaFS, "*.sql"))

// identPattern admits identifiers that mean the same quoted or not, so the
// tables can be queried by hand without quotes.
var identPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// maxIdentLen is PostgreSQL's identifier limit (NAMEDATALEN-1). Longer
// names are truncated silently, which could make the names derived from a
// table collide, so they are refused instead.
const maxIdentLen = 63

// migrateLock serialises Migrate calls, since concurrent CREATE ... IF NOT
// EXISTS of one object can fail with a unique violation in the catalog.
const migrateLock = `SELECT pg_advisory_xact_lock(hashtextextended('idemq/idempotencypg: migrate', 0));`

// tableName is a validated table name, "table" or "schema.table".
type tableName struct {
	schema, name string
}

// parseTable validates s; suffixes are appended to the table's name to name
// its sequence and indexes, and must fit the identifier limit too.
func parseTable(s string, suffixes ...string) (tableName, error) {
	parts := strings.Split(s, ".")
	var t tableName
	switch len(parts) {
	case 1:
		t.name = parts[0]
	case 2:
		t.schema, t.name = parts[0], parts[1]
	default:
		return t, fmt.Errorf("%w %q: want table or schema.table", ErrInvalidTable, s)
	}
	for _, p := range parts {
		if !identPattern.MatchString(p) {
			return t, fmt.Errorf("%w %q: %q is not an identifier matching %s", ErrInvalidTable, s, p, identPattern)
		}
		if len(p) > maxIdentLen {
			return t, fmt.Errorf("%w %q: %q is longer than %d bytes", ErrInvalidTable, s, p, maxIdentLen)
		}
	}
	for _, suffix := range suffixes {
		if len(t.name)+len(suffix) > maxIdentLen {
			return t, fmt.Errorf("%w %q: %q is longer than %d bytes with its suffix %q",
				ErrInvalidTable, s, t.name, maxIdentLen-len(suffix), suffix)
		}
	}
	return t, nil
}

// ident is the table's quoted, possibly qualified identifier.
func (t tableName) ident() string { return t.sibling("") }

// sibling is the quoted identifier of the relation named after the table
// with suffix, in the table's schema.
func (t tableName) sibling(suffix string) string {
	if t.schema == "" {
		return pgx.Identifier{t.name + suffix}.Sanitize()
	}
	return pgx.Identifier{t.schema, t.name + suffix}.Sanitize()
}

// local is the quoted unqualified identifier of an index named after the
// table with suffix: CREATE INDEX puts it in the table's schema.
func (t tableName) local(suffix string) string {
	return pgx.Identifier{t.name + suffix}.Sanitize()
}

// literal quotes s as an SQL string literal.
func literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// Suffixes of the relations named after a table.
const (
	seqSuffix            = "_token_seq"
	expiresIndexSuffix   = "_expires_at_idx"
	processedIndexSuffix = "_processed_at_idx"
)

func render(name string, data any) string {
	var b bytes.Buffer
	// The templates are embedded and their data are plain strings: a
	// failure is a bug in this package.
	if err := schemaTemplates.ExecuteTemplate(&b, name, data); err != nil {
		panic(fmt.Sprintf("idempotencypg: render %s: %v", name, err))
	}
	return b.String()
}

func storeSchema(t tableName) string {
	return render("store.sql", struct{ Table, Seq, ExpiresIndex string }{
		Table:        t.ident(),
		Seq:          t.sibling(seqSuffix),
		ExpiresIndex: t.local(expiresIndexSuffix),
	})
}

func inboxSchema(t tableName) string {
	return render("inbox.sql", struct{ Table, ProcessedIndex string }{
		Table:          t.ident(),
		ProcessedIndex: t.local(processedIndexSuffix),
	})
}

// Schema returns the SQL that [Migrate] runs for opts, for those who apply
// migrations with their own tool. It is idempotent.
func Schema(opts Options) (string, error) {
	_, t, err := opts.withDefaults()
	if err != nil {
		return "", err
	}
	return storeSchema(t), nil
}

// InboxSchema returns the SQL that [MigrateInbox] runs for opts, for those
// who apply migrations with their own tool. It is idempotent.
func InboxSchema(opts InboxOptions) (string, error) {
	_, t, err := opts.withDefaults()
	if err != nil {
		return "", err
	}
	return inboxSchema(t), nil
}

// Migrate creates the store's table, its token sequence and its expiry
// index, if they do not exist yet. It is safe to run at every start, by
// many processes at once: the statements run as one transaction under an
// advisory lock. A schema named in [Options.Table] must exist.
func Migrate(ctx context.Context, db DBTX, opts Options) error {
	_, t, err := opts.withDefaults()
	if err != nil {
		return err
	}
	return migrate(ctx, db, t, storeSchema(t))
}

// MigrateInbox creates the inbox's table and its index, if they do not
// exist yet. Like [Migrate], it is safe to run at every start.
func MigrateInbox(ctx context.Context, db DBTX, opts InboxOptions) error {
	_, t, err := opts.withDefaults()
	if err != nil {
		return err
	}
	return migrate(ctx, db, t, inboxSchema(t))
}

func migrate(ctx context.Context, db DBTX, t tableName, schema string) error {
	// Without arguments pgx sends the text as one simple-protocol query,
	// which PostgreSQL runs as one implicit transaction (or inside db's,
	// when db is a pgx.Tx): the advisory lock is held to the end.
	if _, err := db.Exec(ctx, migrateLock+"\n"+schema); err != nil {
		return fmt.Errorf("idempotencypg: migrate %s: %w", t.ident(), err)
	}
	return nil
}

// micros converts d to whole microseconds, PostgreSQL's resolution,
// rounding a positive remainder up so that no positive duration becomes
// zero.
func micros(d time.Duration) int64 {
	us := int64(d / time.Microsecond)
	if d%time.Microsecond > 0 {
		us++
	}
	return us
}
