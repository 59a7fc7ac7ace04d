-- Records why a projection stopped, or clears it (see scripts.rs for KEYS, ARGV and the replies).
local base = ARGV[1]
local live = redis.call('GET', KEYS[2])
local building = redis.call('GET', KEYS[3])
local live_meta = intact(base, live)
local building_meta = intact(base, building)
local highest = highest_token(KEYS[1], live_meta, building_meta)
if less(ARGV[2], highest) then return {'2', highest} end
local t = redis.call('TYPE', KEYS[4]).ok
if t ~= 'none' and t ~= 'hash' then return {'3', KEYS[4]} end
if ARGV[2] ~= highest then
  raise_token(KEYS[1], base, ARGV[2], live, live_meta, building, building_meta)
end
redis.call('DEL', KEYS[4])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[4], 'kind', ARGV[3], 'position', ARGV[4], 'reason', ARGV[5],
    'generation', ARGV[6], 'checkpoint', ARGV[7])
end
return {'0'}
