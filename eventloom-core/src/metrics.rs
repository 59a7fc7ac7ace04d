//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! The crate records; it installs no exporter. An application installs a recorder of its choice
//! (say `metrics-exporter-prometheus`) **before** it builds its engines, projectors and App:
//! they take their handles once, when built, so that the hot path does not look a metric up
//! (with no recorder installed the handles do nothing, at the cost of a branch). Then it may
//! call [`describe`] for the help texts and units.
//!
//! Labels are bounded: an aggregate type (`aggregate`), a command type (`command`), a
//! projection, handler or process manager name (`projection`, `process`) and an outcome
//! (`outcome`); never a stream id, a command id or a user id. The `_seconds` histograms and
//! `eventloom_projector_batch_size` are histograms: their buckets are the exporter's choice
//! (Prometheus histograms aggregate across processes; summaries do not).
//!
//! | metric | type | labels | answers |
//! |---|---|---|---|
//! | `eventloom_commands_total` | counter | `aggregate`, `command`, `outcome` (`ok`, `replayed`, `rejected`, `refused`, `conflict`, `error`) | how many commands ran and how they ended; the error rate |
//! | `eventloom_command_duration_seconds` | histogram | `aggregate`, `command` | which command is slow (load, decide, append and retries, from call to answer) |
//! | `eventloom_command_conflicts_total` | counter | `aggregate` | how often appends lose the race for a stream's next version |
//! | `eventloom_command_retries_total` | counter | `aggregate` | how often the engine decides again after a conflict |
//! | `eventloom_append_events_total` | counter | `aggregate` | how many events the engines append |
//! | `eventloom_append_bytes_total` | counter | `aggregate` | how many payload bytes they append |
//! | `eventloom_append_duration_seconds` | histogram | `aggregate` | how long the store takes to append (one round-trip) |
//! | `eventloom_loads_total` | counter | `aggregate` | how often an aggregate is loaded from the store (a cache miss, or after a failure) |
//! | `eventloom_load_events_total` | counter | `aggregate` | how many events loads read (streams that grow long without snapshots) |
//! | `eventloom_load_snapshot_hits_total` | counter | `aggregate` | how many loads started from a snapshot |
//! | `eventloom_cache_hits_total` | counter | `aggregate` | how many commands decided on the cached state (no load) |
//! | `eventloom_cache_misses_total` | counter | `aggregate` | how many commands had to load |
//! | `eventloom_projector_batches_total` | counter | `projection` | how many batches a projection, handler or process manager wrote |
//! | `eventloom_projector_events_total` | counter | `projection` | how many events it processed |
//! | `eventloom_projector_batch_size` | histogram | `projection` | how full its batches are (events) |
//! | `eventloom_projector_batch_duration_seconds` | histogram | `projection` | how long a batch takes: fold, write views and checkpoint |
//! | `eventloom_projector_lag_events` | gauge | `projection` | how many events it knew were after its checkpoint at its last batch: 0 once a read reached the end of the log, else those read ahead and not yet written (a lower bound; `App::health` counts the exact lag) |
//! | `eventloom_projector_lag_seconds` | gauge | `projection` | how old the last event it wrote was when written, while behind; 0 once caught up |
//! | `eventloom_projector_running` | gauge | `projection` | 1 while this process runs it (holds its lease and writes), 0 while it stands by, is stopped on an event it cannot process, or has shut down; the two lag gauges read 0 then, so take their `max` across processes |
//! | `eventloom_projector_dead_letters_total` | counter | `projection` | how many events it skipped and recorded as dead letters |
//! | `eventloom_subscription_polls_total` | counter | | how many reads of the log subscriptions make |
//! | `eventloom_subscription_wakeups_total` | counter | | how many wake-ups (new events signalled) they receive while waiting |
//! | `eventloom_lease_acquired_total` | counter | `lease` (a projection, handler, process manager or partition name, or `eventloom.relay/<source>`) | how often a runner took a lease (leadership changes) |
//! | `eventloom_lease_lost_total` | counter | `lease` | how often a runner lost the lease it held (lease churn) |
//! | `eventloom_process_events_total` | counter | `process` | how many events and timers a process manager decided on |
//! | `eventloom_process_commands_total` | counter | `process`, `outcome` (`executed`, `refused`, `retry`, `failed`) | how its commands ended |
//! | `eventloom_process_timers_fired_total` | counter | `process` | how many of its timers came due |
//! | `eventloom_bus_consumed_total` | counter | `source`, `outcome` (`relayed`, `duplicate`, `skipped`) | how many messages a relay took from another service's feed into the log, how many it had relayed before (redeliveries) and how many this store refused as they were |
//! | `eventloom_projection_unprojected_events` | gauge | `projection` | how many events its live views lack, counted exactly (up to the cap) by the last [`App::health`](crate::App::health) |
//! | `eventloom_projection_unprojected_age_seconds` | gauge | `projection` | how old the oldest event its live views lack was at that health check: how stale queries are; 0 caught up |
//! | `eventloom_projection_stopped` | gauge | `projection` | 1 while its runner is stopped on an event it cannot process (at that health check) |
//! | `eventloom_log_held_back_events` | gauge | | how many committed events no subscriber can read yet because an older transaction is open (PostgreSQL's horizon), at that health check |

