package dlqpg

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
var ErrInvalidTable = errors.New("dlqpg: invalid table name")

//go:embed dlq.sql
var schemaFS embed.FS

var schemaTemplate = template.Must(template.ParseFS(schemaFS, "dlq.sql"))

// Suffixes of the indexes named after the table. The primary key's index
// is PostgreSQL's own <table>_pkey, shorter than these.
const (
	lastFailedIndexSuffix = "_last_failed_at_idx"
	reasonIndexSuffix     = "_reason_idx"
	sourceIndexSuffix     = "_source_idx"
)

// parseTable validates s; the index suffixes are appended to the table's
// name, and the results must fit the identifier limit too.
func parseTable(s string) (pgschema.Name, error) {
	t, err := pgschema.Parse(s, "table", lastFailedIndexSuffix, reasonIndexSuffix, sourceIndexSuffix)
	if err != nil {
		return t, fmt.Errorf("%w %w", ErrInvalidTable, err)
	}
	return t, nil
}

func schemaSQL(t pgschema.Name) string {
	return pgschema.Render(schemaTemplate, "dlq.sql", struct{ Table, LastFailedIndex, ReasonIndex, SourceIndex string }{
		Table:           t.Ident(),
		LastFailedIndex: t.Local(lastFailedIndexSuffix),
		ReasonIndex:     t.Local(reasonIndexSuffix),
		SourceIndex:     t.Local(sourceIndexSuffix),
	})
}

// Schema returns the SQL that [Migrate] runs for opts, for those who apply
// migrations with their own tool. It is idempotent.
func Schema(opts Options) (string, error) {
	_, t, err := opts.withDefaults()
	if err != nil {
		return "", err
	}
	return schemaSQL(t), nil
}

// Migrate creates the store's table and its indexes, if they do not exist
// yet. It is safe to run at every start, by many processes at once: the
// statements run as one transaction under an advisory lock. A schema named
// in [Options.Table] must exist.
func Migrate(ctx context.Context, db DBTX, opts Options) error {
	_, t, err := opts.withDefaults()
	if err != nil {
		return err
	}
	return pgschema.Migrate(ctx, db, "dlqpg", t.Ident(), schemaSQL(t))
}
