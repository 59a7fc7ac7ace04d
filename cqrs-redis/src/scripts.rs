//! The Lua scripts of [`RedisViewStore`](crate::RedisViewStore). The crate documentation
//! describes the key layout.
//!
//! A script that writes checks everything first (key types, fencing token, generation,
//! checkpoint) and only then writes: Redis does not roll a script back, so nothing may fail after
//! the first write. Scripts that find a generation from the `live` pointer build its keys from the
//! projection's base key; they all share the projection's hash tag, so one cluster slot holds
//! them.
//!
//! Fencing tokens and checkpoints are compared as decimal strings (Lua numbers are doubles, exact
//! only to 2^53); generation ids are small integers.

/// `less(a, b)`: whether the decimal string `a` is below `b` (no leading zeros); and
/// `before(a, b)`: whether the checkpoint `a` ("tx.seq", both decimal; `""` for none, before
/// every other) is below `b`, compared as strings: Lua numbers lose precision above 2^53.
const LESS: &str = r#"
local function less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
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
"#;

/// Applies a [`ViewCommit`](cqrs_core::ViewCommit).
///
/// KEYS: 1 token, 2 live, 3 building, 4 checkpoint, 5 ids, 6 indexes, 7 dead letters (of the
/// generation), then the `n` view keys, then the `m` index list keys.
/// ARGV: 1 generation id, 2 expected checkpoint ("" for none), 3 new checkpoint, 4 token, 5 `n`,
/// 6 `m`, then the `m` index suffixes, then per view: its id, `s<json>` to set or `d` to delete,
/// the number of entries it leaves and per entry its list (1..m) and member, the same for the
/// entries it joins; then the dead letters (JSON).
///
/// Replies `{0}` when applied, `{1, checkpoint}` when the checkpoint moved, `{2, highest}` when
/// fenced, `{3, key}` for a key of another type, `{4}` when the generation is gone.
pub(crate) fn commit() -> String {
    format!(
        "{LESS}{}",
        r#"
local function kind(key) return redis.call('TYPE', key).ok end
local expect = {'string', 'string', 'string', 'string', 'set', 'set', 'list'}
for i = 1, 7 do
  local t = kind(KEYS[i])
  if t ~= 'none' and t ~= expect[i] then return {'3', KEYS[i]} end
end
local n = tonumber(ARGV[5])
local m = tonumber(ARGV[6])
for i = 8, 7 + n do
  local t = kind(KEYS[i])
  if t ~= 'none' and t ~= 'string' then return {'3', KEYS[i]} end
end
for i = 8 + n, 7 + n + m do
  local t = kind(KEYS[i])
  if t ~= 'none' and t ~= 'zset' then return {'3', KEYS[i]} end
end
local highest = redis.call('GET', KEYS[1]) or '0'
local token = ARGV[4]
if less(token, highest) then return {'2', highest} end
local generation = ARGV[1]
if redis.call('GET', KEYS[2]) ~= generation and redis.call('GET', KEYS[3]) ~= generation then
  return {'4'}
end
-- As the in-memory store: a writer with a newer token that reached a current generation fences
-- older writers, even when its checkpoint turns out to have moved.
if token ~= highest then redis.call('SET', KEYS[1], token) end
local current = redis.call('GET', KEYS[4]) or ''
if current ~= ARGV[2] then return {'1', current} end
local lists = 7 + n
local a = 6 + m
for j = 1, n do
  local id = ARGV[a + 1]
  local op = ARGV[a + 2]
  a = a + 3
  for _ = 1, tonumber(ARGV[a]) do
    redis.call('ZREM', KEYS[lists + tonumber(ARGV[a + 1])], ARGV[a + 2])
    a = a + 2
  end
  a = a + 1
  for _ = 1, tonumber(ARGV[a]) do
    redis.call('ZADD', KEYS[lists + tonumber(ARGV[a + 1])], 0, ARGV[a + 2])
    a = a + 2
  end
  if string.sub(op, 1, 1) == 's' then
    redis.call('SET', KEYS[7 + j], string.sub(op, 2))
    redis.call('SADD', KEYS[5], id)
  else
    redis.call('DEL', KEYS[7 + j])
    redis.call('SREM', KEYS[5], id)
  end
end
for slot = 1, m do
  if redis.call('EXISTS', KEYS[lists + slot]) == 1 then
    redis.call('SADD', KEYS[6], ARGV[6 + slot])
  else
    redis.call('SREM', KEYS[6], ARGV[6 + slot])
  end
end
for k = a + 1, #ARGV do
  redis.call('RPUSH', KEYS[7], ARGV[k])
end
redis.call('SET', KEYS[4], ARGV[3])
return {'0'}
"#
    )
}

