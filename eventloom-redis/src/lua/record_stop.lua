-- Records why a projection stopped, or clears it (see scripts.rs for KEYS, ARGV and the replies).
if pointers_moved(KEYS[2], ARGV[7]) or pointers_moved(KEYS[3], ARGV[8]) then return {'9'} end
local live, building = ARGV[7], ARGV[8]
if live == '' then live = nil end
if building == '' then building = nil end
local live_meta = intact(live, 5)
local building_meta = intact(building, 9)
local highest = highest_token(KEYS[1], live_meta, building_meta)
if less(ARGV[1], highest) then return {'2', highest} end
local t = redis.call('TYPE', KEYS[4]).ok
if t ~= 'none' and t ~= 'hash' then return {'3', KEYS[4]} end
if ARGV[1] ~= highest then
  raise_token(KEYS[1], ARGV[1], live_meta and KEYS[5], building_meta and KEYS[9])
end
redis.call('DEL', KEYS[4])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[4], 'kind', ARGV[2], 'position', ARGV[3], 'reason', ARGV[4],
    'generation', ARGV[5], 'checkpoint', ARGV[6])
end
return {'0'}
