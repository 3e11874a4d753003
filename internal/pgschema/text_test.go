package pgschema

import "testing"

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
