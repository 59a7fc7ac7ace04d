-- Removes dead letters of the live generation, fenced like a commit (see scripts.rs for KEYS,
-- ARGV and the replies).
local selected = ARGV[2]
local count = 0
if selected ~= 'all' then count = tonumber(selected) end
local live, building = ARGV[3 + count], ARGV[4 + count]
if pointers_moved(KEYS[2], live) or pointers_moved(KEYS[3], building) then return {'9'} end
if live == '' then live = nil end
if building == '' then building = nil end
local live_meta = intact(live, 4)
local building_meta = intact(building, 8)
local highest = highest_token(KEYS[1], live_meta, building_meta)
if less(ARGV[1], highest) then return {'2', highest} end
local t = redis.call('TYPE', KEYS[7]).ok
if t ~= 'none' and t ~= 'list' then return {'3', KEYS[7]} end
-- Everything is checked: from here on it writes.
if ARGV[1] ~= highest then
  raise_token(KEYS[1], ARGV[1], live_meta and KEYS[4], building_meta and KEYS[8])
end
if not live_meta then return {'0', '0'} end
local wanted = {}
for i = 3, 2 + count do wanted[ARGV[i]] = true end
local kept = {}
local removed = 0
for _, letter in ipairs(redis.call('LRANGE', KEYS[7], 0, -1)) do
  local ok, decoded = pcall(cjson.decode, letter)
  if selected == 'all' or (ok and type(decoded) == 'table' and wanted[decoded.position]) then
    removed = removed + 1
  else
    kept[#kept + 1] = letter
  end
end
if removed > 0 then
  redis.call('DEL', KEYS[7])
  for i = 1, #kept, 1000 do
    redis.call('RPUSH', KEYS[7], unpack(kept, i, math.min(i + 999, #kept)))
  end
  redis.call('HSET', KEYS[4], 'dead', #kept)
end
return {'0', tostring(removed)}
