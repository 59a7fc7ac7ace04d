-- How many members index lists of the live generation hold (see scripts.rs). Reads only.
local g = redis.call('GET', KEYS[1])
if not g then return {0} end
local gen = ARGV[1] .. ':g' .. g .. ':i:'
local out = {1}
for i = 2, #ARGV do
  out[#out + 1] = redis.call('ZCARD', gen .. ARGV[i])
end
return out
