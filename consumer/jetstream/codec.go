package jetstream

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/idemq/idemq/consumer"
)

// NATS headers that carry a message's fields. Nats-Msg-Id is JetStream's
// own: the stream drops a message whose Nats-Msg-Id it stored within its
// duplicate window.
const (
	headerMsgID      = "Nats-Msg-Id" // ID, with dedupe
	headerID         = "Idemq-Id"    // ID, when the publisher does not dedupe
	headerKey        = "Idemq-Key"
	headerEnqueuedAt = "Idemq-Enqueued-At" // RFC 3339 with nanoseconds, UTC
)

// reservedHeader reports whether name belongs to NATS ("Nats-...") or to
// this driver ("Idemq-..."): such headers are not a message's Headers.
func reservedHeader(name string) bool {
	return hasPrefixFold(name, "Nats-") || hasPrefixFold(name, "Idemq-")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// encode builds the NATS message for m, whose ID and EnqueuedAt are set.
func encode(subject string, m *consumer.Message, dedupe bool) (*nats.Msg, error) {
	h := make(nats.Header, len(m.Headers)+3)
	for k, v := range m.Headers {
		if err := validHeader(k, v); err != nil {
			return nil, fmt.Errorf("jetstream: message %q: %w", m.ID, err)
		}
		h[k] = []string{v}
	}
	if err := validValue(m.ID); err != nil {
		return nil, fmt.Errorf("jetstream: message %q: ID %w", m.ID, err)
	}
	if err := validValue(m.Key); err != nil {
		return nil, fmt.Errorf("jetstream: message %q: Key %w", m.ID, err)
	}
	if dedupe {
		h[headerMsgID] = []string{m.ID}
	} else {
		h[headerID] = []string{m.ID}
	}
	if m.Key != "" {
		h[headerKey] = []string{m.Key}
	}
	h[headerEnqueuedAt] = []string{m.EnqueuedAt.UTC().Format(time.RFC3339Nano)}
	return &nats.Msg{Subject: subject, Header: h, Data: m.Body}, nil
}

// validHeader checks that a header can travel in NATS's text header block
// and come back as it was: nats.go refuses some names, and trims values.
func validHeader(k, v string) error {
	if k == "" {
		return fmt.Errorf("empty header name")
	}
	if reservedHeader(k) {
		return fmt.Errorf("header %q: names starting with Nats- or Idemq- are reserved", k)
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(headerNameSeparators, c) >= 0 {
			return fmt.Errorf("header %q: names must be printable ASCII without spaces or any of %s", k, headerNameSeparators)
		}
	}
	if err := validValue(v); err != nil {
		return fmt.Errorf("header %q: value %w", k, err)
	}
	return nil
}

// headerNameSeparators are the characters nats.go refuses in header names,
// besides spaces and controls.
const headerNameSeparators = `"()/,:;<=>?@[\]{}`

// validValue checks that v, the value of a header (including the ID and
// Key), comes back as it was: nats.go writes values without the spaces and
// tabs at either end, and a line break would end the header.
func validValue(v string) error {
	if strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("may not contain line breaks")
	}
	if v != strings.Trim(v, " \t") {
		return fmt.Errorf("may not begin or end with white space")
	}
	return nil
}

// decode turns a delivered JetStream message into a Message. Messages
// published by other tools lack this driver's headers: their ID is
// "<stream>:<stream sequence>" and their EnqueuedAt the time the stream
// stored them.
func decode(msg *nats.Msg, meta *nats.MsgMetadata) consumer.Message {
	m := consumer.Message{
		Body:    msg.Data,
		Attempt: int(meta.NumDelivered),
	}
	for k, vs := range msg.Header {
		switch {
		case len(vs) == 0:
		case k == headerKey:
			m.Key = vs[0]
		case k == headerEnqueuedAt:
			if t, err := time.Parse(time.RFC3339Nano, vs[0]); err == nil {
				m.EnqueuedAt = t
			}
		case reservedHeader(k):
		default:
			if m.Headers == nil {
				m.Headers = make(map[string]string, len(msg.Header))
			}
			m.Headers[k] = vs[0]
		}
	}
	switch {
	case msg.Header.Get(headerID) != "":
		m.ID = msg.Header.Get(headerID)
	case msg.Header.Get(headerMsgID) != "":
		m.ID = msg.Header.Get(headerMsgID)
	default:
		m.ID = meta.Stream + ":" + strconv.FormatUint(meta.Sequence.Stream, 10)
	}
	if m.EnqueuedAt.IsZero() {
		m.EnqueuedAt = meta.Timestamp
	}
	return m
}
