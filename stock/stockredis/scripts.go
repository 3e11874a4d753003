package stockredis

import "github.com/redis/go-redis/v9"

// Keys. Every key of one item carries the item's hash tag (the item name,
// escaped so that it holds no brace), so the item lives in one cluster
// slot and every script below runs on Redis Cluster unchanged:
//
//	<prefix>{<item>}:i          hash: the item (fields below)
//	<prefix>{<item>}:h          sorted set: IDs of held reservations, scored by expiry (ms)
//	<prefix>{<item>}:u          hash: holder -> units held or confirmed
//	<prefix>{<item>}:c          list: a code item's codes not yet given out, in load order
//	<prefix>{<item>}:a          set: every code ever loaded into the item
//	<prefix>{<item>}:r:<id>     hash: one reservation (fields below)
//	<prefix>{<item>}:n:<nonce>  string: receipt of a Restock or LoadCodes call
//
// Two keys stand outside every item's slot and are never touched by an
// item's script:
//
//	<prefix>{res:<id>}          string: the item reservation <id> belongs to
//	<prefix>items               set: every item name, for Sweep
//
// Item fields:
//
//	units         units ever added (Restock, new codes); always
//	              available + held + confirmed
//	available     units that can be reserved
//	held          units in holds not yet expired by a script (those in :h)
//	confirmed     units confirmed
//	disabled      "1" or "0"
//	reason        why it is disabled
//	holder_limit  HolderLimit, 0 for none
//	codes         "1" for a code item, "0" for a counted one
//
// Reservation fields:
//
//	holder, qty
//	state  "held", "confirmed", "released" or "expired"
//	exp    expiry, ms since the Unix epoch on the server's clock
//	codes  a confirmed code item's codes, each as "<length>:<bytes>"
//
// A reservation is in :h exactly while its state is "held"; only the
// scripts below change either, always both, together with the counters.
// The scripts reach reservation keys by name (base .. 'r:' .. id) without
// declaring them: the names are built from the item's own key, so they
// are always in the slot of the declared keys, which is all Redis Cluster
// requires.

// Reply status of every script: 1 (or 0 for scripts with nothing to
// return) for success, a negative code for a refusal.
const (
	stOK          = 1
	stUnknownItem = -1
	stNotFound    = -2
	stConflict    = -3
	stDisabled    = -4
	stHolderLimit = -5
	stSoldOut     = -6
	stExpired     = -7
	stReleased    = -8
	stConfirmed   = -9
	stNoCodes     = -10
	stWrongKind   = -11
)

// luaItem is the start of every script that changes an item's units:
// KEYS[1] item, KEYS[2] holds, KEYS[3] holders; ARGV[1] the item's base
// ("<prefix>{<item>}:"). It sets now to the server's time in ms and defines
// expire, which expires one hold, and expireDue, which expires holds whose
// time has come, earliest first.
//
// TIME is allowed in a script that writes because Redis 7 replicates a
// script's effects, not the script.
const luaItem = `
local item, holds, holders, base = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nowS = string.format('%.0f', now)

local function num(s)
  return tonumber(s) or 0
end

local function addHolder(holder, q)
  if redis.call('HINCRBY', holders, holder, q) <= 0 then
    redis.call('HDEL', holders, holder)
  end
end

-- expire ends the hold id if it is still held; returns 1 if it did.
local function expire(id)
  redis.call('ZREM', holds, id)
  local rk = base .. 'r:' .. id
  local r = redis.call('HMGET', rk, 'state', 'qty', 'holder')
  if r[1] ~= 'held' then
    return 0
  end
  local q = num(r[2])
  redis.call('HSET', rk, 'state', 'expired')
  redis.call('HINCRBY', item, 'held', -q)
  redis.call('HINCRBY', item, 'available', q)
  addHolder(r[3], -q)
  return 1
end

-- hasDue reports whether a hold's time has come.
local function hasDue()
  return #redis.call('ZRANGE', holds, '-inf', nowS, 'BYSCORE', 'LIMIT', 0, 1) > 0
end

-- expireDue expires up to max due holds (all of them if max < 0) and
-- returns how many it expired.
local function expireDue(max)
  local n = 0
  while max < 0 or n < max do
    local batch = 100
    if max >= 0 then
      batch = math.min(batch, max - n)
    end
    local ids = redis.call('ZRANGE', holds, '-inf', nowS, 'BYSCORE', 'LIMIT', 0, batch)
    if #ids == 0 then
      break
    end
    for _, id in ipairs(ids) do
      n = n + expire(id)
    end
  end
  return n
end
`

