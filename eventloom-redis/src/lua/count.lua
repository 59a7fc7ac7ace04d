-- How many members index lists of the live generation hold (see scripts.rs). Reads only.
local g = redis.call('GET', KEYS[1])
if not g then return {'0'} end
if g ~= ARGV[1] then return {'2', g} end
local out = {'1'}
for i = 2, #KEYS do
  out[#out + 1] = tostring(redis.call('ZCARD', KEYS[i]))
end
return out
