//! [`RedisViewStore`]: views and checkpoints on Redis.

use async_trait::async_trait;
use cqrs_core::{DeadLetter, Error as CoreError, Position, ViewCommit, ViewStore};
use redis::aio::ConnectionManager;
use tracing::Instrument;

use crate::error::redis_error;
use crate::keys::ProjectionKeys;
use crate::{Error, Result};

/// Checks every key's type, then the fencing token, then the checkpoint, and only then writes
/// the views, the id index, the checkpoint and the token. Nothing can fail after the first
/// write, so the batch is all or nothing (Redis does not roll a script back).
///
/// KEYS: checkpoint, token, ids, dead letters, then one view key per view.
/// ARGV: expected checkpoint ("" for none), new checkpoint, token, then per view its id and
/// "s<json>" to set or "d" to delete, then the dead letters (JSON).
const COMMIT: &str = r#"
local function kind(key) return redis.call('TYPE', key).ok end
local expect = {'string', 'string', 'set', 'list'}
for i = 1, 4 do
  local t = kind(KEYS[i])
  if t ~= 'none' and t ~= expect[i] then return {3, KEYS[i]} end
end
for i = 5, #KEYS do
  local t = kind(KEYS[i])
  if t ~= 'none' and t ~= 'string' then return {3, KEYS[i]} end
end
local highest = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local token = tonumber(ARGV[3])
if token < highest then return {2, tostring(highest)} end
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return {1, current} end
local views = #KEYS - 4
for j = 1, views do
  local id = ARGV[2 + 2 * j]
  local op = ARGV[3 + 2 * j]
  if string.sub(op, 1, 1) == 's' then
    redis.call('SET', KEYS[4 + j], string.sub(op, 2))
    redis.call('SADD', KEYS[3], id)
  else
    redis.call('DEL', KEYS[4 + j])
    redis.call('SREM', KEYS[3], id)
  end
end
for k = 4 + 2 * views, #ARGV do
  redis.call('RPUSH', KEYS[4], ARGV[k])
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
return {0, ARGV[2]}
"#;

/// Deletes every view, the index and the checkpoint of a projection unless the token is older
/// than the highest seen; then stores the token. KEYS: checkpoint, token, ids, dead letters.
/// ARGV: token, the view key prefix.
const RESET: &str = r#"
local highest = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local token = tonumber(ARGV[1])
if token < highest then return {2, tostring(highest)} end
local ids = redis.call('SMEMBERS', KEYS[3])
for _, id in ipairs(ids) do redis.call('DEL', ARGV[2] .. id) end
redis.call('DEL', KEYS[3], KEYS[1], KEYS[4])
redis.call('SET', KEYS[2], ARGV[1])
return {0, ARGV[1]}
"#;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "cqrs:";

/// A [`ViewStore`] on Redis.
///
/// Views are strings (the view's JSON) under one key each; a batch is written by one Lua script
/// (one round-trip) that checks the projection's checkpoint and fencing token first. Reading
/// many views is one `MGET`. The connection manager reconnects by itself; a failed read is an
/// error, never "no checkpoint". The `Debug` output shows no credentials.
///
/// # Examples
///
/// ```no_run
/// use cqrs_core::{ViewReader, ViewStore};
/// use cqrs_redis::RedisViewStore;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let views = RedisViewStore::connect("redis://127.0.0.1:6379/", "app:").await?;
/// let checkpoint = views.checkpoint("task_views").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisViewStore {
    connection: ConnectionManager,
    prefix: String,
    address: String,
    commit: redis::Script,
    reset: redis::Script,
}

impl std::fmt::Debug for RedisViewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisViewStore").field("address", &self.address).field("prefix", &self.prefix).finish()
    }
}

fn position(text: &str) -> cqrs_core::Result<Option<Position>> {
    if text.is_empty() { Ok(None) } else { text.parse().map(Some) }
}

impl RedisViewStore {
    /// Connects (`redis://[user:password@]host:port/db`) with a reconnecting connection
    /// manager; every key starts with `prefix` (see [`check_prefix`](Self::check_prefix)).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        Self::check_prefix(prefix)?;
        let client = redis::Client::open(url).map_err(|_| Error::Config("the Redis URL does not parse".to_owned()))?;
        let info = client.get_connection_info();
        let address = info.addr().to_string();
        let connection = ConnectionManager::new(client).await.map_err(|e| Error::Connect(e.to_string()))?;
        Ok(RedisViewStore {
            connection,
            prefix: prefix.to_owned(),
            address,
            commit: redis::Script::new(COMMIT),
            reset: redis::Script::new(RESET),
        })
    }

    /// Refuses prefixes with `{` or `}` (they would move the hash tag) or control characters.
    pub fn check_prefix(prefix: &str) -> Result<()> {
        if prefix.contains(['{', '}']) || prefix.chars().any(char::is_control) || prefix.len() > 256 {
            return Err(Error::Config(format!(
                "key prefix {:?} must be at most 256 bytes without braces or control characters",
                prefix.chars().take(80).collect::<String>()
            )));
        }
        Ok(())
    }

    fn keys(&self, projection: &str) -> ProjectionKeys {
        ProjectionKeys::new(&self.prefix, projection)
    }
}

