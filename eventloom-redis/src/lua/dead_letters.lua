-- The dead letters of the live generation (see scripts.rs). Reads only.
local g = redis.call('GET', KEYS[1])
if not g then return {'0'} end
if g ~= ARGV[1] then return {'2', g} end
local out = {'1'}
for _, letter in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do out[#out + 1] = letter end
return out
