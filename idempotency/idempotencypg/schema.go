package idempotencypg

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
var ErrInvalidTable = errors.New("idempotencypg: invalid table name")

//go:embed store.sql inbox.sql
var schemaFS embed.FS

var schemaTemplates = template.Must(template.ParseFS(schemaFS, "*.sql"))

// parseTable validates s; suffixes are appended to the table's name to name
// its sequence and indexes, and must fit the identifier limit too.
func parseTable(s string, suffixes ...string) (pgschema.Name, error) {
	t, err := pgschema.Parse(s, "table", suffixes...)
	if err != nil {
		return t, fmt.Errorf("%w %w", ErrInvalidTable, err)
	}
	return t, nil
}

// Suffixes of the relations named after a table.
const (
	seqSuffix            = "_token_seq"
	expiresIndexSuffix   = "_expires_at_idx"
	processedIndexSuffix = "_processed_at_idx"
)

func storeSchema(t pgschema.Name) string {
	return pgschema.Render(schemaTemplates, "store.sql", struct{ Table, Seq, ExpiresIndex string }{
		Table:        t.Ident(),
		Seq:          t.Sibling(seqSuffix),
		ExpiresIndex: t.Local(expiresIndexSuffix),
	})
}

func inboxSchema(t pgschema.Name) string {
	return pgschema.Render(schemaTemplates, "inbox.sql", struct{ Table, ProcessedIndex string }{
		Table:          t.Ident(),
		ProcessedIndex: t.Local(processedIndexSuffix),
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
	return pgschema.Migrate(ctx, db, "idempotencypg", t.Ident(), storeSchema(t))
}

// MigrateInbox creates the inbox's table and its index, if they do not
// exist yet. Like [Migrate], it is safe to run at every start.
func MigrateInbox(ctx context.Context, db DBTX, opts InboxOptions) error {
	_, t, err := opts.withDefaults()
	if err != nil {
		return err
	}
	return pgschema.Migrate(ctx, db, "idempotencypg", t.Ident(), inboxSchema(t))
}
