//! A process manager as the projector's runner runs it: each batch's decisions committed with
//! the checkpoint (states, timers, outbox), then the outbox executed; while live and idle, due
//! timers appended to the journal and commands left in the outbox tried again.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ProcessManager;
use super::decision::{Decision, Refused, Timer};
use super::dispatch::{CommandSet, Dispatched, Dispatcher};
use super::join::join_limited;
use super::journal::{self, Entry, derived_id};
use super::record::{Instance, Outgoing, StoredTimer, instance_id, outbox_id, outbox_key, timers_key};
use crate::app::StartFrom;
use crate::model::{Clock, Timestamp};
use crate::read::fold::dead_letter;
use crate::read::projector::{Projector, Target};
use crate::read::run::{Job, Processed};
use crate::store::{DeadLetter, OrderRange, ViewCommit, ViewStore, ViewWrite, superseded};
use crate::{Error, EventEnvelope, EventStore, ExecuteOptions, Lease, PoisonPolicy, Position, RecordedEvent, Result};

/// How many due instances or outbox entries one look takes.
const PAGE: usize = 100;

/// The version a process manager's first generation is stored under when none is given.
pub(crate) struct ProcessJob<P> {
    pm: P,
    dispatcher: Dispatcher,
    clock: Arc<dyn Clock>,
    tick: Duration,
    /// How many instances' commands run at a time.
    concurrency: usize,
    /// Where a first generation starts issuing.
    start: StartFrom,
    /// Decisions on events up to it issue nothing: on a rebuild, the checkpoint the live
    /// generation had reached (they were made and issued before); when started at the head, the
    /// position of the record of that start.
    replay_until: Mutex<Quiet>,
    /// Its metrics' handles.
    metrics: crate::metrics::ProcessMetrics,
}

/// What issues nothing: decisions on events up to `until`; and, for a process manager started at
/// the log's head at `past_timers`, the reactions to timers set by such decisions and due by then.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Quiet {
    pub(crate) until: Option<Position>,
    pub(crate) past_timers: Option<Timestamp>,
}

/// Whether a decision's commands go to the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Issuing {
    /// They do.
    Yes,
    /// They do not: the decision was made and issued before (a replay), or it is on an event
    /// before the process manager started.
    No,
    /// They do, unless the trigger is a timer due by then that a decision which issued nothing
    /// set (a past deadline of an instance begun before the process manager started).
    UnlessPastTimer(Timestamp),
}

/// One trigger of a batch: an event of the process manager's, or an entry of its journal.
pub(crate) enum Trigger<E> {
    Event(EventEnvelope<E>),
    Entry(Entry),
}

/// A trigger with what every decision needs of it.
pub(crate) struct Step<E> {
    pub(crate) raw_index: usize,
    pub(crate) key: String,
    pub(crate) trigger: Trigger<E>,
    pub(crate) event_id: String,
    pub(crate) at: Timestamp,
    pub(crate) correlation: Option<String>,
    /// The trigger's stored trace context: the commands decided on it continue its trace.
    pub(crate) trace: Option<crate::trace::TraceContext>,
}

impl<P: ProcessManager> ProcessJob<P> {
    pub(crate) fn new(pm: P, dispatcher: Dispatcher, options: &crate::app::ProcessOptions) -> Self {
        let (clock, tick, concurrency, start) =
            (options.clock.clone(), options.tick, options.concurrency, options.start);
        let metrics = crate::metrics::ProcessMetrics::new(pm.name());
        ProcessJob {
            pm,
            dispatcher,
            clock,
            tick,
            concurrency,
            start,
            replay_until: Mutex::new(Quiet::default()),
            metrics,
        }
    }

    fn quiet(&self) -> Quiet {
        self.replay_until.lock().map(|r| *r).unwrap_or_default()
    }

    fn set_quiet(&self, quiet: Quiet) {
        if let Ok(mut r) = self.replay_until.lock() {
            *r = quiet;
        }
    }

