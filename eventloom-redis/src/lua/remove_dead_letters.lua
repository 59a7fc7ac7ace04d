-- Removes dead letters of the live generation, fenced like a commit (see scripts.rs for KEYS,
-- ARGV and the replies).
local selected = ARGV[2]
local count = 0
if selected ~= 'all' then count = tonumber(selected) end
local f, refused = fence(ARGV[1], ARGV[3 + count], ARGV[4 + count], 4, 8)
if not f then return refused end
local t = redis.call('TYPE', KEYS[7]).ok
if t ~= 'none' and t ~= 'list' then return {'3', KEYS[7]} end
-- A projection the store never saw (no pointer, no token): nothing to remove, and no key made.
if not f.live and not f.building and redis.call('EXISTS', KEYS[1]) == 0 then return {'0', '0'} end
-- Everything is checked: from here on it writes.
raise(f)
if not f.live_meta then return {'0', '0'} end
local wanted = nil
if selected ~= 'all' then
  wanted = {}
  for i = 3, 2 + count do wanted[ARGV[i]] = true end
end
local removed, kept = remove_letters(KEYS[7], wanted)
if removed > 0 then redis.call('HSET', KEYS[4], 'dead', kept) end
return {'0', tostring(removed)}
