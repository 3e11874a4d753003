package consumer

import "time"

// Message is one message as a handler sees it.
//
// Handlers must treat Body and Headers as read-only: a driver may share them
// between redeliveries of the same message.
type Message struct {
	// ID identifies the message. It is stable across redeliveries and is the
	// default idempotency key, so publishers should set it to something
	// meaningful (an event ID); a publisher that is given an empty ID makes
	// one up.
	ID string

	// Key groups messages that must be handled in order. With
	// [Config.OrderByKey], messages that share a Key are handled one at a
	// time in the order they were fetched. An empty Key imposes no order.
	Key string

	// Body is the payload.
	Body []byte

	// Headers carry metadata such as trace context or a content type.
	Headers map[string]string

	// Attempt is the delivery number: 1 the first time the message is
	// delivered, 2 on the first redelivery, and so on. Drivers carry it
	// across redeliveries, including redeliveries to other consumers.
	Attempt int

	// EnqueuedAt is when the message was first published.
	EnqueuedAt time.Time
}
