//! Where read models live: the [`ViewStore`] trait, and the generations, writes and secondary
//! indexes it stores.

use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::str::FromStr;
use std::sync::Arc;

use crate::store::BoxFuture;

use crate::{Error, Position, Result};

/// One namespace of a projection's views, built by one version of the projection from the first
/// event on.
///
/// Queries read the projection's *live* generation. A rebuild (a new projection
/// [version](crate::Projection::VERSION), or a store that lost its data) fills a new generation
/// while queries go on reading the live one, and makes it live in one atomic step once it has
/// caught up: queries never see a half-built model.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Position, store::Generation};
///
/// let g = Generation { id: 3, version: 2, checkpoint: Some(Position::new(9, 40)) };
/// assert!(g.checkpoint > None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Generation {
    /// Unique among the projection's generations; a newer one has a higher id.
    pub id: u64,
    /// The version of the projection that builds it.
    pub version: u32,
    /// The position of the last event folded into it; `None` before the first.
    pub checkpoint: Option<Position>,
}

/// Why a view store wrote nothing: the projection's state in the store has moved on from what
/// the write was made for. A reply between the store and the projector, not a failure: the
/// projector sorts it (it stands by, or starts over), so implementations answer it as the `Err`
/// of a [`Written`] inside `Ok`, never as an [`Error`].
///
/// # Examples
///
/// ```
/// use eventloom_core::store::Refusal;
///
/// let late = Refusal::Fenced { token: 3, highest: 5 };
/// assert_eq!(late.to_string(), "fenced: token 3 is older than 5");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The generation's checkpoint is not the one the write expected: another runner wrote
    /// first (or, for [`ViewStore::go_live`], the built generation is behind the live one).
    CheckpointMoved {
        /// The checkpoint the write expected.
        expected: Option<Position>,
        /// The checkpoint found.
        actual: Option<Position>,
    },
    /// The write carried a fencing token lower than one the store has already seen: a deposed
    /// leader woke up late.
    Fenced {
        /// The token the write carried.
        token: u64,
        /// The highest token the store has seen.
        highest: u64,
    },
    /// The generation written to is neither live nor being built: the store lost its data (a
    /// Redis restarted empty or flushed), or another runner began a newer generation.
    GenerationGone {
        /// The generation written to.
        generation: u64,
    },
    /// The runner's lease was lost before it wrote (an event handler stops within its batch):
    /// another runner may lead. Never answered by a view store: the projector makes it.
    LeaseLost {
        /// The token of the lease that was lost.
        token: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::CheckpointMoved { expected, actual } => {
                write!(f, "checkpoint moved: expected {expected:?}, found {actual:?}")
            }
            Refusal::Fenced { token, highest } => write!(f, "fenced: token {token} is older than {highest}"),
            Refusal::GenerationGone { generation } => {
                write!(f, "generation {generation} is gone (lost data or a newer rebuild)")
            }
            Refusal::LeaseLost { token } => write!(f, "the lease of token {token} was lost"),
        }
    }
}

/// What a write of a [`ViewStore`] came to when the store answered: `Ok` with what it wrote, or
/// `Err` with the [`Refusal`] of a write it did not make. Store failures are the outer
/// [`Result`]'s.
///
/// # Examples
///
/// ```
/// use eventloom_core::{memory::MemoryViewStore, store::{Refusal, ViewStore}};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryViewStore::default();
/// store.begin_generation("tasks", 1, 5).await.unwrap().unwrap();
/// let stale = store.begin_generation("tasks", 1, 4).await.unwrap();
/// assert_eq!(stale, Err(Refusal::Fenced { token: 4, highest: 5 }));
/// # });
/// ```
pub type Written<T = ()> = std::result::Result<T, Refusal>;

/// What a runner of `projection` makes of a write's answer: what it wrote, or the
/// [`Error::Superseded`] it ends a catch-up with.
pub(crate) fn superseded<T>(projection: &str, written: Written<T>) -> Result<T> {
    written.map_err(|refusal| Error::Superseded { projection: projection.to_owned(), refusal })
}

/// Where a projection's views stand: the generation queries read, and one being built.
///
/// # Examples
///
/// ```
/// use eventloom_core::store::ProjectionStatus;
///
/// let status = ProjectionStatus::default();
/// assert!(status.live.is_none(), "nothing built yet: queries answer Error::NotBuilt");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectionStatus {
    /// The generation queries read; `None` before the first build has caught up, or after the
    /// store lost its data.
    pub live: Option<Generation>,
    /// A generation being built to replace `live`.
    pub building: Option<Generation>,
    /// Why the projection's runner stopped, when it did (see [`ViewStore::record_stop`]): the
    /// record as stored, cleared by the runner that writes past it; [`active_stop`](Self::active_stop)
    /// tells whether it still holds.
    pub stopped: Option<ProjectionStop>,
}

impl ProjectionStatus {
    /// The status with its live and building generations and its recorded stop. For view store
    /// implementations.
    pub fn new(live: Option<Generation>, building: Option<Generation>, stopped: Option<ProjectionStop>) -> Self {
        ProjectionStatus { live, building, stopped }
    }
}