    /// The steps of `batch` that concern this process manager, in order; an event that does not
    /// decode is `Err` with its index.
    fn steps<S: EventStore + Clone>(
        &self,
        projector: &Projector<S>,
        batch: &[RecordedEvent],
    ) -> Steps<<P::Events as crate::EventSet>::Event> {
        let name = self.pm.name();
        let mut steps = Vec::new();
        for (raw_index, raw) in batch.iter().enumerate() {
            let metadata = match raw.metadata.get() {
                Ok(m) => m,
                Err(error) => {
                    steps.push(Err((raw_index, error)));
                    continue;
                }
            };
            let event_id = metadata.event_id.to_string();
            let (at, correlation) = (metadata.timestamp, metadata.correlation_id.clone());
            let trace = metadata.trace.clone();
            let mut at = at;
            let (key, trigger) = match journal::entry_of(name, raw) {
                Some(Ok(entry)) => {
                    let key = match &entry {
                        Entry::Timer { timer, .. } => {
                            // A timer's reaction happens at its due time, however late it ran.
                            at = timer.due;
                            timer.key.clone()
                        }
                        Entry::Refused { key, .. } => key.clone(),
                    };
                    (key, Trigger::Entry(entry))
                }
                Some(Err(error)) => {
                    steps.push(Err((raw_index, error)));
                    continue;
                }
                None => match projector.route::<P::Events>(raw, |c, t| self.pm.handles(c, t)) {
                    None => continue,
                    Some(Err(error)) => {
                        steps.push(Err((raw_index, error)));
                        continue;
                    }
                    Some(Ok(envelope)) => match self.pm.correlate(&envelope) {
                        Some(key) => match journal::check_key(name, &key) {
                            Ok(()) => (key, Trigger::Event(envelope)),
                            Err(error) => {
                                steps.push(Err((raw_index, error)));
                                continue;
                            }
                        },
                        None => continue,
                    },
                },
            };
            let correlation = correlation.or_else(|| Some(event_id.clone()));
            steps.push(Ok(Step { raw_index, key, trigger, event_id, at, correlation, trace }));
        }
        steps
    }

    /// Folds and commits one batch; then, when live, executes the commands it put in the outbox.
    async fn process_batch<S: EventStore + Clone>(
        &self,
        projector: &Projector<S>,
        batch: &[RecordedEvent],
        target: &Target,
        token: u64,
        lease: Option<&Lease>,
    ) -> Result<Processed> {
        let name = self.pm.name();
        let steps = self.steps(projector, batch);
        let decided = steps.iter().filter(|s| s.is_ok()).count();
        let mut folded = Folded::load(projector, name, target.generation, &steps).await?;
        let quiet = self.quiet();
        self.fold(projector, batch, steps, quiet, &mut folded);
        let written = match folded.done.filter(|d| Some(*d) > target.checkpoint) {
            Some(checkpoint) => {
                let commit = ViewCommit {
                    generation: target.generation,
                    expected: target.checkpoint,
                    checkpoint,
                    fencing_token: token,
                    views: folded.writes(name)?,
                    dead_letters: std::mem::take(&mut folded.dead_letters),
                    resolved: Vec::new(),
                };
                let skipped = commit.dead_letters.len();
                superseded(name, projector.views.commit(name, commit).await?)?;
                crate::metrics::dead_letters(name, skipped);
                self.metrics.events.increment(decided as u64);
                Some(checkpoint)
            }
            None => target.checkpoint,
        };
        if let Some((position, error)) = folded.stop {
            tracing::error!(%error, %position, "the process manager stopped on an event");
            return Err(error);
        }
        if !target.building
            && let Some(checkpoint) = written
            && !folded.outbox.is_empty()
        {
            // Through the outbox in its order: commands an earlier batch left (to try again)
            // go before this batch's.
            let at = Target { checkpoint: Some(checkpoint), ..*target };
            self.drain_outbox(projector, &at, token, lease).await?;
        }
        Ok(Processed::Written(written))
    }

