package outbox

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"text/template"

	"github.com/idemq/idemq/internal/pgschema"
)

// ErrInvalidTable reports a table name that is not a plain lower-case SQL
// identifier, optionally schema-qualified.
var ErrInvalidTable = errors.New("outbox: invalid table name")

//go:embed outbox.sql
var schemaFS embed.FS

var schemaTemplate = template.Must(template.ParseFS(schemaFS, "outbox.sql"))

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

// parseTable validates s; the suffixes are appended to the table's name to
// name its other relations, and the results must fit the identifier limit
// too.
func parseTable(s string) (pgschema.Name, error) {
	t, err := pgschema.Parse(s, "table", suffixes...)
	if err != nil {
		return t, fmt.Errorf("%w %w", ErrInvalidTable, err)
	}
	return t, nil
}

func schemaSQL(t pgschema.Name) string {
	return pgschema.Render(schemaTemplate, "outbox.sql", map[string]string{
		"Table":          t.Ident(),
		"Keys":           t.Sibling(keysSuffix),
		"Cursors":        t.Sibling(cursorsSuffix),
		"Failed":         t.Sibling(failedSuffix),
		"TokenSeq":       t.Sibling(tokenSeqSuffix),
		"PendingIndex":   t.Local(pendingIndexSuffix),
		"UnkeyedIndex":   t.Local(unkeyedIndexSuffix),
		"PublishedIndex": t.Local(publishedIndexSuffix),
		"ReadyIndex":     t.Local(readyIndexSuffix),
		"FailedIndex":    t.Local(failedIndexSuffix),
		"Awake":          t.Sibling(awakeSuffix),
	})
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
	t, err := opts.table()
	if err != nil {
		return err
	}
	return pgschema.Migrate(ctx, db, "outbox", t.Ident(), schemaSQL(t))
}
