//! Trace propagation with a test hook (its own test binary: the hook is process-wide): the
//! engine stores the trace context in the events' metadata, the projector's per-event spans take
//! it as their parent, its batch spans link to them and hold the view write, and a malformed
//! stored context is ignored.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use eventloom_core::memory::{MemoryEventStore, MemoryViewStore};
use eventloom_core::model::{RecordedEvent, StoredMetadata};
use eventloom_core::prelude::*;
use eventloom_core::read::{Feed, FeedReader, MemberState, Projector, ViewReader};
use eventloom_core::store::{BoxFuture, EventStore};
use eventloom_core::trace::{self, TraceContext, TracePropagation};
use eventloom_core::write::Cqrs;
use tracing::Instrument;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

/// What the test subscriber and hook saw of one span.
#[derive(Debug, Clone, Default)]
struct Rec {
    name: &'static str,
    /// Its `tracing` parent (a serial).
    parent: Option<usize>,
    /// The trace parent the hook was told.
    trace_parent: Option<TraceContext>,
    links: Vec<TraceContext>,
}

/// Every span made in this process, by serial (span ids are reused, serials are not).
fn log() -> MutexGuard<'static, Vec<Rec>> {
    static LOG: Mutex<Vec<Rec>> = Mutex::new(Vec::new());
    LOG.lock().unwrap_or_else(|e| e.into_inner())
}

struct Serial(usize);

struct Recorder;

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span.parent().and_then(|p| p.extensions().get::<Serial>().map(|s| s.0));
        let serial = {
            let mut log = log();
            log.push(Rec { name: attrs.metadata().name(), parent, ..Rec::default() });
            log.len() - 1
        };
        span.extensions_mut().insert(Serial(serial));
    }
}

fn serial(span: &tracing::Span) -> Option<usize> {
    let id = span.id()?;
    tracing::dispatcher::get_default(|d| {
        let registry = d.downcast_ref::<Registry>()?;
        let span = registry.span(&id)?;
        span.extensions().get::<Serial>().map(|s| s.0)
    })
}

fn span_id(serial: usize) -> String {
    format!("{:016x}", serial + 1)
}

/// A hook over the recorder: a span's trace is the one its nearest ancestor was given.
struct TestHook;

impl TracePropagation for TestHook {
    fn context(&self, span: &tracing::Span) -> Option<TraceContext> {
        let own = serial(span)?;
        let log = log();
        let mut at = Some(own);
        while let Some(i) = at {
            if let Some(parent) = &log[i].trace_parent {
                return TraceContext::parse(&format!("00-{}-{}-01", parent.trace_id(), span_id(own)));
            }
            at = log[i].parent;
        }
        None
    }

    fn set_parent(&self, span: &tracing::Span, parent: &TraceContext) {
        if let Some(i) = serial(span) {
            log()[i].trace_parent = Some(parent.clone());
        }
    }

    fn add_link(&self, span: &tracing::Span, to: &TraceContext) {
        if let Some(i) = serial(span) {
            log()[i].links.push(to.clone());
        }
    }
}

fn setup() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Recorder)).unwrap();
        trace::install(TestHook).unwrap();
    });
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
enum NoteEvent {
    Written { text: String },
}

#[derive(Debug, Default)]
struct Note;

impl Aggregate for Note {
    const TYPE: &'static str = "note";
    type Event = NoteEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &NoteEvent) {}
}

#[derive(Debug, Serialize, Deserialize, Command)]
#[command(aggregate = Note)]
struct Write {
    #[command(id)]
    id: String,
    text: String,
}

impl Handle<Write> for Note {
    fn handle(&self, cmd: &Write) -> Result<Vec<NoteEvent>, std::convert::Infallible> {
        Ok(vec![NoteEvent::Written { text: cmd.text.clone() }])
    }
}

struct Notes;

impl Projection for Notes {
    const NAME: &'static str = "notes";
    type Events = Note;
    type View = String;
    fn apply(&self, view: &mut Option<String>, e: &EventEnvelope<NoteEvent>) -> Result<(), BoxError> {
        let NoteEvent::Written { text } = &e.event;
        *view = Some(text.clone());
        Ok(())
    }
}

const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Runs `future` in a span whose trace parent is `traceparent`, as a server does with an
/// incoming request's header.
async fn in_request<T>(traceparent: &str, future: impl Future<Output = T>) -> T {
    let request = tracing::info_span!("request");
    assert!(trace::set_parent(&request, &TraceContext::parse(traceparent).unwrap()));
    future.instrument(request).await
}

