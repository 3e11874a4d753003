package pgschema_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/idemq/idemq/internal/pgschema"
)

func TestParseRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, want string
	}{
		{"Jobs", "is not an identifier"},
		{"1jobs", "is not an identifier"},
		{"jobs-1", "is not an identifier"},
		{"ключи", "is not an identifier"},
		{"", "is not an identifier"},
		{".jobs", "is not an identifier"},
		{"jobs.", "is not an identifier"},
		{`jobs"; DROP TABLE x; --`, "is not an identifier"},
		{"jobs; DROP TABLE x", "is not an identifier"},
		{"a.b.c", "want table or schema.table"},
		{strings.Repeat("j", 64), "is longer than 63 bytes"},
		{"s." + strings.Repeat("j", 64), "is longer than 63 bytes"},
		{strings.Repeat("s", 64) + ".j", "is longer than 63 bytes"},
		{strings.Repeat("j", 54), `is longer than 53 bytes with its suffix "_lease_seq"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pgschema.Parse(tc.name, "table", "_idx", "_lease_seq")
			require.ErrorIs(t, err, pgschema.ErrInvalidName)
			require.ErrorContains(t, err, tc.want)
			var ne *pgschema.NameError
			require.ErrorAs(t, err, &ne)
			require.Equal(t, tc.name, ne.Name)
		})
	}
}

func TestParseAccepts(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"jobs", "_j2", "ops.jobs", strings.Repeat("j", 53), strings.Repeat("s", 63) + ".j"} {
		n, err := pgschema.Parse(s, "table", "_idx", "_lease_seq")
		require.NoError(t, err, s)
		require.Equal(t, s, n.String())
	}
	n, err := pgschema.Parse(strings.Repeat("j", 63), "table")
	require.NoError(t, err, "no suffixes, the whole limit")
	require.Len(t, n.String(), 63)
}

func TestParseKind(t *testing.T) {
	t.Parallel()
	_, err := pgschema.Parse("a.b.c", "prefix")
	require.EqualError(t, err, `"a.b.c": want prefix or schema.prefix`)
}

// TestNameErrorWrapped checks the way the backends wrap a NameError: their
// sentinel first, then the name and the reason, and errors.Is matches both.
func TestNameErrorWrapped(t *testing.T) {
	t.Parallel()
	errInvalidTable := errors.New("pkg: invalid table name")
	_, err := pgschema.Parse("Bad", "table")
	err = fmt.Errorf("%w %w", errInvalidTable, err)
	require.ErrorIs(t, err, errInvalidTable)
	require.ErrorIs(t, err, pgschema.ErrInvalidName)
	require.EqualError(t, err, `pkg: invalid table name "Bad": "Bad" is not an identifier matching ^[a-z_][a-z0-9_]*$`)
}

func TestQuoting(t *testing.T) {
	t.Parallel()
	plain, err := pgschema.Parse("jobs", "table")
	require.NoError(t, err)
	require.Equal(t, `"jobs"`, plain.Ident())
	require.Equal(t, `"jobs_seq"`, plain.Sibling("_seq"))
	require.Equal(t, `"jobs_idx"`, plain.Local("_idx"))

	qualified, err := pgschema.Parse("ops.jobs", "table")
	require.NoError(t, err)
	require.Equal(t, "ops.jobs", qualified.String())
	require.Equal(t, `"ops"."jobs"`, qualified.Ident())
	require.Equal(t, `"ops"."jobs_seq"`, qualified.Sibling("_seq"))
	require.Equal(t, `"jobs_idx"`, qualified.Local("_idx"), "CREATE INDEX names its index unqualified")
	require.Equal(t, "jobs_pkey", qualified.Bare("_pkey"), "errors name constraints unqualified")
}

func TestLiteral(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]string{
		"":               `''`,
		"plain":          `'plain'`,
		"it's":           `'it''s'`,
		`"ops"."jobs"`:   `'"ops"."jobs"'`,
		"''":             `''''''`,
		`back\slash`:     `'back\slash'`,
		"idemq/x: lock'": `'idemq/x: lock'''`,
	} {
		require.Equal(t, want, pgschema.Literal(s), "Literal(%q)", s)
	}
}
