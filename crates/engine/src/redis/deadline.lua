-- deadline.lua — prepended to fetch.lua, batch.lua and orphans.lua: the deadline check of
-- `redis/clock.rs`. late(d) is the answer a call gives when Redis's clock is already past its
-- deadline d — {'!stale', <Redis time>}, and the script does nothing else: its caller stopped
-- waiting for the reply — or nil when the call is in time. Call it before any write.
local function late(deadline)
  if redis.replicate_commands then redis.replicate_commands() end  -- TIME before writes (Redis < 5)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  if now > tonumber(deadline) then return {'!stale', tostring(now)} end
  return nil
end
