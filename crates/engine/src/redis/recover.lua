-- recover.lua — give back a dead worker's in-flight list (messages its idle wait moved out of a
-- queue): only if the owner's liveness key is gone, every message goes back to the HEAD of the
-- queue key it came from (newest first, so the oldest ends up next in line), and the list is
-- unregistered — one atomic step, so two recoverers never both move a message.
-- KEYS[1] hlbot.inflights (hash list -> source key)  KEYS[2] the owner's hlbot.alive.<id>
-- KEYS[3] the in-flight list  KEYS[4] its source queue key
-- Returns how many messages were moved, or -1 if the owner is alive.
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local n = 0
while true do
  local raw = redis.call('LPOP', KEYS[3])
  if not raw then break end
  redis.call('RPUSH', KEYS[4], raw)
  n = n + 1
end
redis.call('HDEL', KEYS[1], KEYS[3])
return n
