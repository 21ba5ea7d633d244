-- chord.lua — one chord header part's return, as Celery 5.7's celery/backends/redis.py does it
-- (CHORD_PART_RETURN_LUA, then the claim, the read and CHORD_CLEANUP_LUA), on the same keys, so
-- Python and hlbot parts of one chord count together. Prepended to batch.lua: a part is counted
-- in the same atomic step as its result and its ack, exactly once (the batch marker).
--
-- chord_part(g, tid, entry, index, ordered, expires, pkey, pid):
--   g     <R>celery-taskset-meta-<gid> (the GroupResult key; its expiry is refreshed)
--   g.j   zset entry → group_index (result_chord_ordered, the default) or list
--   g.t   size delta (Celery's totaldiff; may be absent)   g.s  header size (set_chord_size)
--   g.d   set of `<tid>:<index>` counted (a redelivered part is not counted twice)
--   g.c   dispatch claim: a token while a completer sends the callback, 'done' after
--   entry `[1, tid, state, result]` in result_serializer's form; index = group_index or '+inf'
--   pkey/pid  (hlbot, optional) the body's result key and id: a part that does not complete the
--         chord stores PROGRESS {"done", "total"} there (never over a SUCCESS) and publishes it
-- Returns nil, or — for the part that completes the chord and wins the claim — every entry in
-- order. The claim and the read happen in this same step, so no Python worker can claim too.
-- After a success the keys go and `.c` reads 'done' (late duplicates are ignored); after a
-- failed part only `.s` goes and the claim stays until it expires (Celery: results kept).
local CLAIM_EXPIRES, DONE_EXPIRES = 6, 300
local function chord_progress(pkey, pid, done, total, expires)
  local cur = redis.call('GET', pkey)
  if succeeded(cur) then return end
  local meta = '{"status": "PROGRESS", "result": {"done": ' .. done .. ', "total": ' .. total ..
    '}, "traceback": null, "children": [], "date_done": null, "task_id": ' .. cjson.encode(pid) .. '}'
  if expires and expires > 0 then
    redis.call('SET', pkey, meta, 'EX', expires)
  else
    redis.call('SET', pkey, meta)
  end
  redis.call('PUBLISH', pkey, meta)
end

local function chord_part(g, tid, entry, index, ordered, expires, pkey, pid)
  local jkey, tkey, skey, dkey, ckey = g .. '.j', g .. '.t', g .. '.s', g .. '.d', g .. '.c'
  if redis.call('GET', ckey) == 'done' then return nil end
  local member = tid .. ':' .. index
  if redis.call('SISMEMBER', dkey, member) == 0 then
    if ordered then
      redis.call('ZADD', jkey, index, entry)
    else
      redis.call('RPUSH', jkey, entry)
    end
    redis.call('SADD', dkey, member)
  end
  local ready
  if ordered then
    ready = redis.call('ZCOUNT', jkey, '-inf', '+inf')
  else
    ready = redis.call('LLEN', jkey)
  end
  if expires and expires > 0 then
    for _, key in ipairs({jkey, tkey, skey, dkey}) do redis.call('EXPIRE', key, expires) end
    redis.call('EXPIRE', g, expires)
  end
  local diff = tonumber(redis.call('GET', tkey) or 0) or 0
  local size = redis.call('GET', skey)
  if not size or ready ~= (tonumber(size) or -1) + diff then
    if size and pkey and pkey ~= '' then
      chord_progress(pkey, pid, ready, (tonumber(size) or 0) + diff, expires)
    end
    return nil
  end
  if not redis.call('SET', ckey, 'hlbot', 'NX', 'EX', CLAIM_EXPIRES) then return nil end
  local entries
  if ordered then
    entries = redis.call('ZRANGE', jkey, 0, -1)
  else
    entries = redis.call('LRANGE', jkey, 0, ready)
  end
  local failed = false
  for _, e in ipairs(entries) do
    local ok, v = pcall(cjson.decode, e)
    local bad
    if ok then
      bad = type(v) == 'table' and (v[3] == 'FAILURE' or v[3] == 'REVOKED')
    else
      -- Another serializer's entry: its state is the only such word before the result.
      bad = string.find(e, 'FAILURE', 1, true) or string.find(e, 'REVOKED', 1, true)
    end
    if bad then
      failed = true
      break
    end
  end
  if failed then
    redis.call('DEL', skey)
  else
    redis.call('DEL', jkey, tkey, skey, dkey)
    redis.call('SET', ckey, 'done', 'EX', DONE_EXPIRES)
  end
  return entries
end