/// Begins a generation.
///
/// KEYS: 1 token, 2 live, 3 building, 4 last, 5 trash. ARGV: 1 token, 2 version, 3 the
/// projection's base key.
///
/// Replies `{0, id}`, or `{2, highest}` when fenced. The id is above the last one handed out and
/// above the live, the building and every trashed one (should `last` be lost on its own: a
/// trashed generation's keys may still be there until its sweep ends); a generation being
/// built before goes to the trash.
pub(crate) fn begin() -> String {
    format!(
        "{LESS}{}",
        r#"
local highest = redis.call('GET', KEYS[1]) or '0'
if less(ARGV[1], highest) then return {'2', highest} end
local building = redis.call('GET', KEYS[3])
local top = math.max(tonumber(redis.call('GET', KEYS[4]) or '0'), tonumber(redis.call('GET', KEYS[2]) or '0'),
  tonumber(building or '0'))
for _, g in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  top = math.max(top, tonumber(g) or 0)
end
local id = string.format('%d', top + 1)
redis.call('SET', KEYS[1], ARGV[1])
if building then redis.call('SADD', KEYS[5], building) end
redis.call('SET', KEYS[4], id)
redis.call('SET', KEYS[3], id)
redis.call('SET', ARGV[3] .. ':g' .. id .. ':version', ARGV[2])
return {'0', id}
"#
    )
}

/// Makes the generation being built live.
///
/// KEYS: 1 token, 2 live, 3 building, 4 trash. ARGV: 1 generation id, 2 token, 3 the
/// projection's base key.
///
/// Replies `{0}` when it is live (already, or now: the one that was live goes to the trash),
/// `{2, highest}` when fenced, `{4}` when it is not the one being built, and `{1, built, live}`
/// (checkpoints, `""` for none) when the built generation's checkpoint is behind the live one's.
pub(crate) fn go_live() -> String {
    format!(
        "{LESS}{}",
        r#"
local highest = redis.call('GET', KEYS[1]) or '0'
if less(ARGV[2], highest) then return {'2', highest} end
local live = redis.call('GET', KEYS[2])
if live == ARGV[1] then return {'0'} end
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return {'4'} end
if live then
  local built = redis.call('GET', ARGV[3] .. ':g' .. ARGV[1] .. ':checkpoint') or ''
  local current = redis.call('GET', ARGV[3] .. ':g' .. live .. ':checkpoint') or ''
  if before(built, current) then return {'1', built, current} end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
if live then redis.call('SADD', KEYS[4], live) end
return {'0'}
"#
    )
}

