-- One page of an index list of one generation, whichever it is (see scripts.rs), members from
-- ARGV[2] to ARGV[4] (ZRANGEBYLEX bounds), at most ARGV[3]. Reads only.
-- A generation in the trash is dropped (its keys may still be being deleted): it lists nothing.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {'0'} end
local members = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[2], ARGV[4], 'LIMIT', 0, ARGV[3])
-- The views' keys (KEYS 3 on) are those of the members the caller expects (ARGV 5 on): a page
-- that holds others is answered with its members, for the caller to ask again.
local same = #members == #ARGV - 4
if same then
  for i, member in ipairs(members) do
    if member ~= ARGV[4 + i] then
      same = false
      break
    end
  end
end
if not same then
  local out = {'3'}
  for _, member in ipairs(members) do out[#out + 1] = member end
  return out
end
local out = {'1'}
for i, member in ipairs(members) do
  out[#out + 1] = member
  out[#out + 1] = redis.call('GET', KEYS[2 + i])
end
return out
