//! The Lua scripts of [`RedisViewStore`](crate::RedisViewStore), in `src/lua/`. The crate
//! documentation describes the key layout.
//!
//! A script that writes checks everything first (key types, fencing token, generation,
//! checkpoint) and only then writes: Redis does not roll a script back, so nothing may fail after
//! the first write.
//!
//! Every key a script reads or writes is one of its `KEYS`: a cluster routes a script by them and
//! checks them before it runs (a key of a slot in migration is refused as a whole, with `ASK` or
//! `TRYAGAIN`, never inside the script after earlier writes). Where a key depends on a value only
//! Redis holds — the generation the `live` or `building` pointer names, the members of a page,
//! the views a commit samples, the keys of a dropped generation — the caller reads that value
//! first, passes the keys and the value it assumed, and the script checks the value is still
//! that (replying `{9}` or its own "moved" reply when it is not: the caller reads again). All the
//! keys of one projection share its hash tag, so one cluster slot holds them.
//!
//! A generation's keys are passed as four `KEYS` in a row, `:meta`, `:ids`, `:indexes`,
//! `:dead` (a *quad*); for "no generation" the quad of generation 0, which never exists.
//!
//! Every script that writes under a fencing token (commit, begin, go_live, record_stop,
//! remove_dead_letters) passes `fence` (in `common.lua`) first: the pointers still name the
//! generations the caller read, then the script's own checks (key types), then the token; it
//! records the token as the highest once its other checks passed.
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
/// KEYS: 1 token, 2 live, 3 building, 4-7 the generation's quad, 8-11 the live generation's
/// quad, 12-15 the building one's, then the `n` view keys, then the `m` index list keys, then
/// the `s` sampled view keys and the `u` sampled index list keys (from [`PEEK`], or from the
/// reply of the generation's previous commit).
/// ARGV: 1 generation id, 2 expected checkpoint ("" for none), 3 new checkpoint, 4 token, 5 `n`,
/// 6 `m`, 7 the live and 8 the building generation the caller read ("" for none), 9 `s`, 10 `u`,
/// 11 the size of the sample to pick for the next commit, then the `m` index suffixes, the `s` sampled view ids and the `u` sampled suffixes, then per
/// view: its id, `s<json>` to set or `d` to delete, the number of entries it leaves and per entry
/// its list (1..m) and member, the same for the entries it joins; then the number `r` of dead
/// letters the commit resolves and their positions (`"tx.seq"`), removed from the generation's
/// `:dead` before the batch's own are added; then the channel of the store's notifications
/// (`""` for none) and the projection's name, which an applied commit PUBLISHes on it; then the
/// dead letters (JSON).
///
/// Replies `{0, live, building, s, s view ids..., index suffixes...}` when applied (what [`PEEK`]
/// would answer for the next commit, so that it need not run), `{1, checkpoint}` when the checkpoint moved, `{2, highest}` when
/// fenced, `{3, key}` for a key of another type, `{4}` when the generation is gone or lost (an
/// index list it had, or a sampled view or list, is missing: it is marked lost), `{9}` when the
/// pointers moved. Writes nothing but that mark unless it replies `{0, ...}` or `{1}`: a writer with a
/// newer token that reached a current generation raises the highest token before the checkpoint
/// is compared (as the in-memory store does), so `{1}` has fenced older writers.
pub(crate) const COMMIT: &str = script!("commit.lua");

/// What a commit reads first: the pointers and a sample of the generation's views and index
/// lists to check. Reads only.
///
/// KEYS: 1 live, 2 building, 3 the generation's `:ids`, 4 its `:indexes`. ARGV: 1 the sample's
/// size. Replies `{live, building, s, s view ids..., index suffixes...}` (`""` for no pointer).
pub(crate) const PEEK: &str = script!("peek.lua");

/// Begins a generation.
///
/// KEYS: 1 token, 2 live, 3 building, 4 last, 5 trash, 6-9 the live generation's quad, 10-13
/// the building one's, 14-17 the quad of the proposed id. ARGV: 1 token, 2 version, 3 the live and
/// 4 the building generation the caller read, 5 the proposed id (time-ordered, from
/// `proposed_generation_id` in `view_store.rs`).
///
/// Replies `{0, id}`, `{2, highest}` when fenced, `{5, id}` when the proposed id is not above
/// `last`, the live, the building and every trashed id, or a key of it exists (the caller
/// proposes the id given), `{9}` when the pointers moved. A generation being built before goes
/// to the trash, and so does a lost live one (its pointer is deleted: queries answer `NotBuilt`
/// until the new one is live).
pub(crate) const BEGIN: &str = script!("begin.lua");

