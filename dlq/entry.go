package dlq

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/idemq/idemq/consumer"
)

// Reason says why a message was parked.
type Reason string

// Reasons the middleware assigns. A custom classifier may use others.
const (
	// ReasonPermanent: the handler returned a [consumer.Permanent] error.
	ReasonPermanent Reason = "permanent"
	// ReasonAttemptsExhausted: the message failed MaxAttempts deliveries.
	ReasonAttemptsExhausted Reason = "attempts_exhausted"
	// ReasonFingerprintMismatch: the message's idempotency key was already
	// used for a different payload.
	ReasonFingerprintMismatch Reason = "fingerprint_mismatch"
	// ReasonUndecodable: the message could not be decoded (see
	// [Undecodable]).
	ReasonUndecodable Reason = "undecodable"
)

// Entry is one parked message.
type Entry struct {
	// ID identifies the entry in its store: [EntryID] of Source and the
	// message's ID, so parking the same message again replaces its entry
	// instead of adding a second one.
	ID string

	// Message is the message as it was delivered the last time, with
	// Attempt holding the deliveries made.
	Message consumer.Message

	// Source names the queue or consumer the message came from; Replay
	// sends it back through the publisher it is given.
	Source string

	Reason Reason

	// Error is the last error's text; ErrorChain holds the messages of
	// the errors it wraps, outermost first.
	Error      string
	ErrorChain []string

	// Attempts is the number of deliveries that failed.
	Attempts int

	// FirstFailedAt is the first failure this process saw for the message
	// (LastFailedAt when it saw only the last one); LastFailedAt is when it
	// was parked.
	FirstFailedAt time.Time
	LastFailedAt  time.Time
}

// EntryID derives an entry's ID from its source and message ID.
func EntryID(source, messageID string) string {
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write([]byte(messageID))
	return hex.EncodeToString(h.Sum(nil)[:16])
}
