-- fetch.lua — pop up to N messages and record them as unacked in ONE atomic step.
-- kombu does BRPOP and then MULTI ZADD/HSET, so a crash between the two loses the message;
-- here the pop and the unacked entry happen together. Malformed entries (no delivery tag) are
-- returned without an unacked entry: the worker dead-letters them at once.
-- KEYS[1] unacked (hash)  KEYS[2] unacked_index (zset)  KEYS[3..] queue lists in priority order
-- ARGV[1] max messages    ARGV[2] now (unix seconds, float)
-- Returns a flat list: key1, raw1, key2, raw2, ...
local out = {}
local max = tonumber(ARGV[1])
local got = 0
for i = 3, #KEYS do
  while got < max do
    local raw = redis.call('RPOP', KEYS[i])
    if not raw then break end
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
      redis.call('HSET', KEYS[1], tag, '[' .. raw .. ', ' .. cjson.encode(ex) .. ', ' .. cjson.encode(rk) .. ']')
      redis.call('ZADD', KEYS[2], ARGV[2], tag)
    end
    out[#out + 1] = KEYS[i]
    out[#out + 1] = raw
    got = got + 1
  end
  if got >= max then break end
end
return out
