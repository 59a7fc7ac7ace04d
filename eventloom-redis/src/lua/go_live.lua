-- Makes the generation being built live (see scripts.rs for KEYS, ARGV and the replies).
local base = ARGV[3]
local generation = ARGV[1]
local live = redis.call('GET', KEYS[2])
local building = redis.call('GET', KEYS[3])
local live_meta = intact(base, live)
local building_meta = intact(base, building)
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
raise_token(KEYS[1], base, ARGV[2], live, live_meta, building, building_meta)
redis.call('SET', KEYS[2], generation)
redis.call('DEL', KEYS[3])
if live then redis.call('SADD', KEYS[4], live) end
return {'0'}
