package amqp

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/idemq/idemq/consumer"
)

// Headers the driver keeps in each message. User headers must not use the
// prefix.
const (
	reservedPrefix = "x-idemq-"

	// headerKey holds Message.Key.
	headerKey = reservedPrefix + "key"
	// headerEnqueuedAt holds Message.EnqueuedAt in Unix nanoseconds; the
	// timestamp property holds it too, in whole seconds, for other tools.
	headerEnqueuedAt = reservedPrefix + "enqueued-at"
	// headerAttempt holds the deliveries made before this copy of the
	// message was published by a Nack with a delay.
	headerAttempt = reservedPrefix + "attempt"
	// headerDue holds, in Unix milliseconds, when a message nacked with a
	// delay longer than the largest bucket is due.
	headerDue = reservedPrefix + "due"

	// headerDeliveryCount is set by quorum queues on redeliveries: the
	// number of earlier deliveries of this copy.
	headerDeliveryCount = "x-delivery-count"
)

// brokerHeader reports whether name is bookkeeping added by the broker
// (delivery counts, dead-lettering history) or by this driver, which
// Message.Headers leaves out.
func brokerHeader(name string) bool {
	return strings.HasPrefix(name, reservedPrefix) ||
		name == headerDeliveryCount ||
		name == "x-death" ||
		strings.HasPrefix(name, "x-first-death-") ||
		strings.HasPrefix(name, "x-last-death-")
}

// encode turns m into a persistent publishing. Attempt is ignored; an empty
// ID becomes a random one and a zero EnqueuedAt becomes now. m is not
// modified.
func encode(m *consumer.Message, now time.Time) (amqp.Publishing, error) {
	headers := make(amqp.Table, len(m.Headers)+2)
	for k, v := range m.Headers {
		if strings.HasPrefix(k, reservedPrefix) {
			return amqp.Publishing{}, fmt.Errorf("amqp: message %q: header %q uses the reserved prefix %q", m.ID, k, reservedPrefix)
		}
		if brokerHeader(k) {
			return amqp.Publishing{}, fmt.Errorf("amqp: message %q: header %q is the broker's (delivery count, dead-lettering)", m.ID, k)
		}
		if len(k) > maxShortString {
			return amqp.Publishing{}, fmt.Errorf("amqp: message %q: header name of %d bytes; AMQP allows %d", m.ID, len(k), maxShortString)
		}
		headers[k] = v
	}
	if len(m.ID) > maxShortString {
		return amqp.Publishing{}, fmt.Errorf("amqp: message ID of %d bytes; AMQP allows %d", len(m.ID), maxShortString)
	}
	id := m.ID
	if id == "" {
		id = consumer.NewMessageID()
	}
	enqueued := m.EnqueuedAt
	if enqueued.IsZero() {
		enqueued = now
	}
	if m.Key != "" {
		headers[headerKey] = m.Key
	}
	headers[headerEnqueuedAt] = enqueued.UnixNano()
	return amqp.Publishing{
		Headers:      headers,
		DeliveryMode: amqp.Persistent,
		MessageId:    id,
		Timestamp:    enqueued,
		Body:         m.Body,
	}, nil
}

// maxShortString is the longest AMQP short string: the message-id and
// header names are short strings, and amqp091-go closes the connection
// on a frame with a longer one.
const maxShortString = 255

// decoded is what the driver reads from a delivery besides the message.
type decoded struct {
	msg consumer.Message
	due time.Time // zero unless the message is on its way round a long delay
}

// decode reads the message in d. It never fails: a message published by
// another tool gets what it carries, and an ID derived from its content
// when it has no message-id.
func decode(d *amqp.Delivery) decoded {
	var out decoded
	m := &out.msg
	m.ID = d.MessageId
	m.Body = d.Body
	prior, _ := headerInt(d.Headers, headerAttempt)
	count, ok := headerInt(d.Headers, headerDeliveryCount)
	if !ok && d.Redelivered {
		count = 1 // not a quorum queue, or a broker that does not count
	}
	// Any publisher can set these headers: their sum must not wrap (nor
	// overflow a 32-bit int).
	m.Attempt = int(min(min(max(prior, 0), math.MaxInt32)+min(max(count, 0), math.MaxInt32)+1, math.MaxInt32))
	if ns, ok := headerInt(d.Headers, headerEnqueuedAt); ok {
		m.EnqueuedAt = time.Unix(0, ns)
	} else if !d.Timestamp.IsZero() {
		m.EnqueuedAt = d.Timestamp
	}
	if ms, ok := headerInt(d.Headers, headerDue); ok {
		out.due = time.UnixMilli(ms)
	}
	if k, ok := d.Headers[headerKey].(string); ok {
		m.Key = k
	}
	for k, v := range d.Headers {
		if brokerHeader(k) {
			continue
		}
		if m.Headers == nil {
			m.Headers = make(map[string]string, len(d.Headers))
		}
		m.Headers[k] = headerString(v)
	}
	if m.ID == "" {
		m.ID = contentID(d)
	}
	return out
}

// headerString renders a header value that another tool may have set to a
// non-string type.
func headerString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// headerInt reads an integer header of any AMQP integer type.
func headerInt(h amqp.Table, name string) (int64, bool) {
	switch v := h[name].(type) {
	case int64:
		return v, true
	case int32:
		return int64(v), true
	case int16:
		return int64(v), true
	case int8:
		return int64(v), true
	case int:
		return int64(v), true
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case uint64:
		if v > 1<<63-1 {
			return 0, false
		}
		return int64(v), true
	}
	return 0, false
}

// contentID derives a stable ID, for messages published without a
// message-id, from the body and the headers the broker does not change.
func contentID(d *amqp.Delivery) string {
	h := sha256.New()
	keys := slices.Sorted(maps.Keys(d.Headers))
	for _, k := range keys {
		if brokerHeader(k) { // they change across redeliveries
			continue
		}
		fmt.Fprintf(h, "%q=%q;", k, headerString(d.Headers[k]))
	}
	h.Write(d.Body)
	return "sha256:" + hex.EncodeToString(h.Sum(nil)[:16])
}

// republish is the copy of d that a Nack with a delay, or a hop round the
// largest delay bucket, publishes: the same properties and headers, less
// the delivery count of this copy, with attempt deliveries counted so far
// and due set (zero: removed). Per-message TTL (expiration) is dropped, as
// it would cut the delay short, and so is user-id, which the broker checks
// against the publishing connection's user.
func republish(d *amqp.Delivery, attempt int, due time.Time) amqp.Publishing {
	headers := make(amqp.Table, len(d.Headers)+2)
	for k, v := range d.Headers {
		if k != headerDeliveryCount {
			headers[k] = v
		}
	}
	headers[headerAttempt] = int64(attempt)
	if due.IsZero() {
		delete(headers, headerDue)
	} else {
		headers[headerDue] = due.UnixMilli()
	}
	return amqp.Publishing{
		Headers:         headers,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    amqp.Persistent,
		Priority:        d.Priority,
		CorrelationId:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		AppId:           d.AppId,
		Body:            d.Body,
	}
}
