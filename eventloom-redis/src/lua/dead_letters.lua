-- The dead letters of the live generation (see scripts.rs). Reads only.
local g = redis.call('GET', KEYS[1])
if not g then return {} end
return redis.call('LRANGE', ARGV[1] .. ':g' .. g .. ':dead', 0, -1)
