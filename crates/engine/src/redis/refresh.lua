-- refresh.lua — keep held messages from being restored: for each tag whose `unacked` entry
-- exists, its `unacked_index` score becomes now (written even if the index entry was gone).
-- Tags whose entry is gone are returned (Redis lost its data: the worker records them again).
-- KEYS[1] unacked  KEYS[2] unacked_index  ARGV[1] now  ARGV[2..] delivery tags
local missing = {}
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[i])
  else
    missing[#missing + 1] = ARGV[i]
  end
end
return missing
