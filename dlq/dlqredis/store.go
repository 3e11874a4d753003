package dlqredis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/internal/units"
)

// Defaults for the zero fields of [Options].
const (
	DefaultPrefix = "idemq:dlq:"
	DefaultName   = "default"
)

// receiptTTL is how long a write script remembers that a call changed the
// store (see [Store] on retried calls). It outlasts go-redis's own retries
// with its default timeouts by far: 4 attempts of 3s reads and writes.
const receiptTTL = time.Minute

// Options configures [New]. Zero fields take the documented defaults.
type Options struct {
	// Prefix is put in front of every Redis key the store writes. It must
	// not contain '{' or '}': the hash tag that follows it decides the
	// slot. Default [DefaultPrefix].
	Prefix string

	// Name selects one dead-letter queue among several under one prefix;
	// each name is a separate store. Its keys share the hash tag {Name},
	// so one DLQ lives in one cluster slot; use several names to spread
	// DLQs over a cluster. It must not contain '{' or '}'. Default
	// [DefaultName].
	Name string

	// MaxEntries caps the entries the store holds: Put of a new ID fails
	// with [dlq.ErrFull] once it holds that many. Zero means no cap;
	// negative is an error.
	MaxEntries int
}

func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		return o, fmt.Errorf("dlqredis: Options.Prefix %q contains a brace; the store places its own {hash tag} after it", o.Prefix)
	}
	if strings.ContainsAny(o.Name, "{}") {
		return o, fmt.Errorf("dlqredis: Options.Name %q contains a brace; it is the keys' {hash tag}", o.Name)
	}
	if o.MaxEntries < 0 {
		return o, fmt.Errorf("dlqredis: negative Options.MaxEntries %d", o.MaxEntries)
	}
	return o, nil
}

// Store is a [dlq.Store] in Redis. It is safe for concurrent use.
type Store struct {
	client redis.UniversalClient
	max    int
	// base is "<prefix>{<name>}:", the start of every key of the store.
	base string
	idx  string
}

var _ dlq.Store = (*Store)(nil)

// New returns the store named opts.Name in client. It does not contact
// Redis.
func New(client redis.UniversalClient, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("dlqredis: client is nil")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	base := o.Prefix + "{" + o.Name + "}:"
	return &Store{client: client, max: o.MaxEntries, base: base, idx: base + "idx"}, nil
}

// Keys, all under the store's hash tag:
//
//	<prefix>{<name>}:idx        sorted set: entry IDs scored by LastFailedAt in µs
//	<prefix>{<name>}:e:<id>     hash: one entry (layout in codec.go)
//	<prefix>{<name>}:r:<nonce>  string: receipt of a write, for receiptTTL
//
// An entry exists exactly when its hash does, and then its ID is in the
// index with the hash's lf as score: only the scripts below change either,
// always both.

func (s *Store) entryKey(id string) string      { return s.base + "e:" + id }
func (s *Store) receiptKey(nonce string) string { return s.base + "r:" + nonce }

// luaOlder is a Lua function: whether decimal integer a is less than b,
// compared exactly (Lua's numbers are doubles, exact only to 2^53).
// Both must be canonical, as strconv.FormatInt writes them.
const luaOlder = `
local function older(a, b)
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then return na end
  if na then a, b = string.sub(b, 2), string.sub(a, 2) end
  if #a ~= #b then return #a < #b end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return false
end
`

// putScript: KEYS[1] entry, KEYS[2] index; ARGV[1] ID, ARGV[2] cap (0 for
// none), ARGV[3] FirstFailedAt in µs or "" when unknown, ARGV[4]
// LastFailedAt in µs, ARGV[5...] the other fields and values. Replies 1, or
// 0 when the store is full.
//
// The entry is rewritten whole (DEL, then HSET), which ends any
// reservation. Running it twice leaves what running it once does, so a
// call retried by the client needs no receipt.
var putScript = redis.NewScript(luaOlder + `
local exists = redis.call('EXISTS', KEYS[1]) == 1
local cap = tonumber(ARGV[2])
if not exists and cap > 0 and redis.call('ZCARD', KEYS[2]) >= cap then
  return 0
end
local ff = ARGV[3]
if exists and ff ~= '' then
  local old = redis.call('HGET', KEYS[1], 'ff')
  if old and older(old, ff) then
    ff = old
  end
end
redis.call('DEL', KEYS[1])
if ff ~= '' then
  redis.call('HSET', KEYS[1], 'ff', ff, 'lf', ARGV[4], unpack(ARGV, 5))
else
  redis.call('HSET', KEYS[1], 'lf', ARGV[4], unpack(ARGV, 5))
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
`)

// deleteScript: KEYS[1] entry, KEYS[2] index, KEYS[3] receipt; ARGV[1] ID,
// ARGV[2] receipt TTL in ms. Replies 1, or 0 when there is no entry.
var deleteScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 1
end
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
return 1
`)

// luaNow is Lua that sets now to the server's time in µs. TIME is allowed
// in a script that writes because Redis 7 replicates a script's effects,
// not the script.
const luaNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
`

// reserveScript: KEYS[1] entry; ARGV[1] token, ARGV[2] lease in µs.
// Replies 1, 0 when there is no entry, 2 when another token holds a live
// reservation. A token is new for each call, so finding it already in
// place means this call is a client retry of one that succeeded.
var reserveScript = redis.NewScript(luaNow + `
local r = redis.call('HMGET', KEYS[1], 'lf', 'rt', 'rx')
if not r[1] then
  return 0
end
if r[2] and r[2] ~= ARGV[1] and tonumber(r[3]) > now then
  return 2
end
redis.call('HSET', KEYS[1], 'rt', ARGV[1], 'rx', string.format('%.0f', now + tonumber(ARGV[2])))
return 1
`)

