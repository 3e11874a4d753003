package stockredis

import "github.com/redis/go-redis/v9"

// Keys. Every key of one item carries the item's hash tag (the item name,
// escaped so that it holds no brace), so the item lives in one cluster
// slot and every script below runs on Redis Cluster unchanged:
//
//	<prefix>{<item>}:i          hash: the item (fields below)
//	<prefix>{<item>}:r          hash: reservation ID -> its record (below)
//	<prefix>{<item>}:h          sorted set: IDs of held reservations, scored by expiry (ms)
//	<prefix>{<item>}:u          hash: holder -> units held or confirmed, kept
//	                            only while the item has a holder limit
//	<prefix>{<item>}:c          list: a code item's codes not yet given out, in load order
//	<prefix>{<item>}:a          set: every code ever loaded into the item
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
//	counted       "0" while :u is not kept (no holder limit); absent or
//	              "1" while it is, and then exact: a limit is set only
//	              with :u counted afresh from the reservations
//	codes         "1" for a code item, "0" for a counted one
//	due           a time (ms) no hold in :h ends before, so that a
//	              Reserve before it need not look at :h; absent means 0.
//	              Only Reserve adds holds, and it keeps due at most the
//	              expiry it adds; removing a hold leaves it a lower bound.
//
// A reservation is one field of the item's :r hash, so that a batch of
// Reserves reads and writes all of its reservations with one command
// each. Its value is
//
//	<state> <exp> <qty> <nonce> <n>:<codes><holder>
//
// with state "held", "confirmed", "released" or "expired"; exp the expiry
// in ms since the Unix epoch on the server's clock; nonce that of the
// Reserve call that made it; codes, for a confirmed code reservation, its
// codes one after another, each as "<length>:<bytes>", and n their
// length in bytes; and holder the rest.
//
// A reservation is in :h exactly while its state is "held"; only the
// scripts below change either, always both, together with the counters.

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
	stTooMany     = -12
)

// maxUnits is the most units an item can have ever had: the scripts count
// in Lua numbers, which hold every integer up to 2^53 exactly.
const maxUnits = 1<<53 - 1

// luaRecord reads and writes reservation records (see the layout above).
// decode turns one into a table {state, exp, qty, nonce, codes, holder},
// with exp and qty as numbers and, as written, as expS and qtyS, so that
// a record is written back without formatting a number (Lua formats
// numbers with sprintf, which costs more than the rest of a Reserve).
// reply makes a script's reservation reply, {1, holder, qty, state, exp,
// codes}, where a hold whose time has come reads as expired whether or
// not a script has expired it yet. It expects now, the server's time in
// ms.
const luaRecord = `
local function decode(v)
  local state, expS, qtyS, nonce, n, at = string.match(v, '^(%a+) (%d+) (%d+) (%S*) (%d+):()')
  n = tonumber(n)
  return {state = state, exp = tonumber(expS), expS = expS, qty = tonumber(qtyS), qtyS = qtyS,
    nonce = nonce, codes = string.sub(v, at, at + n - 1), holder = string.sub(v, at + n)}
end

-- encode's layout is also written inline by reserveBatchScript for a new
-- hold (no codes): calling it there cost 3% of that script's instructions.
local function encode(r)
  local n = '0'
  if r.codes ~= '' then
    n = string.format('%d', #r.codes)
  end
  return r.state .. ' ' .. r.expS .. ' ' .. r.qtyS .. ' ' .. r.nonce .. ' ' .. n .. ':' .. r.codes .. r.holder
end

local function reply(r)
  local state = r.state
  if state == 'held' and r.exp <= now then
    state = 'expired'
  end
  return {1, r.holder, r.qtyS, state, r.expS, r.codes}
end
`

// luaRecount defines recountHolders, which counts every holder's held and
// confirmed units afresh from an item's reservations (resv) into its
// holders' counts (holders), in time that grows with the reservations.
// It needs luaRecord.
const luaRecount = `
local function recountHolders(resv, holders)
  redis.call('DEL', holders)
  local sums, seen, cursor = {}, {}, '0'
  repeat
    local page = redis.call('HSCAN', resv, cursor, 'COUNT', 1000)
    cursor = page[1]
    local kv = page[2]
    for i = 1, #kv, 2 do
      if not seen[kv[i]] then
        seen[kv[i]] = true
        local r = decode(kv[i + 1])
        if r.state == 'held' or r.state == 'confirmed' then
          sums[r.holder] = (sums[r.holder] or 0) + r.qty
        end
      end
    end
  until cursor == '0'
  local set = {}
  for h, u in pairs(sums) do
    set[#set + 1] = h
    set[#set + 1] = string.format('%d', u)
    if #set == 512 then
      redis.call('HSET', holders, unpack(set))
      set = {}
    end
  end
  if #set > 0 then
    redis.call('HSET', holders, unpack(set))
  end
end
`

