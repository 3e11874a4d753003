package pgschema_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/internal/pgschema"
	"github.com/idemq/idemq/internal/testenv"
)

func TestRender(t *testing.T) {
	t.Parallel()
	tmpl := template.Must(template.New("a.sql").Parse(`CREATE TABLE {{.Table}};`))
	template.Must(tmpl.New("b.sql").Parse(`CREATE INDEX {{.Index}};`))
	require.Equal(t, `CREATE TABLE "t";`, pgschema.Render(tmpl, "a.sql", map[string]string{"Table": `"t"`}))
	require.Equal(t, `CREATE INDEX i;`, pgschema.Render(tmpl, "b.sql", struct{ Index string }{"i"}))
	require.PanicsWithValue(t, `pgschema: render missing.sql: template: no template "missing.sql" associated with template "a.sql"`,
		func() { pgschema.Render(tmpl, "missing.sql", nil) }, "a bug in the caller")
}

// execFunc is a pgschema.Execer that records the statement.
type execFunc func(sql string) error

func (f execFunc) Exec(_ context.Context, sql string, _ ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, f(sql)
}

func TestMigrateStatement(t *testing.T) {
	t.Parallel()
	var got string
	db := execFunc(func(sql string) error { got = sql; return nil })
	require.NoError(t, pgschema.Migrate(t.Context(), db, "pkgpg", `"t"`, "CREATE TABLE t ();"))
	require.True(t, strings.HasPrefix(got,
		"SELECT pg_advisory_xact_lock(hashtextextended('idemq/pkgpg: migrate', 0));\nCREATE TABLE t ();\n"), got,
		"the lock's key must not change: versions migrating at once share it")
	require.Regexp(t, `\nCOMMENT ON TABLE "t" IS 'idemq pkgpg schema [0-9a-f]{16}';$`, got)

	boom := errors.New("boom")
	err := pgschema.Migrate(t.Context(), execFunc(func(string) error { return boom }), "pkgpg", `"ops"."t"`, "")
	require.ErrorIs(t, err, boom)
	require.EqualError(t, err, `pkgpg: migrate "ops"."t": boom`)

	require.EqualError(t, pgschema.Migrate(t.Context(), nil, "pkgpg", `"t"`, ""), "pkgpg: nil DBTX")
}

// TestMigrate runs DDL that races in the catalog without the lock,
// concurrently and again, then inside a caller's transaction.
func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, schema := testenv.PostgresWithSchema(t)
	n, err := pgschema.Parse(schema+".things", "table", "_idx")
	require.NoError(t, err)
	ddl := "CREATE TABLE IF NOT EXISTS " + n.Ident() + " (id bigint PRIMARY KEY);\n" +
		"CREATE INDEX IF NOT EXISTS " + n.Local("_idx") + " ON " + n.Ident() + " (id);"

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = pgschema.Migrate(ctx, pool, "pgschematest", n.Ident(), ddl) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, pgschema.Migrate(ctx, pool, "pgschematest", n.Ident(), ddl))

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	require.NoError(t, pgschema.Migrate(ctx, tx, "pgschematest", n.Ident(), ddl))
	require.NoError(t, tx.Commit(ctx))

	var indexes int
	require.NoError(t, pool.QueryRow(ctx,
		"SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = 'things'", schema).Scan(&indexes))
	require.Equal(t, 2, indexes)

	// Once in place, the schema is not migrated again: a Migrate at the
	// start of another process does not wait for a live writer's lock.
	writer, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = writer.Rollback(context.WithoutCancel(ctx)) }()
	_, err = writer.Exec(ctx, "INSERT INTO "+n.Ident()+" VALUES (1)")
	require.NoError(t, err)
	quick, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, pgschema.Migrate(quick, pool, "pgschematest", n.Ident(), ddl), "skipped, not blocked by the writer")
	require.NoError(t, writer.Rollback(ctx))
	// A changed schema runs again.
	ddl2 := ddl + "\nCREATE INDEX IF NOT EXISTS " + n.Local("_idx2") + " ON " + n.Ident() + " (id);"
	require.NoError(t, pgschema.Migrate(ctx, pool, "pgschematest", n.Ident(), ddl2))
	require.NoError(t, pool.QueryRow(ctx,
		"SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = 'things'", schema).Scan(&indexes))
	require.Equal(t, 3, indexes)

	err = pgschema.Migrate(ctx, pool, "pgschematest", `"nowhere"."t"`, `CREATE TABLE "nowhere"."t" ();`)
	require.ErrorContains(t, err, `pgschematest: migrate "nowhere"."t": `)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
}