// luaReservation defines reservation, the reply for the reservation at rk:
// {1, holder, qty, state, exp, codes}. A hold whose time has come reads
// as expired whether or not a script has expired it yet.
const luaReservation = `
local function reservation(rk)
  local r = redis.call('HMGET', rk, 'holder', 'qty', 'state', 'exp', 'codes')
  local state = r[3]
  if state == 'held' and tonumber(r[4]) <= now then
    state = 'expired'
  end
  return {1, r[1], r[2], state, r[4], r[5] or ''}
end
`

// sweepBatch is how many due holds a Reserve expires before it looks at
// the item, so that an item someone reserves stays swept without Sweep.
const sweepBatch = 100

// reserveScript: luaItem's keys and ARGV[1], KEYS[4] the reservation;
// ARGV[2] ID, ARGV[3] holder, ARGV[4] quantity, ARGV[5] hold in ms,
// ARGV[6] how many due holds to expire first. Replies a reservation,
// {stConflict}, {stUnknownItem}, or {refusal, available, reason}.
//
// A refusal must not count a hold whose time has come, swept or not: past
// the first ARGV[6], due holds are expired for as long as the answer
// would otherwise be a refusal. Each hold is expired once, so the work is
// paid for by the holds that caused it.
var reserveScript = redis.NewScript(luaItem + luaReservation + `
local rk, id, holder, qty = KEYS[4], ARGV[2], ARGV[3], tonumber(ARGV[4])
local r = redis.call('HMGET', rk, 'holder', 'qty', 'state', 'exp')
if r[1] then
  if r[1] ~= holder or num(r[2]) ~= qty then
    return {-3}
  end
  if r[3] == 'held' and num(r[4]) <= now then
    expire(id)
  end
  return reservation(rk)
end
local it = redis.call('HMGET', item, 'disabled', 'reason', 'holder_limit')
if not it[1] then
  return {-1}
end
expireDue(tonumber(ARGV[6]))
local function available()
  return num(redis.call('HGET', item, 'available'))
end
if it[1] == '1' then
  return {-4, available(), it[2] or ''}
end
local limit = num(it[3])
if limit > 0 then
  while num(redis.call('HGET', holders, holder)) + qty > limit and hasDue() do
    expireDue(100)
  end
  if num(redis.call('HGET', holders, holder)) + qty > limit then
    return {-5, available(), ''}
  end
end
while available() < qty and hasDue() do
  expireDue(100)
end
if available() < qty then
  return {-6, available(), ''}
end
local exp = string.format('%.0f', now + tonumber(ARGV[5]))
redis.call('HSET', rk, 'holder', holder, 'qty', ARGV[4], 'state', 'held', 'exp', exp)
redis.call('ZADD', holds, exp, id)
redis.call('HINCRBY', item, 'available', -qty)
redis.call('HINCRBY', item, 'held', qty)
addHolder(holder, qty)
return reservation(rk)
`)

// confirmScript: luaItem's keys and ARGV[1], KEYS[4] the item's free
// codes, KEYS[5] the reservation; ARGV[2] ID. Replies the reservation,
// {stNotFound}, {stExpired}, {stReleased} or {stNoCodes}. A confirmed
// reservation is answered as it is, so a retry changes nothing.
var confirmScript = redis.NewScript(luaItem + luaReservation + `
local free, rk, id = KEYS[4], KEYS[5], ARGV[2]
local r = redis.call('HMGET', rk, 'qty', 'state', 'exp')
if not r[2] then
  return {-2}
end
local state = r[2]
if state == 'held' and num(r[3]) <= now then
  expire(id)
  state = 'expired'
end
if state == 'confirmed' then
  return reservation(rk)
elseif state == 'expired' then
  return {-7}
elseif state == 'released' then
  return {-8}
end
local q = num(r[1])
if redis.call('HGET', item, 'codes') == '1' then
  if redis.call('LLEN', free) < q then
    return {-10}
  end
  local parts = {}
  for i, c in ipairs(redis.call('LPOP', free, q)) do
    parts[i] = #c .. ':' .. c
  end
  redis.call('HSET', rk, 'codes', table.concat(parts))
end
redis.call('HSET', rk, 'state', 'confirmed')
redis.call('ZREM', holds, id)
redis.call('HINCRBY', item, 'held', -q)
redis.call('HINCRBY', item, 'confirmed', q)
return reservation(rk)
`)