/// Why a projection stopped: recorded in its view store by the runner that stopped, so that
/// queries waiting for its views (in any process) fail at once, and health checks show it.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Position, store::{ProjectionStop, StopKind}};
///
/// let stop = ProjectionStop::new(StopKind::Failed, Some(Position::new(7, 2)), "title too long")
///     .at(3, Some(Position::new(7, 1)));
/// assert_eq!(stop.to_string(), "failed at position 7.2: title too long");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectionStop {
    /// What kind of stop.
    pub kind: StopKind,
    /// The position of the event it stopped at (its checkpoint is just before it), when one
    /// event is to blame.
    pub position: Option<Position>,
    /// Why, in words.
    pub reason: String,
    /// The generation the runner wrote into.
    pub generation: u64,
    /// That generation's checkpoint when it stopped: once it moves, the stop no longer holds
    /// (see [`ProjectionStatus::active_stop`]).
    pub checkpoint: Option<Position>,
}

impl ProjectionStop {
    /// A stop of `kind` at the event at `position`, in generation 0 at no checkpoint (see
    /// [`at`](Self::at)).
    pub fn new(kind: StopKind, position: Option<Position>, reason: impl Into<String>) -> Self {
        ProjectionStop { kind, position, reason: reason.into(), generation: 0, checkpoint: None }
    }

    /// The same stop, in `generation` at `checkpoint`.
    pub fn at(mut self, generation: u64, checkpoint: Option<Position>) -> Self {
        self.generation = generation;
        self.checkpoint = checkpoint;
        self
    }
}

impl fmt::Display for ProjectionStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            StopKind::Failed => "failed",
            StopKind::NeedsNewerRelease => "waits for a newer release",
        };
        match self.position {
            Some(position) => write!(f, "{what} at position {position}: {}", self.reason),
            None => write!(f, "{what}: {}", self.reason),
        }
    }
}

/// Why a projection stopped.
///
/// # Examples
///
/// ```
/// use eventloom_core::store::StopKind;
///
/// assert_eq!("needs_newer_release".parse::<StopKind>().unwrap(), StopKind::NeedsNewerRelease);
/// assert_eq!(StopKind::Failed.as_str(), "failed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopKind {
    /// An event it cannot process under [`PoisonPolicy::Stop`](crate::PoisonPolicy::Stop), or
    /// stored data that is corrupt: it needs a fix (of the code, or of the data).
    Failed,
    /// An event written by a newer release ([`Error::NewerSchema`]): a runner of that release
    /// goes on from here; this one stands by.
    NeedsNewerRelease,
}

impl StopKind {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            StopKind::Failed => "failed",
            StopKind::NeedsNewerRelease => "needs_newer_release",
        }
    }
}

impl FromStr for StopKind {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "failed" => Ok(StopKind::Failed),
            "needs_newer_release" => Ok(StopKind::NeedsNewerRelease),
            other => {
                Err(Error::Corrupt { location: "a projection's stop".into(), reason: format!("stop kind {other:?}") })
            }
        }
    }
}

impl ProjectionStatus {
    /// The checkpoint queries see: the live generation's.
    pub fn checkpoint(&self) -> Option<Position> {
        self.live.and_then(|g| g.checkpoint)
    }

    /// The recorded stop, while it still holds: its generation is live or being built and still
    /// at the checkpoint it stopped at. A stop that a runner has since written past (a restart
    /// after a fix, or a late record of a deposed leader) is stale, whether or not its record
    /// has been cleared yet.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{Position, store::{Generation, ProjectionStatus, ProjectionStop, StopKind}};
    ///
    /// let stop = ProjectionStop::new(StopKind::Failed, None, "corrupt row").at(1, Some(Position::new(5, 1)));
    /// let live = Generation { id: 1, version: 1, checkpoint: Some(Position::new(5, 1)) };
    /// let mut status = ProjectionStatus::new(Some(live), None, Some(stop));
    /// assert!(status.active_stop().is_some());
    /// status.live = Some(Generation { id: 1, version: 1, checkpoint: Some(Position::new(6, 1)) });
    /// assert!(status.active_stop().is_none(), "written past since");
    /// ```
    pub fn active_stop(&self) -> Option<&ProjectionStop> {
        let stop = self.stopped.as_ref()?;
        [self.live, self.building]
            .into_iter()
            .flatten()
            .any(|g| g.id == stop.generation && g.checkpoint == stop.checkpoint)
            .then_some(stop)
    }
}

/// Names one list of views: the views whose secondary index `name` has `value` (say, tasks
/// whose `status` is `open`).
///
/// # Examples
///
/// ```
/// use eventloom_core::store::IndexKey;
///
/// let open = IndexKey::new("status", "open");
/// assert_eq!(open.to_string(), "status=open");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexKey {
    /// The index.
    pub name: String,
    /// The value the listed views have.
    pub value: String,
}

impl IndexKey {
    /// The list of views whose index `name` has `value`.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        IndexKey { name: name.into(), value: value.into() }
    }
}

impl fmt::Display for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)
    }
}

/// A view's place in one list of a secondary index: the list, and the key the list is sorted by
/// (ties broken by view id).
///
/// # Examples
///
/// ```
/// use eventloom_core::{IndexEntry, Position};
///
/// // Tasks listed by status, in creation order.
/// let created = Position::new(12, 3);
/// let entry = IndexEntry::new("status", "open").ordered_by(created.sort_key());
/// assert_eq!(entry.key.value, "open");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexEntry {
    /// The list.
    pub key: IndexKey,
    /// Where the view sorts in it (compared byte-wise); empty sorts by id alone.
    pub order: String,
}

