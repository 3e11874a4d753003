package pgqueue

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
var ErrInvalidTable = errors.New("pgqueue: invalid table name")

//go:embed queue.sql
var schemaFS embed.FS

var schemaTemplate = template.Must(template.ParseFS(schemaFS, "queue.sql"))

// Suffixes of the relations named after the table. The primary key's index
// and the identity column's sequence are PostgreSQL's own (<table>_pkey,
// <table>_id_seq), no longer than these.
const (
	seqSuffix        = "_lease_seq"
	fetchIndexSuffix = "_fetch_idx"
)

// parseTable validates s; the suffixes are appended to the table's name to
// name its sequence and index, and the results must fit the identifier
// limit too.
func parseTable(s string) (pgschema.Name, error) {
	t, err := pgschema.Parse(s, "table", seqSuffix, fetchIndexSuffix)
	if err != nil {
		return t, fmt.Errorf("%w %w", ErrInvalidTable, err)
	}
	return t, nil
}

func schemaSQL(t pgschema.Name) string {
	return pgschema.Render(schemaTemplate, "queue.sql", struct{ Table, Seq, FetchIndex string }{
		Table:      t.Ident(),
		Seq:        t.Sibling(seqSuffix),
		FetchIndex: t.Local(fetchIndexSuffix),
	})
}

// Schema returns the SQL that [Migrate] runs for opts, for those who apply
// migrations with their own tool. It is idempotent. Only [Options.Table]
// matters to it: the queues sharing a table need no schema of their own.
func Schema(opts Options) (string, error) {
	t, err := opts.table()
	if err != nil {
		return "", err
	}
	return schemaSQL(t), nil
}

// Migrate creates the queue's table, its lease-token sequence and its fetch
// index, if they do not exist yet. It is safe to run at every start, by many
// processes at once: the statements run as one transaction under an
// advisory lock. A schema named in [Options.Table] must exist. Only
// [Options.Table] matters to it.
func Migrate(ctx context.Context, db DBTX, opts Options) error {
	if db == nil {
		return errors.New("pgqueue: nil DBTX")
	}
	t, err := opts.table()
	if err != nil {
		return err
	}
	return pgschema.Migrate(ctx, db, "pgqueue", t.Ident(), schemaSQL(t))
}