// luaNow sets now to the server's time in ms.
//
// TIME is allowed in a script that writes because Redis 7 replicates a
// script's effects, not the script.
const luaNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// luaItem is the start of every script that changes an item's units:
// KEYS[1] item, KEYS[2] its reservations, KEYS[3] holds, KEYS[4] holders.
//
// A script reads what it needs once and works on local copies: load reads
// the item's fields (false for an unknown item) into it and the counters
// avail, held, confirmed and due; rec and units read a reservation and a
// holder's count, the first time they are asked for (prefetch and
// prefetchUnits read many in one command); put (or putEncoded, given a
// record already encoded) and addUnits change them.
// flush writes every change back, with one command per key, and must run
// before the script returns. Holds are added to :h by flush (adds: score,
// ID, ...), and removed from it at once, so that the due holds left are
// always those in :h.
//
// expire expires one hold, and expireDue holds whose time has come,
// earliest first.
const luaItem = luaNow + luaRecord + luaRecount + `
local item, resv, holds, holders = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local function num(s)
  return tonumber(s) or 0
end

-- fmt formats an integer, once per value and script, and number parses
-- an argument, once per string and script: either costs far more than a
-- table lookup.
-- A count passed to redis.call needs neither: Redis writes an integer
-- below 2^53 (every count here, see Restock) in plain digits.
local formatted, numbers = {}, {}
local function fmt(n)
  local s = formatted[n]
  if not s then
    s = string.format('%d', n)
    formatted[n] = s
  end
  return s
end

local function number(s)
  local n = numbers[s]
  if not n then
    n = tonumber(s)
    numbers[s] = n
  end
  return n
end

local it, avail, held, confirmed, due
local itemDirty = false
local recs, recsDirty = {}, {} -- recsDirty: IDs, a changed one at least once
local unitsOf, unitsDirty = {}, {}
local adds = {}

local function load()
  local v = redis.call('HMGET', item, 'codes', 'disabled', 'reason', 'holder_limit',
    'available', 'held', 'confirmed', 'due', 'counted')
  if not v[1] then
    it = false
    return false
  end
  it = {codes = v[1] == '1', disabled = v[2] == '1', reason = v[3] or '', limit = num(v[4]),
    counted = v[9] ~= '0'}
  avail, held, confirmed, due = num(v[5]), num(v[6]), num(v[7]), num(v[8])
  if it.limit > 0 and not it.counted then
    -- A limit set without the counts (by a build that predates them):
    -- count them now, once.
    recountHolders(resv, holders)
    redis.call('HSET', item, 'counted', '1')
    it.counted = true
  end
  return it
end

-- fetch reads into cache, with one HMGET of hash key, the fields named in
-- names that cache lacks, each through conv (which gets false for a
-- missing field). A name given twice is read twice, which costs less
-- than looking for repeats.
local function fetch(cache, key, names, conv)
  local want = {}
  for _, f in ipairs(names) do
    if cache[f] == nil then
      want[#want + 1] = f
    end
  end
  if #want == 0 then
    return
  end
  local v = redis.call('HMGET', key, unpack(want))
  for i, f in ipairs(want) do
    cache[f] = conv(v[i])
  end
end

local function decodeOrFalse(v)
  return v and decode(v) or false
end

local function prefetch(ids)
  fetch(recs, resv, ids, decodeOrFalse)
end

local function rec(id)
  local r = recs[id]
  if r == nil then
    fetch(recs, resv, {id}, decodeOrFalse)
    r = recs[id]
  elseif type(r) == 'string' then
    r = decode(r)
    recs[id] = r
  end
  return r
end

local function put(id, r)
  recs[id] = r
  recsDirty[#recsDirty + 1] = id
end

-- putEncoded is put for a record already encoded, which costs less than
-- a table when nothing reads it again: rec decodes it if something does.
local function putEncoded(id, v)
  recs[id] = v
  recsDirty[#recsDirty + 1] = id
end

local function prefetchUnits(hs)
  fetch(unitsOf, holders, hs, num)
end

local function units(h)
  if unitsOf[h] == nil then
    fetch(unitsOf, holders, {h}, num)
  end
  return unitsOf[h]
end

-- addUnits changes a holder's count, if the item keeps them (load must
-- have run).
local function addUnits(h, q)
  if not (it and it.counted) then
    return
  end
  unitsOf[h] = units(h) + q
  unitsDirty[h] = true
end

-- chunked calls cmd on key with args, at most 512 at a time (an even
-- number, for field-value pairs).
local function chunked(cmd, key, args)
  for i = 1, #args, 512 do
    redis.call(cmd, key, unpack(args, i, math.min(i + 511, #args)))
  end
end

local function flush()
  if itemDirty then
    if due then
      redis.call('HSET', item, 'available', avail, 'held', held, 'confirmed', confirmed, 'due', due)
    else
      redis.call('HSET', item, 'available', avail, 'held', held, 'confirmed', confirmed)
    end
    itemDirty = false
  end
  local set = {}
  for _, id in ipairs(recsDirty) do
    local r = recs[id]
    if type(r) ~= 'string' then
      r = encode(r)
    end
    set[#set + 1] = id
    set[#set + 1] = r
  end
  chunked('HSET', resv, set)
  recsDirty = {}
  local del = {}
  set = {}
  for h in pairs(unitsDirty) do
    local u = unitsOf[h]
    if u > 0 then
      set[#set + 1] = h
      set[#set + 1] = u
    else
      del[#del + 1] = h
    end
  end
  chunked('HSET', holders, set)
  chunked('HDEL', holders, del)
  unitsDirty = {}
  chunked('ZADD', holds, adds)
  adds = {}
end

-- expire ends the hold id if it is still held, and returns 1 if it did.
-- The caller removes id from the holds.
local function expire(id)
  local r = rec(id)
  if not r or r.state ~= 'held' then
    return 0
  end
  r.state = 'expired'
  put(id, r)
  held, avail, itemDirty = held - r.qty, avail + r.qty, true
  addUnits(r.holder, -r.qty)
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
    redis.call('ZREM', holds, unpack(ids))
    prefetch(ids)
    local hs = {}
    for _, id in ipairs(ids) do
      local r = rec(id)
      if r then
        hs[#hs + 1] = r.holder
      end
    end
    if it.counted then
      prefetchUnits(hs)
    end
    for _, id in ipairs(ids) do
      n = n + expire(id)
    end
  end
  return n
end
`

