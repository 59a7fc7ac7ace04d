//! The conformance suite of what the engine stores: an event or snapshot JSON cannot hold (a
//! NaN or infinite float) is refused before it reaches any store, so every stream still loads.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use eventloom_core::{memory::{MemoryEventStore, MemorySnapshotStore}};
//! eventloom_core::testing::encoding::run(MemoryEventStore::new(), MemorySnapshotStore::default()).await;
//! # });
//! ```

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::{
    Aggregate, Command, CommandError, Cqrs, Error, Event, EventStore, EventType, Handle, SnapshotPolicy, SnapshotStore,
    StreamId,
};

/// The suite's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reading {
    /// A measurement, perhaps missing.
    Measured {
        /// In degrees Celsius.
        celsius: Option<f64>,
    },
    /// The gauge's scale becomes `1 / by` (infinite for 0).
    Scaled {
        /// The divisor.
        by: f64,
    },
}

impl Event for Reading {
    const TYPES: &'static [EventType] = &[EventType::new("Measured", 1), EventType::new("Scaled", 1)];

    fn event_type(&self) -> EventType {
        match self {
            Reading::Measured { .. } => Self::TYPES[0],
            Reading::Scaled { .. } => Self::TYPES[1],
        }
    }

    fn encode(&self) -> Result<String, serde_json::Error> {
        crate::__private::encode_variant(self)
    }

    fn decode(event_type: &str, payload: &str) -> Result<Self, crate::DecodeError> {
        let index = Self::TYPES.iter().position(|t| t.name == event_type).ok_or(crate::DecodeError::UnknownType)?;
        let index = u32::try_from(index).map_err(|_| crate::DecodeError::UnknownType)?;
        Ok(crate::__private::decode_variant(index, payload)?)
    }
}

/// The suite's aggregate: a gauge whose state can hold an infinite scale.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Gauge {
    /// Measurements folded.
    pub readings: u64,
    /// The scale.
    pub scale: f64,
}

impl Aggregate for Gauge {
    const TYPE: &'static str = "gauge";
    type Event = Reading;
    type Error = std::convert::Infallible;

    fn apply(&mut self, event: &Reading) {
        match event {
            Reading::Measured { .. } => self.readings += 1,
            Reading::Scaled { by } => self.scale = 1.0 / by,
        }
    }
}

/// Emits its event as given.
#[derive(Debug, Serialize)]
pub struct Record {
    /// The gauge.
    pub id: String,
    /// What to emit.
    pub event: Reading,
}

impl Command for Record {
    type Aggregate = Gauge;
    const NAME: &'static str = "Record";
    fn aggregate_id(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.id)
    }
}

impl Handle<Record> for Gauge {
    fn handle(&self, cmd: &Record) -> Result<Vec<Reading>, std::convert::Infallible> {
        Ok(vec![cmd.event.clone()])
    }
}

fn record(id: &str, event: Reading) -> Record {
    Record { id: id.to_owned(), event }
}

/// Runs every case against `events` and `snapshots`.
pub async fn run<E, S>(events: E, snapshots: S)
where
    E: EventStore + Clone,
    S: SnapshotStore + Clone,
{
    non_finite_events_are_refused(events.clone()).await;
    non_finite_snapshots_are_refused(events, snapshots).await;
}

/// A command whose event holds a NaN or infinity fails with [`Error::Encode`] and appends
/// nothing, `Option<f64>` included (where `null` would read back as `None`); the stream goes on.
pub async fn non_finite_events_are_refused<E: EventStore + Clone>(events: E) {
    let id = format!("nan-{}", uuid::Uuid::new_v4());
    let cqrs = Cqrs::<Gauge, E>::new(events.clone());
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for event in [Reading::Measured { celsius: Some(bad) }, Reading::Scaled { by: bad }] {
            match cqrs.execute(record(&id, event.clone())).await {
                Err(CommandError::Store(Error::Encode { event_type, .. })) => {
                    assert_eq!(event_type, event.event_type().name);
                }
                other => panic!("{event:?} must be refused with Error::Encode, got {other:?}"),
            }
        }
    }
    let stream = StreamId::new(Gauge::TYPE, id.as_str()).expect("id");
    assert!(events.read_stream(&stream, 0, 10).await.expect("read").is_empty(), "nothing was appended");
    cqrs.execute(record(&id, Reading::Measured { celsius: None })).await.expect("a missing reading is fine");
    cqrs.execute(record(&id, Reading::Measured { celsius: Some(-40.0) })).await.expect("a finite one too");
    let (gauge, version) = Cqrs::<Gauge, E>::new(events).load(&id).await.expect("the stream loads fresh");
    assert_eq!((gauge.readings, version), (2, 2));
}

/// A state that holds an infinity is not snapshotted (the command still succeeds, its events are
/// finite), so a fresh engine still loads the stream, from the last good snapshot.
pub async fn non_finite_snapshots_are_refused<E: EventStore + Clone, S: SnapshotStore + Clone>(
    events: E,
    snapshots: S,
) {
    let id = format!("inf-{}", uuid::Uuid::new_v4());
    let with_snapshots =
        || Cqrs::<Gauge, E>::new(events.clone()).with_snapshots(snapshots.clone(), SnapshotPolicy::every(1));
    let cqrs = with_snapshots();
    cqrs.execute(record(&id, Reading::Measured { celsius: Some(1.0) })).await.expect("measure");
    cqrs.execute(record(&id, Reading::Scaled { by: 0.0 })).await.expect("a finite event whose state is infinite");
    let stream = StreamId::new(Gauge::TYPE, id.as_str()).expect("id");
    let kept = snapshots.load_snapshot(&stream).await.expect("load snapshot").expect("the first snapshot");
    assert_eq!(kept.version, 1, "the snapshot of an infinite state was refused");
    let fresh = with_snapshots();
    let (gauge, version) = fresh.load(&id).await.expect("the stream loads fresh from its snapshot");
    assert_eq!((gauge.readings, version), (1, 2));
    assert!(gauge.scale.is_infinite());
    fresh.execute(record(&id, Reading::Scaled { by: 4.0 })).await.expect("later commands run");
    assert_eq!(snapshots.load_snapshot(&stream).await.expect("load").expect("snapshot").version, 3);
}
