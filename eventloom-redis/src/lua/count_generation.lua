-- How many members index lists of one generation hold, whichever it is (see scripts.rs). Reads
-- only. A generation in the trash is dropped (its keys may still be being deleted): it holds none.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {'0'} end
local out = {'1'}
for i = 2, #KEYS do
  out[#out + 1] = tostring(redis.call('ZCARD', KEYS[i]))
end
return out
