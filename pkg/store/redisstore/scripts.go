package redisstore

import (
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Every script works on the keys of one service, all in one hash slot:
//
//	KEYS[1] service:{name}:index      STRING  the service's index
//	KEYS[2] service:{name}:instances  HASH    id -> record JSON
//	KEYS[3] service:{name}:state      HASH    id -> "status ttl_seconds last_heartbeat_ms rev"
//	KEYS[4] service:{name}:deadlines  ZSET    id scored by expires_at in ms since the epoch
//	KEYS[5] service:{name}:announced  HASH    id -> "rev expires_ms": the deadline last published
//
// rev is a random number that each registration draws: it names one
// record, so a process that holds the record of that rev need not be sent
// it again (random rather than the index, which starts over when Redis
// loses its data). State written before rev existed has three fields; its
// rev reads as 0, which matches nothing.
//
// A plain heartbeat leaves the state alone: its last heartbeat is its
// deadline less the TTL. A TTL written with a leading 0 ("030") says so:
// the last heartbeat of such state is read from the deadline, and
// last_heartbeat_ms only says when the state was last written. The first
// heartbeat after a registration, a grace or a status change writes it so.
// Registration and grace write the TTL bare, for last_heartbeat_ms then
// holds the last heartbeat: a registration may set any deadline, and
// grace moves the deadline without a heartbeat. Earlier releases read the
// TTL as a number and keep its 0 when they write the state back, so they
// read a last heartbeat of when the state was written; heartbeats write it
// again once it is a TTL old, so that is never more than a TTL behind.
//
// ARGV[1] is the change channel and ARGV[2] the head of every notice,
// `{"origin":"…","service":"…"`, built once in Go; a script's own
// arguments follow. Each script publishes the notice of its change on the
// channel and returns it too, so the caller and every other Saga process
// decode the same JSON.
//
// The scripts are the heartbeat's whole cost on the Redis side, so they
// concatenate strings rather than encode tables: statuses, times and
// indexes are digits or fixed words that need no escaping.

// noticeLua builds a change notice. Times arrive as strings of digits;
// a computed one goes through %d, since Lua would print 13 digits in
// exponent form.
const noticeLua = `
local function notice(typ, id, index, status, hb, expires, rev)
  return ARGV[2] .. ',"type":"' .. typ .. '","id":' .. cjson.encode(id) ..
    ',"index":' .. index .. ',"rev":' .. rev .. ',"record":' .. redis.call('HGET', KEYS[2], id) ..
    ',"status":"' .. status .. '","heartbeat":' .. hb .. ',"expires":' .. expires .. '}'
end
local function current_index()
  return redis.call('GET', KEYS[1]) or '0'
end
-- state_of reads an instance's state as stored; with its deadline, hb is
-- its last heartbeat (the deadline less the TTL when the TTL has a 0).
local function state_of(id, deadline)
  local status, ttl, hb, rev = string.match(redis.call('HGET', KEYS[3], id), '^(%S+) (%d+) (%d+) ?(%d*)$')
  if rev == '' then rev = '0' end
  if deadline and string.byte(ttl) == 48 then
    hb = string.format('%d', tonumber(deadline) - tonumber(ttl) * 1000)
  end
  return status, ttl, hb, rev
end
`

// registerScript stores an instance, replacing one with the same id.
// ARGV[3] id, [4] record JSON, [5] status, [6] ttl seconds, [7] now ms
// (the last heartbeat), [8] expires ms, [9] rev. A predecessor whose deadline has
// passed counts as gone: "registered".
var registerScript = goredis.NewScript(noticeLua + `
local id = ARGV[3]
local old = redis.call('ZSCORE', KEYS[4], id)
local typ = 'registered'
if old and tonumber(old) > tonumber(ARGV[7]) then typ = 'updated' end
local index = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], id, ARGV[4])
redis.call('HSET', KEYS[3], id, ARGV[5] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7] .. ' ' .. ARGV[9])
redis.call('ZADD', KEYS[4], ARGV[8], id)
redis.call('HSET', KEYS[5], id, ARGV[9] .. ' ' .. ARGV[8])
local msg = notice(typ, id, index, ARGV[5], ARGV[7], ARGV[8], ARGV[9])
redis.call('PUBLISH', ARGV[1], msg)
return msg
`)

// announceStep is how far a plain heartbeat may move a deadline past the
// one last published before it must publish again. Other Sagas thus hold
// a deadline at most this much earlier than the real one: they never
// serve an instance past its deadline, and hide a live one for less than
// this when its heartbeats stop, well inside the 1 s agreement window. A
// deadline that moves earlier is always published.
const announceStep = 500 * time.Millisecond

// heartbeatScript renews live instances of one service, in one call for
// every heartbeat of a batch (batch.go): each deadline moves to now + TTL
// and, when a heartbeat names a different status, the status is set and
// the index bumped. A plain heartbeat leaves the state alone, but for the
// writes said above. ARGV[3] is "1" while every Saga on this Redis pulls
// deadlines (pull.go, membership.go), else "0". ARGV[4…] hold four
// arguments per instance: id, status or "", now ms, and the rev of the
// record the caller holds (0 for none). Returns one answer per instance,
// in order: its notice, or "" when the instance is unknown or its
// deadline is not after its now, or, for a plain heartbeat that publishes
// nothing and whose record the caller holds, only what changed:
// "h index status now expires". The service's index is read once per call.
//
// A plain heartbeat publishes a short notice without the record: every
// process got the record with the registration (or a snapshot), and rev
// tells it which one. A deadline that moves earlier than the one Redis
// held is always published: another Saga may hold the old one. One that
// moves later is published only when every Saga does not pull, and then
// only when it moved announceStep past the one last published (KEYS[5]).
// The caller gets the record back only when its rev is not the current
// one. A status change, or state without a rev, publishes the whole
// notice.
var heartbeatScript = goredis.NewScript(noticeLua + `
local step = ` + strconv.FormatInt(announceStep.Milliseconds(), 10) + `
local pulled = ARGV[3] == '1'
local function announce(id, rev, expires, deadline, msg)
  if tonumber(expires) >= tonumber(deadline) then
    if pulled then return end
    local last = redis.call('HGET', KEYS[5], id)
    if last then
      local lrev, lexp = string.match(last, '^(%d+) (%d+)$')
      local moved = tonumber(expires) - tonumber(lexp or '0')
      if lrev == rev and moved >= 0 and moved < step then return end
    end
  end
  redis.call('HSET', KEYS[5], id, rev .. ' ' .. expires)
  redis.call('PUBLISH', ARGV[1], msg)
end
local call_index = nil -- the service's index, read once per call
local function beat(id, want, now, held)
  local deadline = redis.call('ZSCORE', KEYS[4], id)
  if not deadline or tonumber(deadline) <= tonumber(now) then return '' end
  local status, ttl, written, rev = state_of(id)
  local ms = tonumber(ttl) * 1000
  local expires = string.format('%d', tonumber(now) + ms)
  local typ, index = 'heartbeat', nil
  if want ~= '' and want ~= status then
    status, typ = want, 'updated'
    index = redis.call('INCR', KEYS[1])
    call_index = index
  else
    if not call_index then call_index = current_index() end
    index = call_index
  end
  if typ == 'updated' or string.byte(ttl) ~= 48 or tonumber(now) - tonumber(written) >= ms then
    if string.byte(ttl) ~= 48 then ttl = '0' .. ttl end
    redis.call('HSET', KEYS[3], id, status .. ' ' .. ttl .. ' ' .. now .. ' ' .. rev)
  end
  redis.call('ZADD', KEYS[4], expires, id)
  if typ == 'updated' or rev == '0' then
    local msg = notice(typ, id, index, status, now, expires, rev)
    redis.call('HSET', KEYS[5], id, rev .. ' ' .. expires)
    redis.call('PUBLISH', ARGV[1], msg)
    return msg
  end
  if pulled and rev == held and tonumber(expires) >= tonumber(deadline) then
    -- Nothing to publish, and the caller holds the record: the short
    -- answer of compactHeartbeat (store.go) spares building the notice.
    return 'h ' .. index .. ' ' .. status .. ' ' .. now .. ' ' .. expires
  end
  local short = ARGV[2] .. ',"type":"heartbeat","id":' .. cjson.encode(id) .. ',"index":' .. index ..
    ',"rev":' .. rev .. ',"status":"' .. status .. '","heartbeat":' .. now .. ',"expires":' .. expires .. '}'
  announce(id, rev, expires, deadline, short)
  if rev == held then return short end
  return notice(typ, id, index, status, now, expires, rev)
end
local out = {}
for i = 4, #ARGV, 4 do
  out[#out + 1] = beat(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
end
return out
`)

// deregisterScript removes an instance. ARGV[3] id. Nil when unknown.
var deregisterScript = goredis.NewScript(noticeLua + `
local id = ARGV[3]
local deadline = redis.call('ZSCORE', KEYS[4], id)
if not deadline then return false end
local index = redis.call('INCR', KEYS[1])
local status, _, hb, rev = state_of(id, deadline)
local msg = notice('deregistered', id, index, status, hb, deadline, rev)
redis.call('HDEL', KEYS[2], id)
redis.call('HDEL', KEYS[3], id)
redis.call('HDEL', KEYS[5], id)
redis.call('ZREM', KEYS[4], id)
redis.call('PUBLISH', ARGV[1], msg)
return msg
`)

// expireScript removes up to ARGV[4] instances whose deadline is not after
// ARGV[3] (now ms) and returns the earliest deadline left ("" when none),
// then the notices of what it removed. Redis runs one script at a time, so
// when several Saga processes race, each instance is removed, and its
// "expired" notice published, by exactly one of them. The bound keeps
// each call short: Redis serves nobody else while a script runs, and a
// mass expiry of tens of thousands in one call held every heartbeat and
// health ping for seconds. A caller that gets back a deadline not after
// now calls again.
var expireScript = goredis.NewScript(noticeLua + `
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[3], 'WITHSCORES', 'LIMIT', 0, ARGV[4])
local out = {''}
for i = 1, #due, 2 do
  local id, deadline = due[i], due[i + 1]
  local index = redis.call('INCR', KEYS[1])
  local status, _, hb, rev = state_of(id, deadline)
  local msg = notice('expired', id, index, status, hb, deadline, rev)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[5], id)
  redis.call('ZREM', KEYS[4], id)
  redis.call('PUBLISH', ARGV[1], msg)
  out[#out + 1] = msg
end
local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
if first[2] then out[1] = first[2] end
return out
`)

// graceScript moves every deadline earlier than now + TTL to now + TTL and
// publishes a heartbeat notice for each, so every process's view holds the
// new deadlines. ARGV[3] now ms, ARGV[4] an HSCAN cursor of the state hash
// (0 to start), ARGV[5] its COUNT. Returns the next cursor ("0" when the
// service is done), then the notices. One call covers one page, so that a
// big service's grace leaves Redis free for other clients between pages
// (a whole service in one call held Redis for seconds); HSCAN returns every
// instance present from the first call to the last at least once, and a
// second visit finds its deadline already moved.
var graceScript = goredis.NewScript(noticeLua + `
local now = tonumber(ARGV[3])
local page = redis.call('HSCAN', KEYS[3], ARGV[4], 'COUNT', ARGV[5])
local index = current_index()
local out = {page[1]}
local items = page[2]
for i = 1, #items, 2 do
  local id = items[i]
  local deadline = redis.call('ZSCORE', KEYS[4], id)
  local status, ttl, hb, rev = state_of(id, deadline)
  local floor = now + tonumber(ttl) * 1000
  if deadline and tonumber(deadline) < floor then
    local expires = string.format('%d', floor)
    if string.byte(ttl) == 48 then -- the new deadline says nothing of the last heartbeat
      redis.call('HSET', KEYS[3], id, status .. ' ' .. string.sub(ttl, 2) .. ' ' .. hb .. ' ' .. rev)
    end
    redis.call('ZADD', KEYS[4], expires, id)
    redis.call('HSET', KEYS[5], id, rev .. ' ' .. expires)
    local msg = notice('heartbeat', id, index, status, hb, expires, rev)
    redis.call('PUBLISH', ARGV[1], msg)
    out[#out + 1] = msg
  end
end
return out
`)

// recordScript reads one instance as a snapshot notice, for a process that
// got a heartbeat notice for a record it does not hold. ARGV[3] id. Nil
// when the instance is gone.
var recordScript = goredis.NewScript(noticeLua + `
local id = ARGV[3]
local deadline = redis.call('ZSCORE', KEYS[4], id)
if not deadline then return false end
local status, _, hb, rev = state_of(id, deadline)
return notice('snapshot', id, current_index(), status, hb, deadline, rev)
`)

// snapshotScript reads one page of a service: its index, the next HSCAN
// cursor of the state hash ("0" when done), then one notice per instance
// of the page. ARGV[3] the cursor (0 to start), ARGV[4] its COUNT. Pages
// keep each call short, as for expiry; Snapshot (store.go) reads a
// service at one moment by checking that the index did not move between
// its first page and its last.
var snapshotScript = goredis.NewScript(noticeLua + `
local index = current_index()
local page = redis.call('HSCAN', KEYS[3], ARGV[3], 'COUNT', ARGV[4])
local out = {tonumber(index), page[1]}
local items = page[2]
for i = 1, #items, 2 do
  local id = items[i]
  local deadline = redis.call('ZSCORE', KEYS[4], id)
  if deadline then
    local status, _, hb, rev = state_of(id, deadline)
    out[#out + 1] = notice('snapshot', id, index, status, hb, deadline, rev)
  end
end
return out
`)
