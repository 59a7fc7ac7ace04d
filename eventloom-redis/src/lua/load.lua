-- The views of one generation, for the projector (see scripts.rs).
local base = ARGV[1]
local g = ARGV[2]
local current = g == redis.call('GET', KEYS[1]) or g == redis.call('GET', KEYS[2])
if current and not intact(base, g) then return {'4'} end
local out = {'0'}
for i = 4, #KEYS do
  local view = redis.call('GET', KEYS[i])
  -- A view the generation has (its id is in `:ids`) whose key is missing was lost.
  if not view and current and redis.call('SISMEMBER', KEYS[3], ARGV[i - 1]) == 1 then
    mark_lost(base, g, 'view ' .. KEYS[i] .. ' missing')
    return {'4'}
  end
  out[#out + 1] = view
end
return out
