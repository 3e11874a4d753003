package dlqredis

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/idemq/idemq/dlq"
	"github.com/idemq/idemq/internal/keyset"
)

// scanChunk is how many index members one script reads, and so bounds the
// work of each script that List, Count and Purge run: Redis runs one script
// at a time, and a script over the whole index would stall every other
// client for as long as it takes.
const scanChunk = 500

// Listing, counting and purging walk the index in order of (score, ID) in
// chunks: rangeScript returns the next chunk after a position, and a second
// script reads, counts or deletes the chunk's entries, with their keys
// declared, checking each entry's score so that one moved meanwhile (a
// replacing Put) is left for its new position. Between two scripts other
// clients run, so a walk is not a snapshot: an entry present and unchanged
// throughout is met exactly once, and one added, moved or removed meanwhile
// may or may not be.

// luaAfter is a Lua function: whether a sorts after b bytewise, the order
// in which Redis sorts members of equal score (memcmp). Lua's own string
// comparison uses the server's collation locale, so it cannot be used.
const luaAfter = `
local function after(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end
`

// rangeScript: KEYS[1] index; ARGV[1] "1" to start after a position, "0"
// to start at the beginning of the range, ARGV[2] the position's score,
// ARGV[3] its ID, ARGV[4] the range's lower score bound (inclusive, or
// "-inf"), ARGV[5] its upper bound ("(score", exclusive, or "+inf"),
// ARGV[6] how many members to return. Replies member, score, member,
// score, ...
//
// Members of equal score are sorted bytewise, so the first member after
// (score, ID) is found by binary search over the ranks of that score, whose
// bounds ZCOUNT gives: O(log² n) whether or not the position's entry still
// exists.
var rangeScript = redis.NewScript(luaAfter + `
local idx = KEYS[1]
local start = 0
if ARGV[4] ~= '-inf' then
  start = redis.call('ZCOUNT', idx, '-inf', '(' .. ARGV[4])
end
if ARGV[1] == '1' then
  local lo = redis.call('ZCOUNT', idx, '-inf', '(' .. ARGV[2])
  local hi = lo + redis.call('ZCOUNT', idx, ARGV[2], ARGV[2])
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if after(redis.call('ZRANGE', idx, mid, mid)[1], ARGV[3]) then
      hi = mid
    else
      lo = mid + 1
    end
  end
  if lo > start then
    start = lo
  end
end
local stop = start + tonumber(ARGV[6]) - 1
if ARGV[5] ~= '+inf' then
  local last = redis.call('ZCOUNT', idx, '-inf', ARGV[5]) - 1
  if last < stop then
    stop = last
  end
end
if stop < start then
  return {}
end
return redis.call('ZRANGE', idx, start, stop, 'WITHSCORES')
`)

// luaMatch is a Lua function: whether the entry at key matches the filter
// ARGV[1] reason, ARGV[2] source ("" for any) and still has score.
const luaMatch = `
local function match(key, score)
  local f = redis.call('HMGET', key, 'lf', 'rsn', 'src')
  return f[1] and tonumber(f[1]) == tonumber(score)
    and (ARGV[1] == '' or f[2] == ARGV[1])
    and (ARGV[2] == '' or f[3] == ARGV[2])
end
`

// fetchScript: KEYS entries of a chunk; ARGV[1] reason, ARGV[2] source,
// ARGV[3] how many matches are wanted, ARGV[3+i] the score of KEYS[i].
// Replies i, {fields and values}, ... for the first matches, in chunk
// order.
var fetchScript = redis.NewScript(luaMatch + `
local out = {}
local want = tonumber(ARGV[3])
for i = 1, #KEYS do
  if match(KEYS[i], ARGV[3 + i]) then
    out[#out + 1] = i
    out[#out + 1] = redis.call('HGETALL', KEYS[i])
    if #out >= 2 * want then
      break
    end
  end
end
return out
`)

// countScript: KEYS entries of a chunk; ARGV[1] reason, ARGV[2] source,
// ARGV[2+i] the score of KEYS[i]. Replies how many match.
var countScript = redis.NewScript(luaMatch + `
local n = 0
for i = 1, #KEYS do
  if match(KEYS[i], ARGV[2 + i]) then
    n = n + 1
  end
end
return n
`)

