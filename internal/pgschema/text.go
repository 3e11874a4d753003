package pgschema

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// ErrNotText: a string that a text column or a jsonb string would refuse.
var ErrNotText = errors.New("not UTF-8 text without NUL bytes")

// IsText reports whether PostgreSQL keeps s as is in a text column or a
// jsonb string: valid UTF-8 without NUL bytes, which both refuse.
func IsText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// CheckText returns ErrNotText unless IsText(s).
func CheckText(s string) error {
	if !IsText(s) {
		return ErrNotText
	}
	return nil
}

// HeadersJSON returns a message's headers as a JSON object for a jsonb
// column, or SQL NULL for nil headers, once it has checked that every
// name and value is text.
func HeadersJSON(h map[string]string) (pgtype.Text, error) {
	if h == nil {
		return pgtype.Text{}, nil
	}
	for k, v := range h {
		if !IsText(k) {
			return pgtype.Text{}, fmt.Errorf("header name %q: %w", k, ErrNotText)
		}
		if !IsText(v) {
			return pgtype.Text{}, fmt.Errorf("header %q: value %q: %w", k, v, ErrNotText)
		}
	}
	b, err := json.Marshal(h)
	if err != nil { // a map of strings always marshals
		return pgtype.Text{}, fmt.Errorf("headers: %w", err)
	}
	return pgtype.Text{String: string(b), Valid: true}, nil
}