// releaseScript: luaItem's keys and ARGV[1], KEYS[4] the reservation;
// ARGV[2] ID. Replies 0, stNotFound or stConfirmed. Releasing a released
// or expired reservation changes nothing, so a retry is harmless.
var releaseScript = redis.NewScript(luaItem + `
local rk, id = KEYS[4], ARGV[2]
local r = redis.call('HMGET', rk, 'qty', 'state', 'exp', 'holder')
if not r[2] then
  return -2
end
if r[2] == 'confirmed' then
  return -9
end
if r[2] ~= 'held' then
  return 0
end
if num(r[3]) <= now then
  expire(id)
  return 0
end
local q = num(r[1])
redis.call('HSET', rk, 'state', 'released')
redis.call('ZREM', holds, id)
redis.call('HINCRBY', item, 'held', -q)
redis.call('HINCRBY', item, 'available', q)
addHolder(r[4], -q)
return 0
`)

// getScript: KEYS[1] the reservation. Replies the reservation or
// {stNotFound}. It changes nothing: a hold whose time has come is reported
// expired and left for the next script of its item to expire.
var getScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
` + luaReservation + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-2}
end
return reservation(KEYS[1])
`)

// levelScript: luaItem's keys and ARGV[1]. Replies {stOK, available,
// held, confirmed, disabled, reason} after expiring every due hold, or
// {stUnknownItem}.
var levelScript = redis.NewScript(luaItem + `
if redis.call('EXISTS', item) == 0 then
  return {-1}
end
expireDue(-1)
local r = redis.call('HMGET', item, 'available', 'held', 'confirmed', 'disabled', 'reason')
return {1, num(r[1]), num(r[2]), num(r[3]), r[4] or '0', r[5] or ''}
`)

// sweepScript: luaItem's keys and ARGV[1]; ARGV[2] the most holds to
// expire. Replies how many it expired (0 for an unknown item).
var sweepScript = redis.NewScript(luaItem + `
if redis.call('EXISTS', item) == 0 then
  return 0
end
return expireDue(tonumber(ARGV[2]))
`)

// defineScript: KEYS[1] item; ARGV[1] holder limit, ARGV[2] "1" for a
// code item. Replies 0, or stWrongKind when the item exists as the other
// kind.
var defineScript = redis.NewScript(`
local codes = redis.call('HGET', KEYS[1], 'codes')
if codes then
  if codes ~= ARGV[2] then
    return -11
  end
  redis.call('HSET', KEYS[1], 'holder_limit', ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], 'units', 0, 'available', 0, 'held', 0, 'confirmed', 0,
  'disabled', '0', 'reason', '', 'holder_limit', ARGV[1], 'codes', ARGV[2])
return 0
`)

// restockScript: KEYS[1] item, KEYS[2] receipt; ARGV[1] units, ARGV[2]
// receipt TTL in ms. Replies 0, stUnknownItem or stWrongKind. The receipt
// makes a client's retry of a Restock that succeeded add nothing more.
var restockScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local codes = redis.call('HGET', KEYS[1], 'codes')
if not codes then
  return -1
elseif codes == '1' then
  return -11
end
redis.call('HINCRBY', KEYS[1], 'units', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'available', ARGV[1])
redis.call('SET', KEYS[2], '0', 'PX', ARGV[2])
return 0
`)

// loadCodesScript: KEYS[1] item, KEYS[2] free codes, KEYS[3] all codes,
// KEYS[4] receipt; ARGV[1] receipt TTL in ms, ARGV[2...] codes. Replies
// {stOK, new codes}, {stUnknownItem} or {stWrongKind}. The receipt keeps
// the count, so a client's retry reports what the first run added.
var loadCodesScript = redis.NewScript(`
local done = redis.call('GET', KEYS[4])
if done then
  return {1, tonumber(done)}
end
local codes = redis.call('HGET', KEYS[1], 'codes')
if not codes then
  return {-1}
elseif codes ~= '1' then
  return {-11}
end
local n = 0
for i = 2, #ARGV do
  local c = ARGV[i]
  if c ~= '' and redis.call('SADD', KEYS[3], c) == 1 then
    redis.call('RPUSH', KEYS[2], c)
    n = n + 1
  end
end
if n > 0 then
  redis.call('HINCRBY', KEYS[1], 'units', n)
  redis.call('HINCRBY', KEYS[1], 'available', n)
end
redis.call('SET', KEYS[4], n, 'PX', ARGV[1])
return {1, n}
`)

// disableScript: KEYS[1] item; ARGV[1] "1" to disable, "0" to enable,
// ARGV[2] reason. Replies 0 or stUnknownItem.
var disableScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
redis.call('HSET', KEYS[1], 'disabled', ARGV[1], 'reason', ARGV[2])
return 0
`)