impl IndexEntry {
    /// An entry in the list of views whose index `name` has `value`, sorted by view id.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        IndexEntry { key: IndexKey::new(name, value), order: String::new() }
    }

    /// Sorts the view by `order` in the list (byte-wise; ties by view id).
    pub fn ordered_by(mut self, order: impl Into<String>) -> Self {
        self.order = order.into();
        self
    }

    /// Sorts the view by a number in the list: its sort key is [`OrderRange::int_key`], which
    /// sorts byte-wise as the numbers do, so that [`OrderRange::ints`] selects a range ("stock
    /// below 10").
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::IndexEntry;
    ///
    /// let low = IndexEntry::new("stock", "all").ordered_by_int(-3);
    /// let high = IndexEntry::new("stock", "all").ordered_by_int(12);
    /// assert!(low.order < high.order);
    /// ```
    pub fn ordered_by_int(self, n: i64) -> Self {
        self.ordered_by(OrderRange::int_key(n))
    }

    /// Sorts the view by a floating-point number in the list ([`OrderRange::float_key`]): every
    /// number sorts as it compares, `-0.0` just before `0.0`, NaN after infinity.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::IndexEntry;
    ///
    /// let cold = IndexEntry::new("temperature", "all").ordered_by_float(-2.5);
    /// let warm = IndexEntry::new("temperature", "all").ordered_by_float(21.0);
    /// assert!(cold.order < warm.order);
    /// ```
    pub fn ordered_by_float(self, x: f64) -> Self {
        self.ordered_by(OrderRange::float_key(x))
    }
}

/// A range of sort keys within one index list: the views of a list whose sort key lies in it,
/// for queries such as "stock below 10" or "titles from `m`". Bounds compare byte-wise, as sort
/// keys do, and are cut like stored sort keys (before any NUL, to [`IndexEntry::MAX_ORDER_LEN`] bytes).
///
/// # Examples
///
/// ```
/// use eventloom_core::read::OrderRange;
///
/// let below_ten = OrderRange::ints(..10);
/// assert!(below_ten.contains(&OrderRange::int_key(9)));
/// assert!(!below_ten.contains(&OrderRange::int_key(10)));
/// let from_m = OrderRange::new("m"..);
/// assert!(from_m.contains("mango") && !from_m.contains("apple"));
/// assert!(OrderRange::all().contains(""));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct OrderRange {
    /// The least sort key in the range, if any bound (inclusive).
    from: Option<String>,
    /// The first sort key past the range, if any bound (exclusive).
    until: Option<String>,
}

impl OrderRange {
    /// Every sort key: the whole list.
    pub fn all() -> Self {
        OrderRange::default()
    }

    /// The sort keys within `range`, e.g. `OrderRange::new("a".."n")` or `OrderRange::new(..="m")`.
    pub fn new<'a>(range: impl RangeBounds<&'a str>) -> Self {
        // Stored sort keys hold no NUL: the keys above `k` are those from `k\x01` on, and those
        // up to `k` included are those below `k\x01`. So every range is one half-open one.
        let after = |key: &str| format!("{}\u{1}", fit_cut(key, IndexEntry::MAX_ORDER_LEN));
        let from = match range.start_bound() {
            Bound::Included(key) => Some(fit_cut(key, IndexEntry::MAX_ORDER_LEN).into_owned()),
            Bound::Excluded(key) => Some(after(key)),
            Bound::Unbounded => None,
        };
        let until = match range.end_bound() {
            Bound::Included(key) => Some(after(key)),
            Bound::Excluded(key) => Some(fit_cut(key, IndexEntry::MAX_ORDER_LEN).into_owned()),
            Bound::Unbounded => None,
        };
        OrderRange { from, until }
    }

    /// The sort keys of the numbers within `range` (views ordered with
    /// [`IndexEntry::ordered_by_int`]).
    pub fn ints(range: impl RangeBounds<i64>) -> Self {
        let bound = |b: Bound<&i64>| b.map(|n| OrderRange::int_key(*n));
        let (start, end) = (bound(range.start_bound()), bound(range.end_bound()));
        OrderRange::new((start.as_ref().map(String::as_str), end.as_ref().map(String::as_str)))
    }

    /// The sort keys of the floating-point numbers within `range` (views ordered with
    /// [`IndexEntry::ordered_by_float`]).
    pub fn floats(range: impl RangeBounds<f64>) -> Self {
        let bound = |b: Bound<&f64>| b.map(|x| OrderRange::float_key(*x));
        let (start, end) = (bound(range.start_bound()), bound(range.end_bound()));
        OrderRange::new((start.as_ref().map(String::as_str), end.as_ref().map(String::as_str)))
    }

    /// The sort key of a number: 16 hexadecimal digits that sort byte-wise as the numbers do.
    pub fn int_key(n: i64) -> String {
        format!("{:016x}", (n as u64) ^ (1 << 63))
    }

    /// The sort key of a floating-point number: 16 hexadecimal digits that sort byte-wise as the
    /// numbers compare (IEEE 754 total order: `-0.0` before `0.0`, NaN after infinity).
    pub fn float_key(x: f64) -> String {
        let bits = x.to_bits();
        let sortable = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
        format!("{sortable:016x}")
    }

    /// The least sort key in the range (inclusive), if bounded below.
    pub fn from(&self) -> Option<&str> {
        self.from.as_deref()
    }

    /// The first sort key past the range (exclusive), if bounded above.
    pub fn until(&self) -> Option<&str> {
        self.until.as_deref()
    }

    /// Whether the range holds the (stored) sort key `order`.
    pub fn contains(&self, order: &str) -> bool {
        self.from.as_deref().is_none_or(|from| order >= from) && self.until.as_deref().is_none_or(|until| order < until)
    }

    /// Whether no sort key lies in the range.
    pub fn is_empty(&self) -> bool {
        matches!((&self.from, &self.until), (Some(from), Some(until)) if from >= until)
    }
}

