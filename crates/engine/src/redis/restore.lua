-- restore.lua — move one unacked message back to the HEAD of its queue (RPUSH), exactly once.
-- Only if its unacked_index score is still <= the cutoff: a racing restorer (or an ack, or a
-- refresh by the worker holding it) makes this a no-op, so two restorers never duplicate it.
-- kombu's WATCH/MULTI restorers see our HDEL and abort their transaction, so they can't either.
-- With the cutoff 'held' the condition is the holder instead: only while `hlbot.held` still names
-- ARGV[4] as the entry's holder (no ack, restore or later fetch of the same tag came between),
-- and, given KEYS[5], only while that holder's liveness key is gone (a dead holder's messages go
-- back without waiting for the visibility timeout).
-- KEYS[1] unacked  KEYS[2] unacked_index  KEYS[3] destination list  KEYS[4] hlbot.held
-- KEYS[5] (optional, with 'held') the holder's liveness key
-- ARGV[1] delivery tag  ARGV[2] cutoff score ('+inf' for own messages, 'held')
-- ARGV[3] envelope to push  ARGV[4] (with 'held') the holder `hlbot.held` must name
-- Returns 1 when restored, 0 when not, -1 when the holder is alive.
if ARGV[2] == 'held' then
  if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[4] then return 0 end
  if KEYS[5] and redis.call('EXISTS', KEYS[5]) == 1 then return -1 end
else
  local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if not score then
    -- an entry without index is restored too (kombu would never see it otherwise)
    if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
  elseif ARGV[2] ~= '+inf' and tonumber(score) > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[3], ARGV[3])
return 1