#[async_trait]
impl ViewStore for RedisViewStore {
    async fn load_views(&self, projection: &str, ids: &[String]) -> cqrs_core::Result<Vec<Option<String>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys(projection);
        let names: Vec<String> = ids.iter().map(|id| keys.view(id)).collect();
        let mut connection = self.connection.clone();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut connection)
            .instrument(tracing::trace_span!("load_views", store = "redis", projection, views = ids.len()))
            .await
            .map_err(redis_error)?;
        Ok(values)
    }

    async fn checkpoint(&self, projection: &str) -> cqrs_core::Result<Option<Position>> {
        let mut connection = self.connection.clone();
        let value: Option<String> = redis::cmd("GET")
            .arg(self.keys(projection).checkpoint())
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        position(value.as_deref().unwrap_or(""))
    }

    async fn commit(&self, projection: &str, commit: ViewCommit) -> cqrs_core::Result<()> {
        let span = tracing::debug_span!("projection_commit", store = "redis", projection, views = commit.views.len());
        let keys = self.keys(projection);
        let mut invocation = self.commit.prepare_invoke();
        invocation.key(keys.checkpoint()).key(keys.token()).key(keys.ids()).key(keys.dead_letters());
        for (id, _) in &commit.views {
            invocation.key(keys.view(id));
        }
        invocation
            .arg(commit.expected.map(|p| p.to_string()).unwrap_or_default())
            .arg(commit.checkpoint.to_string())
            .arg(commit.fencing_token);
        for (id, view) in &commit.views {
            invocation.arg(id.as_str());
            match view {
                Some(json) => invocation.arg(format!("s{json}")),
                None => invocation.arg("d"),
            };
        }
        for letter in &commit.dead_letters {
            let json = serde_json::to_string(letter)
                .map_err(|source| CoreError::Serde { what: "dead letter".into(), source })?;
            invocation.arg(json);
        }
        let mut connection = self.connection.clone();
        let (status, detail): (i64, String) =
            invocation.invoke_async(&mut connection).instrument(span).await.map_err(redis_error)?;
        match status {
            0 => Ok(()),
            1 => Err(CoreError::CheckpointMoved {
                projection: projection.to_owned(),
                expected: commit.expected,
                actual: position(&detail)?,
            }),
            2 => Err(CoreError::Fenced {
                projection: projection.to_owned(),
                token: commit.fencing_token,
                highest: detail.parse().unwrap_or(u64::MAX),
            }),
            _ => Err(CoreError::Backend {
                message: format!("key {detail:?} holds another type than the view store writes; nothing was written"),
                source: None,
            }),
        }
    }

    async fn dead_letters(&self, projection: &str) -> cqrs_core::Result<Vec<DeadLetter>> {
        let mut connection = self.connection.clone();
        let letters: Vec<String> = redis::cmd("LRANGE")
            .arg(self.keys(projection).dead_letters())
            .arg(0)
            .arg(-1)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        letters
            .iter()
            .map(|json| {
                serde_json::from_str(json).map_err(|source| CoreError::Serde { what: "dead letter".into(), source })
            })
            .collect()
    }

    async fn reset(&self, projection: &str, fencing_token: u64) -> cqrs_core::Result<()> {
        let keys = self.keys(projection);
        let mut invocation = self.reset.prepare_invoke();
        invocation
            .key(keys.checkpoint())
            .key(keys.token())
            .key(keys.ids())
            .key(keys.dead_letters())
            .arg(fencing_token)
            .arg(keys.view_prefix());
        let mut connection = self.connection.clone();
        let (status, detail): (i64, String) = invocation.invoke_async(&mut connection).await.map_err(redis_error)?;
        match status {
            0 => Ok(()),
            _ => Err(CoreError::Fenced {
                projection: projection.to_owned(),
                token: fencing_token,
                highest: detail.parse().unwrap_or(u64::MAX),
            }),
        }
    }
}
