//! [`RedisViewStore`]: generations of views, their secondary indexes and checkpoints on Redis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use eventloom_core::store::{BoxFuture, DeadLetterSelection, Refusal, ViewChanges, Written};
use eventloom_core::{
    Error as CoreError, Position,
    read::OrderRange,
    store::{
        DeadLetter, Generation, IndexKey, IndexedView, ListCursor, ProjectionStatus, ProjectionStop, ViewCommit,
        ViewPage, ViewStore,
    },
};
use redis::aio::ConnectionManager;

use crate::connection::Connection;
use tracing::Instrument;

use crate::config::RedisConfig;
use crate::error::redis_error;
use crate::eviction::{self, EvictionPolicy};
use crate::keys::{ProjectionKeys, index_suffix};
use crate::notices::Notices;
use crate::scripts;
use crate::{Error, Result};

/// How often the cluster client tries a command again after `TRYAGAIN`, `CLUSTERDOWN` or a lost
/// connection, waiting 10 ms to 0.5 s (growing) between tries, before the call fails as
/// unavailable.
const CLUSTER_RETRIES: u32 = 10;

/// How many keys one call of the sweep script deletes at most, so that dropping a large
/// generation never blocks Redis for long.
const SWEEP_BUDGET: usize = 1_000;

/// How often a query reads again after finding that another generation went live meanwhile
/// (or, for a list, that the page changed between the read of its members and of its views).
const QUERY_TRIES: usize = 8;

/// How often a script that follows the `live` and `building` pointers is run again after finding
/// that they moved since the caller read them (to build its KEYS).
const POINTER_TRIES: usize = 8;

/// How many generation ids `begin_generation` tries, each one above the last that was taken.
const BEGIN_TRIES: usize = 64;

/// How many of a generation's views, and of its index lists, each commit checks are there.
const SAMPLE: usize = 3;

/// How many pages' members a store remembers (all are forgotten when it holds this many), and
/// how many members a page may have to be remembered: a list query that finds its page's
/// members unchanged since it last read them costs one round-trip instead of two.
const PAGES_REMEMBERED: usize = 256;
const PAGE_MEMBERS_REMEMBERED: usize = 101;

/// A page of a list: projection, generation, list suffix, `ZRANGEBYLEX` bounds, count.
type PageKey = (String, u64, String, String, String, usize);

/// The scripts, loaded once per store (clones share them).
struct Scripts {
    commit: redis::Script,
    begin: redis::Script,
    go_live: redis::Script,
    sweep: redis::Script,
    status: redis::Script,
    record_stop: redis::Script,
    list: redis::Script,
    count: redis::Script,
    list_generation: redis::Script,
    count_generation: redis::Script,
    dead_letters: redis::Script,
    remove_dead_letters: redis::Script,
    load: redis::Script,
    peek: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            commit: redis::Script::new(scripts::COMMIT),
            begin: redis::Script::new(scripts::BEGIN),
            go_live: redis::Script::new(scripts::GO_LIVE),
            sweep: redis::Script::new(scripts::SWEEP),
            status: redis::Script::new(scripts::STATUS),
            record_stop: redis::Script::new(scripts::RECORD_STOP),
            list: redis::Script::new(scripts::LIST),
            count: redis::Script::new(scripts::COUNT),
            list_generation: redis::Script::new(scripts::LIST_GENERATION),
            count_generation: redis::Script::new(scripts::COUNT_GENERATION),
            dead_letters: redis::Script::new(scripts::DEAD_LETTERS),
            remove_dead_letters: redis::Script::new(scripts::REMOVE_DEAD_LETTERS),
            load: redis::Script::new(scripts::LOAD),
            peek: redis::Script::new(scripts::PEEK),
        }
    }
}

/// A [`ViewStore`] on Redis.
///
/// Each projection's views live in *generations* (see [`eventloom_core::store::Generation`]): a pointer key
/// names the live one, which queries read, and another the one being built. A view is a string
/// (its JSON); an index list is a sorted set whose members are `<sort key>\0<view id>`, all of
/// score 0, so `ZRANGEBYLEX` pages through it in (sort key, id) order. One projection's keys share
/// one hash tag, so every script touches a single cluster slot (see the crate's key layout).
///
/// - A batch ([`commit`](ViewStore::commit)) is one Lua script that checks every key's type, the
///   fencing token, that the generation is still live or being built (a Redis that restarted
///   empty or was flushed has neither: [`Refusal::GenerationGone`]) and the checkpoint,
///   before its first write: all or nothing.
/// - [`go_live`](ViewStore::go_live) switches the pointer in one script, then deletes the keys of
///   the generation that was live, at most a thousand keys per script call.
/// - Queries read the pointer in the same round-trip as the data: [`read_views`](ViewStore::read_views)
///   is one `MGET` of the pointer and the views of the live generation this store last saw
///   (remembered per projection, shared by clones; read again when the pointer moved), and
///   [`list`](ViewStore::list), [`count`](ViewStore::count) and
///   [`dead_letters`](ViewStore::dead_letters) are read-only scripts.
///   [`list_generation`](ViewStore::list_generation) and
///   [`count_generation`](ViewStore::count_generation) read the generation named by a read-only
///   script each, which first checks it is not in the trash: a dropped generation whose keys the
///   sweep has not deleted yet lists nothing, as after its sweep.
/// - **Notifications** ([`changes`](ViewStore::changes)): an applied commit PUBLISHes the
///   projection's name on `<prefix>eventloom.views` from its script (a switch and a recorded
///   stop right after theirs). Waits for views
///   ([`ViewReader::wait_for`](eventloom_core::read::ViewReader::wait_for)) are woken by them
///   through one dedicated SUBSCRIBE connection per store (shared by its clones, opened by the
///   first wait), whichever process wrote; while it is down they poll every 2 ms, and it
///   reconnects by itself. On a cluster waits poll every 2 ms (no subscriber yet).
///
/// The connection reconnects by itself (to one node, or to the masters of a cluster, whose slot
/// map it reads again after a failover or a slot migration); a failed read is an error, never
/// "nothing stored". Run Redis with `maxmemory-policy noeviction` (or `volatile-*`): connecting refuses
/// an evicting policy unless [`RedisConfig::accept_eviction`] accepts it, and a generation that
/// loses a key is rebuilt, never folded again from no checkpoint (see the crate's section
/// "Eviction"). The `Debug` output shows no credentials.
///
/// # Examples
///
/// ```no_run
/// use eventloom_core::{store::IndexKey, read::ViewReader};
/// use eventloom_redis::RedisViewStore;
///
/// # #[derive(serde::Deserialize)] struct Task;
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let views = RedisViewStore::connect("redis://127.0.0.1:6379/", "app:").await?;
/// let tasks = ViewReader::<Task>::new(views, "tasks");
/// let first_page = tasks.list(&IndexKey::new("status", "open"), None, 20).await?;
/// let counts = tasks.count(&[IndexKey::new("status", "open"), IndexKey::new("status", "done")]).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisViewStore {
    connection: Connection,
    prefix: String,
    address: String,
    scripts: Arc<Scripts>,
    /// The live generation last seen, per projection.
    live: Arc<Mutex<HashMap<String, u64>>>,
    /// The `maxmemory-policy` last seen.
    eviction: Arc<Mutex<eviction::Watch>>,
    /// [`RedisConfig::wait_for_replicas`].
    wait_for_replicas: Option<(u32, std::time::Duration)>,
    /// What the next commit of each projection needs to know, from the reply of its last one.
    next_commit: Arc<Mutex<HashMap<String, Peeked>>>,
    /// The members of the pages last listed (a guess the list script checks).
    pages: Arc<Mutex<HashMap<PageKey, Vec<String>>>>,
    /// The views' notifications (see [`ViewStore::changes`]).
    notices: Arc<Notices>,
}

