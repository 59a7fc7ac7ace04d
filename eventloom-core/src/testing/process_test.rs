//! A given/then kit for process managers: feed it events, let time pass, refuse commands, and
//! look at the commands issued, the timers set and the states, with no store and no runner. It
//! decides exactly as the runner does (the same code), in memory.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::time::Duration;

use crate::model::{IdGenerator, SequentialIds, Timestamp};
use crate::process::ProcessManager;
use crate::process::job::{Issuing, Step, Trigger, decide};
use crate::process::journal::Entry;
use crate::process::record::{Instance, Outgoing};
use crate::{EventEnvelope, EventSet, Metadata, Position, StreamId};

/// Drives one process manager in memory: given events (and elapsed time), then these commands
/// and timers.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use eventloom_core::prelude::*;
/// use eventloom_core::BoxError;
/// use eventloom_core::process::{CommandSet, Decision, Dispatched, Dispatcher, ProcessManager, Timer};
/// use eventloom_core::testing::ProcessTest;
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// enum OrderEvent { Placed, Paid }
/// #[derive(Debug, Default)]
/// struct Order;
/// impl Aggregate for Order {
///     const TYPE: &'static str = "order";
///     type Event = OrderEvent;
///     type Error = std::convert::Infallible;
///     fn apply(&mut self, _: &OrderEvent) {}
/// }
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// enum Cmd { Cancel(String) }
/// impl CommandSet for Cmd {
///     async fn dispatch(self, _: &Dispatcher, _: ExecuteOptions) -> Dispatched {
///         Dispatched::Retry { reason: "not in this example".into() }
///     }
/// }
///
/// struct Deadline;
/// impl ProcessManager for Deadline {
///     const NAME: &'static str = "deadline";
///     type Events = Order;
///     type State = ();
///     type Commands = Cmd;
///     fn correlate(&self, e: &EventEnvelope<OrderEvent>) -> Option<String> { Some(e.stream.id().to_owned()) }
///     fn on_event(&self, _: &mut (), e: &EventEnvelope<OrderEvent>, d: &mut Decision<Cmd>) -> Result<(), BoxError> {
///         match e.event {
///             OrderEvent::Placed => d.schedule("pay", Duration::from_secs(60)),
///             OrderEvent::Paid => d.cancel("pay"),
///         }
///         Ok(())
///     }
///     fn on_timer(&self, _: &mut (), t: &Timer, d: &mut Decision<Cmd>) -> Result<(), BoxError> {
///         d.issue(Cmd::Cancel(t.key.clone()));
///         Ok(())
///     }
/// }
///
/// let mut test = ProcessTest::new(Deadline);
/// test.given("o-1", OrderEvent::Placed).given("o-2", OrderEvent::Placed).given("o-2", OrderEvent::Paid);
/// test.elapse(Duration::from_secs(61));
/// test.then_commands(&[Cmd::Cancel("o-1".into())]);
/// assert!(test.timers("o-1").is_empty());
/// ```
pub struct ProcessTest<P: ProcessManager> {
    pm: P,
    now: Timestamp,
    position: u64,
    versions: HashMap<StreamId, u64>,
    instances: BTreeMap<String, Instance>,
    /// Every command issued, with its outbox entry.
    issued: Vec<Outgoing>,
    /// How many of `issued` were taken by `take_commands`/`then_commands`.
    taken: usize,
    /// Which of `issued` were refused.
    refused: std::collections::HashSet<usize>,
    ids: SequentialIds,
}

impl<P: ProcessManager> ProcessTest<P> {
    /// A process manager with no instance, at 2026-01-01T00:00:00Z.
    pub fn new(pm: P) -> Self {
        ProcessTest {
            pm,
            now: Timestamp::from_micros(1_767_225_600_000_000),
            position: 0,
            versions: HashMap::new(),
            instances: BTreeMap::new(),
            issued: Vec::new(),
            taken: 0,
            refused: std::collections::HashSet::new(),
            ids: SequentialIds::default(),
        }
    }

    /// Now, as the kit's clock shows it.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// An event appended now to the stream `id` of the event's category; the process manager
    /// reacts to it if it handles it and finds its key. Panics if its reaction fails.
    pub fn given(&mut self, id: &str, event: <P::Events as EventSet>::Event) -> &mut Self {
        let category = <P::Events as EventSet>::category(&event);
        let event_type = <P::Events as EventSet>::event_type(&event);
        if !self.pm.handles(category, event_type.name) {
            return self;
        }
        let stream = match StreamId::new(category, id) {
            Ok(stream) => stream,
            Err(error) => panic!("stream {category}/{id}: {error}"),
        };
        let version = self.versions.entry(stream.clone()).or_default();
        *version += 1;
        let metadata = Metadata::new(self.ids.next_id(), self.now);
        let event_id = metadata.event_id.to_string();
        let envelope = EventEnvelope {
            stream,
            version: *version,
            position: self.next_position(),
            event,
            metadata: metadata.into(),
        };
        let Some(key) = self.pm.correlate(&envelope) else { return self };
        let step = Step {
            raw_index: 0,
            key,
            trigger: Trigger::Event(envelope),
            event_id: event_id.clone(),
            at: self.now,
            correlation: Some(event_id),
            trace: None,
        };
        self.step(step);
        self
    }

