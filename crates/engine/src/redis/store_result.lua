-- store_result.lua — the result backend's write, as Celery's GET + MULTI/SETEX/PUBLISH/EXEC but
-- atomic: never overwrite a SUCCESS (redelivered duplicates can't clobber it), then store with
-- the TTL and PUBLISH the same JSON on the channel named like the key (wakes AsyncResult.get()).
-- KEYS[1] celery-task-meta-<id>
-- ARGV[1] meta JSON  ARGV[2] TTL seconds (0 = no expiry)  ARGV[3] channel
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, m = pcall(cjson.decode, cur)
  if ok and type(m) == 'table' and m.status == 'SUCCESS' then return 0 end
end
local ttl = tonumber(ARGV[2])
if ttl and ttl > 0 then
  redis.call('SETEX', KEYS[1], ttl, ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
