-- fetch.lua — pop up to N messages and record them as unacked in ONE atomic step.
-- kombu does BRPOP and then MULTI ZADD/HSET, so a crash between the two loses the message;
-- here the pop and the unacked entry happen together. Entries that can never run are
-- dead-lettered in the same step, so nothing popped here is ever only in the worker's memory:
--   * no delivery tag (not JSON, or not a kombu envelope) — the record keeps the raw entry;
--   * larger than the size cap — the record keeps the first 4 KiB, the size, and the task id and
--     name found by a plain text match (the entry is never decoded).
-- One RPOP with a count per list (Redis >= 6.2; one RPOP per message on older servers), one HSET
-- and one ZADD for the whole batch, and one HSET of `hlbot.held` naming this worker and fetch as
-- the holder of each entry (survivors give back a dead holder's messages; the worker itself finds
-- a fetch whose reply it lost).
-- KEYS[1] unacked (hash)  KEYS[2] unacked_index (zset)  KEYS[3] hlbot.held (hash)
-- KEYS[4..] queue lists in priority order
-- ARGV[1] max messages    ARGV[2] now (unix seconds, float)  ARGV[3] max message bytes (0: none)
-- ARGV[4] dead-letter list  ARGV[5] dead-letter cap  ARGV[6] dead-letter trimmed counter
-- ARGV[7] deadline (Redis server time, unix seconds, float)  ARGV[8] holder (`<worker> <fetch n>`)
-- ARGV[9..] the queue name of each of KEYS[4..]
-- Returns a flat list: key1, raw1, key2, raw2, ...; a dead-lettered entry comes back as
-- '!dead', '<reason>' (for the worker's log).
-- A call that reaches Redis after its deadline takes nothing and returns '!stale', <server
-- time>: the worker gave up waiting for this reply (Redis was paused, the connection went
-- silent), and messages recorded as unacked for a reply no one reads would wait out the
-- visibility timeout.
local stale = late(ARGV[7])  -- deadline.lua, prepended
if stale then return stale end
local out = {}
local max = tonumber(ARGV[1])
local max_bytes = tonumber(ARGV[3])
local got = 0
local holder = ARGV[8]
local hset, zadd, held = {KEYS[1]}, {KEYS[2]}, {KEYS[3]}
local function record()  -- write (and reset) the pending unacked entries; unpack stays small
  if #hset > 1 then
    redis.call('HSET', unpack(hset))
    redis.call('ZADD', unpack(zadd))
    redis.call('HSET', unpack(held))
  end
  hset, zadd, held = {KEYS[1]}, {KEYS[2]}, {KEYS[3]}
end
local function sniff(raw, key)  -- a string field anywhere in the entry, without decoding it
  return string.match(raw, '"' .. key .. '"%s*:%s*"([^"]*)"')
end
local function dead(queue, raw, reason)
  local rec = {reason = reason, queue = queue, at = tonumber(ARGV[2]), raw = raw}
  if max_bytes > 0 and #raw > max_bytes then
    rec.raw = string.sub(raw, 1, 4096)
    rec.size = #raw
    rec.truncated = true
    rec.task_id = sniff(raw, 'id')
    rec.task = sniff(raw, 'task')
  end
  redis.call('LPUSH', ARGV[4], cjson.encode(rec))
  local cap = tonumber(ARGV[5])
  if cap > 0 then
    local over = redis.call('LLEN', ARGV[4]) - cap
    if over > 0 then
      redis.call('LTRIM', ARGV[4], 0, cap - 1)
      redis.call('INCRBY', ARGV[6], over)
    end
  end
  out[#out + 1] = '!dead'
  out[#out + 1] = reason
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
for i = 4, #KEYS do
  if got >= max then break end
  local queue = ARGV[5 + i]
  for _, raw in ipairs(pop(KEYS[i], max - got)) do
    if max_bytes > 0 and #raw > max_bytes then
      dead(queue, raw, 'message of ' .. #raw .. ' bytes is over the ' .. max_bytes .. '-byte limit')
    else
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
        held[#held + 1] = tag
        held[#held + 1] = holder
        if #hset > 1000 then record() end
        out[#out + 1] = KEYS[i]
        out[#out + 1] = raw
      elseif ok then
        dead(queue, raw, 'envelope is not a kombu message: no properties.delivery_tag')
      else
        dead(queue, raw, 'envelope is not JSON')
      end
    end
    got = got + 1
  end
end
record()
return out
