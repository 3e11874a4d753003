package idempotency

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"

	"github.com/idemq/idemq/consumer"
)

// KeyFunc derives a message's dedupe key. An error is treated as
// permanent: a message without a usable key cannot be deduplicated.
type KeyFunc func(msg *consumer.Message) (string, error)

// FingerprintFunc derives a digest of a message's payload, stored with its
// key so that the same key with a different payload is caught rather than
// skipped. An empty fingerprint disables the check for that message.
type FingerprintFunc func(msg *consumer.Message) string

// KeyFromID uses the message ID as the key. It is the default.
func KeyFromID(msg *consumer.Message) (string, error) {
	if msg.ID == "" {
		return "", errors.New("idempotency: message has no ID")
	}
	return msg.ID, nil
}

// KeyFromHeader uses the value of a header as the key, for producers that
// put an idempotency key or event ID in a header.
func KeyFromHeader(name string) KeyFunc {
	return func(msg *consumer.Message) (string, error) {
		v := msg.Headers[name]
		if v == "" {
			return "", fmt.Errorf("idempotency: message %q has no %q header", msg.ID, name)
		}
		return v, nil
	}
}

// KeyFromContent uses a SHA-256 hash of namespace, Key, Body and Headers
// as the key, for producers that give no stable ID: two messages with the
// same content are one effect. The namespace keeps equal payloads of
// unrelated streams apart. Headers that change with every publish (trace
// context such as traceparent, timestamps) make every copy a new key: use
// it only where such headers are not set, or derive the key yourself.
func KeyFromContent(namespace string) KeyFunc {
	return func(msg *consumer.Message) (string, error) {
		return namespace + ":" + contentHash(namespace, msg, true), nil
	}
}

// FingerprintBody is the default fingerprint: a SHA-256 hash of the body.
func FingerprintBody(msg *consumer.Message) string {
	sum := sha256.Sum256(msg.Body)
	return hex.EncodeToString(sum[:])
}

// NoFingerprint disables the payload check.
func NoFingerprint(*consumer.Message) string { return "" }

// contentHash hashes the message's content with length prefixes, so that
// different field boundaries cannot produce the same input.
func contentHash(namespace string, msg *consumer.Message, withHeaders bool) string {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		l := uint64(len(b))
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(namespace))
	field([]byte(msg.Key))
	field(msg.Body)
	if withHeaders {
		names := make([]string, 0, len(msg.Headers))
		for k := range msg.Headers {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			field([]byte(k))
			field([]byte(msg.Headers[k]))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
