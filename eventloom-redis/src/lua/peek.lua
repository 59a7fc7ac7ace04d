-- What a commit reads before it builds its KEYS (see scripts.rs). Reads only.
local out = {redis.call('GET', KEYS[1]) or '', redis.call('GET', KEYS[2]) or ''}
local samples = {{}, {}}
for i = 1, 2 do
  if redis.call('TYPE', KEYS[2 + i]).ok == 'set' then
    samples[i] = redis.call('SRANDMEMBER', KEYS[2 + i], ARGV[1])
  end
end
out[3] = tostring(#samples[1])
for i = 1, 2 do
  for _, member in ipairs(samples[i]) do out[#out + 1] = member end
end
return out
