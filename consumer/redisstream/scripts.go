package redisstream

import "github.com/redis/go-redis/v9"

// Entry layout. Each message is one stream entry with these fields:
//
//	id           Message.ID
//	key          Message.Key
//	body         Message.Body, raw bytes
//	headers      Message.Headers, see encodeHeaders ("" when there are none)
//	enqueued_at  Message.EnqueuedAt in Unix nanoseconds, decimal
//	attempts     deliveries made before this entry was added (absent: 0)
//
// A message's Attempt is the entry's delivery counter in the group's
// pending entries list (XREADGROUP makes it 1, XAUTOCLAIM adds one, XCLAIM
// with JUSTID leaves it alone) plus its attempts field. A Nack or a hand
// back removes the entry and adds a new one, at the stream's tail or in the
// delayed set, whose attempts field carries the count on.
//
// The delayed set is a sorted set scored by the Unix millisecond, on the
// server's clock, at which each member is due. A member is the MessagePack
// array {old entry ID, field, value, field, value, ...}: the old entry ID
// keeps two copies of one message apart, and the rest are the XADD
// arguments that bring it back.
//
// The lease token of a delivery is (consumer name, delivery counter at
// fetch). A script that acts on a lease first looks the entry up in the
// pending entries list and goes on only if the entry is still pending, owned
// by that consumer, with that counter, and has been idle for less than the
// visibility timeout; otherwise it changes nothing and answers 0.

// luaHolds defines holds(stream, group, consumer, id, count, lease): whether
// the delivery (consumer, count) of entry id still holds its lease.
const luaHolds = `
local function holds(stream, group, consumer, id, count, lease)
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  local e = p[1]
  return e ~= nil and e[2] == consumer and e[4] == count and e[3] < lease
end
`

// fetchScript: KEYS[1] stream, KEYS[2] delayed set. ARGV[1] group,
// ARGV[2] consumer, ARGV[3] count, ARGV[4] visibility timeout in ms,
// ARGV[5] XAUTOCLAIM cursor ("" skips the reclaim), ARGV[6] MaxLen (0: no
// cap), ARGV[7] how many due delayed messages to move at most.
//
// It moves due delayed messages back into the stream (while the stream is
// below MaxLen), reclaims up to count entries whose lease lapsed, then
// reads new entries up to count in all, without blocking. Replies
// {next cursor ("" when skipped), ms until the next delayed message is due
// (-1: none, or the stream is full), {{entry ID, delivery counter,
// {field, value, ...}}, ...}}.
//
// TIME may be called before writes because Redis 7 replicates a script's
// effects, not the script.
var fetchScript = redis.NewScript(`
local stream, delayed = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local count = tonumber(ARGV[3])
local maxlen = tonumber(ARGV[6])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local room = tonumber(ARGV[7])
if maxlen > 0 then
  room = math.min(room, maxlen - redis.call('XLEN', stream))
end
local wait = -1
if room > 0 then
  local due = redis.call('ZRANGE', delayed, '-inf', now, 'BYSCORE', 'LIMIT', 0, room)
  for _, m in ipairs(due) do
    local f = cmsgpack.unpack(m)
    redis.call('XADD', stream, '*', unpack(f, 2))
    redis.call('ZREM', delayed, m)
  end
  local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  if first[2] then
    wait = math.max(0, tonumber(first[2]) - now)
  end
end

local out = {}
local cursor = ''
if ARGV[5] ~= '' then
  local r = redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[4], ARGV[5], 'COUNT', count)
  cursor = r[1]
  for _, e in ipairs(r[2]) do
    if type(e) == 'table' and type(e[2]) == 'table' then
      local p = redis.call('XPENDING', stream, group, e[1], e[1], 1)
      out[#out + 1] = {e[1], p[1][4], e[2]}
    end
  end
end
if #out < count then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count - #out, 'STREAMS', stream, '>')
  if r then
    for _, e in ipairs(r[1][2]) do
      out[#out + 1] = {e[1], 1, e[2]}
    end
  end
end
return {cursor, wait, out}
`)