    /// Decides on each step of `batch` in order, into `folded`; a step that fails is
    /// dead-lettered or stops the fold, by the poison policy. Decisions on events up to
    /// `replay_until` issue nothing.
    fn fold<S: EventStore + Clone>(
        &self,
        projector: &Projector<S>,
        batch: &[RecordedEvent],
        steps: Steps<<P::Events as crate::EventSet>::Event>,
        quiet: Quiet,
        folded: &mut Folded,
    ) {
        let mut steps = steps.into_iter().peekable();
        for (raw_index, raw) in batch.iter().enumerate() {
            // The step of this event, if it is one.
            let step = match steps.peek() {
                Some(Ok(s)) if s.raw_index == raw_index => steps.next(),
                Some(Err((i, _))) if *i == raw_index => steps.next(),
                _ => None,
            };
            let outcome = match step {
                None => Ok(()),
                Some(Err((_, error))) => Err(error),
                Some(Ok(step)) => {
                    let slot = folded.by_key[&step.key];
                    let issuing = match quiet {
                        Quiet { until: Some(until), .. } if raw.position <= until => Issuing::No,
                        Quiet { past_timers: Some(by), .. } => Issuing::UnlessPastTimer(by),
                        _ => Issuing::Yes,
                    };
                    let now = self.clock.now();
                    decide(&self.pm, &mut folded.instances[slot], step, raw.position, issuing, now, &mut folded.outbox)
                }
            };
            match outcome {
                Ok(()) => folded.done = Some(raw.position),
                Err(error)
                    if matches!(error, Error::NewerSchema { .. }) || projector.poison() == PoisonPolicy::Stop =>
                {
                    folded.stop = Some((raw.position, error));
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, position = %raw.position, "dead-lettering an event the process manager failed on");
                    folded.dead_letters.push(dead_letter(raw, error.to_string()));
                    folded.done = Some(raw.position);
                }
            }
        }
    }

    /// Executes `outgoing`, each instance's commands in their order and up to `concurrency`
    /// instances at a time (with a concurrency of 1, all in their order as one), then deletes
    /// from the outbox those that went through (a refusal appended to the journal first), in one
    /// write that leaves the checkpoint where it is. An instance stops early when the lease is
    /// lost or a command of its is to be tried again (what follows it stays); returns the keys of
    /// the instances that stopped so.
    async fn dispatch<S: EventStore + Clone>(
        &self,
        projector: &Projector<S>,
        target: &Target,
        token: u64,
        lease: Option<&Lease>,
        outgoing: Vec<Outgoing>,
    ) -> Result<HashSet<String>> {
        let name = self.pm.name();
        let Some(checkpoint) = target.checkpoint else { return Ok(HashSet::new()) };
        let groups = if self.concurrency == 1 { vec![outgoing] } else { by_instance(outgoing) };
        let runs = groups.into_iter().map(|commands| self.run_instance(projector, checkpoint, lease, commands));
        let mut run = InstanceRun::default();
        for one in join_limited(runs, self.concurrency).await {
            run.finished.extend(one.finished);
            run.dead_letters.extend(one.dead_letters);
            run.held.extend(one.held);
            run.failure = run.failure.or(one.failure);
        }
        if !run.finished.is_empty() {
            let views =
                run.finished.iter().map(|e| ViewWrite::delete(outbox_id(&e.command_id)).leaving(e.index())).collect();
            let commit = ViewCommit {
                generation: target.generation,
                expected: Some(checkpoint),
                checkpoint,
                fencing_token: token,
                views,
                dead_letters: run.dead_letters,
                resolved: Vec::new(),
            };
            superseded(name, projector.views.commit(name, commit).await?)?;
        }
        match run.failure {
            Some(error) => Err(error),
            None => Ok(run.held),
        }
    }

    /// Executes the commands of one instance in their order, until one is to be tried again or
    /// fails, or the lease is lost.
    async fn run_instance<S: EventStore + Clone>(
        &self,
        projector: &Projector<S>,
        checkpoint: Position,
        lease: Option<&Lease>,
        commands: Vec<Outgoing>,
    ) -> InstanceRun {
        let mut run = InstanceRun::default();
        for entry in commands {
            if lease.is_some_and(Lease::is_lost) {
                run.held.insert(entry.key);
                break;
            }
            match self.run_one(projector, &entry).await {
                Ok(true) => run.finished.push(entry),
                Ok(false) => {
                    run.held.insert(entry.key);
                    break;
                }
                // A command no retry mends, under the dead-letter policy: recorded and left.
                Err(error) if !error.is_transient() && projector.poison() == PoisonPolicy::DeadLetter => {
                    match command_letter(self.pm.name(), &entry, checkpoint, &error) {
                        Some(letter) => {
                            tracing::warn!(%error, command_id = %entry.command_id, "dead-lettering a command the process manager cannot run");
                            run.dead_letters.push(letter);
                            run.finished.push(entry);
                        }
                        None => {
                            run.failure = Some(error);
                            break;
                        }
                    }
                }
                Err(error) => {
                    run.failure = Some(error);
                    break;
                }
            }
        }
        run
    }

    /// Runs one command of the outbox: `Ok(true)` when it is done with (executed, or refused
    /// and the refusal journaled), `Ok(false)` when it is to be tried again, `Err` when it
    /// cannot run (it does not decode, waited too long, or failed in a way no retry mends) or
    /// its refusal could not be journaled.
    async fn run_one<S: EventStore + Clone>(&self, projector: &Projector<S>, entry: &Outgoing) -> Result<bool> {
        let name = self.pm.name();
        let command: P::Commands = serde_json::from_value(entry.command.clone())
            .map_err(|e| corrupt(name, &entry.command_id, &format!("the command does not decode: {e}")))?;
        if let Some(error) = self.too_old(entry) {
            return Err(error);
        }
        // Its refusal is recorded under its id too, so that a redelivery gets the same answer.
        let mut options = ExecuteOptions::default().command_id(entry.command_id.clone()).record_refusal();
        if let Some(c) = &entry.correlation {
            options = options.correlation_id(c.clone());
        }
        if let Some(c) = &entry.causation {
            options = options.causation_id(c.clone());
        }
        let span = tracing::info_span!("dispatch", command_id = %entry.command_id);
        // The command continues the trace of the event it was decided on: as the parent of the
        // span it runs in when a trace propagation hook is installed (the engine then stores
        // that span's context), stored as it is otherwise.
        match (crate::trace::installed(), &entry.trace) {
            (Some(propagation), Some(trace)) => propagation.set_parent(&span, trace),
            (None, Some(trace)) => options.trace = Some(trace.clone()),
            (_, None) => {}
        }
        let dispatched = tracing::Instrument::instrument(command.dispatch(&self.dispatcher, options), span).await;
        let outcome = match &dispatched {
            Dispatched::Executed(_) => 0,
            Dispatched::Refused { .. } => 1,
            Dispatched::Retry { .. } => 2,
            Dispatched::Failed(_) => 3,
        };
        self.metrics.commands[outcome].increment(1);
        match dispatched {
            Dispatched::Executed(_) => Ok(true),
            Dispatched::Refused { reason } => {
                tracing::info!(command_id = %entry.command_id, %reason, "a command the process manager issued was refused");
                let refused = Entry::Refused {
                    process: name.to_owned(),
                    key: entry.key.clone(),
                    command_id: entry.command_id.clone(),
                    reason,
                    command: entry.command.clone(),
                };
                let (at, correlation) = (self.clock.now(), entry.correlation.as_deref());
                let trace = entry.trace.as_ref();
                journal::append(&projector.events, &refused, at, correlation, Some(&entry.command_id), trace).await?;
                Ok(true)
            }
            Dispatched::Retry { reason } => {
                tracing::warn!(command_id = %entry.command_id, %reason, "a command the process manager issued is to be tried again");
                Ok(false)
            }
            Dispatched::Failed(error) => Err(error),
        }
    }

    /// The error of a command that waited in the outbox past half the command retention: its id
    /// may expire before it ran for good, and a redelivery after that would run it again.
    fn too_old(&self, entry: &Outgoing) -> Option<Error> {
        let decided_at = entry.decided_at?;
        let waited = self.clock.now().as_micros().saturating_sub(decided_at.as_micros());
        let limit = i64::try_from(self.dispatcher.retention().as_micros() / 2).unwrap_or(i64::MAX);
        (waited > limit).then(|| Error::InvalidConfig {
            reason: format!(
                "process manager {}: command {} waited {} s in the outbox, over half the command retention: \
                 its id could expire before it ran for good; run it by hand and delete it, or raise \
                 AppBuilder::command_retention",
                self.pm.name(),
                entry.command_id,
                waited / 1_000_000
            ),
        })
    }

    /// Executes the outbox in its order, a page at a time, to its end: `true` when it is empty,
    /// `false` when the lease is lost or a command is to be tried again. Such a command holds back
    /// the commands of its instance that follow it, in later pages too, and (with a concurrency
    /// of 1) every command after it.
    async fn drain_outbox<S: EventStore + Clone>(
        &self,
        projector: &Projector<S>,
        target: &Target,
        token: u64,
        lease: Option<&Lease>,
    ) -> Result<bool> {
        let name = self.pm.name();
        let mut held: HashSet<String> = HashSet::new();
        let mut after = None;
        loop {
            if lease.is_some_and(Lease::is_lost) {
                return Ok(false);
            }
            let page = projector.views.list(name, &outbox_key(), &OrderRange::all(), after.as_ref(), PAGE).await?;
            let mut outgoing = Vec::with_capacity(page.views.len());
            for (id, json) in &page.views {
                let entry = serde_json::from_str::<Outgoing>(json).map_err(|e| corrupt(name, id, &e.to_string()))?;
                if !held.contains(&entry.key) {
                    outgoing.push(entry);
                }
            }
            held.extend(self.dispatch(projector, target, token, lease, outgoing).await?);
            if self.concurrency == 1 && !held.is_empty() {
                return Ok(false);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(held.is_empty()),
            }
        }
    }

    /// While live: appends the timers that came due to the journal (their reaction comes with
    /// the log), and executes what is left in the outbox.
    async fn tend<S: EventStore + Clone>(
        &self,
        projector: &Projector<S>,
        target: &Target,
        token: u64,
        lease: Option<&Lease>,
    ) -> Result<()> {
        if target.building || lease.is_some_and(Lease::is_lost) {
            return Ok(());
        }
        let name = self.pm.name();
        let now = self.clock.now();
        let due = OrderRange::ints(..=now.as_micros());
        let mut after = None;
        loop {
            let page = projector.views.list(name, &timers_key(), &due, after.as_ref(), PAGE).await?;
            let mut fired = Vec::new();
            for (id, json) in &page.views {
                let instance: Instance = serde_json::from_str(json).map_err(|e| corrupt(name, id, &e.to_string()))?;
                fired.extend(instance.timers.into_iter().filter(|t| t.timer.due <= now));
            }
            // In due order, as the test kit fires them.
            fired.sort_by(|a, b| (a.timer.due, &a.timer.id).cmp(&(b.timer.due, &b.timer.id)));
            for stored in &fired {
                if lease.is_some_and(Lease::is_lost) {
                    return Ok(());
                }
                tracing::info!(timer = %stored.timer.name, key = %stored.timer.key, "a timer came due");
                self.metrics.timers.increment(1);
                let entry = Entry::Timer { process: name.to_owned(), timer: stored.timer.clone() };
                let (correlation, causation) = (stored.correlation.as_deref(), Some(stored.timer.id.as_str()));
                journal::append(&projector.events, &entry, now, correlation, causation, stored.trace.as_ref()).await?;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        self.drain_outbox(projector, target, token, lease).await?;
        Ok(())
    }

    /// The generation to write: as a handler's, its first is live at once (it issues what its
    /// events decide from the first one); a new version rebuilds into a new generation, issuing
    /// nothing for the events the live one had reached, after the live one's outbox is executed.
    async fn resolve<S: EventStore + Clone>(
        &self,
        projector: &Projector<S>,
        token: u64,
        known: Option<u64>,
    ) -> Result<Target> {
        let name = self.pm.name();
        let status = projector.views.status(name).await?;
        let stopped = status.stopped.is_some();
        if let Some(newer) = [status.live, status.building].into_iter().flatten().find(|g| g.version > P::VERSION) {
            return Err(Error::NewerVersion {
                projection: name.to_owned(),
                running: P::VERSION,
                stored: newer.version,
            });
        }
        let live = status.live;
        let origin = journal::origin(&projector.events, name).await?;
        if let Some(live) = live {
            if !origin.begun {
                // Made before the origin was recorded, or a crash came between the two.
                journal::first_generation(&projector.events, name, live.id, self.clock.now()).await?;
            }
        }
        if let Some(live) = live.filter(|g| g.version == P::VERSION) {
            if let Some(gone) = known.filter(|k| *k != live.id) {
                return Err(state_gone(name, gone));
            }
            self.set_quiet(Quiet { until: origin.quiet_until, past_timers: origin.started_at });
            // Claims the generation with this runner's token: a deposed leader's next write is
            // refused from now on, not only after this runner's first batch.
            superseded(name, projector.views.go_live(name, live.id, token).await?)?;
            return Ok(Target { generation: live.id, checkpoint: live.checkpoint, building: false, stopped });
        }
        if let (None, Some(gone)) = (live, known) {
            return Err(state_gone(name, gone));
        }
        if live.is_none() && origin.begun {
            // Whatever this runner knew: its first generation was made, and the view store lost it.
            return Err(states_lost(name));
        }
        // Nothing was issued yet: this is the first start, where it starts is recorded now (the
        // App did when it started, unless another process made the generation since).
        let origin = match (live, self.start) {
            (None, StartFrom::Now) => {
                journal::start_now(&projector.events, name, self.clock.now()).await?;
                journal::origin(&projector.events, name).await?
            }
            _ => origin,
        };
        let quiet = Quiet { until: origin.quiet_until, past_timers: origin.started_at };
        if let Some(old) = live {
            // A rebuild: what the old generation decided is executed before it is left.
            let at = Target { generation: old.id, checkpoint: old.checkpoint, building: false, stopped };
            if !self.drain_outbox(projector, &at, token, None).await? {
                return Err(Error::unavailable_msg(format!(
                    "process manager {name}: the commands of the live generation's outbox must all run before a \
                     rebuild; one is to be tried again"
                )));
            }
        }
        let building = match status.building.filter(|g| g.version == P::VERSION) {
            Some(building) => building,
            None => superseded(name, projector.views.begin_generation(name, P::VERSION, token).await?)?,
        };
        match live {
            Some(old) => {
                tracing::info!(
                    from = old.version,
                    to = P::VERSION,
                    "new process manager version; rebuilding its states"
                );
                self.set_quiet(Quiet { until: old.checkpoint.max(quiet.until), past_timers: quiet.past_timers });
                Ok(Target { generation: building.id, checkpoint: building.checkpoint, building: true, stopped })
            }
            None => {
                self.set_quiet(quiet);
                superseded(name, projector.views.go_live(name, building.id, token).await?)?;
                journal::first_generation(&projector.events, name, building.id, self.clock.now()).await?;
                tracing::info!(generation = building.id, "the process manager's first generation is made");
                Ok(Target { generation: building.id, checkpoint: building.checkpoint, building: false, stopped })
            }
        }
    }
}

/// What executing the commands of one instance (or of several, merged) came to.
#[derive(Default)]
struct InstanceRun {
    /// Executed, refused (and journaled) or dead-lettered: to delete from the outbox.
    finished: Vec<Outgoing>,
    dead_letters: Vec<DeadLetter>,
    /// The instances with a command left to try again.
    held: HashSet<String>,
    failure: Option<Error>,
}

/// `outgoing` in groups of one instance each, in the order of their first command; each
/// group in its order.
fn by_instance(outgoing: Vec<Outgoing>) -> Vec<Vec<Outgoing>> {
    let mut groups: Vec<Vec<Outgoing>> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for entry in outgoing {
        match by_key.get(&entry.key) {
            Some(&at) => groups[at].push(entry),
            None => {
                by_key.insert(entry.key.clone(), groups.len());
                groups.push(vec![entry]);
            }
        }
    }
    groups
}

/// Records, for process manager `name` started at the log's head, that it starts now, when it
/// has no generation yet (nothing was issued): the App does so before its `start` returns, so
/// that the commands executed after are acted on; the runner would otherwise only when it first
/// runs.
pub(crate) async fn record_first_start(
    events: &dyn EventStore,
    views: &dyn ViewStore,
    name: &str,
    at: Timestamp,
) -> Result<()> {
    if views.status(name).await?.live.is_none() {
        journal::start_now(events, name, at).await?;
    }
    Ok(())
}

/// The steps of a batch, in order; one that cannot be read is `Err`, with its index.
type Steps<E> = Vec<std::result::Result<Step<E>, (usize, Error)>>;

/// A batch folded: the instances it touched as they were and are now, the commands it put in
/// the outbox, the events it dead-lettered, and where it got to.
struct Folded {
    ids: Vec<String>,
    by_key: HashMap<String, usize>,
    before: Vec<Option<Instance>>,
    instances: Vec<Option<Instance>>,
    outbox: Vec<Outgoing>,
    dead_letters: Vec<DeadLetter>,
    /// The last event done with; `None` before the first.
    done: Option<Position>,
    /// The event the fold stopped at, and why.
    stop: Option<(Position, Error)>,
}

impl Folded {
    /// The instances `steps` touch, as stored in `generation`.
    async fn load<S: EventStore + Clone, E>(
        projector: &Projector<S>,
        name: &str,
        generation: u64,
        steps: &Steps<E>,
    ) -> Result<Folded> {
        let mut ids: Vec<String> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for step in steps.iter().flatten() {
            if !by_key.contains_key(&step.key) {
                by_key.insert(step.key.clone(), ids.len());
                ids.push(instance_id(&step.key));
            }
        }
        let stored = projector.views.load_views(name, generation, &ids).await?;
        let mut instances: Vec<Option<Instance>> = Vec::with_capacity(ids.len());
        for (id, json) in ids.iter().zip(&stored) {
            instances.push(match json {
                Some(json) => Some(serde_json::from_str(json).map_err(|e| corrupt(name, id, &e.to_string()))?),
                None => None,
            });
        }
        let before = instances.clone();
        Ok(Folded {
            ids,
            by_key,
            before,
            instances,
            outbox: Vec::new(),
            dead_letters: Vec::new(),
            done: None,
            stop: None,
        })
    }

    /// The view writes of the fold: each changed instance (with its entry in the timers'
    /// index), and each new outbox entry.
    fn writes(&self, name: &str) -> Result<Vec<ViewWrite>> {
        let mut views = Vec::with_capacity(self.ids.len() + self.outbox.len());
        for ((id, now), was) in self.ids.iter().zip(&self.instances).zip(&self.before) {
            if now == was {
                continue;
            }
            let leave = was.as_ref().map(Instance::index).unwrap_or_default();
            views.push(match now {
                Some(instance) => {
                    let json = crate::json::to_string(instance)
                        .map_err(|source| Error::Serde { what: format!("instance {id} of {name}"), source })?;
                    let join = instance.index();
                    let left = leave.iter().filter(|e| !join.contains(e)).cloned().collect();
                    let joined = join.into_iter().filter(|e| !leave.contains(e)).collect();
                    ViewWrite::set(id.clone(), json).leaving(left).joining(joined)
                }
                None => ViewWrite::delete(id.clone()).leaving(leave),
            });
        }
        for outgoing in &self.outbox {
            let json = crate::json::to_string(outgoing)
                .map_err(|source| Error::Serde { what: format!("outbox entry of {name}"), source })?;
            views.push(ViewWrite::set(outbox_id(&outgoing.command_id), json).joining(outgoing.index()));
        }
        Ok(views)
    }
}

impl<P: ProcessManager> Job for ProcessJob<P> {
    fn name(&self) -> &str {
        self.pm.name()
    }

    fn span(&self) -> tracing::Span {
        tracing::info_span!("process_manager", process_manager = self.pm.name())
    }

    fn target<'a, S: EventStore + Clone>(
        &'a self,
        projector: &'a Projector<S>,
        token: u64,
        known: Option<u64>,
    ) -> impl Future<Output = Result<Target>> + Send + 'a {
        self.resolve(projector, token, known)
    }

    async fn process<'a, S: EventStore + Clone, X: Future<Output = ()> + Send + Unpin>(
        &'a self,
        projector: &'a Projector<S>,
        batch: &'a [RecordedEvent],
        target: &'a Target,
        token: u64,
        _shutdown: &'a mut X,
        lease: Option<&'a Lease>,
    ) -> Result<Processed> {
        // Without a trace propagation hook: one atomic load, no span, no metadata decoded.
        match crate::trace::BatchTrace::start("process_manager", self.pm.name(), batch) {
            None => self.process_batch(projector, batch, target, token, lease).await,
            Some(trace) => {
                let span = trace.batch.clone();
                tracing::Instrument::instrument(self.process_batch(projector, batch, target, token, lease), span).await
            }
        }
    }

    fn tick(&self) -> Option<Duration> {
        Some(self.tick)
    }

    fn idle<'a, S: EventStore + Clone>(
        &'a self,
        projector: &'a Projector<S>,
        target: &'a Target,
        token: u64,
        lease: Option<&'a Lease>,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        self.tend(projector, target, token, lease)
    }
}

