-- orphans.lua — chord bodies whose completing worker died before its writer sent them (the
-- pending records `batch.lua` writes when a chord completes). Every record whose owner's
-- liveness key is gone is re-leased to the caller (owner and token replaced) in this one atomic
-- step, so two sweepers never both take a record, and a late `take` of the old owner finds a
-- token that is no longer its own and sends nothing. A record that is not JSON is removed and
-- handed back as bad (the caller dead-letters it). Bodies noted as sent longer ago than the
-- keep window are forgotten.
-- ARGV[1] pending hash  ARGV[2] sent zset  ARGV[3] liveness key prefix (`hlbot.alive.`)
-- ARGV[4] the caller's worker id  ARGV[5] token prefix  ARGV[6] now (unix s)  ARGV[7] keep (s)
-- ARGV[8] deadline (Redis's clock, see `redis/clock.rs`)
-- Returns a flat list {field, record, kind...}; kind 'take' (record re-leased) or 'bad'. A call
-- that arrives past its deadline takes nothing and returns {'!stale', <Redis time>}: a record
-- re-leased to a caller that stopped waiting for the reply would stay with that live caller,
-- unsent, for as long as it lives.
local stale = late(ARGV[8])  -- deadline.lua, prepended
if stale then return stale end
local now = tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', ARGV[2], '-inf', '(' .. (now - tonumber(ARGV[7])))
local out, all = {}, redis.call('HGETALL', ARGV[1])
for n = 1, #all, 2 do
  local field, raw = all[n], all[n + 1]
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' then
    redis.call('HDEL', ARGV[1], field)
    out[#out + 1] = field; out[#out + 1] = raw; out[#out + 1] = 'bad'
  elseif type(rec.o) ~= 'string' or redis.call('EXISTS', ARGV[3] .. rec.o) == 0 then
    rec.o, rec.k, rec.t = ARGV[4], ARGV[5] .. n, now
    local new = cjson.encode(rec)
    redis.call('HSET', ARGV[1], field, new)
    out[#out + 1] = field; out[#out + 1] = new; out[#out + 1] = 'take'
  end
end
return out
