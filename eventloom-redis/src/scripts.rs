//! The Lua scripts of [`RedisViewStore`](crate::RedisViewStore), in `src/lua/`. The crate
//! documentation describes the key layout.
//!
//! A script that writes checks everything first (key types, fencing token, generation,
//! checkpoint) and only then writes: Redis does not roll a script back, so nothing may fail after
//! the first write. Scripts that find a generation from the `live` pointer build its keys from the
//! projection's base key; they all share the projection's hash tag, so one cluster slot holds
//! them.
//!
//! Every script that reads a generation's metadata starts with `common.lua`: its `intact`
//! decides whether a generation is *lost* — its metadata hash `<gen>:meta` (written whole by
//! `begin_generation`, the checkpoint as `none` until the first batch) or a field of it is
//! missing, a script marked it lost, or its `:ids`, `:indexes` or `:dead` do not hold as many
//! members as its last commit left. A lost generation is never read as "no checkpoint yet":
//! writes into it are refused (`Refusal::GenerationGone`) and the status leaves it out, so the projector
//! rebuilds into a new generation instead of folding every event again onto surviving views.

/// Concatenates `common.lua` and a script's own file.
macro_rules! script {
    ($file:literal) => {
        concat!(include_str!("lua/common.lua"), include_str!(concat!("lua/", $file)))
    };
}

/// Applies a [`ViewCommit`](eventloom_core::store::ViewCommit).
///
/// KEYS: 1 token, 2 live, 3 building, 4 meta, 5 ids, 6 indexes, 7 dead letters (of the
/// generation), then the `n` view keys, then the `m` index list keys.
/// ARGV: 1 generation id, 2 expected checkpoint ("" for none), 3 new checkpoint, 4 token, 5 `n`,
/// 6 `m`, 7 the projection's base key, then the `m` index suffixes, then per view: its id,
/// `s<json>` to set or `d` to delete, the number of entries it leaves and per entry its list
/// (1..m) and member, the same for the entries it joins; then the dead letters (JSON).
///
/// Replies `{0}` when applied, `{1, checkpoint}` when the checkpoint moved, `{2, highest}` when
/// fenced, `{3, key}` for a key of another type, `{4}` when the generation is gone or lost (an
/// index list it had is missing: it is marked lost). Writes nothing but that mark unless it
/// replies `{0}` or `{1}`: a writer with a newer token that reached a current generation raises
/// the highest token before the checkpoint is compared (as the in-memory store does), so `{1}`
/// has fenced older writers.
pub(crate) const COMMIT: &str = script!("commit.lua");

/// Begins a generation.
///
/// KEYS: 1 token, 2 live, 3 building, 4 last, 5 trash. ARGV: 1 token, 2 version, 3 the
/// projection's base key, 4 the proposed id (time-ordered, from
/// `proposed_generation_id` in `view_store.rs`).
///
/// Replies `{0, id}`, or `{2, highest}` when fenced. The id is the proposed one, or one above
/// `last`, the live, the building and every trashed id when the proposal is not above them
/// all; a generation being built before goes to the trash, and so does a lost live one (its
/// pointer is deleted: queries answer `NotBuilt` until the new one is live).
pub(crate) const BEGIN: &str = script!("begin.lua");

/// Makes the generation being built live.
///
/// KEYS: 1 token, 2 live, 3 building, 4 trash. ARGV: 1 generation id, 2 token, 3 the
/// projection's base key.
///
/// Replies `{0}` when it is live (already, or now: the one that was live goes to the trash),
/// `{2, highest}` when fenced, `{4}` when it is not the one being built or is lost, and
/// `{1, built, live}` (checkpoints, `""` for none) when the built generation's checkpoint is
/// behind the live one's (a lost live one has none to compare).
pub(crate) const GO_LIVE: &str = script!("go_live.lua");

/// Deletes up to `budget` keys of the generations in the trash; never those of the live or the
/// building generation.
///
/// KEYS: 1 live, 2 building, 3 trash. ARGV: 1 the projection's base key, 2 budget.
///
/// Replies the number of keys deleted, and 1 while the trash holds more (0 once empty).
pub(crate) const SWEEP: &str = script!("sweep.lua");

/// The live and the building generation: for each, its id, version, checkpoint and state
/// (`ok`, or `lost`: then version and checkpoint are `""`; all four `""` when there is none);
/// then the recorded stop's kind, position, reason, generation and checkpoint (`""` when none).
/// Reads only.
///
/// KEYS: 1 live, 2 building, 3 stopped. ARGV: 1 the projection's base key.
pub(crate) const STATUS: &str = script!("status.lua");

/// Records why the projection stopped (or, with an empty kind, clears it), fenced like a
/// commit.
///
/// KEYS: 1 token, 2 live, 3 building, 4 stopped. ARGV: 1 the projection's base key, 2 token,
/// 3 kind (`""` to clear), 4 position (`""` for none), 5 reason, 6 generation, 7 its checkpoint
/// (`""` for none).
///
/// Replies `{0}` when recorded, `{2, highest}` when fenced, `{3, key}` for a key of another
/// type.
pub(crate) const RECORD_STOP: &str = script!("record_stop.lua");

/// The views of one generation, for the projector.
///
/// KEYS: 1 live, 2 building, 3 the generation's ids, then the view keys. ARGV: 1 the
/// projection's base key, 2 the generation id, then the view ids.
///
/// Replies `{0, view, view, ...}` (a view is nil when missing), or `{4}` when the generation is
/// live or being built but lost, or one of these views is missing while its id is in `:ids` (it
/// marks the generation lost then). A generation neither live nor building is read as it is.
pub(crate) const LOAD: &str = script!("load.lua");

/// One page of an index list of the live generation. Reads only.
///
/// KEYS: 1 live. ARGV: 1 the projection's base key, 2 the list's suffix, 3 the `ZRANGEBYLEX`
/// minimum, 4 how many members at most.
///
/// Replies `{"0"}` when no generation is live, else `{"1", id, member, view, member, view, ...}`
/// (a view is nil when missing).
pub(crate) const LIST: &str = script!("list.lua");

/// How many members index lists of the live generation hold, at one instant. Reads only.
///
/// KEYS: 1 live. ARGV: 1 the projection's base key, then the lists' suffixes.
///
/// Replies `{0}` when no generation is live, else `{1, count, count, ...}`.
pub(crate) const COUNT: &str = script!("count.lua");

/// The dead letters of the live generation (none when none is live). Reads only.
///
/// KEYS: 1 live. ARGV: 1 the projection's base key.
pub(crate) const DEAD_LETTERS: &str = script!("dead_letters.lua");
