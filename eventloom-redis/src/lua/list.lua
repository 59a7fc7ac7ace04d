-- One page of an index list of the live generation (see scripts.rs), members from ARGV[3] to
-- ARGV[5] (ZRANGEBYLEX bounds), at most ARGV[4]. Reads only.
local g = redis.call('GET', KEYS[1])
if not g then return {'0'} end
local gen = ARGV[1] .. ':g' .. g
local members = redis.call('ZRANGEBYLEX', gen .. ':i:' .. ARGV[2], ARGV[3], ARGV[5], 'LIMIT', 0, ARGV[4])
local out = {'1', g}
for _, member in ipairs(members) do
  local sep = string.find(member, '\0', 1, true)
  local id = sep and string.sub(member, sep + 1) or member
  out[#out + 1] = member
  out[#out + 1] = redis.call('GET', gen .. ':v:' .. id)
end
return out
