package idempotencyredis

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/internal/units"
)

// DefaultPrefix is the key prefix used when [Options.Prefix] is empty.
const DefaultPrefix = "idemq:idem:"

// Options configures [New]. Zero fields take the documented defaults.
type Options struct {
	// Prefix is put in front of every Redis key the store writes. It must
	// not contain '{' or '}': the hash tag that follows it decides the
	// record's slot, and a brace in the prefix would take that role.
	// Default [DefaultPrefix].
	Prefix string
}

func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		return o, fmt.Errorf("idempotencyredis: Options.Prefix %q contains a brace; the store places its own {hash tag} after it", o.Prefix)
	}
	return o, nil
}

// Store is an [idempotency.Store] in Redis. It is safe for concurrent use.
type Store struct {
	client redis.UniversalClient
	prefix string
	pipe   pipeliner // see pipeline.go
}

var _ idempotency.Store = (*Store)(nil)

// New returns a store that keeps its records in client under opts.Prefix.
// It does not contact Redis.
func New(client redis.UniversalClient, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("idempotencyredis: client is nil")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Store{client: client, prefix: o.Prefix}, nil
}

// recordKey returns the Redis key of key's record: the prefix, then the
// SHA-256 of key in hex as the hash tag. Hashing makes any key, braces and
// all, a fixed-size tag that is never empty and contains no brace, so the
// whole record (and any key added to it later) lands in one slot.
func (s *Store) recordKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	var b strings.Builder
	b.Grow(len(s.prefix) + 2 + 2*len(sum))
	b.WriteString(s.prefix)
	b.WriteByte('{')
	b.WriteString(hex.EncodeToString(sum[:]))
	b.WriteByte('}')
	return b.String()
}

// Record layout, one hash per key:
//
//	s  state: "1" in progress, "2" completed, "0" released
//	t  fencing token, decimal
//	f  fingerprint (in progress and completed)
//	r  result (completed)
//	n  nonce of the call that last changed the record
//
// An in-progress record expires with its lease and a completed one with
// its retention, both by PEXPIRE on the server's clock. A released record
// is a tombstone that reads as absent; it keeps its token, so that the next
// claim's token is larger even if the server's clock stepped back, until
// the released lease would have run out.
//
// The nonce makes each call safe to run twice: go-redis retries a command
// whose reply was lost, and the retry must find the change it already made
// rather than report it as a conflict.

// claimScript: KEYS[1] record; ARGV[1] fingerprint, ARGV[2] lease in ms,
// ARGV[3] nonce. Replies {1, token}, {2, result}, {3, pttl} or {0} for a
// fingerprint mismatch.
//
// The token is max(previous token + 1, server time in µs). A claim only
// finds a previous token in a tombstone; otherwise tokens grow because the
// server's clock does. TIME is allowed in a script that writes because
// Redis 7 replicates a script's effects, not the script.
var claimScript = redis.NewScript(`
local r = redis.call('HMGET', KEYS[1], 's', 't', 'f', 'r', 'n')
local state = r[1]
if state == '1' and r[5] == ARGV[3] then
  return {1, r[2]}
end
if state == '1' or state == '2' then
  if ARGV[1] ~= '' and r[3] and r[3] ~= '' and r[3] ~= ARGV[1] then
    return {0}
  end
  if state == '2' then
    return {2, r[4]}
  end
  return {3, redis.call('PTTL', KEYS[1])}
end
local now = redis.call('TIME')
local token = tonumber(now[1]) * 1000000 + tonumber(now[2])
if r[2] then
  local after = tonumber(r[2]) + 1
  if after > token then
    token = after
  end
end
token = string.format('%.0f', token)
if state then
  redis.call('DEL', KEYS[1]) -- a release tombstone: start afresh
end
redis.call('HSET', KEYS[1], 's', '1', 't', token, 'f', ARGV[1], 'n', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, token}
`)