use std::time::{Duration, Instant};

use ::metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
};

pub(crate) const COMMANDS: &str = "eventloom_commands_total";
pub(crate) const COMMAND_DURATION: &str = "eventloom_command_duration_seconds";
pub(crate) const COMMAND_CONFLICTS: &str = "eventloom_command_conflicts_total";
pub(crate) const COMMAND_RETRIES: &str = "eventloom_command_retries_total";
pub(crate) const APPEND_EVENTS: &str = "eventloom_append_events_total";
pub(crate) const APPEND_BYTES: &str = "eventloom_append_bytes_total";
pub(crate) const APPEND_DURATION: &str = "eventloom_append_duration_seconds";
pub(crate) const LOADS: &str = "eventloom_loads_total";
pub(crate) const LOAD_EVENTS: &str = "eventloom_load_events_total";
pub(crate) const LOAD_SNAPSHOT_HITS: &str = "eventloom_load_snapshot_hits_total";
pub(crate) const CACHE_HITS: &str = "eventloom_cache_hits_total";
pub(crate) const CACHE_MISSES: &str = "eventloom_cache_misses_total";
pub(crate) const PROJECTOR_BATCHES: &str = "eventloom_projector_batches_total";
pub(crate) const PROJECTOR_EVENTS: &str = "eventloom_projector_events_total";
pub(crate) const PROJECTOR_BATCH_SIZE: &str = "eventloom_projector_batch_size";
pub(crate) const PROJECTOR_BATCH_DURATION: &str = "eventloom_projector_batch_duration_seconds";
pub(crate) const PROJECTOR_LAG_EVENTS: &str = "eventloom_projector_lag_events";
pub(crate) const PROJECTOR_LAG_SECONDS: &str = "eventloom_projector_lag_seconds";
pub(crate) const PROJECTOR_RUNNING: &str = "eventloom_projector_running";
pub(crate) const PROJECTOR_DEAD_LETTERS: &str = "eventloom_projector_dead_letters_total";
pub(crate) const SUBSCRIPTION_POLLS: &str = "eventloom_subscription_polls_total";
pub(crate) const SUBSCRIPTION_WAKEUPS: &str = "eventloom_subscription_wakeups_total";
pub(crate) const LEASE_ACQUIRED: &str = "eventloom_lease_acquired_total";
pub(crate) const LEASE_LOST: &str = "eventloom_lease_lost_total";
pub(crate) const PROCESS_EVENTS: &str = "eventloom_process_events_total";
pub(crate) const PROCESS_COMMANDS: &str = "eventloom_process_commands_total";
pub(crate) const PROCESS_TIMERS: &str = "eventloom_process_timers_fired_total";
pub(crate) const BUS_CONSUMED: &str = "eventloom_bus_consumed_total";
pub(crate) const PROJECTION_UNPROJECTED: &str = "eventloom_projection_unprojected_events";
pub(crate) const PROJECTION_UNPROJECTED_AGE: &str = "eventloom_projection_unprojected_age_seconds";
pub(crate) const PROJECTION_STOPPED: &str = "eventloom_projection_stopped";
pub(crate) const LOG_HELD_BACK: &str = "eventloom_log_held_back_events";

