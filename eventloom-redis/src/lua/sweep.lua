-- Deletes up to a budget of keys of the generations in the trash (see scripts.rs).
local budget = tonumber(ARGV[2])
local deleted = 0
local live = redis.call('GET', KEYS[1])
local building = redis.call('GET', KEYS[2])
while budget > 0 do
  local g = redis.call('SRANDMEMBER', KEYS[3])
  if not g then return {deleted, 0} end
  if g == live or g == building then
    redis.call('SREM', KEYS[3], g)
  else
    local gen = ARGV[1] .. ':g' .. g
    local ids = redis.call('SPOP', gen .. ':ids', budget)
    for _, id in ipairs(ids) do redis.call('UNLINK', gen .. ':v:' .. id) end
    budget = budget - #ids
    deleted = deleted + #ids
    if budget > 0 then
      local lists = redis.call('SPOP', gen .. ':indexes', budget)
      for _, suffix in ipairs(lists) do redis.call('UNLINK', gen .. ':i:' .. suffix) end
      budget = budget - #lists
      deleted = deleted + #lists
    end
    if budget > 0 then
      -- `:version` and `:checkpoint` are the metadata of the layout before `:meta`.
      deleted = deleted + redis.call('UNLINK', gen .. ':meta', gen .. ':dead', gen .. ':version', gen .. ':checkpoint')
      redis.call('SREM', KEYS[3], g)
      budget = budget - 1
    end
  end
end
return {deleted, 1}
