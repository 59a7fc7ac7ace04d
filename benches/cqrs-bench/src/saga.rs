//! `cqrs-bench saga`: process managers and the bus end to end, on PostgreSQL and NATS
//! JetStream.
//!
//! - `saga_steps`: steps per second of a process manager on an `App` over `PgStores`
//!   (PostgreSQL events, views and leases): 2,000 orders are placed beforehand, then the App
//!   starts and its process manager, on each `Placed`, issues one `Confirm` to the same App's
//!   aggregate; timed from the App's start until every order is confirmed. A step is a
//!   decision that issued a command. The baseline (`raw`) is the same number of single-row
//!   INSERTs committed one by one from one task (`RawInsert`): one durable commit per step, the
//!   physical limit of a process that commits each step before the next. The record's
//!   `round_trips` is the write transactions (transaction ids) per step, counted with
//!   `pg_current_xact_id()` before and after.
//! - `bus_e2e_latency`: the time from `execute` returning in one service ("orders", its own
//!   schema, its events published to a JetStream stream of its own) until the view of another
//!   ("shipping", its own schema, the order events relayed from that stream and projected)
//!   shows the command's order, polled every millisecond; commands at 100 per second for 10 s.
//!   The notes also give the time until the order's event is in the other service's log
//!   (relayed), polled likewise just before the view.
//!   The baseline is the transport alone: a JetStream publish (ack awaited) until a subscriber
//!   of the stream's subject receives it, at the same rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventloom_core::app::ProcessOptions;
use eventloom_core::model::{ExpectedVersion, IdGenerator, NewEvent, RandomIds, Timestamp};
use eventloom_core::prelude::*;
use eventloom_core::process::{CommandSet, Decision, Dispatched, Dispatcher};
use eventloom_core::store::EventStore;
use eventloom_core::{App, BoxError, ProcessManager, Projection, Stores};
use eventloom_nats::async_nats::{self, jetstream};
use eventloom_nats::{JetStreamFeed, JetStreamFeedConfig, NatsConfig, Publisher, PublisherConfig};
use eventloom_postgres::{PgConfig, PgStores};
use tokio_postgres::Client;

use crate::Result;
use crate::domain::account_ids;
use crate::load::Worker;
use crate::raw::{self, RawInsert};
use crate::report::{Latency, Record, Unit};

/// Orders placed before the process manager starts (`saga_steps`).
const ORDERS: usize = 2_000;
/// Commands per second (`bus_e2e_latency`).
const RATE: u64 = 100;
/// For how long (`bus_e2e_latency`).
const SECONDS: u64 = 10;
/// How long one command may take to show in the other service before the run fails.
const E2E_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the process manager may take to confirm every order before the run fails.
const SAGA_TIMEOUT: Duration = Duration::from_secs(600);

// ---- The domain ----

/// An order's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum OrderEvent {
    /// It was placed.
    Placed {
        /// How many items.
        qty: u64,
    },
    /// The process manager confirmed it.
    Confirmed,
}

/// An order: whether it was placed and not yet confirmed.
#[derive(Debug, Default)]
pub struct Order {
    open: bool,
}

/// Why an order refuses a command.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(&'static str);

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Event = OrderEvent;
    type Error = Refusal;

    fn apply(&mut self, event: &OrderEvent) {
        self.open = matches!(event, OrderEvent::Placed { .. });
    }
}

/// Places an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Order)]
pub struct PlaceOrder {
    /// The order's id.
    #[command(id)]
    pub order: String,
    /// How many items.
    pub qty: u64,
}

/// Confirms a placed order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Order)]
pub struct ConfirmOrder {
    /// The order's id.
    #[command(id)]
    pub order: String,
}

impl Handle<PlaceOrder> for Order {
    fn handle(&self, c: &PlaceOrder) -> Result<Vec<OrderEvent>, Refusal> {
        Ok(vec![OrderEvent::Placed { qty: c.qty }])
    }
}

impl Handle<ConfirmOrder> for Order {
    fn handle(&self, _: &ConfirmOrder) -> Result<Vec<OrderEvent>, Refusal> {
        if !self.open {
            return Err(Refusal("the order is not open"));
        }
        Ok(vec![OrderEvent::Confirmed])
    }
}

/// The process manager's one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SagaCommand {
    /// Confirm an order.
    Confirm(ConfirmOrder),
}