// sweepBatch is how many due holds a batch of Reserves expires before it
// looks at the item, so that an item someone reserves stays swept without
// Sweep.
const sweepBatch = 100

// reserveBatchScript: luaItem's keys; ARGV[1] how many due holds to
// expire first; then five arguments per request, in order: ID, holder,
// quantity, hold in ms, the call's nonce. It makes the requests one after
// another, each exactly as if it ran alone at the same instant. Its reply
// is one flat array with, per request, the length of the request's reply
// and then the reply: {stOK, exp} for a reservation it made (the rest is
// the request's), a reservation it found, {stConflict}, {stUnknownItem},
// or {refusal, available, reason}. (Redis converts a nested table of a
// script's reply at about a microsecond a table; a flat one costs next
// to nothing.) A later request sees
// what the earlier ones did: an ID reserved earlier in the batch is found
// (or is a conflict), and units and holders' counts are taken in order.
//
// A new reservation records the nonce of the call that made it, so that
// the call, and only it, can undo it with undoReserveScript if the ID
// turns out to be bound to another item. A call that finds a held or
// expired reservation is given it, so its nonce replaces the one
// recorded: the undo of the call that made it, should that call find its
// ID bound elsewhere, then leaves it alone (the binding may have lapsed
// and been made again for this item in between). A retried script (same
// nonces) finds every reservation it made, so the undo works after a
// retry too.
//
// A refusal must not count a hold whose time has come, swept or not: past
// the first ARGV[1] (expired once per batch), due holds are expired for
// as long as the answer would otherwise be a refusal. Each hold is
// expired once, so the work is paid for by the holds that caused it.
//
// The batch's reservations and its holders' counts are read with one
// HMGET each, and everything it changes is written by flush at the end:
// the common case (new IDs, no hold due, units left) costs eight commands,
// TIME included, for the whole batch, whatever its size. No hold made in
// the batch can be due within it (every hold is at least 1 ms past now),
// so the holds set need not list them until then. No path scans the
// holds or the holders: due holds are found with ZRANGE BYSCORE LIMIT,
// and each is expired once.
var reserveBatchScript = redis.NewScript(reserveBatchSrc)

