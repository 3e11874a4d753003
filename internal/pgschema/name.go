package pgschema

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrInvalidName is what every [NameError] matches with errors.Is.
var ErrInvalidName = errors.New("pgschema: invalid name")

// identPattern admits identifiers that mean the same quoted or not, so the
// relations can be queried by hand without quotes.
var identPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// MaxIdentLen is PostgreSQL's identifier limit (NAMEDATALEN-1). Longer
// names are truncated silently, which could make the names derived from one
// collide, so they are refused instead.
const MaxIdentLen = 63

// NameError reports a name [Parse] refused. Its message is the name, quoted,
// and why, so that a backend can prefix it with its own sentinel:
//
//	fmt.Errorf("%w %w", ErrInvalidTable, err)
type NameError struct {
	Name   string // as given
	Reason string
}

func (e *NameError) Error() string { return fmt.Sprintf("%q: %s", e.Name, e.Reason) }

// Is reports whether target is [ErrInvalidName].
func (e *NameError) Is(target error) bool { return target == ErrInvalidName }

// Name is a validated name, "name" or "schema.name", of a relation or of a
// prefix of relations. Its zero value is not valid.
type Name struct {
	schema, name string
}

// Parse validates s, "name" or "schema.name", where each part is a plain
// lower-case identifier within [MaxIdentLen]. kind names what s is ("table",
// "prefix") in the error. The suffixes are appended to the name to name the
// relations derived from it, whose names must fit the limit too. It returns
// a *[NameError].
func Parse(s, kind string, suffixes ...string) (Name, error) {
	parts := strings.Split(s, ".")
	var n Name
	switch len(parts) {
	case 1:
		n.name = parts[0]
	case 2:
		n.schema, n.name = parts[0], parts[1]
	default:
		return Name{}, &NameError{s, fmt.Sprintf("want %s or schema.%s", kind, kind)}
	}
	for _, p := range parts {
		if !identPattern.MatchString(p) {
			return Name{}, &NameError{s, fmt.Sprintf("%q is not an identifier matching %s", p, identPattern)}
		}
		if len(p) > MaxIdentLen {
			return Name{}, &NameError{s, fmt.Sprintf("%q is longer than %d bytes", p, MaxIdentLen)}
		}
	}
	// The longest suffix is the one that bounds the name.
	longest := ""
	for _, suffix := range suffixes {
		if len(suffix) > len(longest) {
			longest = suffix
		}
	}
	if len(n.name)+len(longest) > MaxIdentLen {
		return Name{}, &NameError{s, fmt.Sprintf("%q is longer than %d bytes with its suffix %q",
			n.name, MaxIdentLen-len(longest), longest)}
	}
	return n, nil
}

// String is the name as given, unquoted.
func (n Name) String() string {
	if n.schema == "" {
		return n.name
	}
	return n.schema + "." + n.name
}

// Ident is the quoted, possibly qualified identifier of the name itself.
func (n Name) Ident() string { return n.Sibling("") }

// Sibling is the quoted identifier of the relation named after the name
// with suffix, in the name's schema.
func (n Name) Sibling(suffix string) string {
	if n.schema == "" {
		return pgx.Identifier{n.name + suffix}.Sanitize()
	}
	return pgx.Identifier{n.schema, n.name + suffix}.Sanitize()
}

// Local is the quoted unqualified identifier of an index named after the
// name with suffix: CREATE INDEX puts it in its table's schema.
func (n Name) Local(suffix string) string {
	return pgx.Identifier{n.name + suffix}.Sanitize()
}

// Bare is the unqualified, unquoted name of the object named after the
// name with suffix, as PostgreSQL reports it in an error's table or
// constraint name.
func (n Name) Bare(suffix string) string { return n.name + suffix }

// Literal quotes s as an SQL string literal.
func Literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