/// Makes the generation being built live.
///
/// KEYS: 1 token, 2 live, 3 building, 4 trash, 5-8 the live generation's quad, 9-12 the
/// building one's. ARGV: 1 generation id, 2 token, 3 the live and 4 the building generation the
/// caller read.
///
/// Replies `{0}` when it is live (already, or now: the one that was live goes to the trash),
/// `{2, highest}` when fenced, `{4}` when it is not the one being built or is lost,
/// `{1, built, live}` (checkpoints, `""` for none) when the built generation's checkpoint is
/// behind the live one's (a lost live one has none to compare), `{9}` when the pointers moved.
pub(crate) const GO_LIVE: &str = script!("go_live.lua");

/// Deletes keys of one generation in the trash (never of the live or the building one): the
/// views and index lists the caller read from its `:ids` and `:indexes`, and its remaining keys
/// once those sets are empty.
///
/// KEYS: 1 live, 2 building, 3 trash, 4-7 the generation's quad, 8 its `:version`, 9 its
/// `:checkpoint` (an older layout's), then the view keys, then the index list keys. ARGV: 1 the
/// generation id, 2 the number of views, then their ids, then the lists' suffixes.
///
/// Replies the number of keys deleted and how many generations the trash still holds.
pub(crate) const SWEEP: &str = script!("sweep.lua");

/// The live and the building generation: for each, its id, version, checkpoint and state
/// (`ok`, or `lost`: then version and checkpoint are `""`; all four `""` when there is none);
/// then the recorded stop's kind, position, reason, generation and checkpoint (`""` when none).
/// Reads only.
///
/// KEYS: 1 live, 2 building, 3 stopped, 4-7 the live generation's quad, 8-11 the building
/// one's. ARGV: 1 the live and 2 the building generation the caller read. Replies `{9}` when the
/// pointers moved.
pub(crate) const STATUS: &str = script!("status.lua");

/// Records why the projection stopped (or, with an empty kind, clears it), fenced like a
/// commit.
///
/// KEYS: 1 token, 2 live, 3 building, 4 stopped, 5-8 the live generation's quad, 9-12 the
/// building one's. ARGV: 1 token, 2 kind (`""` to clear), 3 position (`""` for none), 4 reason,
/// 5 generation, 6 its checkpoint (`""` for none), 7 the live and 8 the building generation the
/// caller read.
///
/// Replies `{0}` when recorded, `{2, highest}` when fenced, `{3, key}` for a key of another
/// type, `{9}` when the pointers moved.
pub(crate) const RECORD_STOP: &str = script!("record_stop.lua");

/// The views of one generation, for the projector.
///
/// KEYS: 1 live, 2 building, 3-6 the generation's quad, then the view keys. ARGV: 1 the
/// generation id, then the view ids.
///
/// Replies `{0, view, view, ...}` (a view is nil when missing), or `{4}` when the generation is
/// live or being built but lost, or one of these views is missing while its id is in `:ids` (it
/// marks the generation lost then). A generation neither live nor building is read as it is.
pub(crate) const LOAD: &str = script!("load.lua");

/// One page of an index list of the live generation. Reads only.
///
/// KEYS: 1 live, 2 the list (of the generation the caller assumes live), then the keys of the
/// views of the members the caller expects. ARGV: 1 that generation's id, 2 the `ZRANGEBYLEX`
/// minimum, 3 how many members at most, 4 the maximum, then the members expected.
///
/// Replies `{"0"}` when no generation is live, `{"2", id}` when another one is,
/// `{"3", member, ...}` when the page holds other members than expected (the caller asks again
/// with those), else `{"1", id, member, view, member, view, ...}` (a view is nil when missing).
pub(crate) const LIST: &str = script!("list.lua");

