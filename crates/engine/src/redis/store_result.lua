-- store_result.lua — the result backend's write, as Celery's GET + MULTI/SETEX/PUBLISH/EXEC but
-- atomic: never overwrite a SUCCESS (redelivered duplicates can't clobber it), then store with
-- the TTL and PUBLISH the same JSON on the channel named like the key (wakes AsyncResult.get()).
-- One call stores any number of results (the worker's writer passes a whole batch): one MGET
-- reads every current value (a key stored twice in one call is checked against its first write),
-- and a current value is only decoded when it mentions SUCCESS (in any serializer's form).
-- KEYS[i] celery-task-meta-<id> (also its PUBLISH channel)
-- ARGV[1] TTL seconds (0 = no expiry)  ARGV[i + 1] meta for KEYS[i] (result_serializer's bytes)
-- Returns how many were stored (a key holding SUCCESS is skipped).
local ttl = tonumber(ARGV[1])
local cur = redis.call('MGET', unpack(KEYS))
local written = {}
local stored = 0
for i, key in ipairs(KEYS) do
  local skip = succeeded(written[key] or cur[i])  -- succeeded.lua, prepended
  if not skip then
    local meta = ARGV[i + 1]
    if ttl and ttl > 0 then
      redis.call('SETEX', key, ttl, meta)
    else
      redis.call('SET', key, meta)
    end
    redis.call('PUBLISH', key, meta)
    written[key] = meta
    stored = stored + 1
  end
end
return stored
