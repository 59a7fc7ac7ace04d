-- Applies a ViewCommit (see scripts.rs for KEYS, ARGV and the replies).

-- How many of the generation's views, and of its index lists, each commit checks are there.
local SAMPLE = 3
local function kind(key) return redis.call('TYPE', key).ok end
local expect = {'string', 'string', 'string', 'hash', 'set', 'set', 'list'}
for i = 1, 7 do
  local t = kind(KEYS[i])
  if t ~= 'none' and t ~= expect[i] then return {'3', KEYS[i]} end
end
local n = tonumber(ARGV[5])
local m = tonumber(ARGV[6])
for i = 8, 7 + n do
  local t = kind(KEYS[i])
  if t ~= 'none' and t ~= 'string' then return {'3', KEYS[i]} end
end
for i = 8 + n, 7 + n + m do
  local t = kind(KEYS[i])
  if t ~= 'none' and t ~= 'zset' then return {'3', KEYS[i]} end
end
local base = ARGV[7]
local generation = ARGV[1]
local live = redis.call('GET', KEYS[2])
local building = redis.call('GET', KEYS[3])
local live_meta = intact(base, live)
local building_meta = intact(base, building)
local highest = highest_token(KEYS[1], live_meta, building_meta)
local token = ARGV[4]
if less(token, highest) then return {'2', highest} end
local meta
if generation == live then meta = live_meta elseif generation == building then meta = building_meta end
if not meta then return {'4'} end
-- An index list the generation had and no longer has was lost: so is the generation.
local lists = 7 + n
for slot = 1, m do
  local list = KEYS[lists + slot]
  if redis.call('EXISTS', list) == 0 and redis.call('SISMEMBER', KEYS[6], ARGV[7 + slot]) == 1 then
    mark_lost(base, generation, 'index list ' .. list .. ' missing')
    return {'4'}
  end
end
-- So is a view or an index list it has whose key is missing: a few of each, picked at random, are
-- looked at by every commit (those no batch touches are noticed too, in a few batches).
for _, id in ipairs(redis.call('SRANDMEMBER', KEYS[5], SAMPLE)) do
  if redis.call('EXISTS', base .. ':g' .. generation .. ':v:' .. id) == 0 then
    mark_lost(base, generation, 'view ' .. id .. ' missing')
    return {'4'}
  end
end
for _, suffix in ipairs(redis.call('SRANDMEMBER', KEYS[6], SAMPLE)) do
  if redis.call('EXISTS', base .. ':g' .. generation .. ':i:' .. suffix) == 0 then
    mark_lost(base, generation, 'index list ' .. suffix .. ' missing')
    return {'4'}
  end
end
-- As the in-memory store: a writer with a newer token that reached a current generation fences
-- older writers, even when its checkpoint turns out to have moved.
if token ~= highest then raise_token(KEYS[1], base, token, live, live_meta, building, building_meta) end
if meta.checkpoint ~= ARGV[2] then return {'1', meta.checkpoint} end
local a = 7 + m
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
    redis.call('SET', KEYS[7 + j], string.sub(op, 2))
    redis.call('SADD', KEYS[5], id)
  else
    redis.call('DEL', KEYS[7 + j])
    redis.call('SREM', KEYS[5], id)
  end
end
for slot = 1, m do
  if redis.call('EXISTS', KEYS[lists + slot]) == 1 then
    redis.call('SADD', KEYS[6], ARGV[7 + slot])
  else
    redis.call('SREM', KEYS[6], ARGV[7 + slot])
  end
end
for k = a + 1, #ARGV do
  redis.call('RPUSH', KEYS[7], ARGV[k])
end
redis.call('HSET', KEYS[4], 'checkpoint', ARGV[3], 'views', redis.call('SCARD', KEYS[5]),
  'lists', redis.call('SCARD', KEYS[6]), 'dead', redis.call('LLEN', KEYS[7]))
return {'0'}