// luaHeld is the start of the scripts that act on a reservation:
// KEYS[1] entry, KEYS[2] receipt; ARGV[1] token, ARGV[2] receipt TTL in
// ms. It replies 1 for a call already done (a client retry), 0 when there
// is no entry, 2 unless the token holds a live reservation.
const luaHeld = `
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 1
end
local r = redis.call('HMGET', KEYS[1], 'lf', 'rt', 'rx')
if not r[1] then
  return 0
end
` + luaNow + `
if ARGV[1] == '' or r[2] ~= ARGV[1] or tonumber(r[3]) <= now then
  return 2
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
`

// unreserveScript: see luaHeld. Replies 1 once the reservation is ended.
var unreserveScript = redis.NewScript(luaHeld + `
redis.call('HDEL', KEYS[1], 'rt', 'rx')
return 1
`)

// deleteReservedScript: see luaHeld; also KEYS[3] index, ARGV[3] ID.
// Replies 1 once the entry is deleted.
var deleteReservedScript = redis.NewScript(luaHeld + `
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[3])
return 1
`)

// Put implements [dlq.Store]. FirstFailedAt and LastFailedAt are kept to
// the microsecond (rounded down); a zero FirstFailedAt is stored as
// unknown, and replacing an entry keeps the earlier of two known first
// failures.
func (s *Store) Put(ctx context.Context, e dlq.Entry) error {
	if e.ID == "" {
		return errors.New("dlqredis: Put of an entry without an ID")
	}
	ff := ""
	if !e.FirstFailedAt.IsZero() {
		ff = strconv.FormatInt(micro(e.FirstFailedAt), 10)
	}
	args := append([]any{e.ID, s.max, ff, strconv.FormatInt(micro(e.LastFailedAt), 10)}, encodeFields(e)...)
	n, err := putScript.Run(ctx, s.client, []string{s.entryKey(e.ID), s.idx}, args...).Int64()
	switch {
	case err != nil:
		return fmt.Errorf("dlqredis: put %q: %w", e.ID, err)
	case n == 0:
		return dlq.ErrFull
	}
	return nil
}

// Get implements [dlq.Store].
func (s *Store) Get(ctx context.Context, id string) (dlq.Entry, error) {
	f, err := s.client.HGetAll(ctx, s.entryKey(id)).Result()
	if err != nil {
		return dlq.Entry{}, fmt.Errorf("dlqredis: get %q: %w", id, err)
	}
	if len(f) == 0 {
		return dlq.Entry{}, dlq.ErrNotFound
	}
	return decodeEntry(id, f)
}

// Delete implements [dlq.Store]. It removes the entry whether or not a
// Replay holds it.
func (s *Store) Delete(ctx context.Context, id string) error {
	return s.reply("delete", id, deleteScript.Run(ctx, s.client,
		[]string{s.entryKey(id), s.idx, s.receiptKey(nonce())}, id, receiptTTL.Milliseconds()))
}

// Reserve implements [dlq.Store]. The reservation runs until lease has
// passed on the Redis server's clock, in whole microseconds rounded up; a
// lease that is not positive gives a reservation that is already over.
func (s *Store) Reserve(ctx context.Context, id string, lease time.Duration) (string, error) {
	token := nonce()
	err := s.reply("reserve", id, reserveScript.Run(ctx, s.client,
		[]string{s.entryKey(id)}, token, micros(lease)))
	if err != nil {
		return "", err
	}
	return token, nil
}

// Unreserve implements [dlq.Store]. It returns [dlq.ErrReserved] unless
// token holds a reservation of the entry that has not run out, and
// [dlq.ErrNotFound] when there is no entry.
func (s *Store) Unreserve(ctx context.Context, id, token string) error {
	return s.reply("unreserve", id, unreserveScript.Run(ctx, s.client,
		[]string{s.entryKey(id), s.receiptKey(nonce())}, token, receiptTTL.Milliseconds()))
}

// DeleteReserved implements [dlq.Store]. Like [Store.Unreserve], it
// returns [dlq.ErrReserved] unless token holds a live reservation, and
// [dlq.ErrNotFound] when there is no entry.
func (s *Store) DeleteReserved(ctx context.Context, id, token string) error {
	return s.reply("delete reserved", id, deleteReservedScript.Run(ctx, s.client,
		[]string{s.entryKey(id), s.receiptKey(nonce()), s.idx}, token, receiptTTL.Milliseconds(), id))
}

// reply turns the reply of a write script (1 done, 0 no entry, 2 reserved
// by another) into an error.
func (s *Store) reply(op, id string, cmd *redis.Cmd) error {
	n, err := cmd.Int64()
	switch {
	case err != nil:
		return fmt.Errorf("dlqredis: %s %q: %w", op, id, err)
	case n == 1:
		return nil
	case n == 0:
		return dlq.ErrNotFound
	case n == 2:
		return dlq.ErrReserved
	}
	return fmt.Errorf("dlqredis: %s %q: unexpected reply %d", op, id, n)
}

// micros converts d to whole microseconds, rounding a positive remainder
// up so that no positive lease becomes zero.
func micros(d time.Duration) int64 { return units.Ceil(d, time.Microsecond) }

// nonce returns a value unique to one call: a reservation token, or the
// name of a call's receipt.
func nonce() string { return rand.Text() }