#[tokio::test]
async fn the_engine_stores_the_current_trace_and_the_projectors_event_span_is_its_child() {
    setup();
    let store = MemoryEventStore::new();
    let cqrs = Cqrs::<Note, _>::new(store.clone());
    in_request(INCOMING, cqrs.execute(Write { id: "n-1".into(), text: "hi".into() })).await.unwrap();
    let stream = StreamId::new(Note::TYPE, "n-1").unwrap();
    let stored = store.read_stream(&stream, 1, 10).await.unwrap();
    let trace = stored[0].metadata.get().unwrap().trace.clone().expect("the current trace is stored");
    let incoming = TraceContext::parse(INCOMING).unwrap();
    assert_eq!(trace.trace_id(), incoming.trace_id(), "the request's trace");
    assert_ne!(trace.parent_id(), incoming.parent_id(), "a span of this process (the command's)");

    // Given explicitly, the caller's context wins, as given.
    let given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let options = ExecuteOptions::default().traceparent(given, Some("congo=t61rcWkgMzE"));
    in_request(INCOMING, cqrs.execute_with(Write { id: "n-2".into(), text: "yo".into() }, options)).await.unwrap();
    let stream = StreamId::new(Note::TYPE, "n-2").unwrap();
    let metadata = store.read_stream(&stream, 1, 10).await.unwrap()[0].metadata.get().unwrap().clone();
    let explicit = metadata.trace.unwrap();
    assert_eq!((explicit.traceparent(), explicit.tracestate()), (given, Some("congo=t61rcWkgMzE")));

    let views = MemoryViewStore::default();
    let projector = Projector::new(store.clone(), views.clone());
    projector.catch_up(&Notes).await.unwrap();
    assert_eq!(ViewReader::<String>::new(views, Notes::NAME).get("n-1").await.unwrap().as_deref(), Some("hi"));

    let log = log().clone();
    let event = log
        .iter()
        .position(|r| r.name == "eventloom.event" && r.trace_parent.as_ref() == Some(&trace))
        .expect("a span for the event, the stored context its parent");
    let batch = log[event].parent.expect("inside its batch span");
    assert_eq!(log[batch].name, "eventloom.batch");
    assert!(log[batch].parent.is_none(), "a batch span is a root");
    let linked: Vec<_> = log[batch].links.iter().map(|l| (l.trace_id().to_owned(), l.parent_id().to_owned())).collect();
    assert!(linked.contains(&(trace.trace_id().to_owned(), span_id(event))), "{linked:?}");
    assert!(linked.iter().any(|(t, _)| t == explicit.trace_id()), "one link per traced event: {linked:?}");
    assert!(
        log.iter().any(|r| r.name == "eventloom.view_write" && r.parent == Some(batch)),
        "the view write is inside the batch span"
    );
}

/// A feed of fixed events, as a bus consumer hands them over (metadata as JSON).
#[derive(Clone)]
struct Fixed(Arc<Vec<RecordedEvent>>);

struct FixedReader(Fixed, Position);

impl Feed for Fixed {
    type Reader = FixedReader;
    fn read_after(&self, after: Position, _: usize, _: usize) -> FixedReader {
        FixedReader(self.clone(), after)
    }
    fn count_after<'a>(&'a self, after: Position, _: u64) -> BoxFuture<'a, eventloom_core::Result<u64>> {
        let n = self.0.iter().filter(|e| e.position > after).count() as u64;
        Box::pin(async move { Ok(n) })
    }
}