/// Applies one step to its instance and adds its commands to `outbox` (by `issuing`).
pub(crate) fn decide<P: ProcessManager>(
    pm: &P,
    instance: &mut Option<Instance>,
    step: Step<<P::Events as crate::EventSet>::Event>,
    position: Position,
    issuing: Issuing,
    decided_at: Timestamp,
    outbox: &mut Vec<Outgoing>,
) -> Result<()> {
    let name = pm.name();
    let failed = |source| Error::Projection { projection: name.to_owned(), position, source };
    let mut state: P::State = match instance {
        Some(i) => <P::State as serde::Deserialize>::deserialize(&i.state)
            .map_err(|e| corrupt(name, &instance_id(&step.key), &e.to_string()))?,
        None => P::State::default(),
    };
    let mut timers = instance.as_ref().map(|i| i.timers.clone()).unwrap_or_default();
    let mut decision = Decision::at(step.at);
    let mut issue = issuing != Issuing::No;
    match &step.trigger {
        Trigger::Event(envelope) => pm.on_event(&mut state, envelope, &mut decision).map_err(failed)?,
        Trigger::Entry(Entry::Timer { timer, .. }) => {
            // A timer cancelled or set again since it came due is not one to react to.
            let Some(at) = timers.iter().position(|t| t.timer.id == timer.id) else { return Ok(()) };
            let stored = timers.remove(at);
            if let Issuing::UnlessPastTimer(by) = issuing {
                issue &= !(stored.quiet && timer.due <= by);
            }
            // Gone even when the reaction fails (a dead letter): it must not come due again.
            if let Some(stored) = instance.as_mut() {
                stored.timers.retain(|t| t.timer.id != timer.id);
            }
            pm.on_timer(&mut state, timer, &mut decision).map_err(failed)?;
        }
        Trigger::Entry(Entry::Refused { key, command_id, reason, command, .. }) => {
            let command: P::Commands = serde_json::from_value(command.clone())
                .map_err(|e| corrupt(name, command_id, &format!("the refused command does not decode: {e}")))?;
            let refused = Refused { command, reason: reason.clone(), command_id: command_id.clone(), key: key.clone() };
            pm.on_refused(&mut state, &refused, &mut decision).map_err(failed)?;
        }
    }
    let Decision { commands, timers: set, cancelled, complete, .. } = decision;
    timers.retain(|t| !cancelled.contains(&t.timer.name) && !set.iter().any(|(n, _)| *n == t.timer.name));
    for (timer_name, due) in set {
        let id = derived_id(&[name, &step.event_id, "timer", &timer_name]);
        let timer = Timer { name: timer_name, key: step.key.clone(), due, id };
        timers.push(StoredTimer {
            timer,
            correlation: step.correlation.clone(),
            quiet: !issue,
            trace: step.trace.clone(),
        });
    }
    let mut pending = Vec::with_capacity(commands.len());
    for (index, command) in commands.into_iter().enumerate() {
        let json = serde_json::to_value(&command)
            .map_err(|source| Error::Serde { what: format!("a command of {name}"), source })?;
        pending.push(Outgoing {
            command: json,
            command_id: derived_id(&[name, &step.event_id, &index.to_string()]),
            key: step.key.clone(),
            correlation: step.correlation.clone(),
            causation: Some(step.event_id.clone()),
            order: format!("{}{index:05}", position.sort_key()),
            decided_at: Some(decided_at),
            trace: step.trace.clone(),
        });
    }
    let state = serde_json::to_value(&state)
        .map_err(|source| Error::Serde { what: format!("the state of {name} instance {}", step.key), source })?;
    // An instance back at the default state with no timer is not worth keeping (late events of a
    // completed one would otherwise leave one behind each).
    let idle = timers.is_empty() && serde_json::to_value(P::State::default()).is_ok_and(|d| d == state);
    *instance = (!complete && !idle).then_some(Instance { state, timers });
    if issue {
        outbox.extend(pending);
    }
    Ok(())
}