impl std::fmt::Debug for RedisViewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisViewStore").field("address", &self.address).field("prefix", &self.prefix).finish()
    }
}

fn position(text: &str) -> eventloom_core::Result<Option<Position>> {
    if text.is_empty() { Ok(None) } else { text.parse().map(Some) }
}

fn not_built(projection: &str) -> CoreError {
    CoreError::NotBuilt { projection: projection.to_owned() }
}

fn fenced(token: u64, highest: &str) -> Refusal {
    Refusal::Fenced { token, highest: highest.parse().unwrap_or(u64::MAX) }
}

fn unexpected(what: &str, reply: impl std::fmt::Debug) -> CoreError {
    CoreError::Backend { message: format!("unexpected reply of Redis to {what}: {reply:?}"), source: None }
}

/// The `live` and `building` pointers as stored (`""` for none). A script that follows them gets
/// the keys of these generations in its KEYS and first checks that the pointers still name them.
#[derive(Debug, Clone)]
struct Pointers {
    live: String,
    building: String,
}

impl Pointers {
    /// Adds the four keys of the live, then of the building generation (see `common.lua`).
    fn keys(&self, keys: &ProjectionKeys, invocation: &mut redis::ScriptInvocation<'_>) {
        for id in [&self.live, &self.building] {
            for key in keys.generation_named(id).quad() {
                invocation.key(key);
            }
        }
    }
}

/// What a commit needs to know before it builds its KEYS: the pointers, and the views and index
/// lists of its generation that it checks are there (picked at random). Read by the peek script,
/// or left by the generation's previous commit (its reply), so that a projector's commits after
/// the first cost one round-trip.
#[derive(Debug, Clone)]
struct Peeked {
    generation: u64,
    pointers: Pointers,
    views: Vec<String>,
    lists: Vec<String>,
}

impl Peeked {
    /// From a reply `{live, building, s, s view ids..., index suffixes...}`.
    fn parse(generation: u64, reply: &[String], what: &str) -> eventloom_core::Result<Self> {
        let [live, building, sampled_views, samples @ ..] = reply else {
            return Err(unexpected(what, reply));
        };
        let sampled_views: usize = sampled_views.parse().map_err(|_| unexpected(what, reply))?;
        if sampled_views > samples.len() {
            return Err(unexpected(what, reply));
        }
        let (views, lists) = samples.split_at(sampled_views);
        Ok(Peeked {
            generation,
            pointers: Pointers { live: live.clone(), building: building.clone() },
            views: views.to_vec(),
            lists: lists.to_vec(),
        })
    }
}

/// A batch as the commit script takes it (see `scripts::COMMIT`): the index lists it touches,
/// each once, numbered from 1, and its dead letters as JSON.
struct Batch<'c> {
    commit: &'c ViewCommit,
    lists: Vec<&'c IndexKey>,
    slots: HashMap<&'c IndexKey, usize>,
    dead_letters: Vec<String>,
}

impl<'c> Batch<'c> {
    fn new(commit: &'c ViewCommit) -> eventloom_core::Result<Self> {
        let mut lists: Vec<&IndexKey> = Vec::new();
        let mut slots: HashMap<&IndexKey, usize> = HashMap::new();
        for write in &commit.views {
            for entry in write.leave.iter().chain(&write.join) {
                slots.entry(&entry.key).or_insert_with(|| {
                    lists.push(&entry.key);
                    lists.len()
                });
            }
        }
        let dead_letters = commit
            .dead_letters
            .iter()
            .map(|letter| {
                serde_json::to_string(letter).map_err(|source| CoreError::Serde { what: "dead letter".into(), source })
            })
            .collect::<eventloom_core::Result<Vec<_>>>()?;
        Ok(Batch { commit, lists, slots, dead_letters })
    }

    /// The commit script's call, with the pointers and the sample that `peeked` holds.
    fn invocation<'s>(
        &self,
        script: &'s redis::Script,
        keys: &ProjectionKeys,
        peeked: &Peeked,
        tell: (&str, &str),
    ) -> redis::ScriptInvocation<'s> {
        let commit = self.commit;
        let generation = keys.generation(commit.generation);
        let mut invocation = script.prepare_invoke();
        invocation.key(keys.token()).key(keys.live()).key(keys.building());
        for key in generation.quad() {
            invocation.key(key);
        }
        peeked.pointers.keys(keys, &mut invocation);
        for write in &commit.views {
            invocation.key(generation.view(&write.id));
        }
        for list in &self.lists {
            invocation.key(generation.index(list));
        }
        for id in &peeked.views {
            invocation.key(generation.view(id));
        }
        for suffix in &peeked.lists {
            invocation.key(generation.index_at(suffix));
        }
        invocation
            .arg(commit.generation)
            .arg(commit.expected.map(|p| p.to_string()).unwrap_or_default())
            .arg(commit.checkpoint.to_string())
            .arg(commit.fencing_token)
            .arg(commit.views.len())
            .arg(self.lists.len())
            .arg(peeked.pointers.live.as_str())
            .arg(peeked.pointers.building.as_str())
            .arg(peeked.views.len())
            .arg(peeked.lists.len())
            .arg(SAMPLE);
        for list in &self.lists {
            invocation.arg(index_suffix(list));
        }
        invocation.arg(&peeked.views).arg(&peeked.lists);
        for write in &commit.views {
            invocation.arg(write.id.as_str());
            match &write.view {
                Some(json) => invocation.arg(format!("s{json}")),
                None => invocation.arg("d"),
            };
            for entries in [&write.leave, &write.join] {
                invocation.arg(entries.len());
                for entry in entries {
                    invocation.arg(self.slots[&entry.key]).arg(member(&entry.order, &write.id));
                }
            }
        }
        invocation.arg(commit.resolved.len());
        for position in &commit.resolved {
            invocation.arg(position.to_string());
        }
        invocation.arg(tell.0).arg(tell.1);
        invocation.arg(&self.dead_letters);
        invocation
    }
}

/// The pointers moved every time a script was about to follow them.
fn pointers_moved(projection: &str) -> CoreError {
    CoreError::unavailable_msg(format!(
        "the generation pointers of projection {projection} moved {POINTER_TRIES} times during one call"
    ))
}

/// Another generation went live every time a query was about to read the one it had found.
fn live_moved(projection: &str, what: &str) -> CoreError {
    CoreError::unavailable_msg(format!(
        "the live generation of projection {projection} changed {QUERY_TRIES} times during one {what}"
    ))
}

/// The highest generation id this process proposed or was handed.
static LAST_GENERATION_ID: AtomicU64 = AtomicU64::new(0);

/// A new generation's proposed id: the time in milliseconds since 1970 above 20 random bits
/// (and above every id this process saw), so that ids grow with time and never come back,
/// whatever Redis lost (a counter in Redis would start over after a `FLUSHALL`). The begin
/// script takes one above every id the projection still holds instead when this one is not
/// (a clock behind another process's).
fn proposed_generation_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    // Until the year 2527.
    let millis = u64::try_from(since.as_millis()).unwrap_or(u64::MAX).min((1 << 44) - 1);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(since.as_nanos());
    let proposed = (millis << 20) | (hasher.finish() & 0xF_FFFF);
    let last = LAST_GENERATION_ID
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| Some(last.saturating_add(1).max(proposed)))
        .unwrap_or_else(|last| last);
    last.saturating_add(1).max(proposed)
}

