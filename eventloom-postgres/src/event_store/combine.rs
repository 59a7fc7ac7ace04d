//! Write combining ([`PgConfig::write_combining`](crate::PgConfig::write_combining)): appends
//! with an exact expected version that arrive while every append statement of the store is in
//! flight gather, and go together as one statement (`append_combined.sql`) when one is free.
//!
//! - **A lone append waits for nobody**: one that finds a statement free (and no append queued)
//!   runs at once, in its caller's task, as without combining.
//! - **Group commit**: the others queue; a statement that ends hands its place to the queue,
//!   which goes as one combined statement (at most `max_appends` appends and about `max_bytes`
//!   of events), in a task of its own so that a caller that goes away cancels nobody else's
//!   append. That task answers its appends and yields once before it takes the queue for its
//!   next statement, so that the callers it answered can append again first: a steady load
//!   then gathers in full statements, not in alternately big and small ones. The place and the
//!   appends are taken before the task is spawned, so a task that never runs (its runtime
//!   shutting down) gives its place back and answers its appends with an error when dropped.
//!   With one place (the default) a statement that waits, for a row lock of another process's
//!   transaction say, holds every queued append of the store back until it ends. The queue holds at most `in_flight * max_appends` appends; one that
//!   finds it full goes alone, as without combining (the pool bounds it then), past the holds
//!   below: it may run beside a statement that holds its stream or command id, and the two
//!   then meet in the database as two processes' appends would (one of them a conflict, or the
//!   command id's duplicate).
//! - **The common case, leaner**: a batch whose appends are each one event, without a command
//!   id, to a stream that exists goes as `append_combined_one.sql`, which needs none of the
//!   general statement's bookkeeping (`streams` and `commands` rows, refusals), and carries the
//!   wake-up NOTIFY as a lone append does.
//! - **One stream, one command id, one statement at a time**: an append to a stream, or under a
//!   command id, that a statement in flight holds waits for the next one. A command id sent
//!   twice at once is thus answered by the first's outcome, as a duplicate, as it would be alone;
//!   and a statement never holds two appends to one stream.
//! - **Answers per append**: the statement reports each stream's status (written, conflict,
//!   command id recorded before). When another writer took some of a stream's versions, or one
//!   of the command ids, after the statement's snapshot, the statement rolls back as a whole
//!   (SQLSTATE `EL001`, `combined_append_refused`): those appends are answered on their own and
//!   the others are sent again. After any other error that the server reported for the statement
//!   (an event it refuses, a timeout, a deadlock with another process's writes), which rolled it
//!   back, the appends are sent again in two halves, and so on down to one append alone, so a bad
//!   event fails only its own command after a few statements, not one per append. When the
//!   outcome is unknown (the connection was lost after the statement was sent), every append of
//!   it gets the error a lone append gets: its command id tells later whether it was written.
//!   An error before anything was sent (no connection from the pool) is every append's answer;
//!   a statement the server cannot prepare (a schema without migration 13) turns combining off
//!   for the store, with a warning, and its appends go alone.

use std::collections::{HashSet, VecDeque};

use tokio::sync::oneshot;

use super::*;
use crate::config::Combining;

/// The SQLSTATE of `combined_append_refused` (migration 13).
const REFUSED: &str = "EL001";

/// An append waiting for, or in, a combined statement: what [`PgEventStore::append_events`]
/// was given, owned.
pub(super) struct Request {
    pub(super) stream: StreamId,
    pub(super) expected: ExpectedVersion,
    /// The expected version as stored (0 for no stream).
    pub(super) version: i64,
    pub(super) events: Vec<NewEvent>,
    /// The events' metadata, as JSON.
    pub(super) metadata: Vec<String>,
    pub(super) command_id: Option<String>,
    pub(super) fingerprint: Option<String>,
    pub(super) recorded_at: Option<i64>,
    pub(super) kept: bool,
    /// The events' sizes, summed.
    pub(super) bytes: usize,
}

