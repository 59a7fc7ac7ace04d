-- Applies a ViewCommit (see scripts.rs for KEYS, ARGV and the replies).
local function kind(key) return redis.call('TYPE', key).ok end
local n = tonumber(ARGV[5])
local m = tonumber(ARGV[6])
local s = tonumber(ARGV[9])
local u = tonumber(ARGV[10])
local views = 15
local lists = views + n
-- Every key the commit writes holds its type, or nothing.
local function wrong_type()
  local expect = {'string', 'string', 'string', 'hash', 'set', 'set', 'list',
    'hash', 'set', 'set', 'list', 'hash', 'set', 'set', 'list'}
  for i = 1, 15 do
    local t = kind(KEYS[i])
    if t ~= 'none' and t ~= expect[i] then return {'3', KEYS[i]} end
  end
  for i = views + 1, views + n do
    local t = kind(KEYS[i])
    if t ~= 'none' and t ~= 'string' then return {'3', KEYS[i]} end
  end
  for i = lists + 1, lists + m do
    local t = kind(KEYS[i])
    if t ~= 'none' and t ~= 'zset' then return {'3', KEYS[i]} end
  end
  return nil
end
local f, refused = fence(ARGV[4], ARGV[7], ARGV[8], 8, 12, wrong_type)
if not f then return refused end
local generation = ARGV[1]
local meta
if generation == f.live then meta = f.live_meta elseif generation == f.building then meta = f.building_meta end
if not meta then return {'4'} end
local suffixes = 11
-- An index list the generation had and no longer has was lost: so is the generation.
for slot = 1, m do
  local list = KEYS[lists + slot]
  if redis.call('EXISTS', list) == 0 and redis.call('SISMEMBER', KEYS[6], ARGV[suffixes + slot]) == 1 then
    mark_lost(KEYS[4], 'index list ' .. list .. ' missing')
    return {'4'}
  end
end
-- So is a view or an index list it has whose key is missing: a few of each, picked at random by
-- the caller's read before this script, are looked at by every commit (those no batch touches
-- are noticed too, in a few batches).
local sampled = lists + m
local sample_args = suffixes + m
for j = 1, s + u do
  local member = ARGV[sample_args + j]
  local set = KEYS[5]
  if j > s then set = KEYS[6] end
  if redis.call('EXISTS', KEYS[sampled + j]) == 0 and redis.call('SISMEMBER', set, member) == 1 then
    local what = 'view '
    if j > s then what = 'index list ' end
    mark_lost(KEYS[4], what .. member .. ' missing')
    return {'4'}
  end
end
-- As the in-memory store: a writer with a newer token that reached a current generation fences
-- older writers, even when its checkpoint turns out to have moved.
raise(f)
if meta.checkpoint ~= ARGV[2] then return {'1', meta.checkpoint} end
local a = sample_args + s + u
for j = 1, n do
  local id = ARGV[a + 1]
  local op = ARGV[a + 2]
  a = a + 3
  for _ = 1, tonumber(ARGV[a]) do
    redis.call('ZREM', KEYS[lists + tonumber(ARGV[a + 1])], ARGV[a + 2])
    a = a + 2
  end
  a = a + 1
  for _ = 1, tonumber(ARGV[a]) do
    redis.call('ZADD', KEYS[lists + tonumber(ARGV[a + 1])], 0, ARGV[a + 2])
    a = a + 2
  end
  if string.sub(op, 1, 1) == 's' then
    redis.call('SET', KEYS[views + j], string.sub(op, 2))
    redis.call('SADD', KEYS[5], id)
  else
    redis.call('DEL', KEYS[views + j])
    redis.call('SREM', KEYS[5], id)
  end
end
for slot = 1, m do
  if redis.call('EXISTS', KEYS[lists + slot]) == 1 then
    redis.call('SADD', KEYS[6], ARGV[suffixes + slot])
  else
    redis.call('SREM', KEYS[6], ARGV[suffixes + slot])
  end
end
-- The dead letters the batch resolves leave before its own are added: one retried that failed
-- again is among both, and is replaced by its new reason.
local r = tonumber(ARGV[a + 1])
if r > 0 then
  local wanted = {}
  for k = a + 2, a + 1 + r do wanted[ARGV[k]] = true end
  remove_letters(KEYS[7], wanted)
end
-- Then the channel readers hear of commits on, and the projection's name (a channel is not a
-- key: PUBLISH reaches the subscribers of every node).
local channel = ARGV[a + 2 + r]
local projection = ARGV[a + 3 + r]
for k = a + 4 + r, #ARGV do
  redis.call('RPUSH', KEYS[7], ARGV[k])
end
redis.call('HSET', KEYS[4], 'checkpoint', ARGV[3], 'views', redis.call('SCARD', KEYS[5]),
  'lists', redis.call('SCARD', KEYS[6]), 'dead', redis.call('LLEN', KEYS[7]))
-- What the next commit of this generation needs, as the peek script answers it: the pointers,
-- and the views and index lists it will look at.
local out = {'0', redis.call('GET', KEYS[2]) or '', redis.call('GET', KEYS[3]) or ''}
local next_views = redis.call('SRANDMEMBER', KEYS[5], ARGV[11])
local next_lists = redis.call('SRANDMEMBER', KEYS[6], ARGV[11])
out[4] = tostring(#next_views)
for _, id in ipairs(next_views) do out[#out + 1] = id end
for _, suffix in ipairs(next_lists) do out[#out + 1] = suffix end
-- Readers waiting for the checkpoint, in any process, hear of it now.
if channel ~= '' then redis.call('PUBLISH', channel, projection) end
return out