/// One view changed by a batch: its new JSON (or its deletion) and the index entries it leaves
/// and joins.
///
/// # Examples
///
/// ```
/// use eventloom_core::{IndexEntry, store::ViewWrite};
///
/// let write = ViewWrite::set("t-1", r#"{"status":"completed"}"#)
///     .leaving(vec![IndexEntry::new("status", "open")])
///     .joining(vec![IndexEntry::new("status", "completed")]);
/// assert_eq!(write.id, "t-1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewWrite {
    /// The view's id.
    pub id: String,
    /// Its JSON, or `None` to delete it.
    pub view: Option<String>,
    /// Index entries it had and no longer has.
    pub leave: Vec<IndexEntry>,
    /// Index entries it gains.
    pub join: Vec<IndexEntry>,
}

impl ViewWrite {
    /// Stores `json` as the view `id`.
    pub fn set(id: impl Into<String>, json: impl Into<String>) -> Self {
        ViewWrite { id: id.into(), view: Some(json.into()), leave: Vec::new(), join: Vec::new() }
    }

    /// Deletes the view `id`.
    pub fn delete(id: impl Into<String>) -> Self {
        ViewWrite { id: id.into(), view: None, leave: Vec::new(), join: Vec::new() }
    }

    /// The view leaves these index entries.
    pub fn leaving(mut self, entries: Vec<IndexEntry>) -> Self {
        self.leave = entries;
        self
    }

    /// The view joins these index entries.
    pub fn joining(mut self, entries: Vec<IndexEntry>) -> Self {
        self.join = entries;
        self
    }
}

/// One atomic write of a projection into one generation: its changed views, their index
/// entries, the generation's new checkpoint, the dead letters of its batch, and the dead letters
/// it resolves.
///
/// A store applies it only if the generation is still live or being built, its checkpoint is
/// still `expected`, and `fencing_token` is not lower than the highest token it has seen for the
/// projection; otherwise it writes nothing and answers the [`Refusal`]
/// ([`GenerationGone`](Refusal::GenerationGone), [`CheckpointMoved`](Refusal::CheckpointMoved)
/// or [`Fenced`](Refusal::Fenced)). That makes replays after a crash, writes of a
/// deposed leader, and writes into views a store has lost, change nothing.
///
/// A store applies it in this order, all or nothing: the dead letters of the generation at the
/// positions in `resolved` leave, then the views and index entries are written, then the batch's
/// `dead_letters` are added and the checkpoint moves. A dead letter retried
/// ([`Operations::retry_dead_letters`](crate::app::Operations::retry_dead_letters)) that fails
/// again is thus in both lists, and is replaced by its new reason, once. A store implementation
/// must honour `resolved`; a refused commit removes none.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Position, store::{ViewCommit, ViewWrite}};
///
/// let commit = ViewCommit {
///     generation: 1,
///     expected: Some(Position::new(4, 9)),
///     checkpoint: Position::new(5, 12),
///     fencing_token: 3,
///     views: vec![ViewWrite::set("task-1", r#"{"title":"x"}"#), ViewWrite::delete("task-2")],
///     dead_letters: Vec::new(),
///     resolved: Vec::new(),
/// };
/// assert_eq!(commit.views.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewCommit {
    /// The generation written to.
    pub generation: u64,
    /// The generation's checkpoint the projection read before processing this batch.
    pub expected: Option<Position>,
    /// The checkpoint after this batch: the position of its last event.
    pub checkpoint: Position,
    /// The leader's fencing token (0 when the projection runs without a lease).
    pub fencing_token: u64,
    /// The views to write or delete, each id at most once.
    pub views: Vec<ViewWrite>,
    /// Events of this batch the projection skipped (see [`PoisonPolicy`](crate::PoisonPolicy)),
    /// recorded with the batch so that skipping one and moving the checkpoint past it happen
    /// together.
    pub dead_letters: Vec<DeadLetter>,
    /// The positions of dead letters of this generation that this commit resolves (their events
    /// applied again, as a retry does): removed in the same atomic write, before `dead_letters`
    /// are added, each position at most once. A position without a dead letter is ignored.
    /// Empty for the commits of a running projection.
    pub resolved: Vec<Position>,
}

/// Where a listing resumes: after the view with this sort key and id. Its text form (for URLs)
/// is opaque and URL-safe.
///
/// # Examples
///
/// ```
/// use eventloom_core::store::ListCursor;
///
/// let cursor = ListCursor { order: "0001".into(), id: "t/1 ü".into() };
/// let text = cursor.to_string();
/// assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
/// assert_eq!(text.parse::<ListCursor>().unwrap(), cursor);
/// assert!("zz".parse::<ListCursor>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListCursor {
    /// The sort key of the last view returned.
    pub order: String,
    /// Its id.
    pub id: String,
}

