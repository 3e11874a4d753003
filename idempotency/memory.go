package idempotency

import (
	"bytes"
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

const memShards = 64

// MemoryStore is a [Store] in process memory, for tests, examples and
// single-process services. It keeps nothing across restarts, so it dedupes
// only what one process sees.
//
// Expired keys are dropped as they are found and by a sweep whose cost is
// spread over claims, so memory follows the number of live keys.
type MemoryStore struct {
	seed   maphash.Seed
	token  atomic.Int64
	shards [memShards]memShard
	now    func() time.Time // for tests
}

type memShard struct {
	mu     sync.Mutex
	keys   map[string]memRecord
	claims int
}

type memRecord struct {
	fingerprint string
	completed   bool
	token       int64
	result      []byte
	expires     time.Time
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	s := &MemoryStore{seed: maphash.MakeSeed(), now: time.Now}
	for i := range s.shards {
		s.shards[i].keys = make(map[string]memRecord)
	}
	return s
}

func (s *MemoryStore) shard(key string) *memShard {
	return &s.shards[maphash.String(s.seed, key)%memShards]
}

// live returns key's record unless it is absent or expired.
func (sh *memShard) live(key string, now time.Time) (memRecord, bool) {
	r, ok := sh.keys[key]
	if !ok {
		return r, false
	}
	if !r.expires.After(now) {
		delete(sh.keys, key)
		return memRecord{}, false
	}
	return r, true
}

// Claim implements [Store].
func (s *MemoryStore) Claim(ctx context.Context, key, fingerprint string, lease time.Duration) (Claim, error) {
	if err := ctx.Err(); err != nil {
		return Claim{}, err
	}
	now := s.now()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// Sweep once the shard has seen as many claims as it holds keys, so
	// each claim pays for scanning about one key.
	if sh.claims++; sh.claims >= 1024 && sh.claims >= len(sh.keys) {
		sh.claims = 0
		for k, r := range sh.keys {
			if !r.expires.After(now) {
				delete(sh.keys, k)
			}
		}
	}
	r, ok := sh.live(key, now)
	if !ok {
		tok := s.token.Add(1)
		sh.keys[key] = memRecord{fingerprint: fingerprint, token: tok, expires: now.Add(lease)}
		return Claim{Status: Claimed, Token: tok}, nil
	}
	if fingerprint != "" && r.fingerprint != "" && fingerprint != r.fingerprint {
		return Claim{}, ErrFingerprintMismatch
	}
	if r.completed {
		return Claim{Status: Completed, Result: bytes.Clone(r.result)}, nil
	}
	return Claim{Status: InProgress, RetryAfter: r.expires.Sub(now)}, nil
}

// held reports whether token holds key's claim, and returns its record.
func (s *MemoryStore) held(sh *memShard, key string, token int64, now time.Time) (memRecord, bool) {
	r, ok := sh.live(key, now)
	return r, ok && !r.completed && r.token == token
}

// Extend implements [Store].
func (s *MemoryStore) Extend(ctx context.Context, key string, token int64, lease time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r, ok := s.held(sh, key, token, now)
	if !ok {
		return ErrStaleToken
	}
	r.expires = now.Add(lease)
	sh.keys[key] = r
	return nil
}

// Complete implements [Store].
func (s *MemoryStore) Complete(ctx context.Context, key string, token int64, result []byte, retention time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r, ok := s.held(sh, key, token, now)
	if !ok {
		return ErrStaleToken
	}
	r.completed = true
	r.result = bytes.Clone(result)
	r.expires = now.Add(retention)
	sh.keys[key] = r
	return nil
}

// Release implements [Store].
func (s *MemoryStore) Release(ctx context.Context, key string, token int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := s.held(sh, key, token, now); !ok {
		return ErrStaleToken
	}
	delete(sh.keys, key)
	return nil
}

// Len returns the number of keys held, expired ones included until they
// are swept.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.keys)
		sh.mu.Unlock()
	}
	return n
}
