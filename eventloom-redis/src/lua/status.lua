-- The live and the building generation, and the recorded stop (see scripts.rs). Reads only.
if pointers_moved(KEYS[1], ARGV[1]) or pointers_moved(KEYS[2], ARGV[2]) then return {'9'} end
local out = {}
for i = 1, 2 do
  local g = ARGV[i]
  if g == '' then g = nil end
  local meta = intact(g, 4 * i)
  if meta then
    out[#out + 1] = g
    out[#out + 1] = meta.version
    out[#out + 1] = meta.checkpoint
    out[#out + 1] = 'ok'
  elseif g then
    out[#out + 1] = g
    out[#out + 1] = ''
    out[#out + 1] = ''
    out[#out + 1] = 'lost'
  else
    out[#out + 1] = ''
    out[#out + 1] = ''
    out[#out + 1] = ''
    out[#out + 1] = ''
  end
end
local stop = redis.call('HMGET', KEYS[3], 'kind', 'position', 'reason', 'generation', 'checkpoint')
for i = 1, 5 do out[#out + 1] = stop[i] or '' end
return out
