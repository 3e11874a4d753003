package idempotency

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// sfQuote writes s as a Structured Field string (RFC 9651): quoted, with
// backslash escapes for " and \. It is valid only for printable ASCII.
func sfQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// printableASCII reports whether s has only the bytes a Structured Field
// string may hold, 0x20 to 0x7e.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// FuzzParseHTTPKey checks parseHTTPKey on any header value: a value that
// is not quoted is the key, trimmed; a quoted one is either rejected with
// an empty key or unquotes to printable ASCII whose quoting is the trimmed
// value itself, so no two spellings of a string give one key.
func FuzzParseHTTPKey(f *testing.F) {
	for _, v := range []string{
		httpTestKey,
		`"` + httpTestKey + `"`,
		" " + httpTestKey + "\t",
		`"a\x"`, `"a\"b\\c"`, `"a"b"`, `"a\"`, `"\"`, `"\\"`,
		`""`, `"`, ` " `, "", " ", "\t\r\n",
		"\"tab\tinside\"", "\"\x7f\"", "\"é\"", "\"\xff\"", "\xff\xfe",
		"\u00a0key\u0085", // Unicode spaces are trimmed too
		strings.Repeat("k", 256),
		`"` + strings.Repeat(`\"`, 200) + `"`,
	} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		key, ok := parseHTTPKey(v)
		require.LessOrEqual(t, len(key), len(v))
		tv := strings.TrimSpace(v)
		quoted := len(tv) >= 2 && tv[0] == '"' && tv[len(tv)-1] == '"'
		switch {
		case !quoted:
			require.True(t, ok)
			require.Equal(t, tv, key)
			// A bare key reads back as itself.
			again, ok := parseHTTPKey(key)
			require.True(t, ok)
			require.Equal(t, key, again)
		case !ok:
			require.Empty(t, key)
		default:
			require.True(t, printableASCII(key), "key %q", key)
			require.Equal(t, tv, sfQuote(key), "one key, one spelling")
		}
	})
}

