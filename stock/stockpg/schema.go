package stockpg

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"text/template"

	"github.com/idemq/idemq/internal/pgschema"
)

// ErrInvalidPrefix reports a table prefix that is not a plain lower-case
// SQL identifier, optionally schema-qualified, or one too long for the
// names derived from it.
var ErrInvalidPrefix = errors.New("stockpg: invalid table prefix")

//go:embed stock.sql
var schemaFS embed.FS

var schemaTemplate = template.Must(template.ParseFS(schemaFS, "stock.sql"))

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

	// Reserve's group commit, and a Reserve on its own.
	reserveBatchSuffix = "_reserve_batch"
	reserveOneSuffix   = "_reserve_one"

	// Named by PostgreSQL: the primary key of the reservations (whose
	// violation Reserve recognises) and the codes' identity sequence.
	reservationsKeySuffix = "_reservations_pkey"
	codesSeqSuffix        = "_codes_seq_seq"
)

// parsePrefix validates s, "prefix" or "schema.prefix"; the names derived
// from it must fit the identifier limit too.
func parsePrefix(s string) (pgschema.Name, error) {
	p, err := pgschema.Parse(s, "prefix", heldIndexSuffix, dueIndexSuffix, holderIndexSuffix,
		freeIndexSuffix, reservationsKeySuffix, codesSeqSuffix, reserveBatchSuffix, reserveOneSuffix)
	if err != nil {
		return p, fmt.Errorf("%w %w", ErrInvalidPrefix, err)
	}
	return p, nil
}

func schemaSQL(p pgschema.Name) string {
	return pgschema.Render(schemaTemplate, "stock.sql", map[string]string{
		"Items":        p.Sibling(itemsSuffix),
		"Shards":       p.Sibling(shardsSuffix),
		"Reservations": p.Sibling(reservationsSuffix),
		"Holders":      p.Sibling(holdersSuffix),
		"Codes":        p.Sibling(codesSuffix),
		"HeldIndex":    p.Local(heldIndexSuffix),
		"DueIndex":     p.Local(dueIndexSuffix),
		"HolderIndex":  p.Local(holderIndexSuffix),
		"FreeIndex":    p.Local(freeIndexSuffix),
		"ReserveBatch": p.Sibling(reserveBatchSuffix),
		"ReserveOne":   p.Sibling(reserveOneSuffix),
	})
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
// yet, and (re)creates the function that makes a batch of reservations.
// It is safe to run at every start, by many processes at once: the
// statements run as one transaction under an advisory lock. A schema named
// in [Options.Prefix] must exist.
func Migrate(ctx context.Context, db DBTX, opts Options) error {
	_, p, err := opts.withDefaults()
	if err != nil {
		return err
	}
	return pgschema.Migrate(ctx, db, "stockpg", p.Sibling(itemsSuffix), schemaSQL(p))
}
