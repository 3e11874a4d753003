package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/idemq/idemq/dlq"
)

const (
	// errorWidth is how many characters of an error's first line list
	// shows; show prints it whole.
	errorWidth = 80

	// hexDumpMax is the largest binary body show prints as a hex dump;
	// larger ones are printed in base64, a third of the size.
	hexDumpMax = 1024

	// base64Width is the line length of a base64 body.
	base64Width = 76
)

// printable returns s unchanged when a terminal shows it as it is, and
// quoted with escapes otherwise: message IDs, sources and errors come from
// producers, and a control character in one must not rewrite the
// operator's screen or break a table's columns.
func printable(s string) string {
	for _, r := range s {
		if r != ' ' && !unicode.IsGraphic(r) {
			return strconv.QuoteToGraphic(s)
		}
	}
	return s
}

// cell is s for a table cell: printable, and "-" when empty.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return printable(s)
}

// firstLine is the first line of s, cut to width characters.
func firstLine(s string, width int) string {
	s, _, cut := strings.Cut(strings.TrimSpace(s), "\n")
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > width {
		s = string([]rune(s)[:width-1]) + "…"
		cut = true
	}
	if cut && !strings.HasSuffix(s, "…") {
		s += " …"
	}
	return s
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// writeTable prints entries as list does.
func writeTable(w io.Writer, entries []dlq.Entry) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSOURCE\tREASON\tATTEMPTS\tLAST FAILED\tMESSAGE ID\tERROR")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n",
			cell(e.ID), cell(e.Source), cell(string(e.Reason)), e.Attempts,
			formatTime(e.LastFailedAt), cell(e.Message.ID), cell(firstLine(e.Error, errorWidth)))
	}
	return tw.Flush()
}

// writeEntry prints every field of e, as show does.
func writeEntry(w io.Writer, e dlq.Entry) error {
	var b strings.Builder
	field := func(name, value string) { fmt.Fprintf(&b, "%-16s %s\n", name+":", value) }
	field("id", printable(e.ID))
	field("source", cell(e.Source))
	field("reason", cell(string(e.Reason)))
	field("attempts", strconv.Itoa(e.Attempts))
	field("first failed at", formatTime(e.FirstFailedAt))
	field("last failed at", formatTime(e.LastFailedAt))
	field("message id", cell(e.Message.ID))
	field("message key", cell(e.Message.Key))
	field("message attempt", strconv.Itoa(e.Message.Attempt))
	field("enqueued at", formatTime(e.Message.EnqueuedAt))

	if len(e.Message.Headers) == 0 {
		field("headers", "(none)")
	} else {
		b.WriteString("headers:\n")
		for _, k := range slices.Sorted(maps.Keys(e.Message.Headers)) {
			fmt.Fprintf(&b, "  %s: %s\n", printable(k), printable(e.Message.Headers[k]))
		}
	}

	b.WriteString("error:\n")
	indent(&b, "  ", "  ", e.Error)
	if len(e.ErrorChain) == 0 {
		field("error chain", "(none)")
	} else {
		b.WriteString("error chain (outermost first):\n")
		for i, msg := range e.ErrorChain {
			num := fmt.Sprintf("  %d. ", i+1)
			indent(&b, num, strings.Repeat(" ", len(num)), msg)
		}
	}

	body := e.Message.Body
	switch {
	case len(body) == 0:
		field("body", "(empty)")
	case isText(body):
		fmt.Fprintf(&b, "body (%d bytes, text):\n", len(body))
		indent(&b, "  ", "  ", string(body))
	case len(body) <= hexDumpMax:
		fmt.Fprintf(&b, "body (%d bytes, not text, hex):\n", len(body))
		indent(&b, "  ", "  ", strings.TrimSuffix(hex.Dump(body), "\n"))
	default:
		fmt.Fprintf(&b, "body (%d bytes, not text, base64):\n", len(body))
		enc := base64.StdEncoding.EncodeToString(body)
		for len(enc) > 0 {
			n := min(len(enc), base64Width)
			b.WriteString("  " + enc[:n] + "\n")
			enc = enc[n:]
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// indent writes s line by line, the first line after first and the others
// after rest, each line made printable.
func indent(b *strings.Builder, first, rest, s string) {
	for i, line := range strings.Split(s, "\n") {
		if i == 0 {
			b.WriteString(first)
		} else {
			b.WriteString(rest)
		}
		b.WriteString(printable(strings.TrimSuffix(line, "\r")))
		b.WriteByte('\n')
	}
}

// isText reports whether body is UTF-8 that prints as it is, line breaks
// and tabs allowed.
func isText(body []byte) bool {
	if !utf8.Valid(body) {
		return false
	}
	for _, r := range string(body) {
		if r != '\n' && r != '\r' && r != '\t' && r != ' ' && !unicode.IsGraphic(r) {
			return false
		}
	}
	return true
}

// jsonEntry is an entry as list -json and show -json print it: a stable
// shape with snake_case names, independent of dlq.Entry's Go layout.
type jsonEntry struct {
	ID            string      `json:"id"`
	Source        string      `json:"source"`
	Reason        string      `json:"reason"`
	Attempts      int         `json:"attempts"`
	FirstFailedAt *time.Time  `json:"first_failed_at,omitempty"`
	LastFailedAt  time.Time   `json:"last_failed_at"`
	Error         string      `json:"error"`
	ErrorChain    []string    `json:"error_chain"`
	Message       jsonMessage `json:"message"`
}

type jsonMessage struct {
	ID      string            `json:"id"`
	Key     string            `json:"key,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Attempt int               `json:"attempt"`
	// Body is base64, as encoding/json writes bytes; BodyText repeats it
	// as a string when it is valid UTF-8, for readers and jq.
	Body       []byte     `json:"body"`
	BodyText   *string    `json:"body_text,omitempty"`
	EnqueuedAt *time.Time `json:"enqueued_at,omitempty"`
}

type jsonPage struct {
	Entries []jsonEntry `json:"entries"`
	Next    string      `json:"next"`
}

func toJSON(e dlq.Entry) jsonEntry {
	j := jsonEntry{
		ID:            e.ID,
		Source:        e.Source,
		Reason:        string(e.Reason),
		Attempts:      e.Attempts,
		FirstFailedAt: timePtr(e.FirstFailedAt),
		LastFailedAt:  e.LastFailedAt.UTC(),
		Error:         e.Error,
		ErrorChain:    e.ErrorChain,
		Message: jsonMessage{
			ID:         e.Message.ID,
			Key:        e.Message.Key,
			Headers:    e.Message.Headers,
			Attempt:    e.Message.Attempt,
			Body:       e.Message.Body,
			EnqueuedAt: timePtr(e.Message.EnqueuedAt),
		},
	}
	if j.ErrorChain == nil {
		j.ErrorChain = []string{}
	}
	if utf8.Valid(e.Message.Body) {
		s := string(e.Message.Body)
		j.Message.BodyText = &s
	}
	return j
}

func jsonEntries(entries []dlq.Entry) []jsonEntry {
	out := make([]jsonEntry, len(entries))
	for i, e := range entries {
		out[i] = toJSON(e)
	}
	return out
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
