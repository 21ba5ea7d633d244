-- requeue.lua — reject(requeue=True): drop the unacked entry and LPUSH the message to the TAIL of
-- its queue, only if the entry still exists (so a concurrent restore can't duplicate it).
-- KEYS[1] unacked  KEYS[2] unacked_index  KEYS[3] destination list  KEYS[4] hlbot.held
-- ARGV[1] delivery tag  ARGV[2] envelope
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[2])
return 1
