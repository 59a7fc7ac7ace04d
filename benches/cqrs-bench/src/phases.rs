//! Where a projector's time goes, without touching it: a minimal `tracing` subscriber that
//! times the spans the framework already opens around each phase of a batch.
//!
//! - `subscription` (eventloom-core): one `EventStore::read_all` call, with the pool checkout and
//!   the decoding of rows into events (metadata JSON included);
//! - `read_all` (eventloom-postgres): the query alone, rows transferred;
//! - `load_views` (eventloom-redis): the `MGET` of a batch's views;
//! - `projection_commit` (eventloom-redis): the Lua script that writes views and checkpoint;
//! - `append_combined` (eventloom-postgres, write combining): one combined statement with the
//!   answers to its appends (its `appends` field is counted as `views`).
//!
//! A span is timed from its creation to its close: the wall time of the `.instrument(span)`
//! await around the call. Everything else the projector does (payload decoding, folding,
//! serializing views) is what remains of the wall time. Other spans and all events are
//! disabled for good, so only these four cost anything, and only while switched on.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

/// The span names timed.
const PHASES: [&str; 5] = ["subscription", "read_all", "load_views", "projection_commit", "append_combined"];

/// The totals of one span name.
#[derive(Debug, Default, Clone, Copy)]
pub struct Total {
    /// How many spans closed.
    pub count: u64,
    /// Their summed wall time.
    pub time: Duration,
    /// The longest one.
    pub max: Duration,
    /// The sum of their `views` field (views loaded or written), where they have one.
    pub views: u64,
}

impl Total {
    /// The mean time per span, in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.time.as_secs_f64() * 1_000.0 / self.count as f64 }
    }
}

/// The totals by span name, since the timer was last started.
#[derive(Debug, Default, Clone)]
pub struct Totals(BTreeMap<&'static str, Total>);

impl Totals {
    /// The totals of spans named `name` (zero when none closed).
    pub fn get(&self, name: &str) -> Total {
        self.0.get(name).copied().unwrap_or_default()
    }
}

/// A span being timed.
struct Open {
    name: &'static str,
    started: Instant,
    refs: usize,
    views: u64,
}

#[derive(Default)]
struct State {
    open: HashMap<u64, Open>,
    totals: Totals,
}

#[derive(Default)]
struct Inner {
    on: AtomicBool,
    next_id: AtomicU64,
    state: Mutex<State>,
}

/// The timer: install it once with [`PhaseTimer::install`], then [`start`](PhaseTimer::start)
/// and [`stop`](PhaseTimer::stop) around what to measure. Clones share the totals.
#[derive(Clone, Default)]
pub struct PhaseTimer {
    inner: Arc<Inner>,
}

impl PhaseTimer {
    /// Makes a timer the process's global `tracing` subscriber (off until started); `None` when
    /// another subscriber was installed first.
    pub fn install() -> Option<Self> {
        let timer = PhaseTimer::default();
        tracing::subscriber::set_global_default(timer.clone()).ok().map(|()| timer)
    }

    /// Clears the totals and starts timing.
    pub fn start(&self) {
        self.state().totals = Totals::default();
        self.inner.on.store(true, Ordering::Release);
    }

    /// Stops timing and returns the totals since [`start`](Self::start).
    pub fn stop(&self) -> Totals {
        self.inner.on.store(false, Ordering::Release);
        self.state().totals.clone()
    }

    /// The process's timer, installed on the first call (`None` when another subscriber was
    /// installed first).
    pub fn shared() -> Option<&'static PhaseTimer> {
        static SHARED: std::sync::OnceLock<Option<PhaseTimer>> = std::sync::OnceLock::new();
        SHARED.get_or_init(PhaseTimer::install).as_ref()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain numbers behind: keep using them.
        self.inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Reads the `views` (or `appends`) field of a span.
struct ViewsField(u64);

impl Visit for ViewsField {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if matches!(field.name(), "views" | "appends") {
            self.0 = value;
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl Subscriber for PhaseTimer {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.is_span() && PHASES.contains(&metadata.name()) { Interest::sometimes() } else { Interest::never() }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.on.load(Ordering::Acquire) && metadata.is_span() && PHASES.contains(&metadata.name())
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut views = ViewsField(0);
        span.record(&mut views);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let open = Open { name: span.metadata().name(), started: Instant::now(), refs: 1, views: views.0 };
        self.state().open.insert(id, open);
        Id::from_u64(id)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}

    fn clone_span(&self, id: &Id) -> Id {
        if let Some(open) = self.state().open.get_mut(&id.into_u64()) {
            open.refs += 1;
        }
        id.clone()
    }

    fn try_close(&self, id: Id) -> bool {
        let mut state = self.state();
        let key = id.into_u64();
        let Some(open) = state.open.get_mut(&key) else { return false };
        open.refs -= 1;
        if open.refs > 0 {
            return false;
        }
        let Some(open) = state.open.remove(&key) else { return false };
        let total = state.totals.0.entry(open.name).or_default();
        let elapsed = open.started.elapsed();
        total.count += 1;
        total.time += elapsed;
        total.max = total.max.max(elapsed);
        total.views += open.views;
        true
    }
}