/// A generation id as Redis stores it.
fn generation_id(text: &str) -> eventloom_core::Result<u64> {
    text.parse().map_err(|_| unexpected("a generation id", text))
}

/// The index list member of a view: `<sort key>\0<view id>`.
fn member(order: &str, id: &str) -> String {
    format!("{order}\0{id}")
}

/// The `ZRANGEBYLEX` minimum of the members strictly after `cursor`.
fn after(cursor: Option<&ListCursor>, range: &OrderRange) -> String {
    // A member `<sort key>\0<id>` is at least `from` exactly when its sort key is (sort keys
    // hold no NUL), so the range's start is the bound `[from`.
    let from = range.from().map(|from| format!("[{from}"));
    // Stored sort keys hold no NUL (commits refuse them), so the members after a sort key
    // `p\0...` are those whose sort key is above `p`: from `p\x01` on.
    let after = cursor.map(|cursor| match cursor.order.split_once('\0') {
        Some((head, _)) => format!("[{head}\u{1}"),
        None => format!("({}\0{}", cursor.order, cursor.id),
    });
    // The later of the two; both start with a one-byte marker, then the member they compare
    // (on a tie the cursor's, exclusive, is the later).
    match (after, from) {
        (Some(after), Some(from)) if from[1..] > after[1..] => from,
        (Some(bound), _) | (None, Some(bound)) => bound,
        (None, None) => "-".to_owned(),
    }
}

/// The ZRANGEBYLEX upper bound of `range`: members below `(until` are those whose sort key is.
fn until(range: &OrderRange) -> String {
    range.until().map_or_else(|| "+".to_owned(), |until| format!("({until}"))
}