/// How many members index lists of the live generation hold, at one instant. Reads only.
///
/// KEYS: 1 live, then the lists (of the generation the caller assumes live). ARGV: 1 that
/// generation's id.
///
/// Replies `{"0"}` when no generation is live, `{"2", id}` when another one is, else
/// `{"1", count, count, ...}`.
pub(crate) const COUNT: &str = script!("count.lua");

/// One page of an index list of one generation, live or not. Reads only.
///
/// KEYS: 1 trash, 2 the list, then the keys of the views of the members the caller expects.
/// ARGV: 1 the generation's id, 2 the `ZRANGEBYLEX` minimum, 3 how many members at most, 4 the
/// maximum, then the members expected.
///
/// Replies `{"0"}` when the generation is in the trash (dropped: nothing to list), `{"3", member,
/// ...}` when the page holds other members than expected (the caller asks again with those), else
/// `{"1", member, view, member, view, ...}` (a view is nil when missing). A generation never
/// begun, or swept, has no keys: its lists are empty.
pub(crate) const LIST_GENERATION: &str = script!("list_generation.lua");

/// How many members index lists of one generation hold, live or not, at one instant. Reads only.
///
/// KEYS: 1 trash, then the lists. ARGV: 1 the generation's id.
///
/// Replies `{"0"}` when the generation is in the trash (dropped: every count is 0), else
/// `{"1", count, count, ...}`.
pub(crate) const COUNT_GENERATION: &str = script!("count_generation.lua");

/// The dead letters of the live generation. Reads only.
///
/// KEYS: 1 live, 2 the `:dead` list of the generation the caller assumes live. ARGV: 1 that
/// generation's id. Replies `{"0"}` when none is live, `{"2", id}` when another one is, else
/// `{"1", letter, ...}`.
pub(crate) const DEAD_LETTERS: &str = script!("dead_letters.lua");

/// Removes dead letters of the live generation (all, or those of the events at given positions),
/// fenced like a commit, raising the highest token as a commit does. The dead letters stay in
/// their order; the live generation's `dead` count follows.
///
/// KEYS: 1 token, 2 live, 3 building, 4-7 the live generation's quad, 8-11 the building one's.
/// ARGV: 1 token, 2 `all` or the number `n` of positions, then the `n` positions (`"tx.seq"`),
/// then the live and the building generation the caller read.
///
/// Replies `{0, removed}` (`{0, 0}` without a live generation; for a projection the store never
/// saw, no pointer and no token key, it writes nothing, not even the token), `{2, highest}` when
/// fenced, `{3, key}` for a key of another type, `{9}` when the pointers moved.
pub(crate) const REMOVE_DEAD_LETTERS: &str = script!("remove_dead_letters.lua");

#[cfg(test)]
mod tests {
    use super::*;

    /// Every script with its name.
    const ALL: [(&str, &str); 15] = [
        ("commit", COMMIT),
        ("peek", PEEK),
        ("begin", BEGIN),
        ("go_live", GO_LIVE),
        ("sweep", SWEEP),
        ("status", STATUS),
        ("record_stop", RECORD_STOP),
        ("load", LOAD),
        ("list", LIST),
        ("count", COUNT),
        ("list_generation", LIST_GENERATION),
        ("count_generation", COUNT_GENERATION),
        ("dead_letters", DEAD_LETTERS),
        ("remove_dead_letters", REMOVE_DEAD_LETTERS),
        ("common", include_str!("lua/common.lua")),
    ];

    /// The code of a script without its comments.
    fn code(script: &str) -> String {
        script.lines().map(|line| line.split("--").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
    }

    /// No script builds a key: none has a string that starts with `:` (a key's suffix), and the
    /// key of every `redis.call` is one of `KEYS`, or a name bound to one of them.
    #[test]
    fn every_key_a_script_touches_is_one_of_its_keys() {
        for (name, script) in ALL {
            let code = code(script);
            assert!(!code.contains("':"), "{name} builds a key from a suffix");
            for call in code.split("redis.call(").skip(1) {
                // `'COMMAND', key` up to the next `,` or `)`.
                let after_command = call.split_once(',').map_or("", |(_, rest)| rest);
                let key = after_command.split([',', ')']).next().unwrap_or_default().trim();
                let named = key.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !key.is_empty();
                assert!(key.starts_with("KEYS[") || named, "{name}: redis.call with the key {key:?}");
            }
        }
    }
}
