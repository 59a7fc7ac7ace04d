-- Records why a projection stopped, or clears it (see scripts.rs for KEYS, ARGV and the replies).
local f, refused = fence(ARGV[1], ARGV[7], ARGV[8], 5, 9)
if not f then return refused end
local t = redis.call('TYPE', KEYS[4]).ok
if t ~= 'none' and t ~= 'hash' then return {'3', KEYS[4]} end
raise(f)
redis.call('DEL', KEYS[4])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[4], 'kind', ARGV[2], 'position', ARGV[3], 'reason', ARGV[4],
    'generation', ARGV[5], 'checkpoint', ARGV[6])
end
return {'0'}
