-- restore.lua — move one unacked message back to the HEAD of its queue (RPUSH), exactly once.
-- Only if its unacked_index score is still <= the cutoff: a racing restorer (or an ack, or a
-- refresh by the worker holding it) makes this a no-op, so two restorers never duplicate it.
-- kombu's WATCH/MULTI restorers see our HDEL and abort their transaction, so they can't either.
-- KEYS[1] unacked  KEYS[2] unacked_index  KEYS[3] destination list
-- ARGV[1] delivery tag  ARGV[2] cutoff score ('+inf' for own messages)  ARGV[3] envelope to push
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score then
  -- an entry without index is restored too (kombu would never see it otherwise)
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
elseif ARGV[2] ~= '+inf' and tonumber(score) > tonumber(ARGV[2]) then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[3])
return 1
