-- Begins a generation (see scripts.rs for KEYS, ARGV and the replies).
local f, refused = fence(ARGV[1], ARGV[3], ARGV[4], 6, 10)
if not f then return refused end
local live, building, live_meta = f.live, f.building, f.live_meta
-- Above every id the projection still holds, so that "newer is higher" holds even when the
-- clock of the process that proposed `ARGV[5]` is behind.
local top = redis.call('GET', KEYS[4]) or '0'
if live then top = larger(top, live) end
if building then top = larger(top, building) end
for _, g in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  if string.find(g, '^%d+$') then top = larger(top, g) end
end
local id = ARGV[5]
if not less(top, id) then return {'5', succ(top)} end
-- Never an id whose keys are still there (a generation whose pointers were lost, so that no
-- bound above saw it): its views would be taken for a new generation's. KEYS 14 to 17 are the
-- keys of the proposed id.
if redis.call('EXISTS', KEYS[14], KEYS[15], KEYS[16], KEYS[17]) > 0 then return {'5', succ(id)} end
raise_token(KEYS[1], ARGV[1], f.live_meta_key, f.building_meta_key)
if building then redis.call('SADD', KEYS[5], building) end
-- A live generation that is lost goes too: queries answer NotBuilt until the new one is live,
-- rather than read views some of which may be missing.
if live and not live_meta then
  redis.call('SADD', KEYS[5], live)
  redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[4], id)
redis.call('SET', KEYS[3], id)
redis.call('HSET', KEYS[14], 'version', ARGV[2], 'checkpoint', NO_CHECKPOINT,
  'token', ARGV[1], 'views', 0, 'lists', 0, 'dead', 0)
return {'0', id}
