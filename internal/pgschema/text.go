package pgschema

import (
	"strings"
	"unicode/utf8"
)

// IsText reports whether PostgreSQL keeps s as is in a text column or a
// jsonb string: valid UTF-8 without NUL bytes, which both refuse.
func IsText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}