    /// Lets `elapsed` pass: every timer that comes due meanwhile fires, in due order (the clock
    /// stands at each one's due time as it fires).
    pub fn elapse(&mut self, elapsed: Duration) -> &mut Self {
        let micros = i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX);
        let until = Timestamp::from_micros(self.now.as_micros().saturating_add(micros));
        loop {
            let next = self
                .instances
                .values()
                .flat_map(|i| i.timers.iter())
                .filter(|t| t.timer.due <= until)
                .min_by_key(|t| (t.timer.due, t.timer.id.clone()))
                .cloned();
            let Some(stored) = next else { break };
            self.now = self.now.max(stored.timer.due);
            let event_id = self.ids.next_id().to_string();
            let entry = Entry::Timer { process: self.pm.name().to_owned(), timer: stored.timer.clone() };
            let step = Step {
                raw_index: 0,
                key: stored.timer.key.clone(),
                trigger: Trigger::Entry(entry),
                event_id,
                at: stored.timer.due,
                correlation: stored.correlation.clone(),
                trace: None,
            };
            self.next_position();
            self.step(step);
        }
        self.now = self.now.max(until);
        self
    }

    /// Refuses the first issued command equal to `command` that was not refused before, with
    /// `reason`: the process manager reacts as it would to the aggregate's rejection. Panics if
    /// no such command was issued.
    pub fn refuse(&mut self, command: &P::Commands, reason: &str) -> &mut Self {
        let json = serde_json::to_value(command).unwrap_or(serde_json::Value::Null);
        let found = self.issued.iter().enumerate().position(|(i, o)| o.command == json && !self.refused.contains(&i));
        let Some(at) = found else { panic!("no issued command is {json}") };
        self.refused.insert(at);
        let outgoing = self.issued[at].clone();
        let entry = Entry::Refused {
            process: self.pm.name().to_owned(),
            key: outgoing.key.clone(),
            command_id: outgoing.command_id.clone(),
            reason: reason.to_owned(),
            command: outgoing.command,
        };
        let step = Step {
            raw_index: 0,
            key: outgoing.key,
            trigger: Trigger::Entry(entry),
            event_id: self.ids.next_id().to_string(),
            at: self.now,
            correlation: outgoing.correlation,
            trace: None,
        };
        self.next_position();
        self.step(step);
        self
    }

    /// The commands issued since the last call, in order.
    pub fn take_commands(&mut self) -> Vec<P::Commands> {
        let fresh = &self.issued[self.taken..];
        self.taken = self.issued.len();
        fresh
            .iter()
            .map(|o| match serde_json::from_value(o.command.clone()) {
                Ok(command) => command,
                Err(error) => panic!("an issued command does not decode: {error}"),
            })
            .collect()
    }

    /// Asserts that the commands issued since the last look are `expected`, in order.
    pub fn then_commands(&mut self, expected: &[P::Commands]) -> &mut Self
    where
        P::Commands: PartialEq + Debug,
    {
        let issued = self.take_commands();
        assert_eq!(issued, expected, "the commands issued");
        self
    }

    /// The ids the commands issued so far were (or would be) executed under, in order.
    pub fn command_ids(&self) -> Vec<String> {
        self.issued.iter().map(|o| o.command_id.clone()).collect()
    }

    /// The timers instance `key` has set, by name, with their due times.
    pub fn timers(&self, key: &str) -> Vec<(String, Timestamp)> {
        self.instances
            .get(key)
            .map(|i| i.timers.iter().map(|t| (t.timer.name.clone(), t.timer.due)).collect())
            .unwrap_or_default()
    }

    /// The state of instance `key`; `None` before its first event and once complete.
    pub fn state(&self, key: &str) -> Option<P::State> {
        let instance = self.instances.get(key)?;
        match serde_json::from_value(instance.state.clone()) {
            Ok(state) => Some(state),
            Err(error) => panic!("the state of {key} does not decode: {error}"),
        }
    }

    fn next_position(&mut self) -> Position {
        self.position += 1;
        Position::new(self.position, self.position)
    }

    fn step(&mut self, step: Step<<P::Events as EventSet>::Event>) {
        let key = step.key.clone();
        let mut instance = self.instances.remove(&key);
        let position = Position::new(self.position, self.position);
        let mut outbox = Vec::new();
        if let Err(error) = decide(&self.pm, &mut instance, step, position, Issuing::Yes, self.now, &mut outbox) {
            panic!("process manager {} failed on instance {key}: {error}", self.pm.name());
        }
        if let Some(instance) = instance {
            self.instances.insert(key, instance);
        }
        self.issued.extend(outbox);
    }
}