const reserveBatchSrc = luaItem + `
load()
local ids, hs = {}, {}
for i = 2, #ARGV, 5 do
  ids[#ids + 1] = ARGV[i]
  hs[#hs + 1] = ARGV[i + 1]
end
prefetch(ids)
if it and it.counted then
  prefetchUnits(hs)
end

-- Before due, no hold is due and the holds need no look. After it, due
-- becomes the earliest expiry of the holds left once the due ones are
-- expired (nil for none), or, if more were due than ARGV[1], the earliest
-- expiry before any was: either is a lower bound.
if it and due <= now then
  local first = redis.call('ZRANGE', holds, 0, 0, 'WITHSCORES')
  if first[2] and tonumber(first[2]) <= now then
    local max = tonumber(ARGV[1])
    if expireDue(max) < max then
      first = redis.call('ZRANGE', holds, 0, 0, 'WITHSCORES')
    end
  end
  due = tonumber(first[2])
end

local function reserve(id, holder, qtyS, holdS, nonce)
  local qty = number(qtyS)
  local r = rec(id)
  if r then
    if r.holder ~= holder or r.qty ~= qty then
      return {-3}
    end
    if r.state == 'held' and r.exp <= now then
      redis.call('ZREM', holds, id)
      expire(id)
    end
    if r.nonce ~= nonce and r.state ~= 'confirmed' and r.state ~= 'released' then
      -- This call is given the reservation, so it takes it over: the
      -- call that made it may no longer undo it.
      r.nonce = nonce
      put(id, r)
    end
    return reply(r)
  end
  if not it then
    return {-1}
  end
  if it.disabled then
    return {-4, avail, it.reason}
  end
  if it.limit > 0 and units(holder) + qty > it.limit then
    while units(holder) + qty > it.limit and hasDue() do
      expireDue(100)
    end
    if units(holder) + qty > it.limit then
      return {-5, avail, ''}
    end
  end
  if avail < qty then
    while avail < qty and hasDue() do
      expireDue(100)
    end
    if avail < qty then
      return {-6, avail, ''}
    end
  end
  local exp = now + number(holdS)
  local expS = fmt(exp)
  -- encode's layout, for a hold without codes.
  putEncoded(id, 'held ' .. expS .. ' ' .. qtyS .. ' ' .. nonce .. ' 0:' .. holder)
  addUnits(holder, qty)
  adds[#adds + 1] = expS
  adds[#adds + 1] = id
  avail, held, itemDirty = avail - qty, held + qty, true
  due = math.min(due or exp, exp)
  return {1, expS}
end

local replies = {}
for i = 2, #ARGV, 5 do
  local r = reserve(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
  local n = #replies
  replies[n + 1] = #r
  for j = 1, #r do
    replies[n + 1 + j] = r[j]
  end
end
flush()
return replies
`

// undoReserveScript: luaItem's keys; ARGV[1] ID, ARGV[2] the nonce of the
// Reserve to undo. It removes the reservation, giving its units back if
// it still holds them, if and only if that Reserve made it and no other
// call has been given it since; replies 1 if it did, else 0.
//
// It runs only for a reservation whose ID was found bound to another
// item. A Reserve of the ID for this item that is given the reservation
// records its own nonce in it (see reserveBatchScript), so removing it
// takes nothing from anyone; it can only be held or expired.
var undoReserveScript = redis.NewScript(luaItem + `
local id = ARGV[1]
local r = rec(id)
if not r or r.nonce ~= ARGV[2] or (r.state ~= 'held' and r.state ~= 'expired') then
  return 0
end
if r.state == 'held' then
  load()
  redis.call('ZREM', holds, id)
  held, avail, itemDirty = held - r.qty, avail + r.qty, true
  addUnits(r.holder, -r.qty)
end
flush()
redis.call('HDEL', resv, id)
return 1
`)

// bindScript: KEYS[1] a reservation ID's pointer; ARGV[1] an item, ARGV[2]
// how many ms from now the ID must stay bound to it at least, or 0 for
// good. It binds an unbound ID, lengthens a shorter binding to the item,
// and leaves a longer or lasting one as it is. Replies 1, or 0, changing
// nothing, if the ID is bound to another item.
var bindScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
local ms = tonumber(ARGV[2])
if not v then
  if ms > 0 then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ms)
  else
    redis.call('SET', KEYS[1], ARGV[1])
  end
  return 1
end
if v ~= ARGV[1] then
  return 0
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl >= 0 and ms == 0 then
  redis.call('PERSIST', KEYS[1])
elseif ttl >= 0 and ttl < ms then
  redis.call('PEXPIRE', KEYS[1], ms)
