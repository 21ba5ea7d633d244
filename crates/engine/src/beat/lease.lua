-- lease.lua — take or renew the beat leader lease. Only one owner holds it at a time; every new
-- leadership gets a fresh fencing token (INCR), so a paused old leader's writes can be refused.
-- KEYS[1] hlbot.beat.lease  KEYS[2] hlbot.beat.fence
-- ARGV[1] owner id  ARGV[2] lease ms
-- Returns the token (> 0) while ARGV[1] leads, 0 when someone else does.
local cur = redis.call('GET', KEYS[1])
if cur then
  local owner, token = string.match(cur, '^(.*) (%d+)$')
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(token)
  end
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', ARGV[2])
return token
