package pgschema

import (
	"errors"
	"fmt"
	"testing"
)

func TestIsText(t *testing.T) {
	for s, want := range map[string]bool{
		"":             true,
		"plain":        true,
		"naïve ✓":      true,
		"a\x00b":       false,
		"\x00":         false,
		"bad \xff":     false,
		"cut \xe2\x9c": false,
	} {
		if got := IsText(s); got != want {
			t.Errorf("IsText(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestHeadersJSON(t *testing.T) {
	got, err := HeadersJSON(nil)
	if err != nil || got.Valid {
		t.Fatalf("HeadersJSON(nil) = %+v, %v; want SQL NULL", got, err)
	}
	got, err = HeadersJSON(map[string]string{})
	if err != nil || !got.Valid || got.String != "{}" {
		t.Fatalf("HeadersJSON of no headers = %+v, %v; want {}", got, err)
	}
	got, err = HeadersJSON(map[string]string{"b": "2 ✓", "a": `"1"`})
	if err != nil || !got.Valid || got.String != `{"a":"\"1\"","b":"2 ✓"}` {
		t.Fatalf("HeadersJSON = %+v, %v", got, err)
	}
	for name, h := range map[string]map[string]string{
		`header name "\xfe"`:            {"\xfe": "v"},
		`header "k": value "a\x00b"`:    {"k": "a\x00b"},
		`header name "n\x00"`:           {"n\x00": "v"},
		`header "ok": value "cut \xe2"`: {"ok": "cut \xe2"},
	} {
		got, err := HeadersJSON(h)
		if !errors.Is(err, ErrNotText) || got.Valid {
			t.Errorf("HeadersJSON(%q) = %+v, %v; want ErrNotText", h, got, err)
			continue
		}
		if want := fmt.Sprintf("%s: %s", name, ErrNotText); err.Error() != want {
			t.Errorf("HeadersJSON(%q): error %q, want %q", h, err, want)
		}
	}
}