end
return 1
`)

// confirmScript: luaItem's keys, KEYS[5] the item's free codes; ARGV[1]
// ID. Replies the reservation, {stNotFound}, {stExpired}, {stReleased} or
// {stNoCodes}. A confirmed reservation is answered as it is, so a retry
// changes nothing.
var confirmScript = redis.NewScript(luaItem + `
local free, id = KEYS[5], ARGV[1]
local function confirm()
  local r = rec(id)
  if not r then
    return {-2}
  end
  if r.state == 'held' and r.exp <= now then
    load()
    redis.call('ZREM', holds, id)
    expire(id)
  end
  if r.state == 'confirmed' then
    return reply(r)
  elseif r.state == 'expired' then
    return {-7}
  elseif r.state == 'released' then
    return {-8}
  end
  load()
  if it.codes then
    if redis.call('LLEN', free) < r.qty then
      return {-10}
    end
    local parts = {}
    for i, c in ipairs(redis.call('LPOP', free, r.qty)) do
      parts[i] = #c .. ':' .. c
    end
    r.codes = table.concat(parts)
  end
  r.state = 'confirmed'
  put(id, r)
  redis.call('ZREM', holds, id)
  held, confirmed, itemDirty = held - r.qty, confirmed + r.qty, true
  return reply(r)
end
local out = confirm()
flush()
return out
`)

// releaseScript: luaItem's keys; ARGV[1] ID. Replies 0, stNotFound or
// stConfirmed. Releasing a released or expired reservation changes
// nothing, so a retry is harmless.
var releaseScript = redis.NewScript(luaItem + `
local id = ARGV[1]
local r = rec(id)
if not r then
  return -2
end
if r.state == 'confirmed' then
  return -9
end
if r.state ~= 'held' then
  return 0
end
load()
redis.call('ZREM', holds, id)
if r.exp <= now then
  expire(id)
else
  r.state = 'released'
  put(id, r)
  held, avail, itemDirty = held - r.qty, avail + r.qty, true
  addUnits(r.holder, -r.qty)
end
flush()
return 0
`)

// getScript: KEYS[1] the item's reservations; ARGV[1] ID. Replies the
// reservation or {stNotFound}. It changes nothing: a hold whose time has
// come is reported expired and left for the next script of its item to
// expire.
var getScript = redis.NewScript(luaNow + luaRecord + `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then
  return {-2}
end
return reply(decode(v))
`)

// levelScript: luaItem's keys. Replies {stOK, available, held, confirmed,
// disabled, reason} after expiring every due hold, or {stUnknownItem}.
var levelScript = redis.NewScript(luaItem + `
if not load() then
  return {-1}
end
expireDue(-1)
flush()
local d = '0'
if it.disabled then
  d = '1'
end
return {1, avail, held, confirmed, d, it.reason}
`)

// sweepScript: luaItem's keys; ARGV[1] the most holds to expire. Replies
// how many it expired (0 for an unknown item).
var sweepScript = redis.NewScript(luaItem + `
if not load() then
  return 0
end
local n = expireDue(tonumber(ARGV[1]))
flush()
return n
`)

// defineScript: KEYS[1] item, KEYS[2] its reservations, KEYS[3] its
// holders' counts; ARGV[1] holder limit, ARGV[2] "1" for a code item.
// Replies 0, or stWrongKind when the item exists as the other kind.
//
// Holders' counts are kept only while the item has a limit. Setting a
// limit on an item that has none counts every holder's held and confirmed
// units afresh from its reservations, in this script: its time grows with
// the item's reservations. Removing the limit drops the counts.
var defineScript = redis.NewScript(luaRecord + luaRecount + `
local item, resv, holders = KEYS[1], KEYS[2], KEYS[3]
local counted = '0'
if tonumber(ARGV[1]) > 0 then
  counted = '1'
end
local codes = redis.call('HGET', item, 'codes')
if not codes then
  redis.call('HSET', item, 'units', 0, 'available', 0, 'held', 0, 'confirmed', 0,
    'disabled', '0', 'reason', '', 'holder_limit', ARGV[1], 'codes', ARGV[2], 'counted', counted)
  return 0
end
if codes ~= ARGV[2] then
  return -11
end
local was = redis.call('HGET', item, 'counted') or '1'
if counted == '0' then
  redis.call('DEL', holders)
elseif was == '0' then
  recountHolders(resv, holders)
end
redis.call('HSET', item, 'holder_limit', ARGV[1], 'counted', counted)
return 0
`)

// restockScript: KEYS[1] item, KEYS[2] receipt; ARGV[1] units, ARGV[2]
// receipt TTL in ms, ARGV[3] maxUnits. Replies 0, stUnknownItem,
// stWrongKind or stTooMany. The receipt makes a client's retry of a
// Restock that succeeded add nothing more.
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
if tonumber(redis.call('HGET', KEYS[1], 'units') or '0') + tonumber(ARGV[1]) > tonumber(ARGV[3]) then
  return -12
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