// FuzzHTTPKeyQuoted checks that a string quoted as a Structured Field,
// with optional white space around it, reads back as itself when it is
// printable ASCII and is rejected otherwise.
func FuzzHTTPKeyQuoted(f *testing.F) {
	f.Add(httpTestKey, "", "")
	f.Add(`a"b\c`, " ", "\t")
	f.Add("", "", "")
	f.Add(`\`, "", " ")
	f.Add("tab\there", "", "")
	f.Add("héllo", "", "")
	f.Add("\x00\xff", "", "")
	f.Add(strings.Repeat(`"\`, 200), " \t ", "")
	f.Fuzz(func(t *testing.T, k, lead, trail string) {
		// Only HTTP white space around the value.
		lead = strings.Map(keepHTTPSpace, lead)
		trail = strings.Map(keepHTTPSpace, trail)
		got, ok := parseHTTPKey(lead + sfQuote(k) + trail)
		if !printableASCII(k) {
			require.False(t, ok)
			require.Empty(t, got)
			return
		}
		require.True(t, ok)
		require.Equal(t, k, got)
	})
}

// keepHTTPSpace keeps spaces and tabs, and drops every other rune.
func keepHTTPSpace(r rune) rune {
	if r == ' ' || r == '\t' {
		return r
	}
	return -1
}

// requireSameResponse compares stored responses, with a nil and an empty
// list of values counting as equal.
func requireSameResponse(t *testing.T, want, got httpResponse) {
	t.Helper()
	require.Equal(t, want.status, got.status)
	require.True(t, bytes.Equal(want.body, got.body), "body %q != %q", want.body, got.body)
	require.Len(t, got.header, len(want.header))
	for k, vs := range want.header {
		gvs, ok := got.header[k]
		require.True(t, ok, "header %q missing", k)
		if len(vs) == 0 {
			require.Empty(t, gvs, "header %q", k)
		} else {
			require.Equal(t, vs, gvs, "header %q", k)
		}
	}
}

// FuzzDecodeHTTPResponse checks that a stored response either fails with
// errBadHTTPResponse or has a final status code and encodes, no longer
// than the input, to bytes that decode to the same response and encode
// back to themselves.
func FuzzDecodeHTTPResponse(f *testing.F) {
	for _, r := range []httpResponse{
		{status: http.StatusAccepted, header: http.Header{"Content-Type": {"application/json"}, "X-Multi": {"a", "", "b"}}, body: []byte(`{"ok":true}`)},
		{status: http.StatusNoContent, header: http.Header{}},
		{status: http.StatusCreated, header: http.Header{"Location": {"/orders/1"}, "Content-Type": {"text/plain"}}, body: []byte("order 1 for a")},
		{status: http.StatusPaymentRequired, header: http.Header{"X-Content-Type-Options": {"nosniff"}}, body: []byte("card declined\n")},
		{status: 999, header: http.Header{"": {""}, "X-Empty": {}}, body: []byte{0, 0xff}},
	} {
		f.Add(r.encode())
	}
	for _, b := range []string{
		"", "\x01", "\x00", "\x02\xc8\x01\x00", "garbage",
		"\x01\xc7\x01\x00",                             // status 199
		"\x01\xe8\x07\x00",                             // status 1000
		"\x01\xc8\x01\x00",                             // 200, no header, no body
		"\x01\xc8\x81\x00\x80\x00body",                 // non-minimal uvarints
		"\x01\xc8\x01\x02\x01A\x01\x01x\x01A\x01\x01y", // a repeated name
		"\x01\xc8\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
		"\x01\xc8\x01\x01\x01A\xff\xff\xff\xff\x0f",
	} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, err := decodeHTTPResponse(b)
		if err != nil {
			require.ErrorIs(t, err, errBadHTTPResponse)
			return
		}
		require.GreaterOrEqual(t, resp.status, 200)
		require.LessOrEqual(t, resp.status, 999)
		require.NotNil(t, resp.header)
		require.LessOrEqual(t, len(resp.body), len(b))

		enc := resp.encode()
		require.LessOrEqual(t, len(enc), len(b))
		again, err := decodeHTTPResponse(enc)
		require.NoError(t, err)
		requireSameResponse(t, resp, again)
		require.Equal(t, enc, again.encode())
	})
}

// FuzzHTTPResponseRoundTrip checks that a response with a final status
// decodes from its encoding unchanged, and that every truncation of the
// encoding short of the body is rejected.
func FuzzHTTPResponseRoundTrip(f *testing.F) {
	f.Add(uint16(201), "Content-Type", "application/json", "", "Location", "/orders/1", []byte(`{"id":1}`))
	f.Add(uint16(202), "X-Multi", "a", "b", "Content-Type", "application/json", []byte(`{"ok":true}`))
	f.Add(uint16(204), "", "", "", "", "", []byte{})
	f.Add(uint16(402), "X-Dup", "1", "2", "X-Dup", "3", []byte("card declined\n"))
	f.Add(uint16(999), "bin\x00", "\xff", "\x00", "é", "", []byte(nil))
	f.Fuzz(func(t *testing.T, status uint16, k1, v1a, v1b, k2, v2 string, body []byte) {
		resp := httpResponse{
			status: 200 + int(status)%800,
			header: http.Header{k1: {v1a, v1b}, k2: {v2}},
			body:   body,
		}
		if v1b == "" {
			resp.header[k1] = resp.header[k1][:1]
		}
		if v1a == "" && v1b == "" && k1 != k2 {
			resp.header[k1] = []string{}
		}
		enc := resp.encode()
		got, err := decodeHTTPResponse(enc)
		require.NoError(t, err)
		requireSameResponse(t, resp, got)

		for i := range len(enc) - len(body) {
			_, err := decodeHTTPResponse(enc[:i])
			require.ErrorIs(t, err, errBadHTTPResponse, "prefix of %d bytes", i)
		}
	})
}