impl RedisViewStore {
    /// Connects to `url` (`redis://[user:password@]host:port/db`, or `rediss://` with the
    /// feature `tls`) with a reconnecting connection manager; every key starts with `prefix`.
    /// [`connect_with`](Self::connect_with) takes more settings.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), eventloom_redis::Error> {
    /// let views = eventloom_redis::RedisViewStore::connect("redis://app:s3cret@127.0.0.1:6379/", "app:").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        Self::connect_with(RedisConfig::from_url(url)?.prefix(prefix)?).await
    }

    /// Connects with these settings. A refused password, or a setting that cannot work, fails at
    /// once; one node that cannot be reached is tried again a few times first. For a Redis
    /// Cluster ([`RedisConfig::cluster`]) it reads the slot map from the first node that answers
    /// and PINGs every master: a cluster none of whose given nodes answers fails at once. Once
    /// connected, the cluster client sends each script to the master of its projection's slot,
    /// follows `MOVED` and `ASK`, and retries `TRYAGAIN`, `CLUSTERDOWN` and a lost connection a
    /// few times itself; what still fails is [`eventloom_core::Error::Unavailable`], which the
    /// projector retries.
    ///
    /// It reads Redis's `maxmemory-policy` (`CONFIG GET`) and fails with
    /// [`Error::EvictionPolicy`] when the policy may evict the store's keys (`allkeys-*`), unless
    /// [`RedisConfig::accept_eviction`] accepts it (then it logs a warning). A policy it cannot
    /// read (`CONFIG` renamed or disabled, or not permitted to the ACL user) is logged as a
    /// warning and the store connects: make sure yourself that it is `noeviction` or `volatile-*`.
    /// [`status`](ViewStore::status) reads the policy again (at most once a second: the projector
    /// calls it every verify interval) and logs a change, and an evicting policy not accepted at
    /// error level every minute; [`eviction_policy`](Self::eviction_policy) says what it found.
    pub async fn connect_with(config: RedisConfig) -> Result<Self> {
        let address = config.address();
        let span = tracing::info_span!("redis_connect", %address, tls = config.is_tls(), cluster = config.is_cluster());
        async move {
            let mut connection =
                if config.is_cluster() { connect_cluster(&config).await? } else { connect_node(&config).await? };
            tracing::debug!("connected");
            let policy =
                eviction::read(&mut connection).await.map_err(|e| Error::Connect(config.redact(e.to_string())))?;
            if let EvictionPolicy::Evicting(name) = &policy
                && !config.accept_eviction
            {
                return Err(Error::EvictionPolicy { policy: name.clone() });
            }
            eviction::log(&policy, config.accept_eviction, &address);
            // A cluster's PUBLISH reaches every node, but the subscriber connects to one node
            // only: not there yet, waits on a cluster poll.
            let subscriber = if config.is_cluster() { None } else { Some(client(&config)?) };
            Ok(RedisViewStore {
                notices: Arc::new(Notices::new(subscriber, &config.prefix)),
                connection,
                prefix: config.prefix,
                address,
                scripts: Arc::new(Scripts::new()),
                live: Arc::default(),
                eviction: Arc::new(Mutex::new(eviction::Watch::new(config.accept_eviction, policy))),
                wait_for_replicas: config.wait_for_replicas,
                next_commit: Arc::default(),
                pages: Arc::default(),
            })
        }
        .instrument(span)
        .await
    }

    /// Refuses prefixes with `{` or `}` (they would move the hash tag), control characters, or
    /// over 256 bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(eventloom_redis::RedisViewStore::check_prefix("app:").is_ok());
    /// assert!(eventloom_redis::RedisViewStore::check_prefix("app{1}:").is_err());
    /// ```
    pub fn check_prefix(prefix: &str) -> Result<()> {
        crate::config::check_prefix(prefix)
    }

    /// The `maxmemory-policy` that the last check found (at connect, or by a
    /// [`status`](ViewStore::status) call at most a second ago).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), eventloom_redis::Error> {
    /// let views = eventloom_redis::RedisViewStore::connect("redis://127.0.0.1:6379/", "app:").await?;
    /// assert!(views.eviction_policy().is_safe(), "connect refuses an evicting policy");
    /// # Ok(()) }
    /// ```
    pub fn eviction_policy(&self) -> EvictionPolicy {
        self.eviction.lock().unwrap_or_else(PoisonError::into_inner).seen.clone()
    }

    /// Reads the `maxmemory-policy` again when the last check is a second old or more.
    async fn watch_eviction_policy(&self) {
        if !self.eviction.lock().unwrap_or_else(PoisonError::into_inner).due() {
            return;
        }
        match eviction::read(&mut self.connection.clone()).await {
            Ok(policy) => self.eviction.lock().unwrap_or_else(PoisonError::into_inner).found(policy, &self.address),
            Err(error) => tracing::debug!(%error, "cannot read Redis's maxmemory-policy now"),
        }
    }

    /// Reads the `live` and `building` pointers (one `MGET`: they share the projection's slot).
    async fn pointers(&self, keys: &ProjectionKeys) -> eventloom_core::Result<Pointers> {
        let mut connection = self.connection.clone();
        let (live, building): (Option<String>, Option<String>) = redis::cmd("MGET")
            .arg(keys.live())
            .arg(keys.building())
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(Pointers { live: live.unwrap_or_default(), building: building.unwrap_or_default() })
    }

    /// Runs `script` with the keys `leading`, then the keys of the generations the pointers name
    /// as read now, and the arguments `args`, then the pointers themselves; again when the
    /// pointers moved before the script ran (its reply `9`), at most [`POINTER_TRIES`] times.
    async fn invoke_at_pointers(
        &self,
        projection: &str,
        keys: &ProjectionKeys,
        script: &redis::Script,
        leading: &[String],
        args: &[String],
    ) -> eventloom_core::Result<Vec<String>> {
        let mut connection = self.connection.clone();
        for _ in 0..POINTER_TRIES {
            let pointers = self.pointers(keys).await?;
            let mut invocation = script.prepare_invoke();
            for key in leading {
                invocation.key(key);
            }
            pointers.keys(keys, &mut invocation);
            for arg in args {
                invocation.arg(arg);
            }
            invocation.arg(pointers.live.as_str()).arg(pointers.building.as_str());
            let reply: Vec<String> = invocation.invoke_async(&mut connection).await.map_err(redis_error)?;
            if reply != ["9"] {
                return Ok(reply);
            }
        }
        Err(pointers_moved(projection))
    }

    /// The members a page had when this store last listed it (none when it does not remember).
    fn remembered_page(&self, key: &PageKey) -> Vec<String> {
        self.pages.lock().unwrap_or_else(PoisonError::into_inner).get(key).cloned().unwrap_or_default()
    }

    /// Remembers a page's members, unless it has many (and forgets every page when it remembers
    /// [`PAGES_REMEMBERED`]).
    fn remember_page(&self, key: PageKey, members: Vec<String>) {
        if members.len() > PAGE_MEMBERS_REMEMBERED {
            return;
        }
        let mut pages = self.pages.lock().unwrap_or_else(PoisonError::into_inner);
        if pages.len() >= PAGES_REMEMBERED && !pages.contains_key(&key) {
            pages.clear();
        }
        pages.insert(key, members);
    }

    /// What a commit into `generation` needs to know before it builds its KEYS (the peek
    /// script).
    async fn peek(&self, keys: &ProjectionKeys, generation: u64) -> eventloom_core::Result<Peeked> {
        let generation_keys = keys.generation(generation);
        let mut connection = self.connection.clone();
        let reply: Vec<String> = self
            .scripts
            .peek
            .key(keys.live())
            .key(keys.building())
            .key(generation_keys.ids())
            .key(generation_keys.indexes())
            .arg(SAMPLE)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Peeked::parse(generation, &reply, "the peek script")
    }

    /// The live generation's id, or `None` when none is live.
    async fn read_live_opt(&self, keys: &ProjectionKeys) -> eventloom_core::Result<Option<u64>> {
        let mut connection = self.connection.clone();
        let live: Option<String> =
            redis::cmd("GET").arg(keys.live()).query_async(&mut connection).await.map_err(redis_error)?;
        live.as_deref().map(generation_id).transpose()
    }

    /// The live generation's id; `NotBuilt` when none is live.
    async fn read_live(&self, keys: &ProjectionKeys, projection: &str) -> eventloom_core::Result<u64> {
        match self.read_live_opt(keys).await? {
            Some(id) => Ok(id),
            None => {
                self.remember_live(projection, None);
                Err(not_built(projection))
            }
        }
    }

    /// With [`RedisConfig::wait_for_replicas`], waits until that many replicas of the node that
    /// holds the projection have this connection's writes, or the timeout passed (then it warns:
    /// the write stands, but a failover now may lose it).
    async fn wait_for_replicas(&self, keys: &ProjectionKeys) {
        let Some((replicas, timeout)) = self.wait_for_replicas else { return };
        let mut connection = self.connection.clone();
        let span = tracing::trace_span!("wait_for_replicas", replicas);
        match connection.wait_for_replicas(&keys.live(), replicas, timeout).instrument(span).await {
            Ok(acknowledged) if acknowledged >= u64::from(replicas) => {}
            Ok(acknowledged) => tracing::warn!(
                acknowledged,
                replicas,
                ?timeout,
                "fewer replicas than asked have the write: a failover now may lose it"
            ),
            Err(error) => tracing::warn!(%error, "WAIT for replicas failed: a failover now may lose the write"),
        }
    }

    fn keys(&self, projection: &str) -> ProjectionKeys {
        ProjectionKeys::new(&self.prefix, projection)
    }

    /// Notes `projection` in the registry of projection names ([`ViewStore::projections`]),
    /// before each write that may create its keys (beginning a generation, recording a stop: both
    /// rare): a set key of its own (`<prefix>eventloom.projections`), written by a command apart
    /// from the projection's scripts, since in a cluster it lies in another slot than the
    /// projection's keys (a script touches the keys of one slot only).
    async fn register(&self, projection: &str) -> eventloom_core::Result<()> {
        let mut connection = self.connection.clone();
        let _: i64 = redis::cmd("SADD")
            .arg(crate::keys::registry(&self.prefix))
            .arg(projection)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    fn cached_live(&self, projection: &str) -> Option<u64> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner).get(projection).copied()
    }

    fn remember_live(&self, projection: &str, generation: Option<u64>) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        match generation {
            Some(id) => {
                if let Some(cached) = live.get_mut(projection) {
                    *cached = id;
                } else {
                    live.insert(projection.to_owned(), id);
                }
            }
            None => {
                live.remove(projection);
            }
        }
    }

    /// Deletes the keys of the projection's dropped generations (those that were live before
    /// another went live, or were being built when another build began), at most a thousand per
    /// script call, until none is left. [`go_live`](ViewStore::go_live) and
    /// [`begin_generation`](ViewStore::begin_generation) call it; call it yourself to finish a
    /// sweep that a lost connection interrupted. Returns how many keys it deleted.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(views: eventloom_redis::RedisViewStore) -> eventloom_core::Result<()> {
    /// let deleted = views.sweep("tasks").await?;
    /// # Ok(()) }
    /// ```
    pub async fn sweep(&self, projection: &str) -> eventloom_core::Result<u64> {
        let keys = self.keys(projection);
        let span = tracing::debug_span!("sweep", store = "redis", projection);
        async {
            let mut connection = self.connection.clone();
            let mut deleted = 0;
            loop {
                // One dropped generation, and up to a budget of its views and index lists: the
                // script gets their keys and deletes them, after checking that the generation is
                // still in the trash and neither live nor being built.
                let dropped: Option<String> = redis::cmd("SRANDMEMBER")
                    .arg(keys.trash())
                    .query_async(&mut connection)
                    .await
                    .map_err(redis_error)?;
                let Some(dropped) = dropped else {
                    if deleted > 0 {
                        tracing::debug!(deleted, "deleted the keys of dropped generations");
                    }
                    return Ok(deleted);
                };
                let generation = keys.generation_named(&dropped);
                let ids: Vec<String> = redis::cmd("SRANDMEMBER")
                    .arg(generation.ids())
                    .arg(SWEEP_BUDGET)
                    .query_async(&mut connection)
                    .await
                    .map_err(redis_error)?;
                let lists: Vec<String> = redis::cmd("SRANDMEMBER")
                    .arg(generation.indexes())
                    .arg(SWEEP_BUDGET.saturating_sub(ids.len()))
                    .query_async(&mut connection)
                    .await
                    .map_err(redis_error)?;
                let mut invocation = self.scripts.sweep.prepare_invoke();
                invocation.key(keys.live()).key(keys.building()).key(keys.trash());
                for key in generation.quad().into_iter().chain(generation.legacy()) {
                    invocation.key(key);
                }
                for id in &ids {
                    invocation.key(generation.view(id));
                }
                for suffix in &lists {
                    invocation.key(generation.index_at(suffix));
                }
                invocation.arg(dropped.as_str()).arg(ids.len()).arg(&ids).arg(&lists);
                let (count, _left): (u64, u64) = invocation.invoke_async(&mut connection).await.map_err(redis_error)?;
                deleted += count;
            }
        }
        .instrument(span)
        .await
    }

    /// Sweeps after a switch; the switch happened, so a failure is only logged (the next switch,
    /// or [`sweep`](Self::sweep), finishes the job).
    async fn sweep_after_switch(&self, projection: &str) {
        if let Err(error) = self.sweep(projection).await {
            tracing::warn!(%error, projection, "could not delete the keys of a dropped generation yet");
        }
    }
}

