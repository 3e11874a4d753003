package idempotency

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/idemq/idemq/consumer"
)

var (
	// ErrStaleToken reports that a token no longer holds its key's claim:
	// the lease ran out, the claim was completed or released, or another
	// consumer claimed the key since.
	ErrStaleToken = errors.New("idempotency: stale token")

	// ErrFingerprintMismatch reports that a key is already in use for a
	// different payload. Retrying cannot fix it.
	ErrFingerprintMismatch = errors.New("idempotency: key reused with a different payload")

	// ErrKeyTooLong reports a key longer than the configured limit.
	ErrKeyTooLong = errors.New("idempotency: key too long")

	// ErrInProgress reports that another consumer holds the key's claim.
	// It matches [consumer.ErrDeferred]: the message is not failing, it
	// waits for its original.
	ErrInProgress = fmt.Errorf("idempotency: key in progress elsewhere (%w)", consumer.ErrDeferred)
)

// Status is what a [Store.Claim] found.
type Status int

const (
	// Claimed: the caller holds the key now and must Complete or Release
	// it with the returned token.
	Claimed Status = iota + 1
	// Completed: the key was completed before; the stored result is
	// returned and the work must not run again.
	Completed
	// InProgress: another holder's claim is live; try again after
	// RetryAfter.
	InProgress
)

// String names the status.
func (s Status) String() string {
	switch s {
	case Claimed:
		return "claimed"
	case Completed:
		return "completed"
	case InProgress:
		return "in progress"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Claim is the answer of [Store.Claim].
type Claim struct {
	Status Status
	// Token is the fencing token of a Claimed key. Tokens of one key only
	// grow, so a downstream system can refuse writes carrying a token older
	// than the newest it has seen.
	Token int64
	// Result is the result stored by Complete, for a Completed key.
	Result []byte
	// RetryAfter is how long the current holder's lease still runs, for a
	// key InProgress.
	RetryAfter time.Duration
}

// Store keeps dedupe keys. Each method is one atomic step in the store,
// and every deadline is computed on the store's clock, never the caller's.
//
// A key is in one of three states: absent, in progress (claimed, with a
// lease) or completed (with a retention). A key whose lease or retention
// has run out is absent again.
//
// Extend, Complete and Release succeed only while token holds the key's
// claim: the key is in progress, its lease has not run out and it has not
// been claimed again since. Otherwise they change nothing and return an
// error matching [ErrStaleToken].
type Store interface {
	// Claim takes key for lease if it is absent, and answers Claimed with a
	// new token. Otherwise it changes nothing and answers Completed with
	// the stored result or InProgress with the holder's remaining lease.
	//
	// If key is present with a fingerprint and fingerprint differs from
	// it (both non-empty), Claim returns an error matching
	// [ErrFingerprintMismatch] and changes nothing.
	Claim(ctx context.Context, key, fingerprint string, lease time.Duration) (Claim, error)

	// Extend renews the claim's lease to lease from now.
	Extend(ctx context.Context, key string, token int64, lease time.Duration) error

	// Complete marks key completed with result, kept for retention.
	Complete(ctx context.Context, key string, token int64, result []byte, retention time.Duration) error

	// Release gives up the claim so that the key is absent again and the
	// next delivery can run.
	Release(ctx context.Context, key string, token int64) error
}