impl fmt::Display for ListCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hex of `order`, `-`, hex of `id`: URL-safe and unambiguous.
        for byte in self.order.bytes() {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("-")?;
        for byte in self.id.bytes() {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for ListCursor {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || Error::InvalidId { what: "list cursor", reason: "not a cursor this store returned".into() };
        if text.len() > 2 * (crate::StreamId::MAX_ID_LEN + IndexEntry::MAX_ORDER_LEN) + 1 {
            return Err(bad());
        }
        let unhex = |part: &str| -> Result<String> {
            if part.len() % 2 != 0 {
                return Err(bad());
            }
            let bytes = (0..part.len())
                .step_by(2)
                .map(|i| part.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(bad))
                .collect::<Result<Vec<u8>>>()?;
            String::from_utf8(bytes).map_err(|_| bad())
        };
        let (order, id) = text.split_once('-').ok_or_else(bad)?;
        let cursor = ListCursor { order: unhex(order)?, id: unhex(id)? };
        if cursor.order.contains('\0') || cursor.id.contains('\0') {
            return Err(bad());
        }
        Ok(cursor)
    }
}

impl IndexEntry {
    /// The longest index sort key a store accepts, in bytes.
    pub const MAX_ORDER_LEN: usize = 256;
    /// The longest index name a store accepts, in bytes.
    pub const MAX_NAME_LEN: usize = 128;
    /// The longest index value a store accepts, in bytes.
    pub const MAX_VALUE_LEN: usize = 512;
}

/// What marks a value kept as a digest (see [`IndexKey::fitted`]).
const DIGEST_MARK: &str = "~sha256:";

/// `text` as a store can keep it under `limit` bytes: unchanged when it fits, holds no NUL byte
/// and does not look like a digest; otherwise its longest prefix before any NUL that leaves room,
/// then `~sha256:` and the SHA-256 of the whole text in hex. Two different texts never fit to the
/// same form (short of a SHA-256 collision), so equality still holds.
pub(crate) fn fit_digest(text: &str, limit: usize) -> std::borrow::Cow<'_, str> {
    use sha2::Digest;
    if text.len() <= limit && !text.contains('\0') && !text.contains(DIGEST_MARK) {
        return std::borrow::Cow::Borrowed(text);
    }
    let room = limit.saturating_sub(DIGEST_MARK.len() + 64);
    let before_nul = text.split('\0').next().unwrap_or_default();
    let mut fitted = String::with_capacity(limit);
    fitted.push_str(floor_char_boundary(before_nul, room));
    fitted.push_str(DIGEST_MARK);
    for byte in sha2::Sha256::digest(text.as_bytes()) {
        fitted.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        fitted.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    std::borrow::Cow::Owned(fitted)
}

/// `text` cut before its first NUL byte and to at most `limit` bytes (on a character boundary).
fn fit_cut(text: &str, limit: usize) -> std::borrow::Cow<'_, str> {
    let before_nul = text.split('\0').next().unwrap_or_default();
    let cut = floor_char_boundary(before_nul, limit);
    if cut.len() == text.len() { std::borrow::Cow::Borrowed(text) } else { std::borrow::Cow::Owned(cut.to_owned()) }
}

fn floor_char_boundary(text: &str, limit: usize) -> &str {
    let mut end = limit.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The id under which a store keeps the view `id`: unchanged unless it is over
/// [`StreamId::MAX_ID_LEN`](crate::StreamId::MAX_ID_LEN) bytes or holds a NUL byte (then a digest form, as for
/// [`IndexKey::fitted`]). The projector writes, and [`ViewReader`](crate::ViewReader) reads,
/// views under this id, so no id an event carries can stop a projection.
///
/// # Examples
///
/// ```
/// let long = "x".repeat(5000);
/// assert_eq!(eventloom_core::store::stored_view_id("t-1"), "t-1");
/// assert!(eventloom_core::store::stored_view_id(&long).len() <= eventloom_core::StreamId::MAX_ID_LEN);
/// ```
pub fn stored_view_id(id: &str) -> std::borrow::Cow<'_, str> {
    fit_digest(id, crate::StreamId::MAX_ID_LEN)
}

impl IndexKey {
    /// This key as a store keeps it: an index value over [`IndexEntry::MAX_VALUE_LEN`] bytes, or with
    /// a NUL byte, becomes its longest prefix that leaves room followed by `~sha256:` and the
    /// SHA-256 of the whole value (a value that already holds `~sha256:` does too), so that
    /// equality queries still match and no value an event carries can stop a projection; a name
    /// likewise under [`IndexEntry::MAX_NAME_LEN`]. The projector writes, and
    /// [`ViewReader`](crate::ViewReader) queries, fitted keys.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::store::IndexKey;
    /// use eventloom_core::{IndexEntry};
    ///
    /// let short = IndexKey::new("assignee", "ada");
    /// assert_eq!(short.fitted(), short);
    /// let long = IndexKey::new("assignee", "🦀".repeat(130));
    /// let fitted = long.fitted();
    /// assert!(fitted.value.len() <= IndexEntry::MAX_VALUE_LEN);
    /// assert_eq!(fitted, long.fitted(), "the same value fits the same way");
    /// assert_ne!(fitted, IndexKey::new("assignee", "🦀".repeat(131)).fitted());
    /// ```
    pub fn fitted(&self) -> IndexKey {
        IndexKey {
            name: fit_digest(&self.name, IndexEntry::MAX_NAME_LEN).into_owned(),
            value: fit_digest(&self.value, IndexEntry::MAX_VALUE_LEN).into_owned(),
        }
    }
}

