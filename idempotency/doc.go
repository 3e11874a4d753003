// Package idempotency will make a message's effect happen once however many
// times the broker delivers it.
//
// It will hold the Store contract (an atomic claim of a dedupe key with a
// fencing token, completion with a stored result, release on failure), the
// consumer middleware built on it, payload fingerprints, an HTTP
// Idempotency-Key middleware and an in-memory store. Postgres (with a
// transactional inbox) and Redis stores will live in subpackages.
package idempotency