impl Request {
    fn batch(&self) -> Batch<'_> {
        Batch {
            types: self.events.iter().map(|e| e.event_type.as_ref()).collect(),
            schema_versions: self.events.iter().map(|e| schema_version(e.schema_version)).collect(),
            payloads: self.events.iter().map(|e| e.payload.as_str()).collect(),
            metadata: self.metadata.iter().map(String::as_str).collect(),
            command_id: self.command_id.as_deref(),
            fingerprint: self.fingerprint.clone(),
            recorded_at: self.recorded_at,
            kept: self.kept,
        }
    }
}

struct Waiting {
    request: Request,
    reply: oneshot::Sender<eventloom_core::Result<Appended>>,
}

/// The queue and the statements in flight.
pub(super) struct Combiner {
    limits: Combining,
    state: Mutex<State>,
    /// Set when the server cannot prepare the combined statement: appends go alone.
    off: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct State {
    /// Append statements running or about to (lone or combined).
    in_flight: usize,
    queue: VecDeque<Waiting>,
    /// The streams and command ids of the statements in flight.
    streams: HashSet<StreamId>,
    commands: HashSet<String>,
}

impl State {
    fn free(&self, request: &Request) -> bool {
        !self.streams.contains(&request.stream)
            && request.command_id.as_ref().is_none_or(|id| !self.commands.contains(id))
    }

    fn hold(&mut self, request: &Request) -> Held {
        self.streams.insert(request.stream.clone());
        if let Some(id) = &request.command_id {
            self.commands.insert(id.clone());
        }
        Held { stream: request.stream.clone(), command_id: request.command_id.clone() }
    }

    /// Whether the queue holds an append that a new statement could take now.
    fn ready(&self) -> bool {
        self.queue.iter().any(|w| self.free(&w.request))
    }

