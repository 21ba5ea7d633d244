-- batch.lua — the worker writer's one call per batch: acks, claims, result stores, republishes,
-- requeues, dead letters and counters, applied all together or not at all.
--
-- All or nothing: the first write is the batch marker (an error propagates, see below). A
-- server that refuses writes (OOM under noeviction, READONLY replica, MISCONF, LOADING) refuses
-- that first write of a script, so nothing of the batch is written and the writer retries it
-- whole. Later ops use `pcall`: a key of the wrong type fails that op alone (reported) instead of
-- stopping the script half-way.
-- Exactly once: the marker holds the number of the last batch this writer applied; a retry of a
-- batch whose reply was lost (connection dropped after the script ran) finds its number there
-- and applies nothing.
-- Acks run last and all stores just before them, so a result lands in the same step as its ack.
--
-- ARGV[1] marker key  ARGV[2] batch number  ARGV[3] result TTL s (0: none)
-- ARGV[4] unacked  ARGV[5] unacked_index  ARGV[6] now (unix s)
-- ARGV[7] dead-letter list  ARGV[8] dead-letter cap  ARGV[9] dead-letter trimmed counter
-- ARGV[10] the writer's completed-chords key (see chord.lua, prepended to this script)
-- ARGV[11] the pending chord bodies hash  ARGV[12] the chord bodies sent (zset)  ARGV[13] owner
-- ARGV[14] deadline (Redis's clock, unix s, float; see `redis/clock.rs`)
-- ARGV[15] hlbot.held (holder of each unacked entry: written with the entries `claim` and
-- `unacked` record, as `<owner> c` / `<owner> r`; removed with every entry this batch drops)
-- ARGV[16..] ops, each an opcode and its fields:
--   ack tag | unacked tag stored | claim list raw tag stored | drop list size | store key meta
--   requeue tag key raw | restore tag key raw | lpush key raw | rpush key raw | dead record | incr key
--   chord op group_key task_id entry index ordered(1/0) progress_key progress_id part token
--   take op field token keep(1/0) | end | forget field token | size count_key size_key n
-- Returns {'!stale', <Redis time>} and writes nothing when it arrives past its deadline: the
-- writer stopped waiting for this reply and has retried it — maybe followed by later batches,
-- which a late copy must not be applied after (the marker only knows the last batch).
-- Returns {0, done...} when the batch was already applied, else {1, error..., done..., skip...}:
-- errors are strings (per-op errors), each `done` an array {op, entry...} for a chord this batch
-- completed (op = the writer's index of the chord op), each `skip` an array {'skip', op} for a
-- `take` that found its chord body already sent by someone else. Both are kept at ARGV[10], so
-- a retry whose first reply was lost still learns them.
--
-- Chord bodies survive a SIGKILL: the step that completes a chord also records the body to send
-- (field = the chord's taskset key, value JSON {o = owner worker id, k = token, t = now,
-- p = the ChordPart JSON, e = the entries}). The body's own batch starts with `take`: it goes on
-- (and the ops up to `end` are applied) only while the record still carries its token, or the
-- record is gone and the body is not in the sent zset (Redis lost it: send rather than lose);
-- then it deletes the record and notes the body as sent — atomically with the body's publish.
-- With keep = 1 (RabbitMQ publishes the body after this batch) the record stays until the
-- writer's `forget`, sent once the broker confirmed. A worker whose owner's liveness key is gone
-- has its records re-leased by `orphans.lua` and the bodies sent by whoever took them.
-- The marker is checked and set in one `SET … GET` (Redis >= 6.2); on any error (an older server's
-- syntax error, or a refused write) it falls back to GET then SET, whose SET fails the script
-- when writes are refused, exactly as before.
local stale = late(ARGV[14])  -- deadline.lua, prepended
if stale then return stale end
local prev = redis.pcall('SET', ARGV[1], ARGV[2], 'EX', 86400, 'GET')
if type(prev) == 'table' and prev.err then
  prev = redis.call('GET', ARGV[1])
  if prev ~= ARGV[2] then redis.call('SET', ARGV[1], ARGV[2], 'EX', 86400) end
end
if prev == ARGV[2] then
  local saved = redis.call('GET', ARGV[10])
  if saved then
    local ok, d = pcall(cjson.decode, saved)
    if ok and type(d) == 'table' and d[1] == ARGV[2] then
      local out = {0}
      for _, x in ipairs(d[2]) do out[#out + 1] = x end
      return out
    end
  end
  return {0}
end

local ttl = tonumber(ARGV[3])
local unacked, index, now = ARGV[4], ARGV[5], ARGV[6]
local errs = {1}
local function try(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then errs[#errs + 1] = r.err end
  return r
end

local pending, sent, owner, held = ARGV[11], ARGV[12], ARGV[13], ARGV[15]
-- Field counts of the ops a lost `take` skips (up to its `end`).
local WIDTH = {ack = 2, store = 3, unacked = 3, claim = 5, drop = 3, requeue = 4, restore = 4,
  lpush = 3, rpush = 3, dead = 2, chord = 11, incr = 2, forget = 3, size = 4}
local function sent_once(field)
  try('HDEL', pending, field)
  try('ZADD', sent, now, field)
end
-- Whether `field` has a pending record, and whether it carries `token`.
local function holds(field, token)
  local cur = redis.call('HGET', pending, field)
  if not cur then return false, false end
  local ok, rec = pcall(cjson.decode, cur)
  return true, ok and type(rec) == 'table' and rec.k == token
end

local acks, skeys, smetas, done, skipped = {}, {}, {}, {}, {}
local skip = false
local i = 16
while i <= #ARGV do
  local op = ARGV[i]
  if skip and WIDTH[op] then
    i = i + WIDTH[op]
  elseif op == 'take' then
    local field = ARGV[i + 2]
    local present, ours = holds(field, ARGV[i + 3])
    if present then
      skip = not ours
    else
      skip = redis.call('ZSCORE', sent, field) ~= false
    end
    if skip then
      skipped[#skipped + 1] = {'skip', tonumber(ARGV[i + 1])}
    elseif ARGV[i + 4] ~= '1' then
      sent_once(field)
    end
    i = i + 5
  elseif op == 'end' then
    skip = false; i = i + 1
  elseif op == 'forget' then
    local _, ours = holds(ARGV[i + 1], ARGV[i + 2])
    if ours then sent_once(ARGV[i + 1]) end
    i = i + 3
  elseif op == 'ack' then
    acks[#acks + 1] = ARGV[i + 1]; i = i + 2
  elseif op == 'store' then
    skeys[#skeys + 1] = ARGV[i + 1]; smetas[#smetas + 1] = ARGV[i + 2]; i = i + 3
  elseif op == 'unacked' then
    try('HSET', unacked, ARGV[i + 1], ARGV[i + 2])
    try('ZADD', index, now, ARGV[i + 1])
    try('HSET', held, ARGV[i + 1], owner .. ' r')
    i = i + 3
  elseif op == 'claim' then
    -- A message the idle wait moved into this worker's in-flight list: record it as unacked
    -- only if it is still there (an ack may already have taken it out).
    local moved = try('LREM', ARGV[i + 1], 1, ARGV[i + 2])
    if moved == 1 and ARGV[i + 3] ~= '' then
      try('HSET', unacked, ARGV[i + 3], ARGV[i + 4])
      try('ZADD', index, now, ARGV[i + 3])
      try('HSET', held, ARGV[i + 3], owner .. ' c')
    end
    i = i + 5
  elseif op == 'drop' then
    -- An over-size message the idle wait moved (it is dead-lettered as a truncated copy): take
    -- it out of the in-flight list by its size, so its bytes never cross the network again.
    local size = tonumber(ARGV[i + 2])
    local items = redis.call('LRANGE', ARGV[i + 1], 0, -1)
    for _, v in ipairs(items) do
      if #v == size then try('LREM', ARGV[i + 1], 1, v) break end
    end
    i = i + 3
  elseif op == 'requeue' then
    if try('HDEL', unacked, ARGV[i + 1]) == 1 then
      try('ZREM', index, ARGV[i + 1])
      try('HDEL', held, ARGV[i + 1])
      try('LPUSH', ARGV[i + 2], ARGV[i + 3])
    end
    i = i + 4
  elseif op == 'restore' then
    if try('HDEL', unacked, ARGV[i + 1]) == 1 then
      try('ZREM', index, ARGV[i + 1])
      try('HDEL', held, ARGV[i + 1])
      try('RPUSH', ARGV[i + 2], ARGV[i + 3])
    end
    i = i + 4
  elseif op == 'lpush' then
    try('LPUSH', ARGV[i + 1], ARGV[i + 2]); i = i + 3
  elseif op == 'rpush' then
    try('RPUSH', ARGV[i + 1], ARGV[i + 2]); i = i + 3
  elseif op == 'dead' then
    try('LPUSH', ARGV[7], ARGV[i + 1])
    local cap = tonumber(ARGV[8])
    if cap and cap > 0 then
      local over = redis.call('LLEN', ARGV[7]) - cap
      if over > 0 then
        try('LTRIM', ARGV[7], 0, cap - 1)
        try('INCRBY', ARGV[9], over)
      end
    end
    i = i + 2
  elseif op == 'chord' then
    local ok, r = pcall(chord_part, ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5],
      ARGV[i + 6] == '1', ttl, ARGV[i + 7], ARGV[i + 8])
    if not ok then
      errs[#errs + 1] = 'chord ' .. ARGV[i + 2] .. ': ' .. tostring(type(r) == 'table' and r.err or r)
    elseif r then
      local d = {tonumber(ARGV[i + 1])}
      for _, e in ipairs(r) do d[#d + 1] = e end
      done[#done + 1] = d
      try('HSET', pending, ARGV[i + 2], cjson.encode({o = owner, k = ARGV[i + 10],
        t = tonumber(now), p = ARGV[i + 9], e = r}))
    end
    i = i + 11
  elseif op == 'incr' then
    try('INCR', ARGV[i + 1]); i = i + 2
  elseif op == 'size' then
    -- A chord a task sent (a chain step): its header size, before its header tasks (set_chord_size).
    try('DEL', ARGV[i + 1])
    if ttl and ttl > 0 then try('SET', ARGV[i + 2], ARGV[i + 3], 'EX', ttl)
    else try('SET', ARGV[i + 2], ARGV[i + 3]) end
    i = i + 4
  else
    return redis.error_reply('batch.lua: unknown op ' .. tostring(op))
  end
end

-- Stores: never over a SUCCESS (a key stored twice here is checked against its first write).
if #skeys > 0 then
  local cur = {}
  for s = 1, #skeys, 1000 do
    local chunk = {}
    for k = s, math.min(s + 999, #skeys) do chunk[#chunk + 1] = skeys[k] end
    local got = redis.call('MGET', unpack(chunk))
    for k = 1, #chunk do cur[s + k - 1] = got[k] end
  end
  local written = {}
  for k, key in ipairs(skeys) do
    local skip = succeeded(written[key] or cur[k])
    if not skip then
      local meta = smetas[k]
      if ttl and ttl > 0 then try('SETEX', key, ttl, meta) else try('SET', key, meta) end
      try('PUBLISH', key, meta)
      written[key] = meta
    end
  end
end

-- Acks last, in one ZREM and one HDEL (unpack stays small).
for s = 1, #acks, 1000 do
  local chunk = {}
  for k = s, math.min(s + 999, #acks) do chunk[#chunk + 1] = acks[k] end
  try('ZREM', index, unpack(chunk))
  try('HDEL', unacked, unpack(chunk))
  try('HDEL', held, unpack(chunk))
end
for _, d in ipairs(skipped) do done[#done + 1] = d end
if #done > 0 then
  try('SET', ARGV[10], cjson.encode({ARGV[2], done}), 'EX', 86400)
  for _, d in ipairs(done) do errs[#errs + 1] = d end
end
return errs