impl FeedReader for FixedReader {
    fn try_next_batch<'a>(&'a mut self) -> BoxFuture<'a, eventloom_core::Result<Option<Vec<RecordedEvent>>>> {
        let after = self.1;
        let next: Vec<_> = self.0.0.iter().filter(|e| e.position > after).cloned().collect();
        if let Some(last) = next.last() {
            self.1 = last.position;
        }
        Box::pin(async move { Ok((!next.is_empty()).then_some(next)) })
    }
    fn next_batch<'a>(&'a mut self) -> BoxFuture<'a, eventloom_core::Result<Vec<RecordedEvent>>> {
        Box::pin(async move {
            match self.try_next_batch().await? {
                Some(batch) => Ok(batch),
                None => std::future::pending().await,
            }
        })
    }
    fn is_behind(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn a_malformed_stored_trace_context_is_ignored_and_the_event_projected() {
    setup();
    let event = |n: u64, trace: &str| RecordedEvent {
        stream: StreamId::new(Note::TYPE, format!("m-{n}")).unwrap(),
        version: 1,
        position: Position::new(0, n),
        event_type: "Written".into(),
        schema_version: 1,
        payload: format!(r#"{{"text":"t{n}"}}"#).into(),
        metadata: StoredMetadata::from_json(format!(
            r#"{{"event_id":"00000000-0000-0000-0000-00000000000{n}","timestamp":5{trace}}}"#
        )),
    };
    let good = "00-11111111111111111111111111111111-2222222222222222-01";
    let feed = Fixed(Arc::new(vec![
        event(1, r#","trace":{"traceparent":"00-not-a-trace"}"#),
        event(2, r#","trace":{"traceparent":"00-11111111111111111111111111111111-0000000000000000-01"}"#),
        event(3, r#","trace":"nonsense""#),
        event(4, &format!(r#","trace":{{"traceparent":"{good}"}}"#)),
    ]));
    let views = MemoryViewStore::default();
    let mut group = Projector::new(MemoryEventStore::new(), views.clone()).group_fed_by(feed);
    let member = group.add(Notes);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(group.run(async { stopped.await.unwrap_or(()) }));
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        member.wait_until(|s| s.checkpoint == Some(Position::new(0, 4)) || s.state == MemberState::Failed),
    )
    .await
    .unwrap();
    assert_ne!(status.state, MemberState::Failed, "{status:?}");
    let reader = ViewReader::<String>::new(views, Notes::NAME);
    for n in 1..=4 {
        assert_eq!(reader.get(&format!("m-{n}")).await.unwrap(), Some(format!("t{n}")), "every event projected");
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let log = log().clone();
    let parents: Vec<_> = log
        .iter()
        .filter(|r| r.name == "eventloom.event")
        .filter_map(|r| r.trace_parent.as_ref())
        .filter(|t| t.trace_id() == "11111111111111111111111111111111")
        .collect();
    assert_eq!(parents, vec![&TraceContext::parse(good).unwrap()], "only the good one makes a span");
}

// ---- A process manager's timer carries on the trace of the event that set it ----

#[derive(Debug, Serialize, Deserialize)]
enum ReminderCommand {
    Write(Write),
}

impl eventloom_core::process::CommandSet for ReminderCommand {
    async fn dispatch(
        self,
        to: &eventloom_core::process::Dispatcher,
        options: ExecuteOptions,
    ) -> eventloom_core::process::Dispatched {
        match self {
            ReminderCommand::Write(c) => to.execute(c, options).await,
        }
    }
}

/// On a note that says "remind", sets a timer due at once; when it fires, writes a reminder note.
struct Reminder;

impl eventloom_core::process::ProcessManager for Reminder {
    const NAME: &'static str = "reminder";
    type Events = Note;
    type State = ();
    type Commands = ReminderCommand;

    fn correlate(&self, event: &EventEnvelope<NoteEvent>) -> Option<String> {
        Some(event.stream.id().to_owned())
    }

    fn on_event(
        &self,
        _: &mut (),
        e: &EventEnvelope<NoteEvent>,
        d: &mut eventloom_core::process::Decision<ReminderCommand>,
    ) -> Result<(), BoxError> {
        let NoteEvent::Written { text } = &e.event;
        if text == "remind" {
            d.schedule("remind", Duration::ZERO);
        }
        Ok(())
    }

    fn on_timer(
        &self,
        _: &mut (),
        timer: &eventloom_core::process::Timer,
        d: &mut eventloom_core::process::Decision<ReminderCommand>,
    ) -> Result<(), BoxError> {
        d.issue(ReminderCommand::Write(Write { id: format!("reminded-{}", timer.key), text: "reminded".into() }));
        Ok(())
    }
}

#[tokio::test]
async fn a_timer_and_what_it_issues_continue_the_trace_of_the_event_that_set_it() {
    setup();
    let memory = MemoryStores::new();
    let app = App::builder(memory.clone()).aggregate::<Note>().process_manager(Reminder).start().await.unwrap();
    let incoming = "00-5bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b8-01";
    in_request(incoming, app.execute(Write { id: "r-1".into(), text: "remind".into() })).await.unwrap();
    let reminded = StreamId::new(Note::TYPE, "reminded-r-1").unwrap();
    let started = std::time::Instant::now();
    let stored = loop {
        let stored = memory.events.read_stream(&reminded, 1, 10).await.unwrap();
        if !stored.is_empty() {
            break stored;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the timer never fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    app.shutdown().await.unwrap();
    let trace = stored[0].metadata.get().unwrap().trace.clone().expect("the reminder carries a trace");
    assert_eq!(trace.trace_id(), TraceContext::parse(incoming).unwrap().trace_id(), "the request's trace");
}

#[tokio::test]
async fn a_relay_handles_each_message_in_a_span_that_continues_its_trace() {
    setup();
    // Another service's log, its note written in a request of its own.
    let source = MemoryEventStore::new();
    let incoming = "00-6bf92f3577b34da6a3ce929d0e0e4738-00f067aa0ba902b9-01";
    let cqrs = Cqrs::<Note, _>::new(source.clone());
    in_request(incoming, cqrs.execute(Write { id: "relayed-1".into(), text: "hi".into() })).await.unwrap();
    let stream = StreamId::new(Note::TYPE, "relayed-1").unwrap();
    let trace = source.read_stream(&stream, 1, 1).await.unwrap()[0].metadata.get().unwrap().trace.clone().unwrap();

    let memory = MemoryStores::new();
    let app = App::builder(memory.clone()).relay("notes-service", source).start().await.unwrap();
    let started = std::time::Instant::now();
    let relayed = loop {
        let relayed = memory.events.read_stream(&stream, 1, 1).await.unwrap();
        if !relayed.is_empty() {
            break relayed;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never relayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    app.shutdown().await.unwrap();
    assert_eq!(relayed[0].metadata.get().unwrap().trace.as_ref(), Some(&trace), "the relayed event keeps its trace");
    let log = log().clone();
    assert!(
        log.iter().any(|r| r.name == "eventloom.event" && r.trace_parent.as_ref() == Some(&trace)),
        "the relay's span of the message is a child of its trace"
    );
}
