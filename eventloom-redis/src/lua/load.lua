-- The views of one generation, for the projector (see scripts.rs).
local g = ARGV[1]
local current = g == redis.call('GET', KEYS[1]) or g == redis.call('GET', KEYS[2])
if current and not intact(g, 3) then return {'4'} end
local out = {'0'}
for i = 7, #KEYS do
  local view = redis.call('GET', KEYS[i])
  -- A view the generation has (its id is in `:ids`) whose key is missing was lost.
  if not view and current and redis.call('SISMEMBER', KEYS[4], ARGV[i - 5]) == 1 then
    mark_lost(KEYS[3], 'view ' .. KEYS[i] .. ' missing')
    return {'4'}
  end
  out[#out + 1] = view
end
return out
