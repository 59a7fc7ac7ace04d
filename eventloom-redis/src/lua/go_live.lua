-- Makes the generation being built live (see scripts.rs for KEYS, ARGV and the replies).
local f, refused = fence(ARGV[2], ARGV[3], ARGV[4], 5, 9)
if not f then return refused end
local generation = ARGV[1]
local live, building, live_meta, building_meta = f.live, f.building, f.live_meta, f.building_meta
if live == generation then
  if live_meta then return {'0'} end
  return {'4'}
end
if building ~= generation or not building_meta then return {'4'} end
if live_meta and before(building_meta.checkpoint, live_meta.checkpoint) then
  return {'1', building_meta.checkpoint, live_meta.checkpoint}
end
raise_token(KEYS[1], ARGV[2], f.live_meta_key, f.building_meta_key)
redis.call('SET', KEYS[2], generation)
redis.call('DEL', KEYS[3])
if live then redis.call('SADD', KEYS[4], live) end
return {'0'}