/// Registers the help text and unit of every metric this crate records with the installed
/// recorder (call it once, after installing one; without one it does nothing). See the
/// [module docs](self) for the list.
///
/// # Examples
///
/// ```
/// // With no recorder installed this does nothing; an application calls it after installing one.
/// eventloom_core::metrics::describe();
/// ```
pub fn describe() {
    describe_counter!(COMMANDS, Unit::Count, "Commands executed, by aggregate type, command type and outcome.");
    describe_histogram!(COMMAND_DURATION, Unit::Seconds, "Time from a command's call to its answer.");
    describe_counter!(COMMAND_CONFLICTS, Unit::Count, "Appends that lost the race for a stream's next version.");
    describe_counter!(COMMAND_RETRIES, Unit::Count, "Commands decided again after a conflict.");
    describe_counter!(APPEND_EVENTS, Unit::Count, "Events appended by the engines.");
    describe_counter!(APPEND_BYTES, Unit::Bytes, "Payload bytes appended by the engines.");
    describe_histogram!(APPEND_DURATION, Unit::Seconds, "Time the store took to append one command's events.");
    describe_counter!(LOADS, Unit::Count, "Aggregates loaded from the store.");
    describe_counter!(LOAD_EVENTS, Unit::Count, "Events read to load aggregates.");
    describe_counter!(LOAD_SNAPSHOT_HITS, Unit::Count, "Loads that started from a snapshot.");
    describe_counter!(CACHE_HITS, Unit::Count, "Commands decided on the engine's cached state.");
    describe_counter!(CACHE_MISSES, Unit::Count, "Commands that loaded their aggregate first.");
    describe_counter!(PROJECTOR_BATCHES, Unit::Count, "Batches a projection, handler or process manager wrote.");
    describe_counter!(PROJECTOR_EVENTS, Unit::Count, "Events a projection, handler or process manager processed.");
    describe_histogram!(PROJECTOR_BATCH_SIZE, Unit::Count, "Events per projector batch.");
    describe_histogram!(PROJECTOR_BATCH_DURATION, Unit::Seconds, "Time to fold and write one projector batch.");
    describe_gauge!(PROJECTOR_LAG_EVENTS, Unit::Count, "Events known to follow the checkpoint at the last batch.");
    describe_gauge!(PROJECTOR_LAG_SECONDS, Unit::Seconds, "Age of the last event written while behind; 0 caught up.");
    describe_gauge!(
        PROJECTOR_RUNNING,
        Unit::Count,
        "1 while this process runs the projection; 0 standing by or stopped."
    );
    describe_counter!(PROJECTOR_DEAD_LETTERS, Unit::Count, "Events skipped and recorded as dead letters.");
    describe_counter!(SUBSCRIPTION_POLLS, Unit::Count, "Reads of the log made by subscriptions.");
    describe_counter!(SUBSCRIPTION_WAKEUPS, Unit::Count, "Wake-ups subscriptions received while waiting.");
    describe_counter!(LEASE_ACQUIRED, Unit::Count, "Leases taken by runners.");
    describe_counter!(LEASE_LOST, Unit::Count, "Leases lost by the runners that held them.");
    describe_counter!(PROCESS_EVENTS, Unit::Count, "Events and timers process managers decided on.");
    describe_counter!(PROCESS_COMMANDS, Unit::Count, "Commands process managers issued, by outcome.");
    describe_counter!(PROCESS_TIMERS, Unit::Count, "Process manager timers that came due.");
    describe_counter!(BUS_CONSUMED, Unit::Count, "Messages relays took from other services' feeds, by outcome.");
    describe_gauge!(
        PROJECTION_UNPROJECTED,
        Unit::Count,
        "Events the live views lack, as App::health last counted them (up to its cap)."
    );
    describe_gauge!(
        PROJECTION_UNPROJECTED_AGE,
        Unit::Seconds,
        "Age of the oldest event the live views lack, as App::health last read it; 0 caught up."
    );
    describe_gauge!(
        PROJECTION_STOPPED,
        Unit::Count,
        "1 while the projection's runner is stopped on an event it cannot process, as App::health last read it."
    );
    describe_gauge!(
        LOG_HELD_BACK,
        Unit::Count,
        "Committed events no subscriber can read yet (an older transaction is open), as App::health last counted them."
    );
}

/// How a command ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommandEnd {
    Ok,
    Replayed,
    Rejected,
    Refused,
    Conflict,
    Error,
}

impl CommandEnd {
    const ALL: [CommandEnd; 6] = [
        CommandEnd::Ok,
        CommandEnd::Replayed,
        CommandEnd::Rejected,
        CommandEnd::Refused,
        CommandEnd::Conflict,
        CommandEnd::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            CommandEnd::Ok => "ok",
            CommandEnd::Replayed => "replayed",
            CommandEnd::Rejected => "rejected",
            CommandEnd::Refused => "refused",
            CommandEnd::Conflict => "conflict",
            CommandEnd::Error => "error",
        }
    }
}

/// The handles of one command type of one engine.
pub(crate) struct CommandMetrics {
    name: &'static str,
    outcomes: [Counter; 6],
    duration: Histogram,
}