impl IndexEntry {
    /// This entry as a store keeps it: its key [fitted](IndexKey::fitted), and a sort key cut
    /// before any NUL byte and to [`IndexEntry::MAX_ORDER_LEN`] bytes. Views whose sort keys agree in those
    /// bytes sort among themselves by view id.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{IndexEntry, };
    ///
    /// let entry = IndexEntry::new("title", "x").ordered_by("é".repeat(200));
    /// assert_eq!(entry.fitted().order.len(), IndexEntry::MAX_ORDER_LEN);
    /// ```
    pub fn fitted(&self) -> IndexEntry {
        self.clone().into_fitted()
    }

    /// [`IndexEntry::fitted`], reusing this entry's strings when they fit already.
    pub(crate) fn into_fitted(mut self) -> IndexEntry {
        use std::borrow::Cow::Owned;
        if let Owned(name) = fit_digest(&self.key.name, IndexEntry::MAX_NAME_LEN) {
            self.key.name = name;
        }
        if let Owned(value) = fit_digest(&self.key.value, IndexEntry::MAX_VALUE_LEN) {
            self.key.value = value;
        }
        if let Owned(order) = fit_cut(&self.order, IndexEntry::MAX_ORDER_LEN) {
            self.order = order;
        }
        self
    }
}

/// One page of a listing: views (id and JSON) in index order, and where the next page starts.
///
/// # Examples
///
/// ```
/// use eventloom_core::store::ViewPage;
///
/// let page = ViewPage { views: vec![("t-1".into(), "{}".into())], next: None };
/// assert!(page.next.is_none(), "the last page");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewPage {
    /// The views, by id, with their JSON.
    pub views: Vec<(String, String)>,
    /// The cursor of the next page; `None` on the last.
    pub next: Option<ListCursor>,
}

/// One entry of an index list as [`ViewStore::list_generation`] answers it: the view's sort key
/// and id (together its place in the list, and the [`ListCursor`] after it) and its JSON, `None`
/// when the entry's view is missing.
///
/// # Examples
///
/// ```
/// use eventloom_core::store::{IndexedView, ListCursor};
///
/// let entry = IndexedView { order: "0001".into(), id: "t-1".into(), view: Some("{}".into()) };
/// assert_eq!(entry.cursor(), ListCursor { order: "0001".into(), id: "t-1".into() });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedView {
    /// The entry's sort key, as stored.
    pub order: String,
    /// The view's stored id.
    pub id: String,
    /// The view's JSON; `None` when the entry's view is missing.
    pub view: Option<String>,
}

impl IndexedView {
    /// The cursor a listing resumes from after this entry.
    pub fn cursor(&self) -> ListCursor {
        ListCursor { order: self.order.clone(), id: self.id.clone() }
    }
}

/// An event a projection skipped because it could not process it.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Position, StreamId, store::DeadLetter};
///
/// let task = StreamId::new("task", "t-1").unwrap();
/// let letter = DeadLetter::new(Position::new(4, 7), task, 3, "TaskRenamed", "title too long");
/// let json = serde_json::to_string(&letter).unwrap();
/// assert_eq!(serde_json::from_str::<DeadLetter>(&json).unwrap(), letter);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The event's position.
    pub position: Position,
    /// Its stream.
    pub stream: crate::StreamId,
    /// Its version in the stream.
    pub version: u64,
    /// Its stored type name.
    pub event_type: String,
    /// Why the projection could not process it.
    pub reason: String,
}

impl DeadLetter {
    /// The dead letter of the event at `position` (version `version` of `stream`, of stored type
    /// `event_type`), set aside for `reason`. For view store implementations.
    pub fn new(
        position: Position,
        stream: crate::StreamId,
        version: u64,
        event_type: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        DeadLetter { position, stream, version, event_type: event_type.into(), reason: reason.into() }
    }
}

