-- succeeded.lua — whether a stored result meta says SUCCESS, whatever serializer wrote it
-- (prepended to store_result.lua and batch.lua). JSON is decoded; pickle and msgpack metas
-- (Celery and hlbot write `status` as their first key) have SUCCESS within a few bytes after
-- the key; YAML metas (PyYAML sorts keys) have a `status: SUCCESS` line.
local function succeeded(c)
  if not c or not string.find(c, 'SUCCESS', 1, true) then return false end
  local ok, m = pcall(cjson.decode, c)
  if ok then return type(m) == 'table' and m.status == 'SUCCESS' end
  local p = string.find(c, 'status', 1, true)
  if p and p < 32 and string.find(string.sub(c, p + 6, p + 22), 'SUCCESS', 1, true) then
    return true
  end
  return string.sub(c, 1, 16) == 'status: SUCCESS\n' or
    string.find(c, '\nstatus: SUCCESS\n', 1, true) ~= nil
end