/// Whether a failed first connection is a refusal that retrying will not change: anything but
/// connection trouble, and a TLS handshake that failed on the certificate (rustls reports that
/// as an I/O error).
fn refused(error: &redis::RedisError) -> bool {
    let message = error.to_string();
    !crate::error::is_transient(error)
        || message.contains("invalid peer certificate")
        || message.contains("received fatal alert")
}

/// A reconnecting connection to one node.
async fn connect_node(config: &RedisConfig) -> Result<Connection> {
    let client = client(config)?;
    let connect_error = |e: redis::RedisError| Error::Connect(config.redact(e.to_string()));
    // One plain attempt first, with a PING: a wrong password, a certificate that is not
    // trusted or a server that wants AUTH fails now, not after the manager's retries.
    let probe = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(config.connection_timeout)
        .set_response_timeout(config.response_timeout);
    let probed = match client.get_multiplexed_async_connection_with_config(&probe).await {
        Ok(mut connection) => redis::cmd("PING").query_async::<String>(&mut connection).await.map(drop),
        Err(e) => Err(e),
    };
    if let Err(e) = probed {
        if refused(&e) {
            return Err(connect_error(e));
        }
        tracing::debug!(error = %config.redact(e.to_string()), "Redis not reachable yet; retrying");
    }
    let manager = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(config.connection_timeout)
        .set_response_timeout(config.response_timeout);
    let connection = ConnectionManager::new_with_config(client, manager).await.map_err(connect_error)?;
    Ok(Connection::Node(connection))
}

/// A cluster connection: it reads the slot map from the first node that answers, and PINGs
/// every master (a wrong password or an untrusted certificate fails now).
async fn connect_cluster(config: &RedisConfig) -> Result<Connection> {
    // The client's own retries (of TRYAGAIN, CLUSTERDOWN, a lost connection) wait at least
    // 1.28 s each by default: a slot in migration or a failover would stall every script that
    // long. Retry sooner, and leave longer outages to the caller (the projector's back-off).
    let mut builder = redis::cluster::ClusterClientBuilder::new(config.nodes.clone())
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(10)
        .max_retry_wait(500)
        .retry_wait_formula(10, 2);
    if let Some(timeout) = config.connection_timeout {
        builder = builder.connection_timeout(timeout);
    }
    if let Some(timeout) = config.response_timeout {
        builder = builder.response_timeout(timeout);
    }
    #[cfg(feature = "tls")]
    if config.is_tls() {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        if let Some(pem) = &config.tls_roots {
            builder = builder.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) });
        }
    }
    if config.tls_roots.is_some() && !config.is_tls() {
        return Err(Error::Config("TLS root certificates were given for redis:// URLs: use rediss://".to_owned()));
    }
    let client = builder.build().map_err(|e| Error::Config(config.redact(e.to_string())))?;
    let connect_error = |e: redis::RedisError| Error::Connect(config.redact(e.to_string()));
    let mut connection = client.get_async_connection().await.map_err(connect_error)?;
    redis::cmd("PING").query_async::<redis::Value>(&mut connection).await.map_err(connect_error)?;
    Ok(Connection::Cluster(connection))
}

fn client(config: &RedisConfig) -> Result<redis::Client> {
    #[cfg(feature = "tls")]
    if config.is_tls() {
        // redis-rs builds its rustls configuration on the process's default provider: make
        // that `ring` unless the program chose one (with both `ring` and `aws-lc-rs` in the
        // build, rustls cannot choose by itself).
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        if let Some(pem) = &config.tls_roots {
            let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) };
            return redis::Client::build_with_tls(config.info.clone(), certificates)
                .map_err(|e| Error::Config(format!("TLS root certificates: {}", config.redact(e.to_string()))));
        }
    }
    if config.tls_roots.is_some() {
        return Err(Error::Config("TLS root certificates were given for a redis:// URL: use rediss://".to_owned()));
    }
    redis::Client::open(config.info.clone()).map_err(|e| Error::Config(config.redact(e.to_string())))
}

impl ViewStore for RedisViewStore {
    fn status<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, eventloom_core::Result<ProjectionStatus>> {
        Box::pin(async move {
            self.watch_eviction_policy().await;
            let keys = self.keys(projection);
            let span = tracing::trace_span!("status", store = "redis", projection);
            let leading = [keys.live(), keys.building(), keys.stopped()];
            let reply = self
                .invoke_at_pointers(projection, &keys, &self.scripts.status, &leading, &[])
                .instrument(span)
                .await?;
            let [live, building] = [0, 1].map(|i| reply.get(4 * i..4 * i + 4));
            let (Some(live), Some(building), Some([kind, stopped_at, reason, stop_generation, stop_checkpoint])) =
                (live, building, reply.get(8..13))
            else {
                return Err(unexpected("the status script", reply));
            };
            let stopped = match kind.as_str() {
                "" => None,
                kind => Some(
                    ProjectionStop::new(kind.parse()?, position(stopped_at)?, reason.as_str())
                        .at(generation_id(stop_generation)?, position(stop_checkpoint)?),
                ),
            };
            // A lost generation is left out: the projector then rebuilds into a new one.
            let generation = |what: &str, fields: &[String]| -> eventloom_core::Result<Option<Generation>> {
                let [id, version, checkpoint, state] = fields else {
                    return Err(unexpected("the status script", fields));
                };
                match state.as_str() {
                    "" => Ok(None),
                    "ok" => Ok(Some(Generation {
                        id: generation_id(id)?,
                        version: version.parse().map_err(|_| unexpected("a generation's version", version))?,
                        checkpoint: position(checkpoint)?,
                    })),
                    "lost" => {
                        tracing::warn!(
                            projection,
                            generation = %id,
                            "the {what} generation lost keys (evicted or deleted): it will be rebuilt"
                        );
                        Ok(None)
                    }
                    _ => Err(unexpected("the status script", fields)),
                }
            };
            let status = ProjectionStatus::new(generation("live", live)?, generation("building", building)?, stopped);
            self.remember_live(projection, status.live.map(|g| g.id));
            Ok(status)
        })
    }

