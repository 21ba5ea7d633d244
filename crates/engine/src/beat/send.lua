-- send.lua — publish one beat tick, at most once: refused unless the caller still holds the lease
-- with its fencing token; refused when the tick is not newer than the last one sent; refused when
-- the idempotency key of (entry, due) already exists. Push and last-run update are one step.
-- KEYS[1] hlbot.beat.lease  KEYS[2] hlbot.beat.last.<entry>  KEYS[3] hlbot.beat.sent.<entry>.<due>
-- KEYS[4] the queue list
-- ARGV[1] "<owner> <token>"  ARGV[2] due (unix ms)  ARGV[3] idempotency key TTL (s)  ARGV[4] message
-- ARGV[5] "1": record the tick only — the caller publishes the message to RabbitMQ itself
-- Returns 1 sent, 0 already sent, -1 not the leader.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local last = tonumber(redis.call('GET', KEYS[2]) or '')
if last and last >= tonumber(ARGV[2]) then return 0 end
if not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'EX', ARGV[3]) then return 0 end
if ARGV[5] ~= '1' then redis.call('LPUSH', KEYS[4], ARGV[4]) end
redis.call('SET', KEYS[2], ARGV[2])
return 1
