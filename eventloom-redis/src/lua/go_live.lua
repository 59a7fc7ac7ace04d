-- Makes the generation being built live (see scripts.rs for KEYS, ARGV and the replies).
if pointers_moved(KEYS[2], ARGV[3]) or pointers_moved(KEYS[3], ARGV[4]) then return {'9'} end
local generation = ARGV[1]
local live, building = ARGV[3], ARGV[4]
if live == '' then live = nil end
if building == '' then building = nil end
local live_meta = intact(live, 5)
local building_meta = intact(building, 9)
local highest = highest_token(KEYS[1], live_meta, building_meta)
if less(ARGV[2], highest) then return {'2', highest} end
if live == generation then
  if live_meta then return {'0'} end
  return {'4'}
end
if building ~= generation or not building_meta then return {'4'} end
if live_meta and before(building_meta.checkpoint, live_meta.checkpoint) then
  return {'1', building_meta.checkpoint, live_meta.checkpoint}
end
raise_token(KEYS[1], ARGV[2], live_meta and KEYS[5], building_meta and KEYS[9])
redis.call('SET', KEYS[2], generation)
redis.call('DEL', KEYS[3])
if live then redis.call('SADD', KEYS[4], live) end
return {'0'}