    fn begin_generation<'a>(
        &'a self,
        projection: &'a str,
        version: u32,
        fencing_token: u64,
    ) -> BoxFuture<'a, eventloom_core::Result<Written<Generation>>> {
        Box::pin(async move {
            self.register(projection).await?;
            let keys = self.keys(projection);
            let mut connection = self.connection.clone();
            let span = tracing::debug_span!("begin_generation", store = "redis", projection, version);
            let reply = async {
                let mut proposed = proposed_generation_id().to_string();
                for _ in 0..BEGIN_TRIES {
                    let pointers = self.pointers(&keys).await?;
                    let mut invocation = self.scripts.begin.prepare_invoke();
                    invocation
                        .key(keys.token())
                        .key(keys.live())
                        .key(keys.building())
                        .key(keys.last())
                        .key(keys.trash());
                    pointers.keys(&keys, &mut invocation);
                    for key in keys.generation_named(&proposed).quad() {
                        invocation.key(key);
                    }
                    invocation
                        .arg(fencing_token)
                        .arg(version)
                        .arg(pointers.live.as_str())
                        .arg(pointers.building.as_str())
                        .arg(proposed.as_str());
                    let reply: Vec<String> = invocation.invoke_async(&mut connection).await.map_err(redis_error)?;
                    match reply.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                        ["9"] => {}
                        // Taken, or not above every id the projection holds: this one is.
                        ["5", next] => proposed = next.to_owned(),
                        _ => return Ok(reply),
                    }
                }
                Err(CoreError::unavailable_msg(format!(
                    "no free generation id for projection {projection} after {BEGIN_TRIES} tries"
                )))
            }
            .instrument(span)
            .await?;
            let generation = match reply.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["0", id] => {
                    let id = generation_id(id)?;
                    LAST_GENERATION_ID.fetch_max(id, Ordering::Relaxed);
                    Generation { id, version, checkpoint: None }
                }
                ["2", highest] => return Ok(Err(fenced(fencing_token, highest))),
                _ => return Err(unexpected("begin_generation", reply)),
            };
            tracing::debug!(projection, generation = generation.id, version, "began a generation");
            self.wait_for_replicas(&keys).await;
            self.sweep_after_switch(projection).await;
            Ok(Ok(generation))
        })
    }

    fn load_views<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        ids: &'a [String],
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<Option<String>>>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let keys = self.keys(projection);
            let generation_keys = keys.generation(generation);
            let mut invocation = self.scripts.load.prepare_invoke();
            invocation.key(keys.live()).key(keys.building());
            for key in generation_keys.quad() {
                invocation.key(key);
            }
            for id in ids {
                invocation.key(generation_keys.view(id));
            }
            invocation.arg(generation);
            for id in ids {
                invocation.arg(id.as_str());
            }
            let mut connection = self.connection.clone();
            let mut reply: Vec<Option<String>> = invocation
                .invoke_async(&mut connection)
                .instrument(tracing::trace_span!(
                    "load_views",
                    store = "redis",
                    projection,
                    generation,
                    views = ids.len()
                ))
                .await
                .map_err(redis_error)?;
            match reply.first().map(Option::as_deref) {
                Some(Some("0")) if reply.len() == ids.len() + 1 => {
                    reply.remove(0);
                    Ok(reply)
                }
                // The runner loading them was superseded: it starts over, as after a refused write.
                Some(Some("4")) if reply.len() == 1 => Err(CoreError::Superseded {
                    projection: projection.to_owned(),
                    refusal: Refusal::GenerationGone { generation },
                }),
                _ => Err(unexpected("the load script", reply)),
            }
        })
    }

    fn commit<'a>(&'a self, projection: &'a str, commit: ViewCommit) -> BoxFuture<'a, eventloom_core::Result<Written>> {
        Box::pin(async move {
            commit.validate()?;
            let span = tracing::debug_span!(
                "projection_commit",
                store = "redis",
                projection,
                generation = commit.generation,
                views = commit.views.len()
            );
            let keys = self.keys(projection);
            let batch = Batch::new(&commit)?;
            let mut connection = self.connection.clone();
            let reply = async {
                // What the last commit of this generation left, if this store made it.
                let mut left = self.next_commit.lock().unwrap_or_else(PoisonError::into_inner).remove(projection);
                for _ in 0..POINTER_TRIES {
                    let peeked = match left.take() {
                        Some(peeked) if peeked.generation == commit.generation => peeked,
                        _ => self.peek(&keys, commit.generation).await?,
                    };
                    let tell = (self.notices.channel(), projection);
                    let invocation = batch.invocation(&self.scripts.commit, &keys, &peeked, tell);
                    let reply: Vec<String> = invocation.invoke_async(&mut connection).await.map_err(redis_error)?;
                    if reply != ["9"] {
                        return Ok(reply);
                    }
                }
                Err(pointers_moved(projection))
            }
            .instrument(span)
            .await?;
            match reply.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["0", ..] => {
                    let next = Peeked::parse(commit.generation, &reply[1..], "a commit")?;
                    self.next_commit.lock().unwrap_or_else(PoisonError::into_inner).insert(projection.to_owned(), next);
                    self.notices.wrote(projection);
                    self.wait_for_replicas(&keys).await;
                    Ok(Ok(()))
                }
                ["1", actual] => {
                    Ok(Err(Refusal::CheckpointMoved { expected: commit.expected, actual: position(actual)? }))
                }
                ["2", highest] => Ok(Err(fenced(commit.fencing_token, highest))),
                ["3", key] => Err(CoreError::Backend {
                    message: format!("key {key:?} holds another type than the view store writes; nothing was written"),
                    source: None,
                }),
                ["4"] => Ok(Err(Refusal::GenerationGone { generation: commit.generation })),
                _ => Err(unexpected("a commit", reply)),
            }
        })
    }

    fn go_live<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        fencing_token: u64,
    ) -> BoxFuture<'a, eventloom_core::Result<Written>> {
        Box::pin(async move {
            let keys = self.keys(projection);
            let span = tracing::debug_span!("go_live", store = "redis", projection, generation);
            let leading = [keys.token(), keys.live(), keys.building(), keys.trash()];
            let args = [generation.to_string(), fencing_token.to_string()];
            let script = &self.scripts.go_live;
            let reply = self.invoke_at_pointers(projection, &keys, script, &leading, &args).instrument(span).await?;
            match reply.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["0"] => {}
                ["1", built, live] => {
                    return Ok(Err(Refusal::CheckpointMoved { expected: position(built)?, actual: position(live)? }));
                }
                ["2", highest] => return Ok(Err(fenced(fencing_token, highest))),
                ["4"] => return Ok(Err(Refusal::GenerationGone { generation })),
                _ => return Err(unexpected("go_live", reply)),
            }
            self.remember_live(projection, Some(generation));
            self.wait_for_replicas(&keys).await;
            self.notices.publish(&self.connection, projection).await;
            self.sweep_after_switch(projection).await;
            Ok(Ok(()))
        })
    }

    fn record_stop<'a>(
        &'a self,
        projection: &'a str,
        stop: Option<&'a ProjectionStop>,
        fencing_token: u64,
    ) -> BoxFuture<'a, eventloom_core::Result<Written>> {
        Box::pin(async move {
            self.register(projection).await?;
            let keys = self.keys(projection);
            let position = stop.and_then(|s| s.position).map(|p| p.to_string()).unwrap_or_default();
            let span = tracing::debug_span!("record_stop", store = "redis", projection);
            let leading = [keys.token(), keys.live(), keys.building(), keys.stopped()];
            let args = [
                fencing_token.to_string(),
                stop.map_or("", |s| s.kind.as_str()).to_owned(),
                position,
                stop.map_or("", |s| s.reason.as_str()).to_owned(),
                stop.map_or(0, |s| s.generation).to_string(),
                stop.and_then(|s| s.checkpoint).map(|p| p.to_string()).unwrap_or_default(),
            ];
            let script = &self.scripts.record_stop;
            let reply = self.invoke_at_pointers(projection, &keys, script, &leading, &args).instrument(span).await?;
            match reply.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["0"] => {
                    self.wait_for_replicas(&keys).await;
                    self.notices.publish(&self.connection, projection).await;
                    Ok(Ok(()))
                }
                ["2", highest] => Ok(Err(fenced(fencing_token, highest))),
                ["3", key] => Err(CoreError::Backend {
                    message: format!("key {key:?} holds another type than the view store writes; nothing was written"),
                    source: None,
                }),
                _ => Err(unexpected("record_stop", reply)),
            }
        })
    }

    fn read_views<'a>(
        &'a self,
        projection: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<Option<String>>>> {
        Box::pin(async move {
            let keys = self.keys(projection);
            let span = tracing::trace_span!("read_views", store = "redis", projection, views = ids.len());
            async {
                let mut connection = self.connection.clone();
                for _ in 0..QUERY_TRIES {
                    // The pointer and the views of the generation last seen live, in one MGET.
                    let cached = self.cached_live(projection);
                    let mut mget = redis::cmd("MGET");
                    mget.arg(keys.live());
                    if let Some(id) = cached {
                        let generation = keys.generation(id);
                        for id in ids {
                            mget.arg(generation.view(id));
                        }
                    }
                    let mut values: Vec<Option<String>> =
                        mget.query_async(&mut connection).await.map_err(redis_error)?;
                    if values.is_empty() {
                        return Err(unexpected("MGET", values));
                    }
                    let live = values.remove(0).as_deref().map(generation_id).transpose()?;
                    match (live, cached) {
                        (None, _) => {
                            self.remember_live(projection, None);
                            return Err(not_built(projection));
                        }
                        (Some(live), Some(cached)) if live == cached => return Ok(values),
                        (Some(live), _) => {
                            self.remember_live(projection, Some(live));
                            if ids.is_empty() {
                                return Ok(Vec::new());
                            }
                        }
                    }
                }
                Err(CoreError::unavailable_msg(format!(
                    "the live generation of projection {projection} changed {QUERY_TRIES} times during one read"
                )))
            }
            .instrument(span)
            .await
        })
    }

    fn list<'a>(
        &'a self,
        projection: &'a str,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after_cursor: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<ViewPage>> {
        Box::pin(async move {
            let keys = self.keys(projection);
            let mut connection = self.connection.clone();
            // One more than asked: whether another page follows.
            let fetch = limit.saturating_add(1).min(i64::MAX as usize);
            let span = tracing::trace_span!("list", store = "redis", projection, index = %key, limit);
            let (live, rest) = async {
                // The live generation last seen, and the members the page had when this store
                // last listed it (or a first read found): the script gets their views' keys, and
                // answers with the members it finds instead when the page changed meanwhile.
                let mut generation = self.cached_live(projection);
                let mut members: Option<Vec<String>> = None;
                let (suffix, min, max) = (index_suffix(key), after(after_cursor, range), until(range));
                let page_key = |live: u64| (projection.to_owned(), live, suffix.clone(), min.clone(), max.clone(), fetch);
                let mut remembered = true;
                for _ in 0..QUERY_TRIES {
                    let Some(live) = generation else {
                        generation = Some(self.read_live(&keys, projection).await?);
                        continue;
                    };
                    let generation_keys = keys.generation(live);
                    let mut invocation = self.scripts.list.prepare_invoke();
                    invocation.key(keys.live()).key(generation_keys.index(key));
                    let expected = match members.take() {
                        Some(members) => members,
                        None if std::mem::take(&mut remembered) => self.remembered_page(&page_key(live)),
                        None => Vec::new(),
                    };
                    for member in &expected {
                        let id = member.split_once('\0').map_or(member.as_str(), |(_, id)| id);
                        invocation.key(generation_keys.view(id));
                    }
                    invocation.arg(live).arg(&min).arg(fetch).arg(&max).arg(&expected);
                    let reply: Vec<Option<String>> =
                        invocation.invoke_async(&mut connection).await.map_err(redis_error)?;
                    let (status, rest) = reply.split_first().ok_or_else(|| unexpected("the list script", &reply))?;
                    match status.as_deref() {
                        Some("0") => {
                            self.remember_live(projection, None);
                            return Err(not_built(projection));
                        }
                        Some("1") => {
                            let rest = rest.get(1..).ok_or_else(|| unexpected("the list script", &reply))?;
                            self.remember_page(page_key(live), expected);
                            return Ok((live, rest.to_vec()));
                        }
                        Some("2") => {
                            let moved = rest.first().and_then(Option::as_deref).unwrap_or_default();
                            generation = Some(generation_id(moved)?);
                        }
                        Some("3") => {
                            let found = rest.iter().map(|m| m.clone().ok_or_else(|| unexpected("the list script", m)));
                            members = Some(found.collect::<eventloom_core::Result<_>>()?);
                        }
                        _ => return Err(unexpected("the list script", &reply)),
                    }
                }
                Err(CoreError::unavailable_msg(format!(
                    "the live generation or the page of projection {projection} changed {QUERY_TRIES} times during one list"
                )))
            }
            .instrument(span)
            .await?;
            self.remember_live(projection, Some(live));
            let entries = rest.chunks(2).collect::<Vec<_>>();
            let more = entries.len() > limit;
            let mut page = ViewPage::default();
            for entry in entries.into_iter().take(limit) {
                let [Some(member), view] = entry else { return Err(unexpected("the list script", entry)) };
                let (order, id) = member.split_once('\0').ok_or_else(|| unexpected("an index member", member))?;
                if let Some(json) = view {
                    page.views.push((id.to_owned(), json.clone()));
                }
                page.next = Some(ListCursor { order: order.to_owned(), id: id.to_owned() });
            }
            if !more {
                page.next = None;
            }
            Ok(page)
        })
    }

    fn count<'a>(
        &'a self,
        projection: &'a str,
        index_keys: &'a [IndexKey],
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<u64>>> {
        Box::pin(async move {
            let keys = self.keys(projection);
            let mut connection = self.connection.clone();
            let span = tracing::trace_span!("count", store = "redis", projection, lists = index_keys.len());
            async {
                let mut generation = self.cached_live(projection);
                for _ in 0..QUERY_TRIES {
                    let Some(live) = generation else {
                        generation = Some(self.read_live(&keys, projection).await?);
                        continue;
                    };
                    let generation_keys = keys.generation(live);
                    let mut invocation = self.scripts.count.prepare_invoke();
                    invocation.key(keys.live());
                    for key in index_keys {
                        invocation.key(generation_keys.index(key));
                    }
                    invocation.arg(live);
                    let reply: Vec<String> = invocation.invoke_async(&mut connection).await.map_err(redis_error)?;
                    match reply.split_first().map(|(status, rest)| (status.as_str(), rest)) {
                        Some(("0", _)) => {
                            self.remember_live(projection, None);
                            return Err(not_built(projection));
                        }
                        Some(("1", counts)) if counts.len() == index_keys.len() => {
                            self.remember_live(projection, Some(live));
                            return counts
                                .iter()
                                .map(|count| count.parse().map_err(|_| unexpected("the count script", &reply)))
                                .collect();
                        }
                        Some(("2", [moved])) => generation = Some(generation_id(moved)?),
                        _ => return Err(unexpected("the count script", reply)),
                    }
                }
                Err(live_moved(projection, "count"))
            }
            .instrument(span)
            .await
        })
    }

    fn list_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after_cursor: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<IndexedView>>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let keys = self.keys(projection);
            let generation_keys = keys.generation(generation);
            let mut connection = self.connection.clone();
            let fetch = limit.min(i64::MAX as usize);
            let span =
                tracing::trace_span!("list_generation", store = "redis", projection, generation, index = %key, limit);
            let rest = async {
                // The members the page had when this store last listed it: the script gets their
                // views' keys, and answers with the members it finds instead when the page changed.
                let (suffix, min, max) = (index_suffix(key), after(after_cursor, range), until(range));
                let page_key = (projection.to_owned(), generation, suffix, min.clone(), max.clone(), fetch);
                let mut expected = self.remembered_page(&page_key);
                for _ in 0..QUERY_TRIES {
                    let mut invocation = self.scripts.list_generation.prepare_invoke();
                    invocation.key(keys.trash()).key(generation_keys.index(key));
                    for member in &expected {
                        let id = member.split_once('\0').map_or(member.as_str(), |(_, id)| id);
                        invocation.key(generation_keys.view(id));
                    }
                    invocation.arg(generation).arg(&min).arg(fetch).arg(&max).arg(&expected);
                    let reply: Vec<Option<String>> =
                        invocation.invoke_async(&mut connection).await.map_err(redis_error)?;
                    let (status, rest) =
                        reply.split_first().ok_or_else(|| unexpected("the list_generation script", &reply))?;
                    match status.as_deref() {
                        Some("0") => return Ok(Vec::new()),
                        Some("1") => {
                            self.remember_page(page_key, expected);
                            return Ok(rest.to_vec());
                        }
                        Some("3") => {
                            let found = rest
                                .iter()
                                .map(|m| m.clone().ok_or_else(|| unexpected("the list_generation script", m)));
                            expected = found.collect::<eventloom_core::Result<_>>()?;
                        }
                        _ => return Err(unexpected("the list_generation script", &reply)),
                    }
                }
                Err(CoreError::unavailable_msg(format!(
                    "the page of generation {generation} of projection {projection} changed {QUERY_TRIES} times during one list"
                )))
            }
            .instrument(span)
            .await?;
            rest.chunks(2)
                .map(|entry| {
                    let [Some(member), view] = entry else {
                        return Err(unexpected("the list_generation script", entry));
                    };
                    let (order, id) = member.split_once('\0').ok_or_else(|| unexpected("an index member", member))?;
                    Ok(IndexedView { order: order.to_owned(), id: id.to_owned(), view: view.clone() })
                })
                .collect()
        })
    }

    fn count_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        index_keys: &'a [IndexKey],
    ) -> BoxFuture<'a, eventloom_core::Result<Vec<u64>>> {
        Box::pin(async move {
            if index_keys.is_empty() {
                return Ok(Vec::new());
            }
            let keys = self.keys(projection);
            let generation_keys = keys.generation(generation);
            let mut invocation = self.scripts.count_generation.prepare_invoke();
            invocation.key(keys.trash());
            for key in index_keys {
                invocation.key(generation_keys.index(key));
            }
            invocation.arg(generation);
            let mut connection = self.connection.clone();
            let span = tracing::trace_span!(
                "count_generation",
                store = "redis",
                projection,
                generation,
                lists = index_keys.len()
            );
            let reply: Vec<String> =
                invocation.invoke_async(&mut connection).instrument(span).await.map_err(redis_error)?;
            match reply.split_first().map(|(status, rest)| (status.as_str(), rest)) {
                Some(("0", [])) => Ok(vec![0; index_keys.len()]),
                Some(("1", counts)) if counts.len() == index_keys.len() => counts
                    .iter()
                    .map(|count| count.parse().map_err(|_| unexpected("the count_generation script", &reply)))
                    .collect(),
                _ => Err(unexpected("the count_generation script", reply)),
            }
        })
    }

    fn projections<'a>(&'a self) -> BoxFuture<'a, eventloom_core::Result<Vec<String>>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let mut names: Vec<String> = redis::cmd("SMEMBERS")
                .arg(crate::keys::registry(&self.prefix))
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            names.sort_unstable();
            Ok(names)
        })
    }

    fn remove_dead_letters<'a>(
        &'a self,
        projection: &'a str,
        which: &'a DeadLetterSelection,
        fencing_token: u64,
    ) -> BoxFuture<'a, eventloom_core::Result<Written<u64>>> {
        Box::pin(async move {
            let keys = self.keys(projection);
            let span = tracing::debug_span!("remove_dead_letters", store = "redis", projection);
            let leading = [keys.token(), keys.live(), keys.building()];
            let mut args = vec![fencing_token.to_string()];
            match which {
                DeadLetterSelection::All => args.push("all".to_owned()),
                DeadLetterSelection::At(positions) => {
                    args.push(positions.len().to_string());
                    args.extend(positions.iter().map(ToString::to_string));
                }
            }
            let script = &self.scripts.remove_dead_letters;
            let reply = self.invoke_at_pointers(projection, &keys, script, &leading, &args).instrument(span).await?;
            match reply.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["0", removed] => {
                    let removed = removed.parse().map_err(|_| unexpected("remove_dead_letters", &reply))?;
                    if removed > 0 {
                        self.wait_for_replicas(&keys).await;
                    }
                    Ok(Ok(removed))
                }
                ["2", highest] => Ok(Err(fenced(fencing_token, highest))),
                ["3", key] => Err(CoreError::Backend {
                    message: format!("key {key:?} holds another type than the view store writes; nothing was written"),
                    source: None,
                }),
                _ => Err(unexpected("remove_dead_letters", reply)),
            }
        })
    }

    fn dead_letters<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, eventloom_core::Result<Vec<DeadLetter>>> {
        Box::pin(async move {
            let keys = self.keys(projection);
            let mut connection = self.connection.clone();
            let span = tracing::trace_span!("dead_letters", store = "redis", projection);
            let letters = async {
                let mut generation = self.cached_live(projection);
                for _ in 0..QUERY_TRIES {
                    // None live: no dead letters.
                    let Some(live) = generation.or(self.read_live_opt(&keys).await?) else { return Ok(Vec::new()) };
                    let reply: Vec<String> = self
                        .scripts
                        .dead_letters
                        .key(keys.live())
                        .key(keys.generation(live).dead_letters())
                        .arg(live)
                        .invoke_async(&mut connection)
                        .await
                        .map_err(redis_error)?;
                    match reply.split_first().map(|(status, rest)| (status.as_str(), rest)) {
                        Some(("0", _)) => {
                            self.remember_live(projection, None);
                            return Ok(Vec::new());
                        }
                        Some(("1", letters)) => return Ok(letters.to_vec()),
                        Some(("2", [moved])) => generation = Some(generation_id(moved)?),
                        _ => return Err(unexpected("the dead letters script", reply)),
                    }
                }
                Err(live_moved(projection, "read of dead letters"))
            }
            .instrument(span)
            .await?;
            letters
                .iter()
                .map(|json| {
                    serde_json::from_str(json).map_err(|source| CoreError::Serde { what: "dead letter".into(), source })
                })
                .collect()
        })
    }

    fn changes(&self, projection: &str) -> Option<ViewChanges> {
        self.notices.changes(projection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_start_strictly_after_their_view() {
        let all = OrderRange::all();
        assert_eq!(after(None, &all), "-");
        let cursor = ListCursor { order: "0001".into(), id: "t-1".into() };
        assert_eq!(after(Some(&cursor), &all), "(0001\0t-1");
        // A sort key with a NUL is none a commit stored: the members after it are those from
        // the part before the NUL, exclusive of that exact sort key.
        let odd = ListCursor { order: "ab\0c".into(), id: "x".into() };
        assert_eq!(after(Some(&odd), &all), "[ab\u{1}");
        assert!(member("ab", "z").as_str() < "ab\u{1}" && "ab\u{1}" < member("ab\u{1}", "").as_str());
    }

    #[test]
    fn a_range_starts_at_the_later_of_its_start_and_the_cursor() {
        let from_b = OrderRange::new("b"..);
        assert_eq!(after(None, &from_b), "[b");
        let before = ListCursor { order: "a".into(), id: "z".into() };
        assert_eq!(after(Some(&before), &from_b), "[b");
        let within = ListCursor { order: "c".into(), id: "1".into() };
        assert_eq!(after(Some(&within), &from_b), "(c\u{0}1");
        // On the range's first sort key itself, the cursor (exclusive) is the later.
        let on = ListCursor { order: "b".into(), id: "".into() };
        assert_eq!(after(Some(&on), &from_b), "(b\0");
        assert_eq!(until(&OrderRange::new(.."m")), "(m");
        assert_eq!(until(&OrderRange::new(..="m")), "(m\u{1}");
        assert_eq!(until(&OrderRange::all()), "+");
    }
}
