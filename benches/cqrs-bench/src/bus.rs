//! `cqrs-bench bus`: the event bus's publisher (`eventloom-nats`) relaying 20,000 events from
//! the PostgreSQL log to a JetStream stream, against raw JetStream publishes of the same
//! messages (same subjects, headers and bodies, read back from the publisher's stream), in the
//! same run, alternating, with the same number of publishes in flight (256).
//!
//! `ours` reads the log, encodes subjects and headers and sends every publish with
//! `Nats-Expected-Last-Sequence`; `raw` only sends the prepared messages (with the headers the
//! stream stored: their `Nats-Msg-Id` and expected sequence, so the server checks the same) into
//! a stream that starts with a marker as the publisher's does, and awaits their acks.

use std::collections::VecDeque;
use std::time::Instant;

use eventloom_core::model::{ExpectedVersion, NewEvent, Timestamp};
use eventloom_core::prelude::*;
use eventloom_core::store::EventStore;
use eventloom_nats::async_nats::{self, jetstream};
use eventloom_nats::{NatsConfig, Publisher, PublisherConfig};

use crate::Result;
use crate::domain::AccountEvent;
use crate::report::{Record, Unit};

/// Events published per measurement.
const EVENTS: u64 = 20_000;
/// Rounds of each, alternating; the fastest counts.
const ROUNDS: usize = 3;
/// Publishes awaiting their ack at once, in both.
const IN_FLIGHT: usize = 256;

/// Runs the comparison with the log in a schema `bench_bus_<pid>` of the PostgreSQL server at
/// `pg_url` (dropped at the end) and streams `BENCH_<pid>_*` on the NATS server at `nats_url`
/// (deleted at the end).
pub async fn run(pg_url: &str, nats_url: &str) -> Result<()> {
    let monitor = crate::scenarios::monitor(pg_url).await?;
    let schema = crate::scenarios::fresh_schema(&monitor, "bench_bus").await?;
    let client = NatsConfig::new(nats_url)?.connect().await?;
    eprintln!("NATS: {} (max_payload {})", client.server_info().version, client.server_info().max_payload);
    let context = jetstream::new(client.clone());
    let mut streams = Vec::new();
    let outcome = compare(pg_url, &schema, &client, &context, &mut streams).await;
    for stream in &streams {
        let _ = context.delete_stream(stream).await;
    }
    let dropped = monitor.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
    outcome?;
    dropped?;
    Ok(())
}

async fn compare(
    pg_url: &str,
    schema: &str,
    client: &async_nats::Client,
    context: &jetstream::Context,
    streams: &mut Vec<String>,
) -> Result<()> {
    let log =
        eventloom_postgres::PgEventStore::connect(eventloom_postgres::PgConfig::from_url(pg_url)?.schema(schema)?)
            .await?;
    log.migrate().await?;
    fill(&log).await?;
    let pid = std::process::id();
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let stream = format!("BENCH_{pid}_OURS_{round}");
        let prefix = format!("bench.{pid}.ours{round}");
        streams.push(stream.clone());
        let config = PublisherConfig::new(&stream, &prefix)
            .category("account")
            .in_flight(IN_FLIGHT)
            .duplicate_window(std::time::Duration::from_secs(10));
        let publisher = Publisher::new(client.clone(), config)?;
        let started = Instant::now();
        publisher.catch_up(&log).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let published = publisher.status().published;
        if published != EVENTS {
            return Err(format!("the publisher published {published} events, not {EVENTS}").into());
        }
        ours.push(EVENTS as f64 / elapsed);

        let messages = read_back(context, &stream, &prefix).await?;
        let stream = format!("BENCH_{pid}_RAW_{round}");
        let raw_prefix = format!("bench.{pid}.raw{round}");
        streams.push(stream.clone());
        context
            .create_stream(jetstream::stream::Config {
                name: stream.clone(),
                subjects: vec![format!("{raw_prefix}.>")],
                duplicate_window: std::time::Duration::from_secs(10),
                ..Default::default()
            })
            .await?;
        // As the publisher's stream does, it starts with a marker (untimed), so that the
        // messages' expected last sequences hold here too.
        context.publish(format!("{raw_prefix}.eventloom-stream-start"), bytes::Bytes::new()).await?.await?;
        let started = Instant::now();
        publish_raw(context, &raw_prefix, messages).await?;
        raw.push(EVENTS as f64 / started.elapsed().as_secs_f64());
    }
    let show = |rates: &[f64]| rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
    eprintln!("bus_publish: events per second, publisher {}; raw JetStream publishes {}", show(&ours), show(&raw));
    let fastest = |rates: &[f64]| rates.iter().copied().fold(0.0, f64::max);
    Record::new("bus_publish", Unit::PerSecond, fastest(&ours), fastest(&raw)).print();
    Ok(())
}

/// 20,000 deposits over 1,000 accounts, 100 per append, each with a fresh event id.
async fn fill(log: &eventloom_postgres::PgEventStore) -> Result<()> {
    use eventloom_core::model::{IdGenerator, RandomIds};
    let ids = RandomIds::default();
    let per_account = EVENTS / 1_000;
    for account in 0..1_000 {
        let stream = StreamId::new("account", format!("acc-{account}"))?;
        let events = (0..per_account)
            .map(|n| {
                let metadata =
                    Metadata::new(ids.next_id(), Timestamp::now()).with_correlation_id(format!("req-{account}-{n}"));
                NewEvent::encode(&AccountEvent::Deposited { amount: n + 1 }, metadata)
            })
            .collect::<eventloom_core::Result<Vec<_>>>()?;
        log.append(&stream, ExpectedVersion::NoStream, events).await?;
    }
    Ok(())
}

/// The stream's messages in order, their subjects moved from `prefix` to a placeholder.
async fn read_back(
    context: &jetstream::Context,
    stream: &str,
    prefix: &str,
) -> Result<Vec<(String, async_nats::HeaderMap, bytes::Bytes)>> {
    let stream = context.get_stream(stream).await?;
    let mut messages = Vec::with_capacity(EVENTS as usize);
    // Sequence 1 is the publisher's stream-start marker, not an event.
    for sequence in 2..=EVENTS + 1 {
        let message = stream.get_raw_message(sequence).await?;
        let rest = message.subject.as_str().strip_prefix(prefix).unwrap_or_default().to_owned();
        messages.push((rest, message.headers, message.payload));
    }
    Ok(messages)
}

/// Publishes `messages` under `prefix`, `IN_FLIGHT` awaiting their acks at once.
async fn publish_raw(
    context: &jetstream::Context,
    prefix: &str,
    messages: Vec<(String, async_nats::HeaderMap, bytes::Bytes)>,
) -> Result<()> {
    let mut pending = VecDeque::with_capacity(IN_FLIGHT);
    for (rest, headers, payload) in messages {
        let ack = context.publish_with_headers(format!("{prefix}{rest}"), headers, payload).await?;
        pending.push_back(ack);
        while pending.len() >= IN_FLIGHT {
            if let Some(ack) = pending.pop_front() {
                ack.await?;
            }
        }
    }
    for ack in pending {
        ack.await?;
    }
    Ok(())
}