impl CommandSet for SagaCommand {
    async fn dispatch(self, to: &Dispatcher, options: ExecuteOptions) -> Dispatched {
        match self {
            SagaCommand::Confirm(c) => to.execute(c, options).await,
        }
    }
}

/// Confirms every placed order: one step (a decision that issues one command) per order.
#[derive(Debug, Clone, Copy)]
pub struct Confirmer;

impl ProcessManager for Confirmer {
    const NAME: &'static str = "confirmer";
    type Events = Order;
    type State = ();
    type Commands = SagaCommand;

    fn correlate(&self, e: &EventEnvelope<OrderEvent>) -> Option<String> {
        Some(e.stream.id().to_owned())
    }

    fn on_event(
        &self,
        _: &mut (),
        e: &EventEnvelope<OrderEvent>,
        d: &mut Decision<SagaCommand>,
    ) -> Result<(), BoxError> {
        match e.event {
            OrderEvent::Placed { .. } => {
                d.issue(SagaCommand::Confirm(ConfirmOrder { order: e.stream.id().to_owned() }))
            }
            OrderEvent::Confirmed => d.complete(),
        }
        Ok(())
    }
}

/// The shipping service's view of an order: its quantity, once relayed.
#[derive(Debug, Clone, Copy)]
pub struct ToShip;

impl Projection for ToShip {
    const NAME: &'static str = "to_ship";
    type Events = Order;
    type View = u64;

    fn view_id(&self, e: &EventEnvelope<OrderEvent>) -> Option<String> {
        Some(e.stream.id().to_owned())
    }

    fn apply(&self, view: &mut Option<u64>, e: &EventEnvelope<OrderEvent>) -> Result<(), BoxError> {
        if let OrderEvent::Placed { qty } = e.event {
            *view = Some(qty);
        }
        Ok(())
    }
}

// ---- The run ----

/// Runs both scenarios, in schemas `bench_saga_<pid>`, `bench_e2e_orders_<pid>` and
/// `bench_e2e_shipping_<pid>` of the PostgreSQL server at `pg_url` and streams `BENCH_<pid>_E2E*`
/// on the NATS server at `nats_url`, all removed at the end.
pub async fn run(pg_url: &str, nats_url: &str) -> Result<()> {
    let monitor = crate::scenarios::monitor(pg_url).await?;
    let schema = crate::scenarios::fresh_schema(&monitor, "bench_saga").await?;
    let outcome = saga_steps(pg_url, &monitor, &schema).await;
    let dropped = monitor.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
    outcome?;
    dropped?;

    let client = NatsConfig::new(nats_url)?.connect().await?;
    eprintln!("NATS: {} (max_payload {})", client.server_info().version, client.server_info().max_payload);
    let context = jetstream::new(client.clone());
    let orders = crate::scenarios::fresh_schema(&monitor, "bench_e2e_orders").await?;
    let shipping = crate::scenarios::fresh_schema(&monitor, "bench_e2e_shipping").await?;
    let pid = std::process::id();
    let streams = [format!("BENCH_{pid}_E2E"), format!("BENCH_{pid}_E2E_RAW")];
    let outcome = bus_e2e(pg_url, &orders, &shipping, &client, &context, &streams).await;
    for stream in &streams {
        let _ = context.delete_stream(stream).await;
    }
    let mut dropped = Ok(());
    for schema in [&orders, &shipping] {
        let result = monitor.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
        dropped = dropped.and(result);
    }
    outcome?;
    dropped?;
    Ok(())
}

/// The App's stores on `schema`: PostgreSQL events, snapshots, views and leases.
async fn stores(pg_url: &str, schema: &str) -> Result<Stores> {
    Ok(PgStores::connect_with(PgConfig::from_url(pg_url)?.schema(schema)?).await?.into())
}

/// The transaction id the next write transaction gets (this query takes one itself).
async fn next_xid(monitor: &Client) -> Result<i64> {
    Ok(monitor.query_one("SELECT pg_current_xact_id()::text::bigint", &[]).await?.get(0))
}

