-- Deletes keys of one generation in the trash: the views and index lists the caller read from its
-- `:ids` and `:indexes` (see scripts.rs), and its other keys once those are empty.
local g = ARGV[1]
if redis.call('SISMEMBER', KEYS[3], g) == 0 then return {0, redis.call('SCARD', KEYS[3])} end
if g == redis.call('GET', KEYS[1]) or g == redis.call('GET', KEYS[2]) then
  redis.call('SREM', KEYS[3], g)
  return {0, redis.call('SCARD', KEYS[3])}
end
local views = tonumber(ARGV[2])
local deleted = 0
local first = 10
for i = 1, #ARGV - 2 do
  local key = KEYS[first + i - 1]
  if i <= views then
    redis.call('SREM', KEYS[5], ARGV[2 + i])
  else
    redis.call('SREM', KEYS[6], ARGV[2 + i])
  end
  deleted = deleted + redis.call('UNLINK', key)
end
if redis.call('SCARD', KEYS[5]) == 0 and redis.call('SCARD', KEYS[6]) == 0 then
  -- KEYS 8 and 9, `:version` and `:checkpoint`, are the metadata of the layout before `:meta`.
  deleted = deleted + redis.call('UNLINK', KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9])
  redis.call('SREM', KEYS[3], g)
end
return {deleted, redis.call('SCARD', KEYS[3])}
