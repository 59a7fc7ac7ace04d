//! This framework's side: the engine and the store, driven the way a service drives them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use eventloom_core::{
    Position, StreamId,
    model::ExpectedVersion,
    store::{AppendOutcome, EventStore},
    write::Cqrs,
};
use eventloom_postgres::PgEventStore;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::Result;
use crate::domain::{AGGREGATES, Account, Deposit, EventMaker};
use crate::load::Worker;

/// The engine over the PostgreSQL store.
pub type Engine = Cqrs<Account, PgEventStore>;

/// Deposits through the engine: operation `i` deposits 1 into account `i % 1000`.
#[derive(Clone)]
pub struct Commands {
    cqrs: Engine,
    ids: Arc<[String]>,
}

impl Commands {
    /// Commands through `cqrs` (a clone shares its cache) on accounts `ids`.
    pub fn new(cqrs: Engine, ids: Arc<[String]>) -> Self {
        Commands { cqrs, ids }
    }

    /// One deposit into every account, so that each is cached and has a stream.
    pub async fn warm(&self) -> Result<()> {
        for id in self.ids.iter() {
            self.cqrs.execute(Deposit { id: id.clone(), amount: 1 }).await?;
        }
        Ok(())
    }
}

impl Worker for Commands {
    async fn op(&mut self, i: usize) -> Result<()> {
        self.cqrs.execute(Deposit { id: self.ids[i % AGGREGATES].clone(), amount: 1 }).await?;
        Ok(())
    }
}

/// Deposits into one account through an engine: a latency probe for long streams.
pub struct OneStream {
    cqrs: Engine,
    id: String,
}

impl OneStream {
    /// Commands through `cqrs` on account `id`.
    pub fn new(cqrs: Engine, id: &str) -> Self {
        OneStream { cqrs, id: id.to_owned() }
    }
}

impl Worker for OneStream {
    async fn op(&mut self, _: usize) -> Result<()> {
        self.cqrs.execute(Deposit { id: self.id.clone(), amount: 1 }).await?;
        Ok(())
    }
}

/// `EventStore::append` of `size` deposits per call: operation `i` creates stream
/// `{prefix}{i}` of category `batch`.
pub struct AppendBatch {
    store: PgEventStore,
    size: usize,
    prefix: String,
    events: EventMaker,
}

impl AppendBatch {
    /// Batches of `size` events into `store`, in new streams named `{prefix}{i}`.
    pub fn new(store: PgEventStore, size: usize, prefix: &str) -> Self {
        AppendBatch { store, size, prefix: prefix.to_owned(), events: EventMaker::default() }
    }
}

impl Worker for AppendBatch {
    async fn op(&mut self, i: usize) -> Result<()> {
        let stream = StreamId::new("batch", format!("{}{i}", self.prefix))?;
        let events = (0..self.size).map(|_| self.events.deposit()).collect();
        self.store.append(&stream, ExpectedVersion::NoStream, events).await?;
        Ok(())
    }
}

/// Writes a new stream of `length` deposits for account `id`, 1,000 events per append with
/// exact expected versions; returns the last append's outcome.
pub async fn build_stream(store: &PgEventStore, id: &str, length: u64) -> Result<AppendOutcome> {
    const CHUNK: u64 = 1_000;
    let stream = StreamId::new(<Account as eventloom_core::Aggregate>::TYPE, id)?;
    let events = EventMaker::default();
    let mut last = None;
    let mut version = 0;
    while version < length {
        let n = CHUNK.min(length - version);
        let batch = (0..n).map(|_| events.deposit()).collect();
        let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
        last = Some(store.append(&stream, expected, batch).await?.into_outcome());
        version += n;
    }
    Ok(last.ok_or("a stream of length 0 has no last append")?)
}

/// A live subscription to every event, running on a task of its own.
pub struct Subscriber {
    seen: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<()>>,
}

impl Subscriber {
    /// Subscribes from the start, returns once caught up with everything stored, then keeps
    /// reading new events as wake-ups (and polls) announce them.
    pub async fn start(store: PgEventStore) -> Result<Self> {
        let seen = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = watch::channel(false);
        let (ready, caught_up) = oneshot::channel();
        let counter = seen.clone();
        let task = tokio::spawn(async move {
            let mut subscription = store.subscribe(Position::ZERO);
            while subscription.try_next_batch().await?.is_some() {}
            let _ = ready.send(());
            loop {
                tokio::select! {
                    batch = subscription.next_batch() => {
                        counter.fetch_add(u64::try_from(batch?.len())?, Ordering::Relaxed);
                    }
                    _ = stopped.changed() => return Ok(()),
                }
            }
        });
        if caught_up.await.is_err() {
            // The task ended before catching up: its error says why.
            task.await??;
            return Err("the subscription ended before catching up".into());
        }
        Ok(Subscriber { seen, stop, task })
    }

    /// How many live events it received so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Stops it; fails if the subscription failed.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.task.await?
    }
}
