package outbox

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"

	"github.com/jackc/pgx/v5"
)

// ErrInvalidTable reports a table name that is not a plain lower-case SQL
// identifier, optionally schema-qualified.
var ErrInvalidTable = errors.New("outbox: invalid table name")

//go:embed outbox.sql
var schemaFS embed.FS

var schemaTemplate = template.Must(template.ParseFS(schemaFS, "outbox.sql"))

// identPattern admits identifiers that mean the same quoted or not, so the
// tables can be queried by hand without quotes.
var identPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// maxIdentLen is PostgreSQL's identifier limit (NAMEDATALEN-1). Longer
// names are truncated silently, which could make the names derived from a
// table collide, so they are refused instead.
const maxIdentLen = 63

// migrateLock serialises Migrate calls, since concurrent CREATE ... IF NOT
// EXISTS of one object can fail with a unique violation in the catalog.
const migrateLock = `SELECT pg_advisory_xact_lock(hashtextextended('idemq/outbox: migrate', 0));`

// Suffixes of the relations named after the table.
const (
	keysSuffix           = "_keys"
	cursorsSuffix        = "_cursors"
	failedSuffix         = "_failed"
	tokenSeqSuffix       = "_token_seq"
	pendingIndexSuffix   = "_pending_idx"
	unkeyedIndexSuffix   = "_unkeyed_idx"
	publishedIndexSuffix = "_published_idx"
	readyIndexSuffix     = "_ready_idx"
	failedIndexSuffix    = "_failed_idx"
	awakeSuffix          = "_awake"
)

var suffixes = []string{
	keysSuffix, cursorsSuffix, failedSuffix, tokenSeqSuffix, pendingIndexSuffix,
	unkeyedIndexSuffix, publishedIndexSuffix, readyIndexSuffix, failedIndexSuffix, awakeSuffix,
	"_pkey", awakeSuffix + "_pkey", "_id_seq", keysSuffix + "_pkey", cursorsSuffix + "_pkey", failedSuffix + "_pkey",
}

// tableName is a validated table name, "table" or "schema.table".
type tableName struct {
	schema, name string
}

// parseTable validates s; the suffixes are appended to the table's name to
// name its other relations, and the results must fit the identifier limit
// too.
func parseTable(s string) (tableName, error) {
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

// String is the table's name as given, unquoted.
func (t tableName) String() string {
	if t.schema == "" {
		return t.name
	}
	return t.schema + "." + t.name
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
// table with suffix: CREATE INDEX puts it in its table's schema.
func (t tableName) local(suffix string) string {
	return pgx.Identifier{t.name + suffix}.Sanitize()
}

// literal quotes s as an SQL string literal.
func literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func schemaSQL(t tableName) string {
	var b bytes.Buffer
	err := schemaTemplate.Execute(&b, map[string]string{
		"Table":          t.ident(),
		"Keys":           t.sibling(keysSuffix),
		"Cursors":        t.sibling(cursorsSuffix),
		"Failed":         t.sibling(failedSuffix),
		"TokenSeq":       t.sibling(tokenSeqSuffix),
		"PendingIndex":   t.local(pendingIndexSuffix),
		"UnkeyedIndex":   t.local(unkeyedIndexSuffix),
		"PublishedIndex": t.local(publishedIndexSuffix),
		"ReadyIndex":     t.local(readyIndexSuffix),
		"FailedIndex":    t.local(failedIndexSuffix),
		"Awake":          t.sibling(awakeSuffix),
	})
	if err != nil {
		// The template is embedded and its data are plain strings: a
		// failure is a bug in this package.
		panic(fmt.Sprintf("outbox: render schema: %v", err))
	}
	return b.String()
}

// Schema returns the SQL that [Migrate] runs for opts, for those who apply
// migrations with their own tool. It is idempotent. Only [Options.Table]
// matters to it.
func Schema(opts Options) (string, error) {
	t, err := opts.table()
	if err != nil {
		return "", err
	}
	return schemaSQL(t), nil
}

// Migrate creates the outbox's tables, sequence and indexes, if they do not
// exist yet. It is safe to run at every start, by many processes at once:
// the statements run as one transaction under an advisory lock. A schema
// named in [Options.Table] must exist. Only [Options.Table] matters to it.
func Migrate(ctx context.Context, db DBTX, opts Options) error {
	if db == nil {
		return errors.New("outbox: nil DBTX")
	}
	t, err := opts.table()
	if err != nil {
		return err
	}
	// Without arguments pgx sends the text as one simple-protocol query,
	// which PostgreSQL runs as one implicit transaction (or inside db's,
	// when db is a pgx.Tx): the advisory lock is held to the end.
	if _, err := db.Exec(ctx, migrateLock+"\n"+schemaSQL(t)); err != nil {
		return fmt.Errorf("outbox: migrate %s: %w", t.ident(), err)
	}
	return nil
}