impl CommandMetrics {
    pub(crate) fn record(&self, end: CommandEnd, started: Instant) {
        self.outcomes[end as usize].increment(1);
        self.duration.record(started.elapsed());
    }
}

/// The handles of one engine (one aggregate type), and those of its command types, made on the
/// first command of each.
pub(crate) struct EngineMetrics {
    aggregate: &'static str,
    pub(crate) conflicts: Counter,
    pub(crate) retries: Counter,
    pub(crate) append_events: Counter,
    pub(crate) append_bytes: Counter,
    pub(crate) append_duration: Histogram,
    pub(crate) loads: Counter,
    pub(crate) load_events: Counter,
    pub(crate) snapshot_hits: Counter,
    pub(crate) cache_hits: Counter,
    pub(crate) cache_misses: Counter,
    commands: std::sync::RwLock<Vec<std::sync::Arc<CommandMetrics>>>,
}

impl EngineMetrics {
    pub(crate) fn new(aggregate: &'static str) -> Self {
        let a = ("aggregate", aggregate);
        EngineMetrics {
            aggregate,
            conflicts: counter!(COMMAND_CONFLICTS, a.0 => a.1),
            retries: counter!(COMMAND_RETRIES, a.0 => a.1),
            append_events: counter!(APPEND_EVENTS, a.0 => a.1),
            append_bytes: counter!(APPEND_BYTES, a.0 => a.1),
            append_duration: ::metrics::histogram!(APPEND_DURATION, a.0 => a.1),
            loads: counter!(LOADS, a.0 => a.1),
            load_events: counter!(LOAD_EVENTS, a.0 => a.1),
            snapshot_hits: counter!(LOAD_SNAPSHOT_HITS, a.0 => a.1),
            cache_hits: counter!(CACHE_HITS, a.0 => a.1),
            cache_misses: counter!(CACHE_MISSES, a.0 => a.1),
            commands: std::sync::RwLock::new(Vec::new()),
        }
    }

    /// The handles of command type `name` (a `Command::NAME`), made on its first use.
    pub(crate) fn command(&self, name: &'static str) -> std::sync::Arc<CommandMetrics> {
        if let Ok(commands) = self.commands.read()
            && let Some(found) = commands.iter().find(|c| c.name == name)
        {
            return found.clone();
        }
        let made = std::sync::Arc::new(CommandMetrics {
            name,
            outcomes: CommandEnd::ALL.map(
                |end| counter!(COMMANDS, "aggregate" => self.aggregate, "command" => name, "outcome" => end.label()),
            ),
            duration: ::metrics::histogram!(COMMAND_DURATION, "aggregate" => self.aggregate, "command" => name),
        });
        if let Ok(mut commands) = self.commands.write() {
            if let Some(found) = commands.iter().find(|c| c.name == name) {
                return found.clone();
            }
            commands.push(made.clone());
        }
        made
    }
}

/// The handles of one runner: a projection, an event handler or a process manager, under its
/// name. Recorded once per batch, never per event.
pub(crate) struct RunnerMetrics {
    batches: Counter,
    events: Counter,
    batch_size: Histogram,
    batch_duration: Histogram,
    lag_events: Gauge,
    lag_seconds: Gauge,
    running: Gauge,
    pub(crate) lease_acquired: Counter,
    pub(crate) lease_lost: Counter,
}

impl RunnerMetrics {
    pub(crate) fn new(name: &str) -> Self {
        let name = name.to_owned();
        RunnerMetrics {
            batches: counter!(PROJECTOR_BATCHES, "projection" => name.clone()),
            events: counter!(PROJECTOR_EVENTS, "projection" => name.clone()),
            batch_size: ::metrics::histogram!(PROJECTOR_BATCH_SIZE, "projection" => name.clone()),
            batch_duration: ::metrics::histogram!(PROJECTOR_BATCH_DURATION, "projection" => name.clone()),
            lag_events: gauge!(PROJECTOR_LAG_EVENTS, "projection" => name.clone()),
            lag_seconds: gauge!(PROJECTOR_LAG_SECONDS, "projection" => name.clone()),
            running: gauge!(PROJECTOR_RUNNING, "projection" => name.clone()),
            lease_acquired: counter!(LEASE_ACQUIRED, "lease" => name.clone()),
            lease_lost: counter!(LEASE_LOST, "lease" => name),
        }
    }

    /// A batch of `events` events written in `took`.
    pub(crate) fn batch(&self, events: usize, took: Duration) {
        self.batches.increment(1);
        self.events.increment(events as u64);
        self.batch_size.record(events as f64);
        self.batch_duration.record(took);
    }

