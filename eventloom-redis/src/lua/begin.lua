-- Begins a generation (see scripts.rs for KEYS, ARGV and the replies).
local base = ARGV[3]
local live = redis.call('GET', KEYS[2])
local building = redis.call('GET', KEYS[3])
local live_meta = intact(base, live)
local building_meta = intact(base, building)
local highest = highest_token(KEYS[1], live_meta, building_meta)
if less(ARGV[1], highest) then return {'2', highest} end
-- Above every id the projection still holds, so that "newer is higher" holds even when the
-- clock of the process that proposed `ARGV[4]` is behind.
local top = redis.call('GET', KEYS[4]) or '0'
if live then top = larger(top, live) end
if building then top = larger(top, building) end
for _, g in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  if string.find(g, '^%d+$') then top = larger(top, g) end
end
local id = ARGV[4]
if not less(top, id) then id = succ(top) end
-- Never an id whose keys are still there (a generation whose pointers were lost, so that no
-- bound above saw it): its views would be taken for a new generation's.
local function taken(g)
  local prefix = base .. ':g' .. g
  return redis.call('EXISTS', prefix .. ':meta', prefix .. ':ids', prefix .. ':indexes', prefix .. ':dead') > 0
end
for _ = 1, 64 do
  if not taken(id) then break end
  id = succ(id)
end
if taken(id) then return redis.error_reply('no free generation id near ' .. id) end
raise_token(KEYS[1], base, ARGV[1], live, live_meta, building, building_meta)
if building then redis.call('SADD', KEYS[5], building) end
-- A live generation that is lost goes too: queries answer NotBuilt until the new one is live,
-- rather than read views some of which may be missing.
if live and not live_meta then
  redis.call('SADD', KEYS[5], live)
  redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[4], id)
redis.call('SET', KEYS[3], id)
redis.call('HSET', base .. ':g' .. id .. ':meta', 'version', ARGV[2], 'checkpoint', NO_CHECKPOINT,
  'token', ARGV[1], 'views', 0, 'lists', 0, 'dead', 0)
return {'0', id}