// purgeScript: KEYS[1] index, KEYS[2] receipt, KEYS[2+i] entries of a
// chunk; ARGV[1] reason, ARGV[2] source, ARGV[3] receipt TTL in ms,
// ARGV[2+2i] the ID and ARGV[3+2i] the score of KEYS[2+i]. Deletes the
// matching entries and replies how many. The receipt keeps that number, so
// a client retry of a call that succeeded replies it again rather than 0.
var purgeScript = redis.NewScript(luaMatch + `
local done = redis.call('GET', KEYS[2])
if done then
  return tonumber(done)
end
local n = 0
for i = 1, #KEYS - 2 do
  if match(KEYS[2 + i], ARGV[3 + 2 * i]) then
    redis.call('DEL', KEYS[2 + i])
    redis.call('ZREM', KEYS[1], ARGV[2 + 2 * i])
    n = n + 1
  end
end
if n > 0 then
  redis.call('SET', KEYS[2], n, 'PX', ARGV[3])
end
return n
`)

// member is one index member: an entry ID and its score as Redis wrote it.
type member struct {
	id, score string
}

// position is a place in the index: after (score, id), or, with set
// false, the beginning.
type position struct {
	set       bool
	score, id string
}

// bounds returns the score range of f's time bounds: Since <= LastFailedAt
// < Until on microseconds.
func bounds(f dlq.Filter) (lo, hi string) {
	lo, hi = "-inf", "+inf"
	if !f.Since.IsZero() {
		lo = strconv.FormatInt(ceilMicro(f.Since), 10)
	}
	if !f.Until.IsZero() {
		hi = "(" + strconv.FormatInt(ceilMicro(f.Until), 10)
	}
	return lo, hi
}

// byFields reports whether f selects by Reason or Source, which the index
// does not know, so that matching needs each entry's fields.
func byFields(f dlq.Filter) bool { return f.Reason != "" || f.Source != "" }

// rangeChunk returns up to n members of the range [lo, hi) after pos.
func (s *Store) rangeChunk(ctx context.Context, pos position, lo, hi string, n int) ([]member, error) {
	after := "0"
	if pos.set {
		after = "1"
	}
	v, err := rangeScript.RunRO(ctx, s.client, []string{s.idx}, after, pos.score, pos.id, lo, hi, n).Slice()
	if err != nil {
		return nil, err
	}
	if len(v)%2 != 0 {
		return nil, fmt.Errorf("range: odd reply of %d items", len(v))
	}
	out := make([]member, 0, len(v)/2)
	for i := 0; i < len(v); i += 2 {
		id, ok1 := v[i].(string)
		score, ok2 := v[i+1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("range: reply items of type %T, %T", v[i], v[i+1])
		}
		out = append(out, member{id: id, score: score})
	}
	return out, nil
}

// walk calls visit with each chunk of the range [lo, hi) after pos, in
// order, until visit returns false or the range ends. size gives the
// number of members to read next.
func (s *Store) walk(ctx context.Context, pos position, lo, hi string, size func() int, visit func([]member) (bool, error)) error {
	for {
		n := size()
		chunk, err := s.rangeChunk(ctx, pos, lo, hi, n)
		if err != nil || len(chunk) == 0 {
			return err
		}
		more, err := visit(chunk)
		if err != nil || !more || len(chunk) < n {
			return err
		}
		last := chunk[len(chunk)-1]
		pos = position{set: true, score: last.score, id: last.id}
	}
}

// keysAndScores returns the entry keys of chunk and, as script arguments,
// its scores.
func (s *Store) keysAndScores(chunk []member) ([]string, []any) {
	keys := make([]string, len(chunk))
	scores := make([]any, len(chunk))
	for i, m := range chunk {
		keys[i] = s.entryKey(m.id)
		scores[i] = m.score
	}
	return keys, scores
}

// A cursor is the position after an entry: its LastFailedAt in
// microseconds since the Unix epoch (its score, so the position is exact)
// and its ID.
func encodeCursor(e dlq.Entry) string { return keyset.Encode(micro(e.LastFailedAt), e.ID) }

func decodeCursor(c string) (position, error) {
	us, id, ok := keyset.Decode(c)
	if !ok {
		return position{}, fmt.Errorf("dlqredis: invalid cursor %q", c)
	}
	return position{set: true, score: strconv.FormatInt(us, 10), id: id}, nil
}

