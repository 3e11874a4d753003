// Package dlq will park messages that cannot be handled, so that a poison
// message neither blocks its queue nor loops forever, and is never lost.
//
// It will hold the dead-letter Entry, the Store contract (put, inspect,
// list, count, delete, purge), the consumer middleware that parks a message
// after N attempts or a permanent error, Replay, and an in-memory store.
// Postgres and Redis stores will live in subpackages.
package dlq
