-- fetch.lua — pop up to N messages and record them as unacked in ONE atomic step.
-- kombu does BRPOP and then MULTI ZADD/HSET, so a crash between the two loses the message;
-- here the pop and the unacked entry happen together. Malformed entries (no delivery tag) are
-- returned without an unacked entry: the worker dead-letters them at once.
-- One RPOP with a count per list (Redis >= 6.2; one RPOP per message on older servers), one HSET
-- and one ZADD for the whole batch.
-- KEYS[1] unacked (hash)  KEYS[2] unacked_index (zset)  KEYS[3..] queue lists in priority order
-- ARGV[1] max messages    ARGV[2] now (unix seconds, float)
-- Returns a flat list: key1, raw1, key2, raw2, ...
local out = {}
local max = tonumber(ARGV[1])
local got = 0
local hset, zadd = {KEYS[1]}, {KEYS[2]}
local function record()  -- write (and reset) the pending unacked entries; unpack stays small
  if #hset > 1 then
    redis.call('HSET', unpack(hset))
    redis.call('ZADD', unpack(zadd))
  end
  hset, zadd = {KEYS[1]}, {KEYS[2]}
end
local function pop(key, n)
  local r = redis.pcall('RPOP', key, n)
  if type(r) == 'table' and r.err then
    r = {}
    for _ = 1, n do
      local one = redis.call('RPOP', key)
      if not one then break end
      r[#r + 1] = one
    end
  end
  return r or {}
end
for i = 3, #KEYS do
  if got >= max then break end
  for _, raw in ipairs(pop(KEYS[i], max - got)) do
    local ok, env = pcall(cjson.decode, raw)
    if ok and type(env) == 'table' and type(env.properties) == 'table'
        and type(env.properties.delivery_tag) == 'string' then
      local di = env.properties.delivery_info
      local ex, rk = '', ''
      if type(di) == 'table' then
        if type(di.exchange) == 'string' then ex = di.exchange end
        if type(di.routing_key) == 'string' then rk = di.routing_key end
      end
      local tag = env.properties.delivery_tag
      hset[#hset + 1] = tag
      hset[#hset + 1] = '[' .. raw .. ', ' .. cjson.encode(ex) .. ', ' .. cjson.encode(rk) .. ']'
      zadd[#zadd + 1] = ARGV[2]
      zadd[#zadd + 1] = tag
      if #hset > 1000 then record() end
    end
    out[#out + 1] = KEYS[i]
    out[#out + 1] = raw
    got = got + 1
  end
end
record()
return out