// List implements [dlq.Store]. It pages by keyset on (LastFailedAt, ID)
// over the index, so a page costs O(log² n) to find its start wherever it
// is, plus its entries. A filter on Reason or Source is applied to the
// entries in the index's time range as they are read, in chunks of at most
// 500 per script: a page then costs as many entries as lie between its
// first and its last match (one past the limit, to know whether a next
// page exists).
func (s *Store) List(ctx context.Context, f dlq.Filter, cursor string, limit int) (dlq.Page, error) {
	if limit <= 0 {
		return dlq.Page{}, fmt.Errorf("dlqredis: list limit must be positive, got %d", limit)
	}
	var pos position
	if cursor != "" {
		var err error
		if pos, err = decodeCursor(cursor); err != nil {
			return dlq.Page{}, err
		}
	}
	// One entry more than asked tells whether there is a next page.
	want := limit
	if want < math.MaxInt {
		want++
	}
	entries := make([]dlq.Entry, 0, min(want, scanChunk))
	size := func() int {
		if byFields(f) {
			return scanChunk
		}
		return min(want-len(entries), scanChunk)
	}
	lo, hi := bounds(f)
	err := s.walk(ctx, pos, lo, hi, size, func(chunk []member) (bool, error) {
		keys, scores := s.keysAndScores(chunk)
		args := append([]any{string(f.Reason), f.Source, want - len(entries)}, scores...)
		v, err := fetchScript.RunRO(ctx, s.client, keys, args...).Slice()
		if err != nil {
			return false, err
		}
		for i := 0; i+1 < len(v); i += 2 {
			at, _ := v[i].(int64)
			fields, _ := v[i+1].([]any)
			if at < 1 || int(at) > len(chunk) {
				return false, fmt.Errorf("fetch: bad reply %v", v[i])
			}
			m, err := pairsToMap(fields)
			if err != nil {
				return false, fmt.Errorf("fetch: %w", err)
			}
			e, err := decodeEntry(chunk[at-1].id, m)
			if err != nil {
				return false, err
			}
			entries = append(entries, e)
		}
		return len(entries) < want, nil
	})
	if err != nil {
		return dlq.Page{}, fmt.Errorf("dlqredis: list: %w", err)
	}
	var page dlq.Page
	if len(entries) > limit {
		entries = entries[:limit]
		page.Next = encodeCursor(entries[limit-1])
	}
	page.Entries = entries
	return page, nil
}

// Count implements [dlq.Store]. Without a Reason or Source it is one
// ZCOUNT on the index, O(log n). With one, it reads those fields of every
// entry in the time range, in chunks of 500 per script, and is a count
// over a moving store rather than a snapshot.
func (s *Store) Count(ctx context.Context, f dlq.Filter) (int, error) {
	lo, hi := bounds(f)
	if !byFields(f) {
		n, err := s.client.ZCount(ctx, s.idx, lo, hi).Result()
		if err != nil {
			return 0, fmt.Errorf("dlqredis: count: %w", err)
		}
		return int(n), nil
	}
	total := 0
	err := s.walk(ctx, position{}, lo, hi, func() int { return scanChunk }, func(chunk []member) (bool, error) {
		keys, scores := s.keysAndScores(chunk)
		n, err := countScript.RunRO(ctx, s.client, keys, append([]any{string(f.Reason), f.Source}, scores...)...).Int()
		total += n
		return true, err
	})
	if err != nil {
		return 0, fmt.Errorf("dlqredis: count: %w", err)
	}
	return total, nil
}

// Purge implements [dlq.Store]. It deletes the matching entries in
// batches, one script of at most 500 entries each, so Redis serves other
// clients between batches; entries that are reserved are deleted too. The
// total counts exactly the entries it deleted, a batch retried by the
// client included. If it fails part way, it returns the number deleted so
// far with the error. Entries added meanwhile may or may not be deleted.
func (s *Store) Purge(ctx context.Context, f dlq.Filter) (int, error) {
	lo, hi := bounds(f)
	total := 0
	err := s.walk(ctx, position{}, lo, hi, func() int { return scanChunk }, func(chunk []member) (bool, error) {
		keys := make([]string, 0, 2+len(chunk))
		keys = append(keys, s.idx, s.receiptKey(nonce()))
		args := make([]any, 0, 3+2*len(chunk))
		args = append(args, string(f.Reason), f.Source, receiptTTL.Milliseconds())
		for _, m := range chunk {
			keys = append(keys, s.entryKey(m.id))
			args = append(args, m.id, m.score)
		}
		n, err := purgeScript.Run(ctx, s.client, keys, args...).Int()
		total += n
		return true, err
	})
	if err != nil {
		return total, fmt.Errorf("dlqredis: purge: %w", err)
	}
	return total, nil
}
