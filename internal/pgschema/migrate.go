package pgschema

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"text/template"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Execer is the part of a backend's DBTX that [Migrate] needs.
type Execer interface {
	Exec(ctx context.Context, sql string, arguments ...any) (pgconn.CommandTag, error)
}

// Render executes the template called name of t with data. The templates
// are embedded and their data are plain strings, so a failure is a bug in
// the backend: Render panics with it.
func Render(t *template.Template, name string, data any) string {
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, name, data); err != nil {
		panic(fmt.Sprintf("pgschema: render %s: %v", name, err))
	}
	return b.String()
}

// rowQuerier is the part of a backend's DBTX that lets Migrate skip a
// schema that is already in place.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Migrate runs schema, idempotent DDL, on db under a transaction-scoped
// advisory lock named after pkg, the backend's package name: concurrent
// CREATE ... IF NOT EXISTS of one object can fail with a unique violation
// in the catalog, so the backend's migrations run one at a time. what is
// the backend's main table (a quoted identifier) and names it in errors.
// Errors start with "pkg: ".
//
// The DDL is skipped when it already ran: Migrate marks what with a
// comment holding a hash of schema, and a db that can query rows (every
// pgx DBTX) checks the mark first. Even CREATE INDEX IF NOT EXISTS locks
// its table, so running the DDL again at every process start would wait
// for live writers and could deadlock with them.
func Migrate(ctx context.Context, db Execer, pkg, what, schema string) error {
	if db == nil {
		return errors.New(pkg + ": nil DBTX")
	}
	sum := sha256.Sum256([]byte(schema))
	mark := "idemq " + pkg + " schema " + hex.EncodeToString(sum[:8])
	if q, ok := db.(rowQuerier); ok && what != "" {
		var current string
		err := q.QueryRow(ctx, "SELECT coalesce(obj_description(to_regclass($1), 'pg_class'), '')", what).Scan(&current)
		if err == nil && current == mark {
			return nil
		}
	}
	// The lock's key is part of the contract between versions of a backend
	// migrating one database at once: keep it.
	lock := `SELECT pg_advisory_xact_lock(hashtextextended(` + Literal("idemq/"+pkg+": migrate") + `, 0));`
	comment := ""
	if what != "" {
		comment = "\nCOMMENT ON TABLE " + what + " IS " + Literal(mark) + ";"
	}
	// Without arguments pgx sends the text as one simple-protocol query,
	// which PostgreSQL runs as one implicit transaction (or inside db's,
	// when db is a pgx.Tx): the advisory lock is held to the end.
	if _, err := db.Exec(ctx, lock+"\n"+schema+comment); err != nil {
		return fmt.Errorf("%s: migrate %s: %w", pkg, what, err)
	}
	return nil
}