    /// The next combined statement's appends, taken from the queue in their order: free ones,
    /// one per stream and command id, within the bounds (the first always).
    fn take(&mut self, limits: &Combining) -> (Vec<Waiting>, Vec<Held>) {
        let (mut taken, mut held, mut bytes, mut left) = (Vec::new(), Vec::new(), 0usize, VecDeque::new());
        while let Some(waiting) = self.queue.pop_front() {
            let fits = taken.is_empty()
                || (taken.len() < limits.max_appends
                    && bytes.saturating_add(waiting.request.bytes) <= limits.max_bytes);
            if fits && self.free(&waiting.request) {
                bytes = bytes.saturating_add(waiting.request.bytes);
                held.push(self.hold(&waiting.request));
                taken.push(waiting);
            } else {
                left.push_back(waiting);
            }
            if taken.len() >= limits.max_appends {
                break;
            }
        }
        left.append(&mut self.queue);
        self.queue = left;
        (taken, held)
    }
}

/// A stream and command id held by a statement in flight.
struct Held {
    stream: StreamId,
    command_id: Option<String>,
}

impl Combiner {
    pub(super) fn new(limits: Combining) -> Self {
        Combiner { limits, state: Mutex::new(State::default()), off: std::sync::atomic::AtomicBool::new(false) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most appends the queue holds.
    fn max_queued(&self) -> usize {
        self.limits.in_flight.saturating_mul(self.limits.max_appends).max(1)
    }

    fn is_off(&self) -> bool {
        self.off.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The next combined statement: its appends, taken from the queue, and its place.
struct Flush {
    batch: Vec<Waiting>,
    slot: Slot,
}

impl Flush {
    /// Takes the next statement's appends from the queue into a place already counted in
    /// `state.in_flight`.
    fn take(store: &PgEventStore, combiner: &Combiner, state: &mut State) -> Flush {
        let (batch, held) = state.take(&combiner.limits);
        Flush { batch, slot: Slot { store: store.clone(), held } }
    }

    /// Runs the statement in a task of its own. A task dropped before it ends (its runtime
    /// shutting down) drops the replies, which its callers see as an error, and gives the place
    /// back.
    fn spawn(self) {
        tokio::spawn(self.run());
    }

    /// Runs statements while the queue has appends for them: after each, the callers hear,
    /// and get a turn to append again before the next statement takes the queue (so that the
    /// commands of a steady load gather in full statements, not in alternately big and small
    /// ones).
    async fn run(self) {
        let Flush { mut batch, mut slot } = self;
        let store = slot.store.clone();
        loop {
            let requests: Vec<&Request> = batch.iter().map(|w| &w.request).collect();
            let span = tracing::debug_span!("append_combined", store = "postgres", appends = requests.len());
            let answers = store.combine(&requests).instrument(span).await;
            drop(requests);
            // The streams and command ids are free again before the callers hear.
            slot.release();
            for (waiting, answer) in batch.into_iter().zip(answers) {
                store.learn(&waiting.request.stream, &answer);
                // A caller that went away no longer waits for its answer.
                let _ = waiting.reply.send(answer);
            }
            tokio::task::yield_now().await;
            match slot.next() {
                Some(next) => batch = next,
                // The place is given back when `slot` drops.
                None => return,
            }
        }
    }
}

/// A place among the statements in flight, with what it holds; given back on drop (also when
/// its caller goes away): to the queue when an append there can go, else freed.
struct Slot {
    store: PgEventStore,
    held: Vec<Held>,
}

impl Slot {
    /// Frees the streams and command ids held, keeping the place.
    fn release(&mut self) {
        let Some(combiner) = &self.store.inner.combiner else { return };
        release(&mut self.held, &mut combiner.state());
    }

    /// The queue's next statement in this place, when an append there can go.
    fn next(&mut self) -> Option<Vec<Waiting>> {
        let combiner = self.store.inner.combiner.as_ref()?;
        let mut state = combiner.state();
        release(&mut self.held, &mut state);
        if !state.ready() {
            return None;
        }
        let (batch, held) = state.take(&combiner.limits);
        self.held = held;
        Some(batch)
    }
}

/// Frees the streams and command ids of `held`.
fn release(held: &mut Vec<Held>, state: &mut State) {
    for held in held.drain(..) {
        state.streams.remove(&held.stream);
        if let Some(id) = held.command_id {
            state.commands.remove(&id);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(combiner) = &self.store.inner.combiner else { return };
        let mut state = combiner.state();
        release(&mut self.held, &mut state);
        if state.ready() && tokio::runtime::Handle::try_current().is_ok() {
            // The place goes to the queue's next statement.
            let flush = Flush::take(&self.store, combiner, &mut state);
            drop(state);
            flush.spawn();
        } else {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
    }
}

/// Another error with what the caller of an append needs of `error` (its kind and message),
/// for each append of a statement that failed with it.
fn copy_error(error: &CoreError) -> CoreError {
    match error {
        CoreError::Corrupt { location, reason } => {
            CoreError::Corrupt { location: location.clone(), reason: reason.clone() }
        }
        CoreError::Backend { message, .. } => CoreError::Backend { message: message.clone(), source: None },
        CoreError::Timeout(after) => CoreError::Timeout(*after),
        CoreError::Shutdown => CoreError::Shutdown,
        other => CoreError::Unavailable { message: other.to_string(), source: None },
    }
}

/// The 1-based places of `combined_append_refused`'s detail: "streams|commands".
fn refused_places(detail: &str) -> Option<(Vec<usize>, Vec<usize>)> {
    let (streams, commands) = detail.split_once('|')?;
    let parse = |list: &str| -> Option<Vec<usize>> {
        list.split(',').filter(|p| !p.is_empty()).map(|p| p.trim().parse().ok()).collect()
    };
    Some((parse(streams)?, parse(commands)?))
}

/// One row of `append_combined.sql`.
struct Status {
    actual: u64,
    recorded: bool,
    written: bool,
    position: Option<Position>,
}

impl PgEventStore {
    /// An append with an exact expected version, through the combiner.
    pub(super) async fn combined(&self, request: Request) -> eventloom_core::Result<Appended> {
        let Some(combiner) = self.inner.combiner.as_ref().filter(|c| !c.is_off()) else {
            return self.alone(&request).await;
        };
        /// Where an append goes, decided under the lock (which no await holds).
        enum Route {
            /// At once, in the caller's task, in a place of its own.
            Alone(Slot, Request),
            /// Past the combiner: the queue is full.
            Overflow(Request),
            /// Queued, with the statement to start, if this append made one possible.
            Queued(oneshot::Receiver<eventloom_core::Result<Appended>>, Option<Flush>),
        }
        let route = {
            let mut state = combiner.state();
            if state.in_flight < combiner.limits.in_flight && state.queue.is_empty() && state.free(&request) {
                state.in_flight += 1;
                let held = state.hold(&request);
                Route::Alone(Slot { store: self.clone(), held: vec![held] }, request)
            } else if state.queue.len() >= combiner.max_queued() {
                Route::Overflow(request)
            } else {
                let (reply, answer) = oneshot::channel();
                let free = state.free(&request);
                state.queue.push_back(Waiting { request, reply });
                // An append held by a statement in flight goes when that one ends.
                let flush = (free && state.in_flight < combiner.limits.in_flight).then(|| {
                    state.in_flight += 1;
                    Flush::take(self, combiner, &mut state)
                });
                Route::Queued(answer, flush)
            }
        };
        match route {
            // The place is given back when `_slot` drops, after the append.
            Route::Alone(_slot, request) => self.alone(&request).await,
            Route::Overflow(request) => self.alone(&request).await,
            Route::Queued(answer, flush) => {
                if let Some(flush) = flush {
                    flush.spawn();
                }
                answer.await.unwrap_or_else(|_| {
                    Err(CoreError::unavailable_msg(
                        "a combined append was dropped before its answer (its runtime shut down): its outcome is \
                         unknown, and its command id tells whether it was written",
                    ))
                })
            }
        }
    }

    /// The answers to `requests` (distinct streams and command ids), in their order.
    async fn combine(&self, requests: &[&Request]) -> Vec<eventloom_core::Result<Appended>> {
        let mut answers: Vec<Option<eventloom_core::Result<Appended>>> = requests.iter().map(|_| None).collect();
        // Rows and locks in (category, stream id) order.
        let mut all: Vec<usize> = (0..requests.len()).collect();
        all.sort_by(|&a, &b| {
            let (a, b) = (&requests[a].stream, &requests[b].stream);
            (a.category(), a.id()).cmp(&(b.category(), b.id()))
        });
        // Groups still to send, each sorted; every turn answers at least one append of the
        // group it takes, or splits it.
        let mut groups = vec![all];
        // Whether a statement may carry the NOTIFY: not after one that the server refused
        // (the NOTIFY may be why, its queue full), as a lone append sends itself again without.
        let mut may_carry = true;
        while let Some(mut group) = groups.pop() {
            if let [only] = group[..] {
                answers[only] = Some(self.alone(requests[only]).await);
                continue;
            }
            if self.inner.combiner.as_ref().is_some_and(Combiner::is_off) {
                for &i in &group {
                    answers[i] = Some(self.alone(requests[i]).await);
                }
                continue;
            }
            match self.combined_statement(requests, &group, may_carry).await {
                Ok(Sent { rows, carried }) => {
                    let mut written = false;
                    for (&i, status) in group.iter().zip(rows) {
                        written |= status.as_ref().is_ok_and(|s| s.written);
                        let answer = match status {
                            Ok(status) => self.answer(requests[i], status).await,
                            Err(e) => Err(e),
                        };
                        answers[i] = Some(answer);
                    }
                    if written {
                        self.appended(carried);
                    }
                }
                Err(Failure::Refused { streams, commands }) => {
                    // Rolled back: those appends are answered on their own, the others go again.
                    for &place in &commands {
                        let i = group[place - 1];
                        if let Some(id) = &requests[i].command_id {
                            answers[i] = Some(self.duplicate(id).await);
                        }
                    }
                    for &place in &streams {
                        let i = group[place - 1];
                        if answers[i].is_none() {
                            answers[i] = Some(self.taken_after_snapshot(requests[i]).await);
                        }
                    }
                    let sent = group.len();
                    group.retain(|&i| answers[i].is_none());
                    if group.len() == sent {
                        // A refusal that named nothing answerable: split, as after an error.
                        let second = group.split_off(group.len() / 2);
                        groups.extend([second, group]);
                    } else if !group.is_empty() {
                        groups.push(group);
                    }
                }
                Err(Failure::RolledBack) => {
                    // An error of the statement's (a refused event, a timeout): in halves, down
                    // to the append that causes it alone.
                    may_carry = false;
                    let second = group.split_off(group.len() / 2);
                    groups.extend([second, group]);
                }
                Err(Failure::Unprepared(error)) => {
                    tracing::warn!(
                        %error,
                        "write combining is off for this store: the server cannot prepare the combined append \
                         (is migration 13 applied? run migrate); appends go alone"
                    );
                    if let Some(combiner) = &self.inner.combiner {
                        combiner.off.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    groups.push(group);
                }
                Err(Failure::Unknown(error)) => {
                    for &i in &group {
                        answers[i] = Some(Err(copy_error(&error)));
                    }
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(CoreError::unavailable_msg("a combined append was left unanswered"))))
            .collect()
    }

    /// One append on its own, as without combining.
    async fn alone(&self, request: &Request) -> eventloom_core::Result<Appended> {
        self.append_at(&request.stream, request.expected, request.version, &request.batch()).await
    }

    /// The answer to an append whose stream, at the version expected in the statement's
    /// snapshot, had some or all of the versions it would write taken by another writer since:
    /// a retry of the same command (its command id recorded meanwhile), or a conflict.
    async fn taken_after_snapshot(&self, request: &Request) -> eventloom_core::Result<Appended> {
        if let Some(id) = &request.command_id {
            if let Some(first) = self.first_record(id).await? {
                return Ok(Appended::Duplicate { command_id: id.clone(), first });
            }
        }
        let actual = self.stream_version(&request.stream).await?;
        Err(CoreError::Conflict { stream: request.stream.clone(), expected: request.expected, actual })
    }

    /// The answer to one append from its row of the combined statement.
    async fn answer(&self, request: &Request, status: Status) -> eventloom_core::Result<Appended> {
        let first_version = request.version.unsigned_abs() + 1;
        if status.written {
            let position = status.position.ok_or_else(|| {
                CoreError::unavailable_msg(format!("the combined append to {} returned no position", request.stream))
            })?;
            let appended = u64::try_from(request.events.len()).unwrap_or(u64::MAX);
            return Ok(Appended::Written(AppendOutcome {
                stream: request.stream.clone(),
                first_version,
                last_version: first_version + appended - 1,
                position,
            }));
        }
        if let (true, Some(id)) = (status.recorded, &request.command_id) {
            return self.duplicate(id).await;
        }
        if status.actual + 1 < first_version {
            // Behind the version expected in the snapshot: as alone (which reads it afresh).
            return self.alone(request).await;
        }
        if status.actual + 1 > first_version {
            return Err(CoreError::Conflict {
                stream: request.stream.clone(),
                expected: request.expected,
                actual: status.actual,
            });
        }
        self.taken_after_snapshot(request).await
    }

    /// Sends the appends `pending` (indices into `requests`, sorted by stream) as one statement:
    /// `append_combined_one.sql` when each is one event without a command id to a stream that
    /// exists (the common case, and half the server's time), else `append_combined.sql`.
    async fn combined_statement(
        &self,
        requests: &[&Request],
        pending: &[usize],
        may_carry: bool,
    ) -> Result<Sent, Failure> {
        let streams: Vec<&Request> = pending.iter().map(|&i| requests[i]).collect();
        if streams.iter().all(|r| r.version > 0 && r.events.len() == 1 && r.command_id.is_none()) {
            self.one_event_each(&streams, may_carry).await
        } else {
            let rows = self.general_statement(&streams).await?;
            Ok(Sent { rows, carried: false })
        }
    }

    /// `append_combined_one.sql`: one event each, no command ids, streams that exist; it
    /// carries the NOTIFY when [`Carrying`] says so and `may_carry`.
    async fn one_event_each(&self, streams: &[&Request], may_carry: bool) -> Result<Sent, Failure> {
        let mut columns = OneEventColumns::with_capacity(streams.len());
        for request in streams {
            columns.push(request);
        }
        let carrying = if may_carry { Carrying::start(self) } else { None };
        let channel = carrying.as_ref().map(|_| self.inner.sql.notify_channel.as_str());
        let OneEventColumns { categories, ids, expected, types, schema_versions, payloads, metadata } = &columns;
        let params: [&(dyn ToSql + Sync); 8] =
            [categories, ids, expected, types, schema_versions, payloads, metadata, &channel];
        let rows = self.send(&self.inner.sql.append_combined_one, &params, streams.len()).await;
        let statuses = rows.map(|rows| {
            rows.iter()
                .zip(streams)
                .map(|(row, request)| {
                    let fields =
                        Fields::new(row, || format!("stream {} after version {}", request.stream, request.version));
                    let sequence = fields.unsigned_opt(At(2, "sequence"))?;
                    Ok(Status {
                        actual: fields.unsigned(At(0, "actual"))?,
                        recorded: false,
                        written: sequence.is_some(),
                        position: match sequence {
                            Some(_) => Some(fields.position(At(1, "transaction_id"), At(2, "sequence"))?),
                            None => None,
                        },
                    })
                })
                .collect::<Vec<_>>()
        });
        let carried = carrying.is_some();
        if let Some(carrying) = carrying {
            // Written (and so committed with its NOTIFY) when any stream was.
            let written = statuses.as_ref().is_ok_and(|s| s.iter().any(|s| s.as_ref().is_ok_and(|s| s.written)));
            carrying.ended(written);
        }
        Ok(Sent { rows: statuses?, carried })
    }

    /// Sends the combined statement `sql` for `streams` appends: its rows, one per append.
    /// Nothing is sent before the statement: an error getting there leaves every outcome known
    /// (not written), and is what a lone append would have met.
    async fn send(&self, sql: &str, params: &[&(dyn ToSql + Sync)], streams: usize) -> Result<Vec<Row>, Failure> {
        let conn = self.client().await.map_err(Failure::Unknown)?;
        let stmt = conn.prepare_unmapped(sql).await.map_err(Failure::unprepared)?;
        let result = conn.noted(conn.client().query(&stmt, params).await);
        drop(conn);
        let rows = result.map_err(|e| Failure::of(e, streams))?;
        if rows.len() != streams {
            return Err(Failure::Unknown(CoreError::unavailable_msg(format!(
                "the combined append of {streams} streams returned {} rows",
                rows.len()
            ))));
        }
        Ok(rows)
    }

    /// `append_combined.sql`, the general statement.
    async fn general_statement(&self, streams: &[&Request]) -> Result<Vec<eventloom_core::Result<Status>>, Failure> {
        let categories: Vec<&str> = streams.iter().map(|r| r.stream.category()).collect();
        let ids: Vec<&str> = streams.iter().map(|r| r.stream.id()).collect();
        let expected: Vec<i64> = streams.iter().map(|r| r.version).collect();
        let commands: Vec<Option<&str>> = streams.iter().map(|r| r.command_id.as_deref()).collect();
        let fingerprints: Vec<Option<&str>> = streams.iter().map(|r| r.fingerprint.as_deref()).collect();
        let recorded_at: Vec<Option<i64>> = streams.iter().map(|r| r.recorded_at).collect();
        let kept: Vec<bool> = streams.iter().map(|r| r.kept).collect();
        let counts: Vec<i32> = streams.iter().map(|r| i32::try_from(r.events.len()).unwrap_or(i32::MAX)).collect();
        let total: usize = streams.iter().map(|r| r.events.len()).sum();
        let (mut places, mut ordinals) = (Vec::with_capacity(total), Vec::with_capacity(total));
        let (mut types, mut schema_versions) = (Vec::with_capacity(total), Vec::with_capacity(total));
        let (mut payloads, mut metadata) = (Vec::with_capacity(total), Vec::with_capacity(total));
        for (k, request) in (1i32..).zip(streams) {
            for (n, (event, meta)) in (1i32..).zip(request.events.iter().zip(&request.metadata)) {
                places.push(k);
                ordinals.push(n);
                types.push(event.event_type.as_ref());
                schema_versions.push(schema_version(event.schema_version));
                payloads.push(event.payload.as_str());
                metadata.push(meta.as_str());
            }
        }
        let params: [&(dyn ToSql + Sync); 14] = [
            &categories,
            &ids,
            &expected,
            &commands,
            &fingerprints,
            &recorded_at,
            &kept,
            &counts,
            &places,
            &ordinals,
            &types,
            &schema_versions,
            &payloads,
            &metadata,
        ];
        let rows = self.send(&self.inner.sql.append_combined, &params, streams.len()).await?;
        Ok(rows
            .iter()
            .zip(streams)
            .map(|(row, request)| {
                let fields =
                    Fields::new(row, || format!("stream {} after version {}", request.stream, request.version));
                let written = fields.get::<i64>("written")?;
                let written = written > 0 && usize::try_from(written).is_ok_and(|w| w == request.events.len());
                Ok(Status {
                    actual: fields.unsigned("actual")?,
                    recorded: fields.get("recorded")?,
                    written,
                    position: if written { Some(fields.position("transaction_id", "sequence")?) } else { None },
                })
            })
            .collect())
    }
}

/// The columns of `append_combined_one.sql`, one element per append.
struct OneEventColumns<'a> {
    categories: Vec<&'a str>,
    ids: Vec<&'a str>,
    expected: Vec<i64>,
    types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    payloads: Vec<&'a str>,
    metadata: Vec<&'a str>,
}

impl<'a> OneEventColumns<'a> {
    fn with_capacity(n: usize) -> Self {
        OneEventColumns {
            categories: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            expected: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            schema_versions: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
        }
    }

    /// An append of one event (the caller's check), and its metadata.
    fn push(&mut self, request: &'a Request) {
        let (Some(event), Some(meta)) = (request.events.first(), request.metadata.first()) else { return };
        self.categories.push(request.stream.category());
        self.ids.push(request.stream.id());
        self.expected.push(request.version);
        self.types.push(event.event_type.as_ref());
        self.schema_versions.push(schema_version(event.schema_version));
        self.payloads.push(event.payload.as_str());
        self.metadata.push(meta.as_str());
    }
}

/// A combined statement's rows, one per stream in its order, and whether it carried the NOTIFY.
struct Sent {
    rows: Vec<eventloom_core::Result<Status>>,
    carried: bool,
}

/// Why a combined statement wrote nothing.
enum Failure {
    /// `combined_append_refused`: another writer took some of these streams' versions, or these
    /// command ids, after the snapshot (1-based places in the statement).
    Refused { streams: Vec<usize>, commands: Vec<usize> },
    /// The server reported an error of the statement, which rolled it back.
    RolledBack,
    /// The server cannot prepare the statement: the schema lacks what it names (nothing was
    /// sent).
    Unprepared(CoreError),
    /// The statement may have committed, or was never sent: this error for each append.
    Unknown(CoreError),
}

impl Failure {
    /// A statement the server could not prepare: a schema without migration 13 lacks the
    /// function (or the tables the statement names); any other error (a lock or statement
    /// timeout, a restart) passes.
    fn unprepared(error: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let missing = [
            SqlState::UNDEFINED_FUNCTION,
            SqlState::UNDEFINED_TABLE,
            SqlState::UNDEFINED_COLUMN,
            SqlState::UNDEFINED_OBJECT,
        ];
        if error.code().is_some_and(|code| missing.contains(code)) {
            Failure::Unprepared(pg(error))
        } else {
            Failure::Unknown(pg(error))
        }
    }

    fn of(error: tokio_postgres::Error, streams: usize) -> Self {
        let Some(db) = error.as_db_error() else { return Failure::Unknown(pg(error)) };
        if db.code().code() == REFUSED {
            if let Some((s, c)) = db.detail().and_then(refused_places) {
                let valid = |places: &[usize]| places.iter().all(|&p| (1..=streams).contains(&p));
                if (!s.is_empty() || !c.is_empty()) && valid(&s) && valid(&c) {
                    return Failure::Refused { streams: s, commands: c };
                }
            }
            return Failure::RolledBack;
        }
        // An ERROR ends the statement, which autocommit then rolls back; a FATAL (the session
        // terminated) may come after the commit.
        match db.parsed_severity() {
            Some(tokio_postgres::error::Severity::Error) => Failure::RolledBack,
            _ => Failure::Unknown(pg(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::refused_places;

    #[test]
    fn the_places_of_a_refusal() {
        assert_eq!(refused_places("1,3|"), Some((vec![1, 3], vec![])));
        assert_eq!(refused_places("|2"), Some((vec![], vec![2])));
        assert_eq!(refused_places("2|2,4"), Some((vec![2], vec![2, 4])));
        assert_eq!(refused_places("x|"), None);
        assert_eq!(refused_places("12"), None);
    }
}
