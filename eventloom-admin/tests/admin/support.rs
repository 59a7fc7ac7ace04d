//! Running the binary, fresh schemas, and events and views written through the library.

use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use eventloom_core::model::{ExpectedVersion, NewEvent, Timestamp};
use eventloom_core::store::EventStore;
use eventloom_core::{Metadata, Position, StreamId};
use eventloom_postgres::{PgConfig, PgEventStore, PgStores};
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_eventloom-admin");

/// The shared server's URL; a clear failure when there is none.
/// Taken for writing by the test that holds the cluster's horizon back (an open transaction
/// with an id hides the events committed after it, in every schema), for reading by the tests
/// whose figures it moves (lag): they do not overlap. Other test binaries run before or after
/// this one, never beside it.
pub static HORIZON: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL is not set: run the suite with `bash scripts/test.sh`, or set it to a PostgreSQL")
    })
}

/// The shared Redis's URL; a clear failure when there is none.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .unwrap_or_else(|_| panic!("REDIS_URL is not set: run the suite with `bash scripts/test.sh`, or set it"))
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A schema name (and Redis prefix stem) no other test uses.
pub fn fresh_schema() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("adm{}_{}_{}", std::process::id(), nanos % 100_000, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// What one run of the binary printed, and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout of a run that succeeded.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{self:#?}");
        &self.stdout
    }

    /// Its stdout as JSON, of a run that succeeded.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }

    /// A run that failed with `code` and one line on stderr holding `holding`.
    #[track_caller]
    pub fn failed(&self, code: i32, holding: &str) {
        assert_eq!(self.code, Some(code), "{self:#?}");
        assert!(self.stderr.contains(holding), "{self:#?}");
        assert_eq!(self.stderr.trim_end().lines().count(), 1, "one line: {self:#?}");
        assert!(!self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"), "{self:#?}");
    }
}

/// Runs `eventloom-admin args` with `env` over an environment without the store variables.
pub async fn run_with(env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(BIN);
    for name in ["DATABASE_URL", "REDIS_URL", "EVENTLOOM_SCHEMA", "EVENTLOOM_REDIS_PREFIX"] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied()).args(args).stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("eventloom-admin {args:?} did not finish in 60 s"))
        .expect("run eventloom-admin");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `eventloom-admin args` on `schema` of the shared PostgreSQL.
pub async fn run(schema: &str, args: &[&str]) -> Run {
    let url = database_url();
    run_with(&[("DATABASE_URL", &url), ("EVENTLOOM_SCHEMA", schema)], args).await
}

/// Stores on `schema` of the shared PostgreSQL, migrated.
pub async fn stores(schema: &str) -> PgStores {
    let config = PgConfig::from_url(&database_url()).unwrap().schema(schema).unwrap().pool_size(4);
    PgStores::connect_with(config).await.unwrap_or_else(|e| panic!("cannot connect to PostgreSQL: {e}"))
}

/// Appends one event of `event_type` with `payload`, recorded at `at`: its position.
pub async fn append(store: &PgEventStore, stream: &str, event_type: &'static str, payload: &str, at: i64) -> Position {
    let (category, id) = stream.split_once('/').unwrap();
    let stream = StreamId::new(category, id).unwrap();
    let mut metadata = Metadata::default();
    metadata.timestamp = Timestamp::from_micros(at);
    metadata.correlation_id = Some(format!("corr-{at}"));
    let event = NewEvent { event_type: event_type.into(), schema_version: 1, payload: payload.into(), metadata };
    store.append(&stream, ExpectedVersion::Any, vec![event]).await.unwrap().outcome().position
}