/// The dead letter of a command of the outbox that cannot run, under its instance's journal
/// stream (`None` when the key has none).
fn command_letter(name: &str, entry: &Outgoing, at: Position, error: &Error) -> Option<DeadLetter> {
    let stream = crate::StreamId::new(journal::JOURNAL_CATEGORY, format!("{name}/{}", entry.key)).ok()?;
    let what = format!("command {}", entry.command_id);
    Some(DeadLetter::new(at, stream, 0, what, error.to_string()))
}

/// The error of a stored state, timer or outbox entry that does not decode.
fn corrupt(name: &str, id: &str, reason: &str) -> Error {
    Error::Corrupt { location: format!("view {id:?} of process manager {name}"), reason: reason.to_owned() }
}

/// The error of a process manager whose first generation the log says was made, and which the
/// view store does not have.
fn states_lost(name: &str) -> Error {
    Error::Corrupt {
        location: format!("the states of process manager {name}"),
        reason: format!(
            "its first generation was made (the log records it in {}/{name}) but the view store has none: it lost \
             them (restarted empty, flushed, or renumbered after a restore); starting over would issue its commands \
             again. Restore the view store, or register the process manager under a new name with StartFrom::Now",
            journal::ORIGIN_CATEGORY
        ),
    }
}

/// The error of a process manager whose stored states vanished under it.
fn state_gone(name: &str, generation: u64) -> Error {
    Error::Corrupt {
        location: format!("the states of process manager {name} (generation {generation})"),
        reason: "they are gone from the view store (restarted empty, or flushed): the process manager stops rather \
                 than decide again on every event; restore the store, or clear its status to start over"
            .to_owned(),
    }
}