// ackScript: KEYS[1] stream. ARGV[1] group, ARGV[2] consumer,
// ARGV[3] visibility timeout in ms, then pairs of entry ID and delivery
// counter. Acknowledges and deletes each entry whose lease the pair holds,
// and replies with a 1 (done) or 0 (lease lost) for each pair. A pair that
// repeats an earlier one in the same call gets 0.
var ackScript = redis.NewScript(luaHolds + `
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local lease = tonumber(ARGV[3])
local ok, res, seen = {}, {}, {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  if not seen[id] and holds(stream, group, consumer, id, tonumber(ARGV[i + 1]), lease) then
    seen[id] = true
    ok[#ok + 1] = id
    res[#res + 1] = 1
  else
    res[#res + 1] = 0
  end
end
if #ok > 0 then
  redis.call('XACK', stream, group, unpack(ok))
  redis.call('XDEL', stream, unpack(ok))
end
return res
`)

// extendScript: KEYS[1] stream. ARGV[1] group, ARGV[2] consumer,
// ARGV[3] visibility timeout in ms, ARGV[4] entry ID, ARGV[5] delivery
// counter. Resets the entry's idle time if the lease holds: XCLAIM to the
// same consumer with JUSTID, which does not increment the delivery counter.
// Replies 1, or 0 when the lease is lost.
var extendScript = redis.NewScript(luaHolds + `
local stream, group, consumer, id = KEYS[1], ARGV[1], ARGV[2], ARGV[4]
if not holds(stream, group, consumer, id, tonumber(ARGV[5]), tonumber(ARGV[3])) then
  return 0
end
redis.call('XCLAIM', stream, group, consumer, 0, id, 'JUSTID')
return 1
`)

// requeueScript: KEYS[1] stream, KEYS[2] delayed set. ARGV[1] group,
// ARGV[2] consumer, ARGV[3] visibility timeout in ms, ARGV[4] delay in ms
// (0: back into the stream at once), then triples of entry ID, delivery
// counter and used ("1": the delivery counts as an attempt, as after a
// Nack; "0": it does not, as for deliveries handed back by a cancelled
// Fetch). For each triple whose lease holds, it removes the entry (XACK,
// XDEL) and adds it again, with the attempts field carried on, to the
// stream's tail or to the delayed set. Replies with a 1 or 0 per triple.
var requeueScript = redis.NewScript(luaHolds + `
local stream, delayed, group, consumer = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local lease, delay = tonumber(ARGV[3]), tonumber(ARGV[4])
local due
if delay > 0 then
  local t = redis.call('TIME')
  due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + delay
end
local res = {}
for i = 5, #ARGV, 3 do
  local id, count = ARGV[i], tonumber(ARGV[i + 1])
  local r = {}
  if holds(stream, group, consumer, id, count, lease) then
    r = redis.call('XRANGE', stream, id, id)
  end
  if #r == 0 then
    res[#res + 1] = 0
  else
    local f, attempts = {}, 0
    local src = r[1][2]
    for j = 1, #src, 2 do
      if src[j] == 'attempts' then
        attempts = tonumber(src[j + 1]) or 0
      else
        f[#f + 1] = src[j]
        f[#f + 1] = src[j + 1]
      end
    end
    attempts = attempts + count
    if ARGV[i + 2] ~= '1' then
      attempts = attempts - 1
    end
    f[#f + 1] = 'attempts'
    f[#f + 1] = tostring(attempts)
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    if due then
      table.insert(f, 1, id)
      redis.call('ZADD', delayed, string.format('%.0f', due), cmsgpack.pack(f))
    else
      redis.call('XADD', stream, '*', unpack(f))
    end
    res[#res + 1] = 1
  end
end
return res
`)

// publishScript: KEYS[1] stream. ARGV[1] MaxLen (0: no cap), ARGV[2] the
// number of arguments per message, then that many per message (field,
// value pairs). Adds every message, or none when that would take the stream
// past MaxLen entries. Replies with the number added, or -1 when the stream
// is full.
var publishScript = redis.NewScript(`
local stream, maxlen, per = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local n = (#ARGV - 2) / per
if maxlen > 0 and redis.call('XLEN', stream) + n > maxlen then
  return -1
end
for i = 3, #ARGV, per do
  redis.call('XADD', stream, '*', unpack(ARGV, i, i + per - 1))
end
return n
`)
