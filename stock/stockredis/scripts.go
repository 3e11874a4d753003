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
//	due           a time (ms) no hold in :h ends before, so that a
//	              Reserve before it need not look at :h; absent means 0.
//	              Only Reserve adds holds, and it keeps due at most the
//	              expiry it adds; removing a hold leaves it a lower bound.
//
// Reservation fields:
//
//	holder, qty
//	state  "held", "confirmed", "released" or "expired"
//	exp    expiry, ms since the Unix epoch on the server's clock
//	codes  a confirmed code item's codes, each as "<length>:<bytes>"
//	nonce  the nonce of the Reserve call that made it
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
  return #redis.call('ZRANGE', holds, '-inf', now, 'BYSCORE', 'LIMIT', 0, 1) > 0
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
    local ids = redis.call('ZRANGE', holds, '-inf', now, 'BYSCORE', 'LIMIT', 0, batch)
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

// sweepBatch is how many due holds a batch of Reserves expires before it
// looks at the item, so that an item someone reserves stays swept without
// Sweep.
const sweepBatch = 100

// reserveBatchScript: luaItem's keys and ARGV[1]; ARGV[2] how many due
// holds to expire first; then five arguments per request, in order: ID,
// holder, quantity, hold in ms, the call's nonce. It makes the requests
// one after another, each exactly as if it ran alone at the same instant,
// and replies one reply per request: {stOK, exp} for a reservation it
// made (the rest is the request's), a reservation it found, {stConflict},
// {stUnknownItem}, or {refusal, available, reason}. A later request sees
// what the earlier ones did: an ID reserved earlier in the batch is found
// (or is a conflict), and units and holders' counts are taken in order.
//
// A new reservation records the nonce of the call that made it, so that
// the call, and only it, can undo it with undoReserveScript if the ID
// turns out to be bound to another item. A retried script (same nonces)
// finds every reservation it made, so the undo works after a retry too.
//
// A refusal must not count a hold whose time has come, swept or not: past
// the first ARGV[2] (expired once per batch), due holds are expired for
// as long as the answer would otherwise be a refusal. Each hold is
// expired once, so the work is paid for by the holds that caused it.
//
// The item's counters are read once and kept in locals while requests
// are granted, and written back with one HSET, and the new holds added
// with one ZADD, at the end, or before anything that expires a hold
// (expire changes the counters in the item itself, and reread picks them
// up). No hold made in the batch can be due within it (every hold is at
// least 1 ms past now), so the holds set need not list them until then.
// The common case (a new ID, no hold due, units left, no holder limit)
// is three commands per request: a read of the reservation, its write,
// and the holder's count. Numbers go to Redis formatted with %d: passed
// as Lua numbers, Redis would format each with %.17g, which costs several
// times more. No path scans the holds or the holders: due holds are found
// with ZRANGE BYSCORE LIMIT, and each is expired once.
var reserveBatchScript = redis.NewScript(luaItem + luaReservation + `
local it = redis.call('HMGET', item, 'disabled', 'reason', 'holder_limit', 'available', 'held', 'due')
local avail, held, due = num(it[4]), num(it[5]), num(it[6])
local limit = num(it[3])
-- dirty: avail, held and due have changes the item does not have yet,
-- and adds the holds the holds set does not list yet.
local dirty, adds = false, {}
local function sync()
  if not dirty then
    return
  end
  redis.call('HSET', item, 'available', string.format('%d', avail),
    'held', string.format('%d', held), 'due', string.format('%d', due))
  redis.call('ZADD', holds, unpack(adds))
  dirty, adds = false, {}
end
local function reread()
  local c = redis.call('HMGET', item, 'available', 'held')
  avail, held = num(c[1]), num(c[2])
end
-- Before due, no hold is due and the holds need no look. After it, due
-- becomes the earliest expiry of the holds left once the due ones are
-- expired (nil for none), or, if more were due than ARGV[2], the earliest
-- expiry before any was: either is a lower bound. This runs before any
-- request, so nothing is dirty.
if it[1] and due <= now then
  local first = redis.call('ZRANGE', holds, 0, 0, 'WITHSCORES')
  if first[2] and tonumber(first[2]) <= now then
    local max = tonumber(ARGV[2])
    local n = expireDue(max)
    if n > 0 then
      reread()
    end
    if n < max then
      first = redis.call('ZRANGE', holds, 0, 0, 'WITHSCORES')
    end
  end
  due = tonumber(first[2])
end

local function reserve(id, holder, qtyS, holdS, nonce)
  local qty = tonumber(qtyS)
  local rk = base .. 'r:' .. id
  if redis.call('EXISTS', rk) == 1 then
    local r = redis.call('HMGET', rk, 'holder', 'qty', 'state', 'exp')
    if r[1] ~= holder or num(r[2]) ~= qty then
      return {-3}
    end
    if r[3] == 'held' and num(r[4]) <= now then
      sync()
      expire(id)
      reread()
    end
    return reservation(rk)
  end
  if not it[1] then
    return {-1}
  end
  if it[1] == '1' then
    return {-4, avail, it[2] or ''}
  end
  if limit > 0 then
    local function mine()
      return num(redis.call('HGET', holders, holder))
    end
    if mine() + qty > limit then
      if hasDue() then
        sync()
        repeat
          expireDue(100)
        until mine() + qty <= limit or not hasDue()
        reread()
      end
      if mine() + qty > limit then
        return {-5, avail, ''}
      end
    end
  end
  if avail < qty then
    if hasDue() then
      sync()
      repeat
        expireDue(100)
        reread()
      until avail >= qty or not hasDue()
    end
    if avail < qty then
      return {-6, avail, ''}
    end
  end
  local exp = now + tonumber(holdS)
  local expS = string.format('%d', exp)
  redis.call('HSET', rk, 'holder', holder, 'qty', qtyS, 'state', 'held', 'exp', expS, 'nonce', nonce)
  redis.call('HINCRBY', holders, holder, qtyS)
  adds[#adds + 1] = expS
  adds[#adds + 1] = id
  avail, held, due, dirty = avail - qty, held + qty, math.min(due or exp, exp), true
  return {1, expS}
end

local replies = {}
for i = 3, #ARGV, 5 do
  replies[#replies + 1] = reserve(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
end
sync()
return replies
`)

// undoReserveScript: luaItem's keys and ARGV[1], KEYS[4] the reservation;
// ARGV[2] ID, ARGV[3] the nonce of the Reserve to undo. It removes the
// reservation, giving its units back if it still holds them, if and only
// if that Reserve made it; replies 1 if it did, else 0.
//
// It runs only for a reservation whose ID is bound to another item. No
// call can have been given that reservation (every Reserve of the ID for
// this item answers ErrConflict, and Confirm, Release and Get look in the
// other item), so removing it takes nothing from anyone; it can only be
// held or expired.
var undoReserveScript = redis.NewScript(luaItem + `
local rk, id = KEYS[4], ARGV[2]
local r = redis.call('HMGET', rk, 'nonce', 'state', 'qty', 'holder')
if r[1] ~= ARGV[3] or (r[2] ~= 'held' and r[2] ~= 'expired') then
  return 0
end
if r[2] == 'held' then
  local q = num(r[3])
  redis.call('ZREM', holds, id)
  redis.call('HINCRBY', item, 'held', -q)
  redis.call('HINCRBY', item, 'available', q)
  addHolder(r[4], -q)
end
redis.call('DEL', rk)
return 1
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