/// Stores a projection's views (as JSON, by id), their secondary indexes and checkpoints, in
/// generations (see [`Generation`]).
///
/// The projector writes through [`begin_generation`](Self::begin_generation),
/// [`load_views`](Self::load_views), [`commit`](Self::commit) and [`go_live`](Self::go_live);
/// queries read the live generation through [`read_views`](Self::read_views),
/// [`list`](Self::list) and [`count`](Self::count), which fail with
/// [`Error::NotBuilt`](crate::Error::NotBuilt) while there is none. A store finds the live
/// generation without an extra round-trip per query.
///
/// Implementations run the conformance suite `eventloom_core::testing::view_store` (feature
/// `testing`). The trait is object safe; [`crate::ViewReader`] gives typed access.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use eventloom_core::{Position, memory::MemoryViewStore, store::{ViewCommit, ViewStore, ViewWrite}};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store: Arc<dyn ViewStore> = Arc::new(MemoryViewStore::default());
/// let generation = store.begin_generation("tasks", 1, 0).await.unwrap().unwrap();
/// let commit = ViewCommit { generation: generation.id, expected: None, checkpoint: Position::new(1, 1),
///     fencing_token: 0, views: vec![ViewWrite::set("t-1", "{}")], dead_letters: Vec::new(), resolved: Vec::new() };
/// assert_eq!(store.commit("tasks", commit).await.unwrap(), Ok(()));
/// assert!(store.read_views("tasks", &["t-1".into()]).await.is_err(), "not live yet");
/// store.go_live("tasks", generation.id, 0).await.unwrap().unwrap();
/// assert_eq!(store.read_views("tasks", &["t-1".into()]).await.unwrap(), vec![Some("{}".into())]);
/// # });
/// ```
// A new method here gets a forwarding default in `DelegateViewStore` and a line in its blanket impl
// (store/delegate.rs), so that wrappers forward it.
pub trait ViewStore: Send + Sync + 'static {
    /// The projection's live generation and the one being built. A failure to read it is an
    /// error, never "nothing stored".
    fn status<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<ProjectionStatus>>;

    /// Starts a new, empty generation for `version` of the projection, with an id higher than any
    /// the store holds, and records it as the one being built (dropping an earlier one being
    /// built). Refused ([`Refusal::Fenced`]) like a commit.
    fn begin_generation<'a>(
        &'a self,
        projection: &'a str,
        version: u32,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written<Generation>>>;

    /// The views with these ids in `generation`, in the same order; `None` for a missing one.
    fn load_views<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<String>>>>;

    /// Applies `commit` atomically if its generation, expected checkpoint and fencing token hold;
    /// otherwise writes nothing and answers the [`Refusal`] (see [`ViewCommit`]).
    fn commit<'a>(&'a self, projection: &'a str, commit: ViewCommit) -> BoxFuture<'a, Result<Written>>;

    /// Makes the generation being built live, in one atomic step, and drops the one that was
    /// live. Refused with [`Refusal::Fenced`] for an old token, with [`Refusal::GenerationGone`]
    /// when `generation` is not the one being built, and with [`Refusal::CheckpointMoved`] (its
    /// `expected` the built checkpoint, its `actual` the live one) while the built generation is
    /// behind the live one: switching then would take queries back in time. Making the live
    /// generation live again succeeds and changes nothing.
    fn go_live<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written>>;

    /// The live views with these ids, in the same order; `None` for a missing one.
    fn read_views<'a>(&'a self, projection: &'a str, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<String>>>>;

    /// Up to `limit` live views of one index list whose sort keys lie in `range`, in the list's
    /// order, after `after`. The page's `next` is `None` once no entry of the range follows.
    fn list<'a>(
        &'a self,
        projection: &'a str,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<ViewPage>>;

    /// How many live views each index list holds, in the order asked, read at one instant.
    fn count<'a>(&'a self, projection: &'a str, keys: &'a [IndexKey]) -> BoxFuture<'a, Result<Vec<u64>>>;

    /// Up to `limit` entries of one index list of `generation` (live, being built, or kept after a
    /// switch: a partitioned projection's queries read the generations its live partition set
    /// names), whose sort keys lie in `range`, in the list's order, after `after`; each with its
    /// view's JSON (`None` for a missing view). A generation the store does not hold lists
    /// nothing: the caller knows which generations exist.
    fn list_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<IndexedView>>>;

    /// How many entries each index list of `generation` holds, in the order asked, read at one
    /// instant (0 for a generation the store does not hold).
    fn count_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        keys: &'a [IndexKey],
    ) -> BoxFuture<'a, Result<Vec<u64>>>;

    /// The events the live generation's projection skipped, oldest first (none before one is
    /// live).
    fn dead_letters<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<Vec<DeadLetter>>>;

    /// Records why the projection stopped (`None`: that it runs again), for
    /// [`status`](Self::status) to report. Refused ([`Refusal::Fenced`]) like a commit.
    fn record_stop<'a>(
        &'a self,
        projection: &'a str,
        stop: Option<&'a ProjectionStop>,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written>>;

    /// The names of the projections (and event handlers, process managers) this store holds
    /// views, generations, status or dead letters for, sorted byte-wise: partition members
    /// (`name~0of6`) and partition records (`name~partitions`) among them. For operators
    /// listing what a store holds, whatever code is deployed.
    fn projections<'a>(&'a self) -> BoxFuture<'a, Result<Vec<String>>>;

    /// Removes dead letters of the live generation of `projection`: all of them, or those at the
    /// given positions ([`DeadLetterSelection`]); answers how many went (0 for a projection the
    /// store does not hold, or without a live generation). Refused ([`Refusal::Fenced`]) like a
    /// commit, and like one it raises the highest token seen.
    fn remove_dead_letters<'a>(
        &'a self,
        projection: &'a str,
        which: &'a DeadLetterSelection,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written<u64>>>;

    /// A signal that `projection`'s live checkpoint (or its recorded stop) may have moved, so
    /// that waits for its views ([`ViewReader::wait_for`](crate::read::ViewReader::wait_for))
    /// are woken by the store rather than by polling, whichever process wrote. `None` (the
    /// default) when the store has none: waits then poll the status every 2 ms. With one, waits
    /// still poll slowly (a lost notification costs latency, not correctness), and every 2 ms
    /// while the signal is not [`listening`](crate::store::ViewChanges::listening).
    /// `projection` is the name readers use: a partitioned projection's, whose partitions'
    /// changes the signal tells too (see [`ViewChangeHub`](crate::store::ViewChangeHub)).
    fn changes(&self, projection: &str) -> Option<crate::store::ViewChanges> {
        let _ = projection;
        None
    }
}

/// Which dead letters of a projection [`ViewStore::remove_dead_letters`] removes.
///
/// # Examples
///
/// ```
/// use eventloom_core::{Position, store::DeadLetterSelection};
///
/// let some = DeadLetterSelection::At(vec![Position::new(4, 7)]);
/// assert!(some.selects(Position::new(4, 7)));
/// assert!(!some.selects(Position::new(4, 8)));
/// assert!(DeadLetterSelection::All.selects(Position::new(4, 8)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeadLetterSelection {
    /// Every dead letter of the live generation.
    All,
    /// Those of the events at these positions (a position without a dead letter is ignored).
    At(Vec<Position>),
}

