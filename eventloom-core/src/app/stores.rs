//! The bundle of stores an [`App`](crate::App) runs on.

use std::sync::Arc;

use crate::{
    EventStore, LeaseManager, MemoryEventStore, MemoryLeases, MemorySnapshotStore, MemoryViewStore, SnapshotStore,
    ViewStore,
};

/// The stores an [`App`](crate::App) runs on: an event store, an optional snapshot store, a view
/// store and an optional lease manager, and whether they are shared between processes.
///
/// Build one with [`Stores::new`] and the `with_*` methods, or take a bundle: [`MemoryStores`]
/// (the embedded default), `PgStores` of `eventloom-postgres`, or `eventloom::stores_from_env`
/// of the facade crate. The read side can move to another view store with
/// [`with_views`](Self::with_views) (Redis views over PostgreSQL events).
///
/// # Examples
///
/// ```
/// use eventloom_core::{MemoryStores, Stores, memory::{MemoryEventStore, MemoryViewStore}};
///
/// let stores: Stores = MemoryStores::new().into();
/// assert!(!stores.is_shared(), "memory lives in one process");
/// let custom = Stores::new(MemoryEventStore::new(), MemoryViewStore::default());
/// assert!(custom.snapshots().is_none());
/// ```
#[derive(Clone)]
pub struct Stores {
    events: Arc<dyn EventStore>,
    snapshots: Option<Arc<dyn SnapshotStore>>,
    views: Arc<dyn ViewStore>,
    leases: Option<Arc<dyn LeaseManager>>,
    shared: bool,
    description: String,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("description", &self.description)
            .field("snapshots", &self.snapshots.is_some())
            .field("leases", &self.leases.is_some())
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Stores {
    /// Events in `events` and views in `views`, with no snapshot store and no leases, taken as
    /// living in this process only (see [`shared`](Self::shared)).
    pub fn new(events: impl EventStore, views: impl ViewStore) -> Self {
        Stores {
            events: Arc::new(events),
            snapshots: None,
            views: Arc::new(views),
            leases: None,
            shared: false,
            description: "custom".to_owned(),
        }
    }

    /// Keeps aggregate snapshots in `snapshots` (used by aggregates registered with
    /// [`AggregateOptions::snapshots`](crate::AggregateOptions::snapshots)).
    pub fn with_snapshots(mut self, snapshots: impl SnapshotStore) -> Self {
        self.snapshots = Some(Arc::new(snapshots));
        self
    }

    /// Keeps the read models in `views` instead (for example Redis views over PostgreSQL
    /// events).
    pub fn with_views(mut self, views: impl ViewStore) -> Self {
        self.views = Arc::new(views);
        self
    }

    /// Runs each projection only while holding its lease from `leases`, so that projectors in
    /// several processes take turns.
    pub fn with_leases(mut self, leases: impl LeaseManager) -> Self {
        self.leases = Some(Arc::new(leases));
        self
    }

    /// Whether the stores are seen by every process that uses the same settings (a database),
    /// rather than living in this process (memory). Only shared stores can run one
    /// [`Role`](crate::Role) per process.
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    /// Names the bundle in logs and errors (`"memory"`, `"postgres"`, `"postgres+redis"`).
    pub fn described_as(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// The event store.
    pub fn events(&self) -> &Arc<dyn EventStore> {
        &self.events
    }

    /// The snapshot store, if any.
    pub fn snapshots(&self) -> Option<&Arc<dyn SnapshotStore>> {
        self.snapshots.as_ref()
    }

    /// The view store.
    pub fn views(&self) -> &Arc<dyn ViewStore> {
        &self.views
    }

    /// The lease manager, if any.
    pub fn leases(&self) -> Option<&Arc<dyn LeaseManager>> {
        self.leases.as_ref()
    }

    /// Whether the stores are shared between processes (see [`shared`](Self::shared)).
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// What the bundle is, for logs (see [`described_as`](Self::described_as)).
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// The embedded default: events, snapshots, views and leases in this process's memory, with
/// nothing to install (gone when the process ends). Keep the bundle (it is cheap to clone) to
/// look at its stores; hand it to [`App::builder`](crate::App::builder).
///
/// # Examples
///
/// ```
/// use eventloom_core::{MemoryStores, Stores};
///
/// let memory = MemoryStores::new();
/// let stores = Stores::from(memory.clone());
/// assert_eq!(stores.description(), "memory");
/// assert_eq!(memory.events.len(), 0);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct MemoryStores {
    /// The events.
    pub events: MemoryEventStore,
    /// The snapshots.
    pub snapshots: MemorySnapshotStore,
    /// The views.
    pub views: MemoryViewStore,
    /// The projectors' leases.
    pub leases: MemoryLeases,
}

impl MemoryStores {
    /// Empty stores.
    pub fn new() -> Self {
        MemoryStores::default()
    }
}

impl From<MemoryStores> for Stores {
    fn from(memory: MemoryStores) -> Self {
        Stores::new(memory.events, memory.views)
            .with_snapshots(memory.snapshots)
            .with_leases(memory.leases)
            .described_as("memory")
    }
}
