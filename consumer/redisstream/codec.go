package redisstream

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/idemq/idemq/consumer"
)

// Field names of a stream entry; see the layout in scripts.go.
const (
	fieldID         = "id"
	fieldKey        = "key"
	fieldBody       = "body"
	fieldHeaders    = "headers"
	fieldEnqueuedAt = "enqueued_at"
	fieldAttempts   = "attempts"
)

// publishArgs is the number of XADD arguments per published message: five
// field, value pairs.
const publishArgs = 10

// appendPublishArgs appends m's fields, as XADD arguments, to args.
func appendPublishArgs(args []any, m *consumer.Message) []any {
	return append(args,
		fieldID, m.ID,
		fieldKey, m.Key,
		fieldBody, m.Body,
		fieldHeaders, encodeHeaders(m.Headers),
		fieldEnqueuedAt, strconv.FormatInt(m.EnqueuedAt.UnixNano(), 10),
	)
}

// encodeHeaders packs h into one binary-safe string: for each header, in
// key order, the key's length as a uvarint, the key, the value's length as
// a uvarint and the value. No headers encode as "".
func encodeHeaders(h map[string]string) string {
	if len(h) == 0 {
		return ""
	}
	keys := make([]string, 0, len(h))
	size := 0
	for k, v := range h {
		keys = append(keys, k)
		size += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	slices.Sort(keys)
	b := make([]byte, 0, size)
	for _, k := range keys {
		v := h[k]
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return string(b)
}

var errBadHeaders = errors.New("redisstream: malformed headers field")

// decodeHeaders reverses encodeHeaders.
func decodeHeaders(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	h := make(map[string]string)
	for len(s) > 0 {
		var k, v string
		var ok bool
		if k, s, ok = cutLength(s); !ok {
			return nil, errBadHeaders
		}
		if v, s, ok = cutLength(s); !ok {
			return nil, errBadHeaders
		}
		h[k] = v
	}
	return h, nil
}

// cutLength splits a uvarint length and that many bytes off the front of s.
func cutLength(s string) (field, rest string, ok bool) {
	n, w := binary.Uvarint([]byte(s[:min(len(s), binary.MaxVarintLen64)]))
	if w <= 0 || n > uint64(len(s)-w) {
		return "", "", false
	}
	return s[w : w+int(n)], s[w+int(n):], true
}

// rawEntry is one stream entry as a fetch returned it.
type rawEntry struct {
	id     string // the stream entry ID
	count  int64  // its delivery counter in the pending entries list
	fields []any  // field, value, field, value, ... (strings)
}

// decodeMessage builds the message of e. Entries not written by this
// package are delivered too, rather than left to be redelivered forever:
// without an id field the entry ID stands in for Message.ID, and a headers
// field that does not decode is kept whole as the header "headers".
func decodeMessage(e *rawEntry) consumer.Message {
	var m consumer.Message
	var attempts int64
	hasID := false
	for i := 0; i+1 < len(e.fields); i += 2 {
		name, _ := e.fields[i].(string)
		value, _ := e.fields[i+1].(string)
		switch name {
		case fieldID:
			m.ID, hasID = value, true
		case fieldKey:
			m.Key = value
		case fieldBody:
			m.Body = []byte(value)
		case fieldHeaders:
			h, err := decodeHeaders(value)
			if err != nil {
				h = map[string]string{fieldHeaders: value}
			}
			m.Headers = h
		case fieldEnqueuedAt:
			if ns, err := strconv.ParseInt(value, 10, 64); err == nil {
				m.EnqueuedAt = time.Unix(0, ns)
			}
		case fieldAttempts:
			if n, err := strconv.ParseInt(value, 10, 64); err == nil && n > 0 {
				attempts = n
			}
		}
	}
	if !hasID || m.ID == "" {
		m.ID = e.id
	}
	if m.EnqueuedAt.IsZero() {
		// Stream entry IDs start with the Unix millisecond they were added.
		msPart, _, _ := strings.Cut(e.id, "-")
		if ms, err := strconv.ParseInt(msPart, 10, 64); err == nil {
			m.EnqueuedAt = time.UnixMilli(ms)
		}
	}
	// An attempts field can come from any producer: a huge one must not
	// make Attempt wrap (or overflow a 32-bit int).
	m.Attempt = int(min(e.count+min(attempts, math.MaxInt32), math.MaxInt32))
	return m
}