/// Deletes up to `budget` keys of the generations in the trash; never those of the live or the
/// building generation (a Redis that lost its data hands out ids again).
///
/// KEYS: 1 live, 2 building, 3 trash. ARGV: 1 the projection's base key, 2 budget.
///
/// Replies the number of keys deleted, and 1 while the trash holds more (0 once empty).
pub(crate) const SWEEP: &str = r#"
local budget = tonumber(ARGV[2])
local deleted = 0
local live = redis.call('GET', KEYS[1])
local building = redis.call('GET', KEYS[2])
while budget > 0 do
  local g = redis.call('SRANDMEMBER', KEYS[3])
  if not g then return {deleted, 0} end
  if g == live or g == building then
    redis.call('SREM', KEYS[3], g)
  else
    local gen = ARGV[1] .. ':g' .. g
    local ids = redis.call('SPOP', gen .. ':ids', budget)
    for _, id in ipairs(ids) do redis.call('UNLINK', gen .. ':v:' .. id) end
    budget = budget - #ids
    deleted = deleted + #ids
    if budget > 0 then
      local lists = redis.call('SPOP', gen .. ':indexes', budget)
      for _, suffix in ipairs(lists) do redis.call('UNLINK', gen .. ':i:' .. suffix) end
      budget = budget - #lists
      deleted = deleted + #lists
    end
    if budget > 0 then
      deleted = deleted + redis.call('UNLINK', gen .. ':version', gen .. ':checkpoint', gen .. ':dead')
      redis.call('SREM', KEYS[3], g)
      budget = budget - 1
    end
  end
end
return {deleted, 1}
"#;

/// The live and the building generation: for each, its id, version and checkpoint (`""` when
/// absent). Reads only.
///
/// KEYS: 1 live, 2 building. ARGV: 1 the projection's base key.
pub(crate) const STATUS: &str = r#"
local out = {}
for i = 1, 2 do
  local g = redis.call('GET', KEYS[i])
  if g then
    local gen = ARGV[1] .. ':g' .. g
    out[#out + 1] = g
    out[#out + 1] = redis.call('GET', gen .. ':version') or ''
    out[#out + 1] = redis.call('GET', gen .. ':checkpoint') or ''
  else
    out[#out + 1] = ''
    out[#out + 1] = ''
    out[#out + 1] = ''
  end
end
return out
"#;

/// One page of an index list of the live generation. Reads only.
///
/// KEYS: 1 live. ARGV: 1 the projection's base key, 2 the list's suffix, 3 the `ZRANGEBYLEX`
/// minimum, 4 how many members at most.
///
/// Replies `{"0"}` when no generation is live, else `{"1", id, member, view, member, view, ...}`
/// (a view is nil when missing).
pub(crate) const LIST: &str = r#"
local g = redis.call('GET', KEYS[1])
if not g then return {'0'} end
local gen = ARGV[1] .. ':g' .. g
local members = redis.call('ZRANGEBYLEX', gen .. ':i:' .. ARGV[2], ARGV[3], '+', 'LIMIT', 0, ARGV[4])
local out = {'1', g}
for _, member in ipairs(members) do
  local sep = string.find(member, '\0', 1, true)
  local id = sep and string.sub(member, sep + 1) or member
  out[#out + 1] = member
  out[#out + 1] = redis.call('GET', gen .. ':v:' .. id)
end
return out
"#;

/// How many members index lists of the live generation hold, at one instant. Reads only.
///
/// KEYS: 1 live. ARGV: 1 the projection's base key, then the lists' suffixes.
///
/// Replies `{0}` when no generation is live, else `{1, count, count, ...}`.
pub(crate) const COUNT: &str = r#"
local g = redis.call('GET', KEYS[1])
if not g then return {0} end
local gen = ARGV[1] .. ':g' .. g .. ':i:'
local out = {1}
for i = 2, #ARGV do
  out[#out + 1] = redis.call('ZCARD', gen .. ARGV[i])
end
return out
"#;

/// The dead letters of the live generation (none when none is live). Reads only.
///
/// KEYS: 1 live. ARGV: 1 the projection's base key.
pub(crate) const DEAD_LETTERS: &str = r#"
local g = redis.call('GET', KEYS[1])
if not g then return {} end
return redis.call('LRANGE', ARGV[1] .. ':g' .. g .. ':dead', 0, -1)
"#;