// extendScript: KEYS[1] record; ARGV[1] token, ARGV[2] lease in ms.
// Replies 1, or 0 when the token does not hold the claim. Running it twice
// is harmless, so it needs no nonce.
var extendScript = redis.NewScript(`
local r = redis.call('HMGET', KEYS[1], 's', 't')
if r[1] ~= '1' or r[2] ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// completeScript: KEYS[1] record; ARGV[1] token, ARGV[2] result,
// ARGV[3] retention in ms, ARGV[4] nonce. Replies 1, or 0 when the token
// does not hold the claim.
var completeScript = redis.NewScript(`
local r = redis.call('HMGET', KEYS[1], 's', 't', 'n')
if r[1] == '2' and r[2] == ARGV[1] and r[3] == ARGV[4] then
  return 1
end
if r[1] ~= '1' or r[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 's', '2', 'r', ARGV[2], 'n', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// releaseScript: KEYS[1] record; ARGV[1] token, ARGV[2] nonce. Replies 1,
// or 0 when the token does not hold the claim. The record becomes a
// tombstone for the rest of its lease (see the layout above).
var releaseScript = redis.NewScript(`
local r = redis.call('HMGET', KEYS[1], 's', 't', 'n')
if r[1] == '0' and r[2] == ARGV[1] and r[3] == ARGV[2] then
  return 1
end
if r[1] ~= '1' or r[2] ~= ARGV[1] then
  return 0
end
redis.call('HDEL', KEYS[1], 'f')
redis.call('HSET', KEYS[1], 's', '0', 'n', ARGV[2])
return 1
`)

// Claim implements [idempotency.Store]. lease must be positive; it is
// rounded up to whole milliseconds.
//
// If ctx ends or Redis fails before the reply arrives, the claim may have
// been taken anyway; the key then stays in progress until lease runs out.
func (s *Store) Claim(ctx context.Context, key, fingerprint string, lease time.Duration) (idempotency.Claim, error) {
	ms, err := millis("lease", lease)
	if err != nil {
		return idempotency.Claim{}, err
	}
	v, err := s.run(ctx, claimScript, []string{s.recordKey(key)}, fingerprint, ms, nonce()).Slice()
	if err != nil {
		return idempotency.Claim{}, fmt.Errorf("idempotencyredis: claim: %w", err)
	}
	return parseClaim(v)
}

func parseClaim(v []any) (idempotency.Claim, error) {
	if len(v) == 0 {
		return idempotency.Claim{}, fmt.Errorf("idempotencyredis: claim: unexpected reply %v", v)
	}
	status, ok := v[0].(int64)
	if !ok {
		return idempotency.Claim{}, fmt.Errorf("idempotencyredis: claim: unexpected reply %v", v)
	}
	switch {
	case status == 0 && len(v) == 1:
		return idempotency.Claim{}, idempotency.ErrFingerprintMismatch
	case status == 1 && len(v) == 2:
		str, _ := v[1].(string)
		tok, err := strconv.ParseInt(str, 10, 64)
		if err != nil {
			return idempotency.Claim{}, fmt.Errorf("idempotencyredis: claim: bad token %q: %w", str, err)
		}
		return idempotency.Claim{Status: idempotency.Claimed, Token: tok}, nil
	case status == 2 && len(v) == 2:
		res, ok := v[1].(string)
		if !ok {
			return idempotency.Claim{}, fmt.Errorf("idempotencyredis: claim: bad result %T", v[1])
		}
		return idempotency.Claim{Status: idempotency.Completed, Result: []byte(res)}, nil
	case status == 3 && len(v) == 2:
		pttl, ok := v[1].(int64)
		if !ok {
			return idempotency.Claim{}, fmt.Errorf("idempotencyredis: claim: bad lease %T", v[1])
		}
		// The record was live when the script read it, so its lease has
		// not run out; never answer a zero or negative wait, nor one that
		// overflows a Duration.
		wait := time.Duration(math.MaxInt64)
		if pttl <= int64(wait/time.Millisecond) {
			wait = max(time.Duration(pttl)*time.Millisecond, time.Millisecond)
		}
		return idempotency.Claim{Status: idempotency.InProgress, RetryAfter: wait}, nil
	}
	return idempotency.Claim{}, fmt.Errorf("idempotencyredis: claim: unexpected reply %v", v)
}

// Extend implements [idempotency.Store]. lease must be positive; it is
// rounded up to whole milliseconds.
func (s *Store) Extend(ctx context.Context, key string, token int64, lease time.Duration) error {
	ms, err := millis("lease", lease)
	if err != nil {
		return err
	}
	return held("extend", s.run(ctx, extendScript, []string{s.recordKey(key)},
		strconv.FormatInt(token, 10), ms))
}

// Complete implements [idempotency.Store]. retention must be positive; it
// is rounded up to whole milliseconds. result is stored as raw bytes; an
// empty result comes back empty.
func (s *Store) Complete(ctx context.Context, key string, token int64, result []byte, retention time.Duration) error {
	ms, err := millis("retention", retention)
	if err != nil {
		return err
	}
	return held("complete", s.run(ctx, completeScript, []string{s.recordKey(key)},
		strconv.FormatInt(token, 10), result, ms, nonce()))
}

// Release implements [idempotency.Store].
func (s *Store) Release(ctx context.Context, key string, token int64) error {
	return held("release", s.run(ctx, releaseScript, []string{s.recordKey(key)},
		strconv.FormatInt(token, 10), nonce()))
}

// held turns the reply of a token-checked script into an error.
func held(op string, cmd *redis.Cmd) error {
	n, err := cmd.Int64()
	switch {
	case err != nil:
		return fmt.Errorf("idempotencyredis: %s: %w", op, err)
	case n != 1:
		return idempotency.ErrStaleToken
	}
	return nil
}

// millis converts d to whole milliseconds for PEXPIRE, rounding up so that
// a positive duration never becomes 0 (which would delete the record at
// once). A non-positive d is the caller's bug and is rejected before
// anything is sent.
func millis(name string, d time.Duration) (int64, error) {
	if d <= 0 {
		return 0, fmt.Errorf("idempotencyredis: %s must be positive, got %v", name, d)
	}
	return units.Ceil(d, time.Millisecond), nil
}

// nonce returns a value unique to one call, so that a script run twice for
// it (a client retry after a lost reply) recognises its own change.
func nonce() string {
	return rand.Text()
}