    /// The runner runs the projection (it holds the lease, and found the generation to write).
    pub(crate) fn running(&self) {
        self.running.set(1.0);
    }

    /// The runner does not run the projection (standing by, stopped or shut down): what it knew
    /// of the lag goes stale, so it reads 0, and the leader's gauges (or `App::health`'s) tell.
    pub(crate) fn not_running(&self) {
        self.running.set(0.0);
        self.lag_events.set(0.0);
        self.lag_seconds.set(0.0);
    }

    /// Where the runner stands after a batch whose last event is `last`: `ahead` events known to
    /// follow (0 when the read reached the end of the log, in which case it is caught up).
    pub(crate) fn lag(&self, last: Option<&crate::RecordedEvent>, ahead: usize, caught_up: bool) {
        self.lag_events.set(ahead as f64);
        if caught_up {
            self.lag_seconds.set(0.0);
            return;
        }
        if let Some(metadata) = last.and_then(|e| e.metadata.get().ok()) {
            let now = crate::Timestamp::now().as_micros();
            let age = now.saturating_sub(metadata.timestamp.as_micros()).max(0);
            self.lag_seconds.set(age as f64 / 1e6);
        }
    }
}

/// Counts `n` dead letters of `name` (rare: the handle is made here).
pub(crate) fn dead_letters(name: &str, n: usize) {
    if n > 0 {
        counter!(PROJECTOR_DEAD_LETTERS, "projection" => name.to_owned()).increment(n as u64);
    }
}

/// The handles of one process manager.
pub(crate) struct ProcessMetrics {
    pub(crate) events: Counter,
    pub(crate) timers: Counter,
    /// By outcome: executed, refused, retry, failed.
    pub(crate) commands: [Counter; 4],
}

impl ProcessMetrics {
    pub(crate) fn new(name: &str) -> Self {
        let name = name.to_owned();
        ProcessMetrics {
            events: counter!(PROCESS_EVENTS, "process" => name.clone()),
            timers: counter!(PROCESS_TIMERS, "process" => name.clone()),
            commands: ["executed", "refused", "retry", "failed"]
                .map(|outcome| counter!(PROCESS_COMMANDS, "process" => name.clone(), "outcome" => outcome)),
        }
    }
}

/// A subscription's read of the log.
pub(crate) fn subscription_poll() {
    counter!(SUBSCRIPTION_POLLS).increment(1);
}

/// A subscription's wake-up.
pub(crate) fn subscription_wakeup() {
    counter!(SUBSCRIPTION_WAKEUPS).increment(1);
}

/// The handles of one relay (a bus consumer), under its source's name.
pub(crate) struct RelayMetrics {
    /// By outcome: relayed, duplicate, skipped.
    pub(crate) consumed: [Counter; 3],
    pub(crate) lease_acquired: Counter,
    pub(crate) lease_lost: Counter,
}

impl RelayMetrics {
    pub(crate) fn new(source: &str, lease: String) -> Self {
        let source = source.to_owned();
        RelayMetrics {
            consumed: ["relayed", "duplicate", "skipped"]
                .map(|outcome| counter!(BUS_CONSUMED, "source" => source.clone(), "outcome" => outcome)),
            lease_acquired: counter!(LEASE_ACQUIRED, "lease" => lease.clone()),
            lease_lost: counter!(LEASE_LOST, "lease" => lease),
        }
    }
}

/// What [`App::health`](crate::App::health) read from the stores, as gauges: each projection's,
/// handler's and process manager's exact lag and whether it is stopped, and the events held back.
pub(crate) fn health(status: &crate::app::AppStatus, held_back: Option<u64>) {
    let members = status.projections.iter().chain(&status.handlers).chain(&status.process_managers);
    for member in members {
        let Some(Ok(lag)) = &member.lag else { continue };
        let stopped = if lag.views.active_stop().is_some() { 1.0 } else { 0.0 };
        gauge!(PROJECTION_STOPPED, "projection" => member.name.clone()).set(stopped);
        if let Ok(unprojected) = &lag.unprojected {
            gauge!(PROJECTION_UNPROJECTED, "projection" => member.name.clone()).set(unprojected.events as f64);
            let age = unprojected.oldest.map_or(0.0, |age| age.as_secs_f64());
            gauge!(PROJECTION_UNPROJECTED_AGE, "projection" => member.name.clone()).set(age);
        }
    }
    if let Some(held_back) = held_back {
        gauge!(LOG_HELD_BACK).set(held_back as f64);
    }
}