async fn saga_steps(pg_url: &str, monitor: &Client, schema: &str) -> Result<()> {
    let stores = stores(pg_url, schema).await?;
    let events = stores.events().clone();
    place_orders(&events).await?;
    raw::create_table(monitor, schema).await?;
    let pool = raw::pool(pg_url.parse()?, 1)?;

    // The baseline first, then ours, so neither runs on the other's dirty pages.
    let mut insert = RawInsert::new(&pool, schema, "raw_saga", account_ids()).await?;
    let started = Instant::now();
    for i in 0..ORDERS {
        insert.op(i).await?;
    }
    let raw_rate = ORDERS as f64 / started.elapsed().as_secs_f64();

    let count = format!("SELECT count(*) FROM \"{schema}\".events WHERE event_type = 'Confirmed'");
    let before = next_xid(monitor).await?;
    let started = Instant::now();
    let app = App::builder(stores)
        .aggregate::<Order>()
        .process_manager_with(Confirmer, ProcessOptions::new())
        .start()
        .await?;
    let outcome = async {
        loop {
            let confirmed: i64 = monitor.query_one(&count, &[]).await?.get(0);
            if usize::try_from(confirmed)? >= ORDERS {
                return Ok::<_, crate::BoxError>(started.elapsed());
            }
            if started.elapsed() > SAGA_TIMEOUT {
                return Err(format!("only {confirmed} of {ORDERS} orders confirmed in {SAGA_TIMEOUT:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    .await;
    let after = next_xid(monitor).await?;
    app.shutdown().await?;
    let elapsed = outcome?;
    let ours = ORDERS as f64 / elapsed.as_secs_f64();
    // Minus the two counting queries' own; the polling SELECTs take none.
    let per_step = (after - before - 1) as f64 / ORDERS as f64;
    eprintln!(
        "saga_steps: {ORDERS} steps in {:.0} ms ({ours:.0}/s), {per_step:.2} write transactions per step; \
         raw single-row INSERTs {raw_rate:.0}/s",
        elapsed.as_secs_f64() * 1000.0
    );
    Record::new("saga_steps", Unit::PerSecond, ours, raw_rate).round_trips(Some(per_step)).print();
    Ok(())
}

/// `ORDERS` orders, each placed in a stream of its own, from 8 tasks.
async fn place_orders(events: &Arc<dyn EventStore>) -> Result<()> {
    let ids = Arc::new(RandomIds::default());
    let mut tasks = Vec::new();
    for task in 0..8 {
        let (events, ids) = (Arc::clone(events), Arc::clone(&ids));
        tasks.push(tokio::spawn(async move {
            for n in (task..ORDERS).step_by(8) {
                let stream = StreamId::new("order", format!("order-{n}"))?;
                let metadata = Metadata::new(ids.next_id(), Timestamp::now());
                let event = NewEvent::encode(&OrderEvent::Placed { qty: 1 }, metadata)?;
                events.append(&stream, ExpectedVersion::NoStream, vec![event]).await?;
            }
            Ok::<_, crate::BoxError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn bus_e2e(
    pg_url: &str,
    orders_schema: &str,
    shipping_schema: &str,
    client: &async_nats::Client,
    context: &jetstream::Context,
    streams: &[String; 2],
) -> Result<()> {
    let pid = std::process::id();
    let prefix = format!("bench.{pid}.e2e");
    // The orders service: its aggregate, and its order events to the stream it alone writes.
    let orders_stores = stores(pg_url, orders_schema).await?;
    let orders = App::builder(orders_stores.clone()).aggregate::<Order>().start().await?;
    let publisher = Publisher::new(client.clone(), PublisherConfig::new(&streams[0], &prefix).category("order"))?;
    let publishing = {
        let events = orders_stores.events().clone();
        let stopped = orders.stopped();
        tokio::spawn(async move { publisher.run(&events, stopped).await })
    };
    // The shipping service: the order events relayed from that stream, and a view of them.
    let feed = JetStreamFeed::open(client.clone(), JetStreamFeedConfig::new(&streams[0], &prefix, "shipping")).await?;
    let shipping =
        App::builder(stores(pg_url, shipping_schema).await?).projection(ToShip).relay("orders", feed).start().await?;
    let outcome = measure_e2e(&orders, &shipping).await;
    let _ = shipping.shutdown().await;
    let _ = orders.shutdown().await;
    match publishing.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("the publisher stopped: {error}"),
        Err(error) => eprintln!("the publisher's task failed: {error}"),
    }
    let ours = outcome?;
    let raw = measure_raw(client, context, &streams[1], &format!("bench.{pid}.e2eraw")).await?;
    eprintln!(
        "bus_e2e_latency: command to the other service's view: median {:.2} ms, p99 {:.2} ms ({} commands); \
         raw JetStream publish to a subscriber: median {:.2} ms, p99 {:.2} ms",
        ours.median_ms, ours.p99_ms, ours.samples, raw.median_ms, raw.p99_ms
    );
    Record::new("bus_e2e_latency", Unit::Millis, ours.median_ms, raw.median_ms).p99(ours.p99_ms).print();
    Ok(())
}

/// Commands at `RATE` per second for `SECONDS`, each timed from `execute` returning until the
/// other App's view shows it; also (in the notes) until the order's event is relayed into the
/// other App's log.
async fn measure_e2e(orders: &App, shipping: &App) -> Result<Latency> {
    let reader = shipping.reader::<ToShip>()?;
    // A first order, untimed, so the stream, the consumer and the connections exist, and the
    // new projection is built (its reader refuses reads until then).
    orders.execute(PlaceOrder { order: "warm-up".into(), qty: 1 }).await?;
    let started = Instant::now();
    while !matches!(reader.get("warm-up").await, Ok(Some(_))) {
        if started.elapsed() > E2E_TIMEOUT {
            return Err(format!("the first order did not reach the shipping view within {E2E_TIMEOUT:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waits = Vec::new();
    for n in 0..RATE * SECONDS {
        ticks.tick().await;
        let order = format!("order-{n}");
        orders.execute(PlaceOrder { order: order.clone(), qty: 1 }).await?;
        let returned = Instant::now();
        let reader = reader.clone();
        let log = shipping.stores().events().clone();
        waits.push(tokio::spawn(async move {
            let stream = StreamId::new("order", order.as_str())?;
            while log.read_stream(&stream, 0, 1).await?.is_empty() {
                if returned.elapsed() > E2E_TIMEOUT {
                    return Err(format!("order {order} was not relayed within {E2E_TIMEOUT:?}").into());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let relayed = returned.elapsed();
            wait_for_view(&reader, &order).await?;
            Ok::<_, crate::BoxError>((relayed, returned.elapsed()))
        }));
    }
    let (mut relayed, mut viewed) = (Vec::with_capacity(waits.len()), Vec::with_capacity(waits.len()));
    for wait in waits {
        let (to_log, to_view) = wait.await??;
        relayed.push(to_log);
        viewed.push(to_view);
    }
    if let Some(relayed) = Latency::of(relayed) {
        eprintln!(
            "bus_e2e_latency: from execute returning until relayed into the shipping log: median {:.2} ms, p99 {:.2} ms",
            relayed.median_ms, relayed.p99_ms
        );
    }
    Latency::of(viewed).ok_or_else(|| "no samples".into())
}

/// Polls `reader` every millisecond until it holds view `id`.
async fn wait_for_view(reader: &eventloom_core::Reader<ToShip>, id: &str) -> Result<()> {
    let started = Instant::now();
    while reader.get(id).await?.is_none() {
        if started.elapsed() > E2E_TIMEOUT {
            return Err(format!("order {id} did not reach the shipping view within {E2E_TIMEOUT:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// JetStream publishes of one small message at `RATE` per second for `SECONDS`, each timed from
/// the publish until a subscriber of the stream's subjects receives it.
async fn measure_raw(
    client: &async_nats::Client,
    context: &jetstream::Context,
    stream: &str,
    prefix: &str,
) -> Result<Latency> {
    use futures_util::StreamExt;
    context
        .create_stream(jetstream::stream::Config {
            name: stream.to_owned(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await?;
    let mut subscriber = client.subscribe(format!("{prefix}.>")).await?;
    let payload = bytes::Bytes::from(serde_json::to_vec(&serde_json::json!({ "Placed": { "qty": 1 } }))?);
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    for n in 0..RATE * SECONDS {
        ticks.tick().await;
        let subject = format!("{prefix}.order.Placed");
        let sent = Instant::now();
        let ack = context.publish(subject, payload.clone()).await?;
        let received = tokio::time::timeout(E2E_TIMEOUT, subscriber.next()).await?;
        let elapsed = sent.elapsed();
        if received.is_none() {
            return Err(format!("the subscriber ended before message {n}").into());
        }
        ack.await?;
        samples.push(elapsed);
    }
    Latency::of(samples).ok_or_else(|| "no samples".into())
}
