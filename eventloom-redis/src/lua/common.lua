-- Helpers every script of the view store starts with (scripts.rs prepends this file).
--
-- Fencing tokens, checkpoints and generation ids are compared as decimal strings: Lua numbers
-- are doubles, exact only to 2^53, and generation ids are about 2^60.

-- Whether the decimal string `a` is below `b` (no leading zeros).
local function less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

-- The larger of two decimal strings.
local function larger(a, b)
  if less(a, b) then return b end
  return a
end

-- The decimal string one above `a`.
local function succ(a)
  local digits = {}
  for i = 1, #a do digits[i] = string.byte(a, i) - 48 end
  local i = #digits
  while i >= 1 and digits[i] == 9 do
    digits[i] = 0
    i = i - 1
  end
  if i == 0 then table.insert(digits, 1, 1) else digits[i] = digits[i] + 1 end
  for j = 1, #digits do digits[j] = string.char(digits[j] + 48) end
  return table.concat(digits)
end

-- Whether the checkpoint `a` ("tx.seq", both decimal; '' for none, before every other) is
-- below `b`.
local function before(a, b)
  if b == '' then return false end
  if a == '' then return true end
  local i = string.find(a, '.', 1, true)
  local j = string.find(b, '.', 1, true)
  if not i or not j then error('a stored checkpoint is not "tx.seq"') end
  local atx, btx = string.sub(a, 1, i - 1), string.sub(b, 1, j - 1)
  if atx ~= btx then return less(atx, btx) end
  return less(string.sub(a, i + 1), string.sub(b, j + 1))
end

-- The checkpoint a generation's metadata holds for "none yet" (begin_generation writes it, so
-- that a missing checkpoint is never read as "none").
local NO_CHECKPOINT = 'none'

-- The fields of a generation's metadata hash `<gen>:meta`, all written by begin_generation.
-- `lost` is only there once a script found one of the generation's keys missing.
local FIELDS = {'version', 'checkpoint', 'token', 'views', 'lists', 'dead', 'lost'}

-- Every key a script touches is one of its KEYS (a cluster routes and checks only those). A
-- generation's keys come as four KEYS in a row, from `i`: its metadata hash `:meta`, the set of
-- its view ids `:ids`, the set of its index lists `:indexes` and its dead-letter list `:dead`.
-- A script that follows the `live` or `building` pointer gets the keys of the generations the
-- caller read there (ARGV), and first checks that the pointers still name them (`pointers_moved`).

-- Whether the pointer key `key` names another generation than `expected` ('' for none): the
-- caller read it before building the KEYS and must read it again.
local function pointers_moved(key, expected)
  return (redis.call('GET', key) or '') ~= expected
end

-- The metadata of the generation `g` whose four keys start at KEYS[i], as a table (`checkpoint`
-- '' for none), or nil when the generation is lost: its metadata hash, or a field of it, is
-- missing (evicted, deleted), a script marked it lost, or the sets of its view ids and index
-- lists or its dead-letter list do not hold what its last commit left (evicted).
local function intact(g, i)
  if not g then return nil end
  local m = redis.call('HMGET', KEYS[i], unpack(FIELDS))
  for f = 1, 6 do
    if not m[f] then return nil end
  end
  if m[7] then return nil end
  if tostring(redis.call('SCARD', KEYS[i + 1])) ~= m[4]
    or tostring(redis.call('SCARD', KEYS[i + 2])) ~= m[5]
    or tostring(redis.call('LLEN', KEYS[i + 3])) ~= m[6] then
    return nil
  end
  local checkpoint = m[2]
  if checkpoint == NO_CHECKPOINT then checkpoint = '' end
  return {version = m[1], checkpoint = checkpoint, token = m[3]}
end

-- Marks the generation whose metadata hash is `meta_key` lost (one of its keys is missing): from
-- now on every script reads it as lost. Its token stays, to go on fencing.
local function mark_lost(meta_key, why)
  redis.call('HSET', meta_key, 'lost', why)
end

-- The highest fencing token that wrote: the token key's, or the one that the metadata of a
-- generation still there keeps, whichever is higher (so that losing the token key alone
-- fences no less).
local function highest_token(token_key, live, building)
  local highest = redis.call('GET', token_key) or '0'
  if live then highest = larger(highest, live.token) end
  if building then highest = larger(highest, building.token) end
  return highest
end

-- Records `token` as the highest: in the token key and in the metadata hashes of the live and
-- the building generation (`live_meta_key`, `building_meta_key`; nil for one that is not
-- intact).
local function raise_token(token_key, token, live_meta_key, building_meta_key)
  redis.call('SET', token_key, token)
  if live_meta_key then redis.call('HSET', live_meta_key, 'token', token) end
  if building_meta_key then redis.call('HSET', building_meta_key, 'token', token) end
end

-- The checks every write of a projection makes before it writes, in this order: that the
-- `live` and `building` pointers (KEYS[2], KEYS[3]) still name the generations the caller read
-- (`live`, `building`; '' for none), else the reply {'9'}; then `check`, when given (a reply it
-- answers refuses the write); then that `token` is not below the highest token that wrote
-- (`highest_token`), else {'2', highest}. The quads of the live and the building generation
-- start at KEYS[live_at] and KEYS[building_at]. Writes nothing.
--
-- Answers nil and the reply when refused, else what it read: `live` and `building` (ids, nil for
-- none), `live_meta` and `building_meta` (what `intact` answered: nil for none or lost),
-- `highest`, and for `raise` the write's token and the metadata keys of the intact generations.
local function fence(token, live, building, live_at, building_at, check)
  if pointers_moved(KEYS[2], live) or pointers_moved(KEYS[3], building) then return nil, {'9'} end
  if check then
    local refused = check()
    if refused then return nil, refused end
  end
  if live == '' then live = nil end
  if building == '' then building = nil end
  local live_meta = intact(live, live_at)
  local building_meta = intact(building, building_at)
  local highest = highest_token(KEYS[1], live_meta, building_meta)
  if less(token, highest) then return nil, {'2', highest} end
  return {
    token = token,
    highest = highest,
    live = live,
    building = building,
    live_meta = live_meta,
    building_meta = building_meta,
    live_meta_key = live_meta and KEYS[live_at],
    building_meta_key = building_meta and KEYS[building_at],
  }
end

-- Records the token of a write that passed `fence` (`f`, what it answered) as the highest,
-- unless it is already.
local function raise(f)
  if f.token ~= f.highest then raise_token(KEYS[1], f.token, f.live_meta_key, f.building_meta_key) end
end

-- Removes from the dead-letter list `key` the letters whose event's position is a key of
-- `wanted` (every letter when `wanted` is nil), keeping the others in order. Answers how many
-- went and how many stay.
local function remove_letters(key, wanted)
  local kept = {}
  local removed = 0
  for _, letter in ipairs(redis.call('LRANGE', key, 0, -1)) do
    local ok, decoded = pcall(cjson.decode, letter)
    if not wanted or (ok and type(decoded) == 'table' and wanted[decoded.position]) then
      removed = removed + 1
    else
      kept[#kept + 1] = letter
    end
  end
  if removed > 0 then
    redis.call('DEL', key)
    for i = 1, #kept, 1000 do
      redis.call('RPUSH', key, unpack(kept, i, math.min(i + 999, #kept)))
    end
  end
  return removed, #kept
end
