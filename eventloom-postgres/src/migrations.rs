//! What [`PgEventStore::schema_version`](crate::PgEventStore::schema_version) reports: the
//! migrations applied to a schema, against those this build of the crate knows.

use eventloom_core::model::Timestamp;

/// A migration recorded as applied in a schema's `migrations` table.
///
/// # Examples
///
/// ```
/// use eventloom_core::model::Timestamp;
/// use eventloom_postgres::AppliedMigration;
///
/// let m = AppliedMigration::new(1, "event store", Timestamp::from_micros(0));
/// assert_eq!((m.version, m.name.as_str()), (1, "event store"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppliedMigration {
    /// Its version (migrations apply in version order).
    pub version: u32,
    /// Its name.
    pub name: String,
    /// When it was applied (the server's clock).
    pub applied_at: Timestamp,
}

impl AppliedMigration {
    /// Migration `version`, named `name`, applied at `applied_at`.
    pub fn new(version: u32, name: impl Into<String>, applied_at: Timestamp) -> Self {
        AppliedMigration { version, name: name.into(), applied_at }
    }
}

/// A schema's migrations: those applied (none when the schema or its `migrations` table does not
/// exist) and those this build of the crate knows and [`migrate`](crate::PgEventStore::migrate)
/// applies.
///
/// # Examples
///
/// ```
/// use eventloom_core::model::Timestamp;
/// use eventloom_postgres::{AppliedMigration, SchemaVersion};
///
/// let fresh = SchemaVersion::new("app", Vec::new(), vec![(1, "event store"), (2, "read side")]);
/// assert!(!fresh.is_migrated());
/// assert_eq!(fresh.version(), None);
/// let half = SchemaVersion::new("app", vec![AppliedMigration::new(1, "event store", Timestamp::from_micros(0))],
///     vec![(1, "event store"), (2, "read side")]);
/// assert_eq!(half.version(), Some(1));
/// assert_eq!(half.pending(), vec![2]);
/// assert!(!half.is_current());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaVersion {
    /// The schema's name.
    pub schema: String,
    /// The migrations applied, by version.
    pub applied: Vec<AppliedMigration>,
    /// The migrations this build knows: (version, name), by version.
    pub known: Vec<(u32, &'static str)>,
}

impl SchemaVersion {
    /// The state of `schema`: `applied` there, `known` to this build.
    pub fn new(schema: impl Into<String>, applied: Vec<AppliedMigration>, known: Vec<(u32, &'static str)>) -> Self {
        SchemaVersion { schema: schema.into(), applied, known }
    }

    /// The highest migration applied; `None` for a schema never migrated.
    pub fn version(&self) -> Option<u32> {
        self.applied.iter().map(|m| m.version).max()
    }

    /// The highest migration this build knows.
    pub fn latest(&self) -> u32 {
        self.known.iter().map(|(v, _)| *v).max().unwrap_or(0)
    }

    /// Whether any migration was applied: the tables exist.
    pub fn is_migrated(&self) -> bool {
        !self.applied.is_empty()
    }

    /// Whether every migration this build knows is applied.
    pub fn is_current(&self) -> bool {
        self.pending().is_empty()
    }

    /// The versions this build knows that are not applied yet (what `migrate` would apply).
    pub fn pending(&self) -> Vec<u32> {
        self.known.iter().map(|(v, _)| *v).filter(|v| !self.applied.iter().any(|m| m.version == *v)).collect()
    }

    /// The versions applied that this build does not know: a newer release migrated the schema.
    pub fn unknown(&self) -> Vec<u32> {
        self.applied.iter().map(|m| m.version).filter(|v| !self.known.iter().any(|(k, _)| k == v)).collect()
    }
}
