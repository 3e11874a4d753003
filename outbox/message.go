package outbox

// Message is one event to publish.
type Message struct {
	// ID identifies the event. It travels as the published message's ID,
	// and in the [HeaderID] header, so that consumers dedupe redeliveries
	// with package idempotency (whose default key is the message ID). An
	// empty ID is replaced by 32 random hex digits; set it yourself to
	// something meaningful, such as "order-42-paid", to dedupe events that
	// your own code might enqueue twice.
	ID string

	// Key orders events: those that share a non-empty Key are published in
	// the order their transactions committed, one after the other. It is
	// also the published message's Key. An empty Key imposes no order:
	// such events are published in parallel, roughly oldest first.
	Key string

	// Destination says where the event goes: the relay passes it to its
	// [Publisher], which may route on it (a stream, a queue, a topic).
	// Empty is a destination like any other.
	Destination string

	// Body is the payload.
	Body []byte

	// Headers carry metadata such as trace context or a content type.
	Headers map[string]string
}

// HeaderID is the header in which a relayed message carries its event's
// ID, besides the message ID itself, for brokers or publishers that replace
// message IDs with their own: consumers there dedupe with
// idempotency.KeyFromHeader(outbox.HeaderID).
const HeaderID = "idemq-outbox-id"
