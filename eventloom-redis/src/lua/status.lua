-- The live and the building generation, and the recorded stop (see scripts.rs). Reads only.
local out = {}
for i = 1, 2 do
  local g = redis.call('GET', KEYS[i])
  local meta = intact(ARGV[1], g)
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