impl DeadLetterSelection {
    /// Whether the dead letter of the event at `position` is selected.
    pub fn selects(&self, position: Position) -> bool {
        match self {
            DeadLetterSelection::All => true,
            DeadLetterSelection::At(positions) => positions.contains(&position),
        }
    }
}

impl<T: ViewStore + ?Sized> ViewStore for Arc<T> {
    fn status<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<ProjectionStatus>> {
        (**self).status(projection)
    }
    fn begin_generation<'a>(
        &'a self,
        projection: &'a str,
        version: u32,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written<Generation>>> {
        (**self).begin_generation(projection, version, fencing_token)
    }
    fn load_views<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<String>>>> {
        (**self).load_views(projection, generation, ids)
    }
    fn commit<'a>(&'a self, projection: &'a str, commit: ViewCommit) -> BoxFuture<'a, Result<Written>> {
        (**self).commit(projection, commit)
    }
    fn go_live<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written>> {
        (**self).go_live(projection, generation, fencing_token)
    }
    fn read_views<'a>(&'a self, projection: &'a str, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<String>>>> {
        (**self).read_views(projection, ids)
    }
    fn list<'a>(
        &'a self,
        projection: &'a str,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<ViewPage>> {
        (**self).list(projection, key, range, after, limit)
    }
    fn count<'a>(&'a self, projection: &'a str, keys: &'a [IndexKey]) -> BoxFuture<'a, Result<Vec<u64>>> {
        (**self).count(projection, keys)
    }
    fn list_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<IndexedView>>> {
        (**self).list_generation(projection, generation, key, range, after, limit)
    }
    fn count_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        keys: &'a [IndexKey],
    ) -> BoxFuture<'a, Result<Vec<u64>>> {
        (**self).count_generation(projection, generation, keys)
    }
    fn dead_letters<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<Vec<DeadLetter>>> {
        (**self).dead_letters(projection)
    }
    fn record_stop<'a>(
        &'a self,
        projection: &'a str,
        stop: Option<&'a ProjectionStop>,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written>> {
        (**self).record_stop(projection, stop, fencing_token)
    }
    fn projections<'a>(&'a self) -> BoxFuture<'a, Result<Vec<String>>> {
        (**self).projections()
    }
    fn remove_dead_letters<'a>(
        &'a self,
        projection: &'a str,
        which: &'a DeadLetterSelection,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written<u64>>> {
        (**self).remove_dead_letters(projection, which, fencing_token)
    }
    fn changes(&self, projection: &str) -> Option<crate::store::ViewChanges> {
        (**self).changes(projection)
    }
}

impl ViewCommit {
    /// Checks what every store must refuse before writing anything: a NUL byte in a view id,
    /// index name, value or sort key (PostgreSQL text cannot hold one, and Redis index members
    /// use it as a separator); a view id over [`StreamId::MAX_ID_LEN`](crate::StreamId::MAX_ID_LEN) bytes, an index
    /// name over [`IndexEntry::MAX_NAME_LEN`], a value over [`IndexEntry::MAX_VALUE_LEN`] or a sort key over
    /// [`IndexEntry::MAX_ORDER_LEN`] (so that every index entry fits a PostgreSQL b-tree row and every
    /// cursor parses); an id written twice; a position listed twice in `resolved`.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{Position, store::{ViewCommit, ViewWrite}};
    ///
    /// let mut commit = ViewCommit { generation: 1, expected: None, checkpoint: Position::new(1, 1),
    ///     fencing_token: 0, views: vec![ViewWrite::set("a\0b", "{}")], dead_letters: Vec::new(),
    ///     resolved: Vec::new() };
    /// assert!(commit.validate().is_err());
    /// commit.views[0].id = "a".into();
    /// assert!(commit.validate().is_ok());
    /// commit.resolved = vec![Position::new(1, 1), Position::new(1, 1)];
    /// assert!(commit.validate().is_err(), "a dead letter resolved twice");
    /// ```
    pub fn validate(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::with_capacity(self.views.len());
        for write in &self.views {
            write.validate()?;
            if !seen.insert(write.id.as_str()) {
                return Err(Error::InvalidId { what: "view id", reason: format!("{:?} is written twice", write.id) });
            }
        }
        let mut resolved = std::collections::HashSet::with_capacity(self.resolved.len());
        for position in &self.resolved {
            if !resolved.insert(position) {
                return Err(Error::InvalidId {
                    what: "resolved dead letter",
                    reason: format!("position {position} is listed twice"),
                });
            }
        }
        Ok(())
    }
}

impl ViewWrite {
    /// The checks of [`ViewCommit::validate`] on this one write.
    pub(crate) fn validate(&self) -> Result<()> {
        let check = |what: &'static str, text: &str, limit: usize| {
            if text.contains('\0') {
                return Err(Error::InvalidId {
                    what,
                    reason: format!("{:?} contains a NUL byte", text.escape_debug().to_string()),
                });
            }
            if text.len() > limit {
                return Err(Error::InvalidId {
                    what,
                    reason: format!("{} bytes, over the limit of {limit}", text.len()),
                });
            }
            Ok(())
        };
        check("view id", &self.id, crate::StreamId::MAX_ID_LEN)?;
        for entry in self.leave.iter().chain(&self.join) {
            check("index name", &entry.key.name, IndexEntry::MAX_NAME_LEN)?;
            check("index value", &entry.key.value, IndexEntry::MAX_VALUE_LEN)?;
            check("index sort key", &entry.order, IndexEntry::MAX_ORDER_LEN)?;
        }
        Ok(())
    }
}
