//! Process managers on the App (memory stores): an order saga across orders, stock and payments,
//! with a payment deadline (a durable timer), compensation on refusal, exactly-once commands
//! across restarts and deposed leaders, and a rebuild that issues nothing again.

use std::sync::Arc;
use std::time::Duration;

use eventloom_core::app::LeaseState;
use eventloom_core::app::ProcessOptions;
use eventloom_core::model::{Clock, ManualClock, Timestamp};
use eventloom_core::prelude::*;
use eventloom_core::process::{
    CommandSet, Decision, Dispatched, Dispatcher, JOURNAL_CATEGORY, ProcessManager, Refused, Timer,
};
use eventloom_core::store::{EventStore, Lease, ViewStore};
use eventloom_core::testing::{FailingAppends, ProcessTest};
use eventloom_core::{App, BoxError, MemoryStores, Stores};

// ---- The domain ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum OrderEvent {
    Placed { sku: String, qty: u64 },
    Confirmed,
    Cancelled { reason: String },
}

#[derive(Debug, Default)]
pub struct Order {
    open: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(String);

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Event = OrderEvent;
    type Error = Refusal;
    fn apply(&mut self, event: &OrderEvent) {
        self.open = matches!(event, OrderEvent::Placed { .. });
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Order)]
pub struct PlaceOrder {
    #[command(id)]
    pub order: String,
    pub sku: String,
    pub qty: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Order)]
pub struct ConfirmOrder {
    #[command(id)]
    pub order: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Order)]
pub struct CancelOrder {
    #[command(id)]
    pub order: String,
    pub reason: String,
}

impl Handle<PlaceOrder> for Order {
    fn handle(&self, c: &PlaceOrder) -> Result<Vec<OrderEvent>, Refusal> {
        Ok(vec![OrderEvent::Placed { sku: c.sku.clone(), qty: c.qty }])
    }
}

impl Handle<ConfirmOrder> for Order {
    fn handle(&self, _: &ConfirmOrder) -> Result<Vec<OrderEvent>, Refusal> {
        if !self.open {
            return Err(Refusal("the order is not open".into()));
        }
        Ok(vec![OrderEvent::Confirmed])
    }
}

impl Handle<CancelOrder> for Order {
    fn handle(&self, c: &CancelOrder) -> Result<Vec<OrderEvent>, Refusal> {
        if !self.open {
            return Err(Refusal("the order is not open".into()));
        }
        Ok(vec![OrderEvent::Cancelled { reason: c.reason.clone() }])
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum StockEvent {
    Added { qty: u64 },
    Reserved { order: String, qty: u64 },
    Released { order: String, qty: u64 },
}

#[derive(Debug, Default)]
pub struct Stock {
    available: u64,
    reserved: std::collections::BTreeMap<String, u64>,
}

impl Aggregate for Stock {
    const TYPE: &'static str = "stock";
    type Event = StockEvent;
    type Error = Refusal;
    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::Added { qty } => self.available += qty,
            StockEvent::Reserved { order, qty } => {
                self.available -= qty;
                self.reserved.insert(order.clone(), *qty);
            }
            StockEvent::Released { order, qty } => {
                self.available += qty;
                self.reserved.remove(order);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Stock)]
pub struct AddStock {
    #[command(id)]
    pub sku: String,
    pub qty: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Stock)]
pub struct Reserve {
    #[command(id)]
    pub sku: String,
    pub order: String,
    pub qty: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Stock)]
pub struct Release {
    #[command(id)]
    pub sku: String,
    pub order: String,
}

impl Handle<AddStock> for Stock {
    fn handle(&self, c: &AddStock) -> Result<Vec<StockEvent>, Refusal> {
        Ok(vec![StockEvent::Added { qty: c.qty }])
    }
}

impl Handle<Reserve> for Stock {
    fn handle(&self, c: &Reserve) -> Result<Vec<StockEvent>, Refusal> {
        if self.reserved.contains_key(&c.order) {
            return Ok(vec![]);
        }
        if self.available < c.qty {
            return Err(Refusal(format!("out of stock: {} left", self.available)));
        }
        Ok(vec![StockEvent::Reserved { order: c.order.clone(), qty: c.qty }])
    }
}

impl Handle<Release> for Stock {
    fn handle(&self, c: &Release) -> Result<Vec<StockEvent>, Refusal> {
        Ok(self
            .reserved
            .get(&c.order)
            .map(|qty| StockEvent::Released { order: c.order.clone(), qty: *qty })
            .into_iter()
            .collect())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub enum PaymentEvent {
    Paid { order: String },
}

#[derive(Debug, Default)]
pub struct Payment;

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Event = PaymentEvent;
    type Error = Refusal;
    fn apply(&mut self, _: &PaymentEvent) {}
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Payment)]
pub struct Pay {
    #[command(id)]
    pub order: String,
}

impl Handle<Pay> for Payment {
    fn handle(&self, c: &Pay) -> Result<Vec<PaymentEvent>, Refusal> {
        Ok(vec![PaymentEvent::Paid { order: c.order.clone() }])
    }
}

#[derive(Debug, EventSet)]
pub enum Fulfilment {
    #[events(aggregate = Order)]
    Order(OrderEvent),
    #[events(aggregate = Stock)]
    Stock(StockEvent),
    #[events(aggregate = Payment)]
    Payment(PaymentEvent),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SagaCommand {
    Reserve(Reserve),
    Release(Release),
    Confirm(ConfirmOrder),
    Cancel(CancelOrder),
}

impl CommandSet for SagaCommand {
    async fn dispatch(self, to: &Dispatcher, options: ExecuteOptions) -> Dispatched {
        match self {
            SagaCommand::Reserve(c) => to.execute(c, options).await,
            SagaCommand::Release(c) => to.execute(c, options).await,
            SagaCommand::Confirm(c) => to.execute(c, options).await,
            SagaCommand::Cancel(c) => to.execute(c, options).await,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaState {
    sku: String,
    reserved: bool,
    paid: bool,
    done: bool,
}

/// Reserves stock for a placed order, waits 15 minutes for its payment, then confirms it; on a
/// timeout or an out-of-stock refusal, cancels it (releasing what it reserved).
pub struct OrderSaga;

pub const DEADLINE: Duration = Duration::from_secs(15 * 60);

impl ProcessManager for OrderSaga {
    const NAME: &'static str = "order_saga";
    type Events = Fulfilment;
    type State = SagaState;
    type Commands = SagaCommand;

    fn correlate(&self, event: &EventEnvelope<Fulfilment>) -> Option<String> {
        match &event.event {
            Fulfilment::Order(_) => Some(event.stream.id().to_owned()),
            Fulfilment::Stock(StockEvent::Reserved { order, .. } | StockEvent::Released { order, .. }) => {
                Some(order.clone())
            }
            Fulfilment::Stock(StockEvent::Added { .. }) => None,
            Fulfilment::Payment(PaymentEvent::Paid { order }) => Some(order.clone()),
        }
    }

    fn on_event(
        &self,
        s: &mut SagaState,
        e: &EventEnvelope<Fulfilment>,
        d: &mut Decision<SagaCommand>,
    ) -> Result<(), BoxError> {
        let order = match &e.event {
            Fulfilment::Order(_) => e.stream.id().to_owned(),
            Fulfilment::Stock(StockEvent::Reserved { order, .. } | StockEvent::Released { order, .. }) => order.clone(),
            Fulfilment::Payment(PaymentEvent::Paid { order }) => order.clone(),
            Fulfilment::Stock(StockEvent::Added { .. }) => return Ok(()),
        };
        match &e.event {
            Fulfilment::Order(OrderEvent::Placed { sku, qty }) => {
                s.sku = sku.clone();
                d.issue(SagaCommand::Reserve(Reserve { sku: sku.clone(), order, qty: *qty }));
                d.schedule("payment", DEADLINE);
            }
            Fulfilment::Stock(StockEvent::Reserved { .. }) => {
                s.reserved = true;
                if s.paid {
                    d.issue(SagaCommand::Confirm(ConfirmOrder { order }));
                }
            }
            Fulfilment::Payment(PaymentEvent::Paid { .. }) if !s.done => {
                s.paid = true;
                d.cancel("payment");
                if s.reserved {
                    d.issue(SagaCommand::Confirm(ConfirmOrder { order }));
                }
            }
            Fulfilment::Order(OrderEvent::Confirmed) => d.complete(),
            Fulfilment::Order(OrderEvent::Cancelled { .. }) => {
                s.done = true;
                if s.reserved {
                    d.issue(SagaCommand::Release(Release { sku: s.sku.clone(), order }));
                }
                d.complete();
            }
            _ => {}
        }
        Ok(())
    }

    fn on_timer(&self, s: &mut SagaState, timer: &Timer, d: &mut Decision<SagaCommand>) -> Result<(), BoxError> {
        s.done = true;
        d.issue(SagaCommand::Cancel(CancelOrder { order: timer.key.clone(), reason: "not paid in time".into() }));
        Ok(())
    }

    fn on_refused(
        &self,
        s: &mut SagaState,
        r: &Refused<SagaCommand>,
        d: &mut Decision<SagaCommand>,
    ) -> Result<(), BoxError> {
        if let SagaCommand::Reserve(_) = r.command {
            s.done = true;
            d.cancel("payment");
            d.issue(SagaCommand::Cancel(CancelOrder { order: r.key.clone(), reason: r.reason.clone() }));
        }
        Ok(())
    }
}

// ---- The test kit ----

#[test]
fn the_kit_shows_the_commands_and_timers_of_each_step() {
    let mut t = ProcessTest::new(OrderSaga);
    t.given("o-1", Fulfilment::Order(OrderEvent::Placed { sku: "apple".into(), qty: 2 }));
    t.then_commands(&[SagaCommand::Reserve(Reserve { sku: "apple".into(), order: "o-1".into(), qty: 2 })]);
    assert_eq!(t.timers("o-1"), [("payment".to_owned(), Timestamp::from_micros(t.now().as_micros() + 900_000_000))]);
    t.given("apple", Fulfilment::Stock(StockEvent::Reserved { order: "o-1".into(), qty: 2 }));
    t.elapse(Duration::from_secs(60));
    t.given("o-1", Fulfilment::Payment(PaymentEvent::Paid { order: "o-1".into() }));
    t.then_commands(&[SagaCommand::Confirm(ConfirmOrder { order: "o-1".into() })]);
    assert!(t.timers("o-1").is_empty(), "payment cancels the deadline");
    t.elapse(DEADLINE);
    t.then_commands(&[]);

    // A timeout cancels; the cancellation releases what was reserved.
    t.given("o-2", Fulfilment::Order(OrderEvent::Placed { sku: "pear".into(), qty: 1 }));
    t.given("pear", Fulfilment::Stock(StockEvent::Reserved { order: "o-2".into(), qty: 1 }));
    t.take_commands();
    t.elapse(DEADLINE);
    t.then_commands(&[SagaCommand::Cancel(CancelOrder { order: "o-2".into(), reason: "not paid in time".into() })]);
    t.given("o-2", Fulfilment::Order(OrderEvent::Cancelled { reason: "not paid in time".into() }));
    t.then_commands(&[SagaCommand::Release(Release { sku: "pear".into(), order: "o-2".into() })]);
    assert_eq!(t.state("o-2"), None, "complete");

    // A refused reservation compensates.
    t.given("o-3", Fulfilment::Order(OrderEvent::Placed { sku: "fig".into(), qty: 9 }));
    let reserve = SagaCommand::Reserve(Reserve { sku: "fig".into(), order: "o-3".into(), qty: 9 });
    t.then_commands(std::slice::from_ref(&reserve));
    t.refuse(&reserve, "out of stock: 0 left");
    t.then_commands(&[SagaCommand::Cancel(CancelOrder { order: "o-3".into(), reason: "out of stock: 0 left".into() })]);
    assert!(t.timers("o-3").is_empty());
    let ids = t.command_ids();
    assert!(ids.iter().all(|id| id.starts_with("order_saga/")), "{ids:?}");
    assert_eq!(ids.len(), ids.iter().collect::<std::collections::HashSet<_>>().len(), "ids are distinct");
}

// ---- On the App ----

fn app_on(stores: &MemoryStores, clock: &Arc<ManualClock>) -> eventloom_core::app::AppBuilder {
    App::builder(stores.clone())
        .aggregate::<Order>()
        .aggregate::<Stock>()
        .aggregate::<Payment>()
        .process_manager_with(OrderSaga, ProcessOptions::new().clock(clock.clone()).tick(Duration::from_millis(10)))
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::now()))
}

/// The events of `stream`, as (type, payload).
async fn events_of(stores: &MemoryStores, category: &str, id: &str) -> Vec<String> {
    let stream = StreamId::new(category, id).unwrap();
    let events = stores.events.read_stream(&stream, 1, 1000).await.unwrap();
    events.iter().map(|e| e.event_type.to_string()).collect()
}

/// Waits until `stream` holds `n` events of type `event_type`.
async fn until_events(stores: &MemoryStores, category: &str, id: &str, event_type: &str, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = events_of(stores, category, id).await;
        if events.iter().filter(|t| *t == event_type).count() >= n {
            return events;
        }
        assert!(std::time::Instant::now() < deadline, "{category}/{id} has no {event_type} after 10 s: {events:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn an_order_is_reserved_paid_and_confirmed() {
    let (stores, clock) = (MemoryStores::new(), clock());
    let app = app_on(&stores, &clock).start().await.unwrap();
    app.execute(AddStock { sku: "apple".into(), qty: 5 }).await.unwrap();
    let placed = app.execute(PlaceOrder { order: "o-1".into(), sku: "apple".into(), qty: 2 }).await.unwrap();
    until_events(&stores, "stock", "apple", "Reserved", 1).await;
    app.execute(Pay { order: "o-1".into() }).await.unwrap();
    let events = until_events(&stores, "order", "o-1", "Confirmed", 1).await;
    assert_eq!(events, ["Placed", "Confirmed"]);
    // The reservation carries the order's correlation and the triggering event as causation.
    let stock = stores.events.read_stream(&StreamId::new("stock", "apple").unwrap(), 1, 10).await.unwrap();
    let reserved = stock[1].metadata.get().unwrap();
    let placed_event = stores.events.read_stream(&StreamId::new("order", "o-1").unwrap(), 1, 1).await.unwrap();
    let placed_id = placed_event[0].metadata.get().unwrap().event_id.to_string();
    assert_eq!(reserved.causation_id.as_deref(), Some(placed_id.as_str()));
    assert_eq!(
        reserved.correlation_id.as_deref(),
        Some(placed_id.as_str()),
        "the order's event starts the correlation"
    );
    assert!(reserved.command_id.as_deref().is_some_and(|id| id.starts_with("order_saga/")));
    let status = app.health(100).await;
    assert_eq!(status.process_managers.len(), 1);
    assert_eq!(status.process_managers[0].name, "order_saga");
    let _ = placed;
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unpaid_order_is_cancelled_by_its_timer_and_its_stock_released() {
    let (stores, clock) = (MemoryStores::new(), clock());
    let app = app_on(&stores, &clock).start().await.unwrap();
    app.execute(AddStock { sku: "pear".into(), qty: 1 }).await.unwrap();
    app.execute(PlaceOrder { order: "o-2".into(), sku: "pear".into(), qty: 1 }).await.unwrap();
    until_events(&stores, "stock", "pear", "Reserved", 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(events_of(&stores, "order", "o-2").await, ["Placed"], "not due yet");
    clock.advance(i64::try_from((DEADLINE + Duration::from_secs(60)).as_micros()).unwrap());
    until_events(&stores, "order", "o-2", "Cancelled", 1).await;
    let stock = until_events(&stores, "stock", "pear", "Released", 1).await;
    assert_eq!(stock, ["Added", "Reserved", "Released"]);
    // Fired once: more ticks issue nothing more.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(events_of(&stores, "order", "o-2").await, ["Placed", "Cancelled"]);
    assert_eq!(events_of(&stores, "stock", "pear").await, ["Added", "Reserved", "Released"]);
    let journal = events_of(&stores, "eventloom.process", "order_saga/o-2").await;
    assert_eq!(journal, ["TimerFired"]);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refused_reservation_cancels_the_order_once() {
    let (stores, clock) = (MemoryStores::new(), clock());
    let app = app_on(&stores, &clock).start().await.unwrap();
    app.execute(PlaceOrder { order: "o-3".into(), sku: "fig".into(), qty: 9 }).await.unwrap();
    let order = until_events(&stores, "order", "o-3", "Cancelled", 1).await;
    assert_eq!(order, ["Placed", "Cancelled"]);
    let journal = until_events(&stores, "eventloom.process", "order_saga/o-3", "CommandRefused", 1).await;
    assert_eq!(journal, ["CommandRefused"]);
    // The deadline was cancelled with it: nothing fires later.
    clock.advance(i64::try_from(DEADLINE.as_micros()).unwrap() * 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(events_of(&stores, "order", "o-3").await, ["Placed", "Cancelled"]);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restart_issues_nothing_twice_and_a_due_timer_fires_after_it() {
    let (stores, clock) = (MemoryStores::new(), clock());
    let app = app_on(&stores, &clock).start().await.unwrap();
    app.execute(AddStock { sku: "kiwi".into(), qty: 10 }).await.unwrap();
    for i in 0..5 {
        app.execute(PlaceOrder { order: format!("k-{i}"), sku: "kiwi".into(), qty: 1 }).await.unwrap();
    }
    until_events(&stores, "stock", "kiwi", "Reserved", 5).await;
    app.shutdown().await.unwrap();
    drop(app);
    // Due while nobody ran.
    clock.advance(i64::try_from((DEADLINE + Duration::from_secs(60)).as_micros()).unwrap());
    let again = app_on(&stores, &clock).start().await.unwrap();
    for i in 0..5 {
        until_events(&stores, "order", &format!("k-{i}"), "Cancelled", 1).await;
    }
    until_events(&stores, "stock", "kiwi", "Released", 5).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stock = events_of(&stores, "stock", "kiwi").await;
    assert_eq!(stock.iter().filter(|t| *t == "Reserved").count(), 5, "{stock:?}");
    assert_eq!(stock.iter().filter(|t| *t == "Released").count(), 5, "{stock:?}");
    again.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_deposed_leader_with_a_due_timer_issues_nothing() {
    let (stores, clock) = (MemoryStores::new(), clock());
    let app = app_on(&stores, &clock).start().await.unwrap();
    app.execute(AddStock { sku: "lime".into(), qty: 1 }).await.unwrap();
    app.execute(PlaceOrder { order: "l-1".into(), sku: "lime".into(), qty: 1 }).await.unwrap();
    until_events(&stores, "stock", "lime", "Reserved", 1).await;
    // A second process takes the lease away: the first one is deposed while its timer is due.
    stores.leases.revoke("order_saga");
    let other = app_on(&stores, &clock).role(eventloom_core::Role::All).start().await.unwrap();
    app.shutdown().await.unwrap();
    clock.advance(i64::try_from((DEADLINE + Duration::from_secs(60)).as_micros()).unwrap());
    until_events(&stores, "order", "l-1", "Cancelled", 1).await;
    until_events(&stores, "stock", "lime", "Released", 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(events_of(&stores, "order", "l-1").await, ["Placed", "Cancelled"]);
    assert_eq!(events_of(&stores, "eventloom.process", "order_saga/l-1").await, ["TimerFired"]);
    other.shutdown().await.unwrap();
}

/// A new version of the saga: its states are rebuilt from the log, timers and refusals
/// included, and nothing is issued again for what the old version had decided.
struct OrderSagaV2;

impl ProcessManager for OrderSagaV2 {
    const NAME: &'static str = "order_saga";
    const VERSION: u32 = 2;
    type Events = Fulfilment;
    type State = SagaState;
    type Commands = SagaCommand;
    fn correlate(&self, event: &EventEnvelope<Fulfilment>) -> Option<String> {
        OrderSaga.correlate(event)
    }
    fn on_event(
        &self,
        s: &mut SagaState,
        e: &EventEnvelope<Fulfilment>,
        d: &mut Decision<SagaCommand>,
    ) -> Result<(), BoxError> {
        OrderSaga.on_event(s, e, d)
    }
    fn on_timer(&self, s: &mut SagaState, t: &Timer, d: &mut Decision<SagaCommand>) -> Result<(), BoxError> {
        OrderSaga.on_timer(s, t, d)
    }
    fn on_refused(
        &self,
        s: &mut SagaState,
        r: &Refused<SagaCommand>,
        d: &mut Decision<SagaCommand>,
    ) -> Result<(), BoxError> {
        OrderSaga.on_refused(s, r, d)
    }
}

#[tokio::test]
async fn a_rebuild_restores_the_states_and_issues_nothing_again() {
    let (stores, clock) = (MemoryStores::new(), clock());
    let app = app_on(&stores, &clock).start().await.unwrap();
    app.execute(AddStock { sku: "plum".into(), qty: 2 }).await.unwrap();
    app.execute(PlaceOrder { order: "p-1".into(), sku: "plum".into(), qty: 1 }).await.unwrap();
    app.execute(PlaceOrder { order: "p-2".into(), sku: "plum".into(), qty: 5 }).await.unwrap();
    until_events(&stores, "order", "p-2", "Cancelled", 1).await;
    until_events(&stores, "stock", "plum", "Reserved", 1).await;
    app.shutdown().await.unwrap();
    let before = stores.events.read_all(eventloom_core::Position::ZERO, 10_000).await.unwrap().len();
    let v2 = App::builder(stores.clone())
        .aggregate::<Order>()
        .aggregate::<Stock>()
        .aggregate::<Payment>()
        .process_manager_with(OrderSagaV2, ProcessOptions::new().clock(clock.clone()).tick(Duration::from_millis(10)))
        .start()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = eventloom_core::store::ViewStore::status(&stores.views, "order_saga").await.unwrap();
        if status.live.is_some_and(|g| g.version == 2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not rebuilt: {status:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = stores.events.read_all(eventloom_core::Position::ZERO, 10_000).await.unwrap().len();
    assert_eq!(after, before, "the rebuild issued nothing");
    // The rebuilt state still has p-1's deadline, and it fires once.
    clock.advance(i64::try_from((DEADLINE + Duration::from_secs(60)).as_micros()).unwrap());
    until_events(&stores, "order", "p-1", "Cancelled", 1).await;
    until_events(&stores, "stock", "plum", "Released", 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        events_of(&stores, "order", "p-2").await,
        ["Placed", "Cancelled"],
        "the refusal was not reacted to again"
    );
    v2.shutdown().await.unwrap();
}

/// A refusal recorded under its command id, then a crash before its journal entry (here: the
/// entry's append fails until the command would succeed): the command is asked again on restart,
/// gets the recorded refusal, and executes nothing.
#[tokio::test]
async fn a_refusal_cut_off_before_its_journal_entry_executes_nothing_when_it_would_now_succeed() {
    let (memory, clock) = (MemoryStores::new(), clock());
    let events = FailingAppends::new(memory.events.clone(), JOURNAL_CATEGORY);
    let stores = Stores::new(events.clone(), memory.views.clone()).with_leases(memory.leases.clone());
    let app = App::builder(stores)
        .aggregate::<Order>()
        .aggregate::<Stock>()
        .aggregate::<Payment>()
        .process_manager_with(OrderSaga, ProcessOptions::new().clock(clock.clone()).tick(Duration::from_millis(10)))
        .start()
        .await
        .unwrap();
    events.fail_next(usize::MAX);
    app.execute(PlaceOrder { order: "o-4".into(), sku: "date".into(), qty: 3 }).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while events.failed() < 2 {
        assert!(std::time::Instant::now() < deadline, "the journal append was never tried");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Now the reservation would succeed.
    app.execute(AddStock { sku: "date".into(), qty: 10 }).await.unwrap();
    events.fail_next(0);
    let order = until_events(&memory, "order", "o-4", "Cancelled", 1).await;
    assert_eq!(order, ["Placed", "Cancelled"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(events_of(&memory, "stock", "date").await, ["Added"], "the refused reservation never ran");
    assert_eq!(events_of(&memory, "eventloom.process", "order_saga/o-4").await, ["CommandRefused"], "reacted to once");
    app.shutdown().await.unwrap();
}

/// A lease manager whose leases are never known to be lost, each with the token it was made
/// with: the leader it makes stays unaware when another one takes over.
struct Unaware(u64);

impl eventloom_core::store::LeaseManager for Unaware {
    fn acquire<'a>(&'a self, _: &'a str) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<Lease>> {
        Box::pin(async move {
            let (keep, lost) = tokio::sync::watch::channel(false);
            Ok(Lease::new(self.0, lost, keep))
        })
    }
    fn try_acquire<'a>(
        &'a self,
        name: &'a str,
    ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<Option<Lease>>> {
        Box::pin(async move { Ok(Some(self.acquire(name).await?)) })
    }
    fn leases<'a>(
        &'a self,
        _prefix: &'a str,
    ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<Vec<eventloom_core::store::LeaseInfo>>> {
        Box::pin(async move { Ok(Vec::new()) })
    }
}

/// Two processes that each believe they lead: the one with the lower token is deposed as soon as
/// the other starts, and when the timer comes due only the new leader's decision reaches the
/// outbox: the order is cancelled and its stock released once.
#[tokio::test]
async fn a_deposed_leader_that_does_not_know_it_issues_nothing() {
    let (memory, clock) = (MemoryStores::new(), clock());
    let on = |token| {
        let stores = Stores::new(memory.events.clone(), memory.views.clone()).with_leases(Unaware(token));
        App::builder(stores)
            .aggregate::<Order>()
            .aggregate::<Stock>()
            .aggregate::<Payment>()
            .process_manager_with(OrderSaga, ProcessOptions::new().clock(clock.clone()).tick(Duration::from_millis(10)))
    };
    let old = on(1).start().await.unwrap();
    old.execute(AddStock { sku: "fig".into(), qty: 1 }).await.unwrap();
    old.execute(PlaceOrder { order: "f-1".into(), sku: "fig".into(), qty: 1 }).await.unwrap();
    until_events(&memory, "stock", "fig", "Reserved", 1).await;
    let new = on(2).start().await.unwrap();
    // The new leader claims the generation when it starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ViewStore::status(&memory.views, "order_saga").await.unwrap().live.is_none()
        || !matches!(new.status().process_managers[0].lease, LeaseState::Leading { token: 2, .. })
    {
        assert!(std::time::Instant::now() < deadline, "the new leader never led");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    clock.advance(i64::try_from((DEADLINE + Duration::from_secs(60)).as_micros()).unwrap());
    until_events(&memory, "order", "f-1", "Cancelled", 1).await;
    until_events(&memory, "stock", "fig", "Released", 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(events_of(&memory, "order", "f-1").await, ["Placed", "Cancelled"]);
    assert_eq!(events_of(&memory, "stock", "fig").await, ["Added", "Reserved", "Released"]);
    let old_status = old.status();
    assert!(
        !matches!(old_status.process_managers[0].lease, LeaseState::Leading { .. }),
        "the old leader knows it was deposed: {:?}",
        old_status.process_managers[0]
    );
    old.shutdown().await.unwrap();
    new.shutdown().await.unwrap();
}

/// A command no retry mends (here: to an aggregate the App does not have) is dead-lettered under
/// the dead-letter policy, and the process goes on; under the default policy it stops the
/// process manager, the command kept in its outbox.
#[tokio::test]
async fn a_command_that_cannot_run_is_dead_lettered_or_stops_the_process_manager() {
    for policy in [eventloom_core::read::PoisonPolicy::DeadLetter, eventloom_core::read::PoisonPolicy::Stop] {
        let (stores, clock) = (MemoryStores::new(), clock());
        let options = ProcessOptions::new().clock(clock.clone()).tick(Duration::from_millis(10)).poison_policy(policy);
        // No stock aggregate: the reservation cannot run.
        let app = App::builder(stores.clone())
            .aggregate::<Order>()
            .process_manager_with(OrderSaga, options)
            .start()
            .await
            .unwrap();
        app.execute(PlaceOrder { order: "n-1".into(), sku: "nut".into(), qty: 1 }).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        if policy == eventloom_core::read::PoisonPolicy::DeadLetter {
            loop {
                let letters = ViewStore::dead_letters(&stores.views, "order_saga").await.unwrap();
                if let Some(letter) = letters.first() {
                    assert!(letter.event_type.starts_with("command order_saga/"), "{letter:?}");
                    assert!(letter.reason.contains("stock"), "{letter:?}");
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "not dead-lettered");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // The process goes on: its deadline still cancels the order.
            clock.advance(i64::try_from((DEADLINE + Duration::from_secs(60)).as_micros()).unwrap());
            until_events(&stores, "order", "n-1", "Cancelled", 1).await;
        } else {
            while !matches!(app.status().process_managers[0].state, eventloom_core::app::RunState::Failed(_)) {
                assert!(std::time::Instant::now() < deadline, "did not stop: {:?}", app.status().process_managers);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        app.shutdown().await.unwrap();
    }
}

// ---- Side by side, where it starts, and what it trusts ----

/// Makes each append of a command to a `stock` stream take 20 ms, and counts the most that ran
/// at once.
#[derive(Default)]
struct SlowStock {
    running: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl eventloom_core::testing::AppendHook for SlowStock {
    fn before<'a>(
        &'a self,
        stream: &'a StreamId,
        command: bool,
    ) -> eventloom_core::store::BoxFuture<'a, eventloom_core::Result<()>> {
        use std::sync::atomic::Ordering::SeqCst;
        Box::pin(async move {
            if command && stream.category() == "stock" {
                let now = self.running.fetch_add(1, SeqCst) + 1;
                self.most.fetch_max(now, SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(())
        })
    }

    fn after(&self, stream: &StreamId) {
        if stream.category() == "stock" {
            let _ = self.running.fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            );
        }
    }
}

/// Reserves the stock of every placed order; one instance per sku, so that the reservations of
/// one sku are the commands of one instance.
pub struct Reserver;

impl ProcessManager for Reserver {
    const NAME: &'static str = "reserver";
    type Events = Fulfilment;
    type State = u64;
    type Commands = SagaCommand;

    fn correlate(&self, event: &EventEnvelope<Fulfilment>) -> Option<String> {
        match &event.event {
            Fulfilment::Order(OrderEvent::Placed { sku, .. }) => Some(sku.clone()),
            _ => None,
        }
    }

    fn on_event(
        &self,
        s: &mut u64,
        e: &EventEnvelope<Fulfilment>,
        d: &mut Decision<SagaCommand>,
    ) -> Result<(), BoxError> {
        if let Some(reserve) = reservation(s, e) {
            d.issue(SagaCommand::Reserve(reserve));
        }
        Ok(())
    }
}

/// The reservation a placed order asks for (counted in `placed`).
fn reservation(placed: &mut u64, e: &EventEnvelope<Fulfilment>) -> Option<Reserve> {
    let Fulfilment::Order(OrderEvent::Placed { sku, qty }) = &e.event else { return None };
    *placed += 1;
    Some(Reserve { sku: sku.clone(), order: e.stream.id().to_owned(), qty: *qty })
}

/// The orders of each sku's `Reserved` events, in their stream's order.
async fn reserved_orders(events: &impl EventStore, sku: &str) -> Vec<String> {
    let stream = StreamId::new("stock", sku).unwrap();
    let events = events.read_stream(&stream, 1, 1000).await.unwrap();
    events
        .iter()
        .filter(|e| e.event_type == "Reserved")
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.payload).unwrap()["order"].as_str().unwrap().to_owned())
        .collect()
}

/// Commands of different instances run side by side, never more than the option allows, and
/// those of one instance one after the other in the order they were decided.
#[tokio::test]
async fn the_commands_of_different_instances_run_side_by_side_and_each_instances_in_order() {
    let skus = ["a", "b", "c", "d", "e", "f"];
    for concurrency in [1, 4] {
        let memory = MemoryStores::new();
        let events = eventloom_core::testing::Hooked::with_hook(memory.events.clone(), SlowStock::default());
        let stores = Stores::new(events.clone(), memory.views.clone()).with_leases(memory.leases.clone());
        // Placed before the process manager starts: one batch, 6 instances of 3 commands each.
        let setup = App::builder(stores.clone()).aggregate::<Order>().aggregate::<Stock>().start().await.unwrap();
        for sku in skus {
            setup.execute(AddStock { sku: sku.into(), qty: 100 }).await.unwrap();
        }
        for n in 0..3 {
            for sku in skus {
                setup.execute(PlaceOrder { order: format!("{sku}-{n}"), sku: sku.into(), qty: 1 }).await.unwrap();
            }
        }
        setup.shutdown().await.unwrap();
        let options = ProcessOptions::new().concurrency(concurrency).tick(Duration::from_millis(10));
        let app = App::builder(stores.clone())
            .aggregate::<Order>()
            .aggregate::<Stock>()
            .process_manager_with(Reserver, options)
            .start()
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        for sku in skus {
            loop {
                let orders = reserved_orders(&events, sku).await;
                if orders.len() == 3 {
                    let expected: Vec<String> = (0..3).map(|n| format!("{sku}-{n}")).collect();
                    assert_eq!(orders, expected, "one instance's commands in the order decided");
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{sku}: {orders:?}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        if concurrency == 1 {
            // One at a time: in the order of the log, across instances too.
            let all = events.read_all(eventloom_core::Position::ZERO, 10_000).await.unwrap();
            let order: Vec<String> = all
                .iter()
                .filter(|e| e.event_type == "Reserved")
                .map(|e| serde_json::from_str::<serde_json::Value>(&e.payload).unwrap()["order"].to_string())
                .collect();
            let placed: Vec<String> =
                (0..3).flat_map(|n| skus.iter().map(move |sku| format!("\"{sku}-{n}\""))).collect();
            assert_eq!(order, placed, "concurrency 1 runs the outbox in the log's order");
        }
        let most = events.hook().most.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(most, concurrency, "at most {concurrency} instances at a time, and that many when there is work");
        app.shutdown().await.unwrap();
    }
}

/// Started at the head, a process manager issues nothing for the orders placed before it, goes
/// on with their states (their deadlines still cancel them), and acts on later orders; where it
/// started holds across a restart with other options.
#[tokio::test]
async fn started_at_the_head_it_issues_nothing_for_the_past_but_keeps_its_states() {
    let (stores, clock) = (MemoryStores::new(), clock());
    let setup = App::builder(stores.clone()).aggregate::<Order>().aggregate::<Stock>().start().await.unwrap();
    setup.execute(AddStock { sku: "plum".into(), qty: 10 }).await.unwrap();
    setup.execute(PlaceOrder { order: "old-1".into(), sku: "plum".into(), qty: 1 }).await.unwrap();
    setup.execute(PlaceOrder { order: "old-2".into(), sku: "plum".into(), qty: 1 }).await.unwrap();
    setup.shutdown().await.unwrap();

    let options = || ProcessOptions::new().clock(clock.clone()).tick(Duration::from_millis(10));
    let app = App::builder(stores.clone())
        .aggregate::<Order>()
        .aggregate::<Stock>()
        .process_manager_with(OrderSaga, options().start_from(eventloom_core::app::StartFrom::Now))
        .start()
        .await
        .unwrap();
    app.execute(PlaceOrder { order: "new-1".into(), sku: "plum".into(), qty: 1 }).await.unwrap();
    // Decided after the orders before it: by then it had decided on those.
    until_events(&stores, "stock", "plum", "Reserved", 1).await;
    assert_eq!(reserved_orders(&stores.events, "plum").await, ["new-1"], "nothing for the orders before it started");
    app.shutdown().await.unwrap();

    // Restarted with the default (from the beginning): where it started holds.
    let app = app_on(&stores, &clock).start().await.unwrap();
    app.execute(PlaceOrder { order: "new-2".into(), sku: "plum".into(), qty: 1 }).await.unwrap();
    until_events(&stores, "stock", "plum", "Reserved", 2).await;
    assert_eq!(reserved_orders(&stores.events, "plum").await, ["new-1", "new-2"]);
    // The old orders' states were decided from their events: their deadlines cancel them.
    clock.advance(i64::try_from((DEADLINE + Duration::from_secs(60)).as_micros()).unwrap());
    for order in ["old-1", "old-2", "new-1", "new-2"] {
        until_events(&stores, "order", order, "Cancelled", 1).await;
    }
    until_events(&stores, "stock", "plum", "Released", 2).await;
    app.shutdown().await.unwrap();
}

/// Started at the head of an empty log, it acts on the first event, before and after a restart.
#[tokio::test]
async fn started_at_the_head_of_an_empty_log_it_acts_on_every_event() {
    let (stores, clock) = (MemoryStores::new(), clock());
    for (n, order) in ["e-1", "e-2"].into_iter().enumerate() {
        let options = ProcessOptions::new().clock(clock.clone()).tick(Duration::from_millis(10));
        let app = App::builder(stores.clone())
            .aggregate::<Order>()
            .aggregate::<Stock>()
            .process_manager_with(OrderSaga, options.start_from(eventloom_core::app::StartFrom::Now))
            .start()
            .await
            .unwrap();
        app.execute(AddStock { sku: "kiwi".into(), qty: 10 }).await.unwrap();
        app.execute(PlaceOrder { order: order.into(), sku: "kiwi".into(), qty: 1 }).await.unwrap();
        until_events(&stores, "stock", "kiwi", "Reserved", n + 1).await;
        app.shutdown().await.unwrap();
    }
    assert_eq!(reserved_orders(&stores.events, "kiwi").await, ["e-1", "e-2"]);
}

/// An aggregate may not take a category eventloom keeps for itself.
#[derive(Debug, Default)]
struct Impostor;

impl Aggregate for Impostor {
    const TYPE: &'static str = "eventloom.process";
    type Event = OrderEvent;
    type Error = std::convert::Infallible;
    fn apply(&mut self, _: &OrderEvent) {}
}

#[tokio::test]
async fn an_aggregate_in_a_reserved_category_and_a_journal_entry_not_written_by_the_process_manager_are_refused() {
    let stores = MemoryStores::new();
    let refused = App::builder(stores.clone()).aggregate::<Impostor>().start().await.expect_err("refused");
    assert!(refused.to_string().contains("eventloom."), "{refused}");

    // An entry in its journal that another writer appended (no command id of its own): poison.
    let clock = clock();
    let options = ProcessOptions::new().clock(clock.clone()).tick(Duration::from_millis(10));
    let app = App::builder(stores.clone())
        .aggregate::<Order>()
        .aggregate::<Stock>()
        .process_manager_with(OrderSaga, options.poison_policy(eventloom_core::read::PoisonPolicy::DeadLetter))
        .start()
        .await
        .unwrap();
    app.execute(AddStock { sku: "lime".into(), qty: 10 }).await.unwrap();
    app.execute(PlaceOrder { order: "f-1".into(), sku: "lime".into(), qty: 1 }).await.unwrap();
    until_events(&stores, "stock", "lime", "Reserved", 1).await;
    let timer = Timer { name: "payment".into(), key: "f-1".into(), due: clock.now(), id: "forged".into() };
    let payload = serde_json::json!({ "kind": "timer", "process": "order_saga", "timer": timer }).to_string();
    let stream = StreamId::new(JOURNAL_CATEGORY, "order_saga/f-1").unwrap();
    let forged = eventloom_core::model::NewEvent {
        event_type: "TimerFired".into(),
        schema_version: 1,
        payload,
        metadata: Metadata::default(),
    };
    stores.events.append(&stream, eventloom_core::model::ExpectedVersion::Any, vec![forged]).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let letters = ViewStore::dead_letters(&stores.views, "order_saga").await.unwrap();
        if let Some(letter) = letters.first() {
            assert!(letter.reason.contains("not appended by process manager order_saga"), "{letter:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not dead-lettered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(events_of(&stores, "order", "f-1").await, ["Placed"], "the forged timer cancelled nothing");
    app.shutdown().await.unwrap();
}

/// The commands of [`StuckReserver`]: a reservation of sku `stuck` is always to be tried again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StuckCommand {
    Reserve(Reserve),
}

impl CommandSet for StuckCommand {
    async fn dispatch(self, to: &Dispatcher, options: ExecuteOptions) -> Dispatched {
        match self {
            StuckCommand::Reserve(c) if c.sku == "stuck" => Dispatched::Retry { reason: "stuck on purpose".into() },
            StuckCommand::Reserve(c) => to.execute(c, options).await,
        }
    }
}

/// As [`Reserver`], with commands that stick for one sku.
pub struct StuckReserver;

impl ProcessManager for StuckReserver {
    const NAME: &'static str = "stuck_reserver";
    type Events = Fulfilment;
    type State = u64;
    type Commands = StuckCommand;

    fn correlate(&self, event: &EventEnvelope<Fulfilment>) -> Option<String> {
        Reserver.correlate(event)
    }

    fn on_event(
        &self,
        s: &mut u64,
        e: &EventEnvelope<Fulfilment>,
        d: &mut Decision<StuckCommand>,
    ) -> Result<(), BoxError> {
        if let Some(reserve) = reservation(s, e) {
            d.issue(StuckCommand::Reserve(reserve));
        }
        Ok(())
    }
}

/// An instance whose command is to be tried again holds back its own later commands only, even
/// when they fill more than a page of the outbox.
#[tokio::test]
async fn an_instance_stuck_on_a_retry_holds_back_no_other_even_pages_later() {
    let stores = MemoryStores::new();
    let setup = App::builder(stores.clone()).aggregate::<Order>().aggregate::<Stock>().start().await.unwrap();
    setup.execute(AddStock { sku: "free".into(), qty: 10 }).await.unwrap();
    for n in 0..150 {
        setup.execute(PlaceOrder { order: format!("stuck-{n}"), sku: "stuck".into(), qty: 1 }).await.unwrap();
    }
    setup.execute(PlaceOrder { order: "free-0".into(), sku: "free".into(), qty: 1 }).await.unwrap();
    setup.shutdown().await.unwrap();
    let app = App::builder(stores.clone())
        .aggregate::<Order>()
        .aggregate::<Stock>()
        .process_manager_with(StuckReserver, ProcessOptions::new().tick(Duration::from_millis(10)))
        .start()
        .await
        .unwrap();
    until_events(&stores, "stock", "free", "Reserved", 1).await;
    app.shutdown().await.unwrap();
}

/// A view store that lost a process manager's states (here: a fresh one under the same log)
/// stops it, in a process that never saw them too, rather than issue its commands again.
#[tokio::test]
async fn a_process_manager_whose_states_were_lost_stops_instead_of_issuing_again() {
    let (stores, clock) = (MemoryStores::new(), clock());
    let app = app_on(&stores, &clock).start().await.unwrap();
    app.execute(AddStock { sku: "yuzu".into(), qty: 10 }).await.unwrap();
    app.execute(PlaceOrder { order: "l-1".into(), sku: "yuzu".into(), qty: 1 }).await.unwrap();
    until_events(&stores, "stock", "yuzu", "Reserved", 1).await;
    app.shutdown().await.unwrap();

    let emptied = MemoryStores::new();
    let lost = Stores::new(stores.events.clone(), emptied.views.clone()).with_leases(emptied.leases.clone());
    let options = ProcessOptions::new().clock(clock.clone()).tick(Duration::from_millis(10));
    let app = App::builder(lost)
        .aggregate::<Order>()
        .aggregate::<Stock>()
        .process_manager_with(OrderSaga, options)
        .start()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let eventloom_core::app::RunState::Failed(error) = &app.status().process_managers[0].state {
            assert!(error.to_string().contains("lost them"), "{error}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "did not stop: {:?}", app.status().process_managers);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(reserved_orders(&stores.events, "yuzu").await, ["l-1"], "nothing issued again");
    app.shutdown().await.unwrap();
}

/// A member may not take a name eventloom keeps for itself (a relay's lease, here).
pub struct Squatter;

impl ProcessManager for Squatter {
    const NAME: &'static str = "eventloom.relay/inventory";
    type Events = Fulfilment;
    type State = u64;
    type Commands = SagaCommand;

    fn correlate(&self, _: &EventEnvelope<Fulfilment>) -> Option<String> {
        None
    }

    fn on_event(
        &self,
        _: &mut u64,
        _: &EventEnvelope<Fulfilment>,
        _: &mut Decision<SagaCommand>,
    ) -> Result<(), BoxError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_member_named_in_eventloom_s_own_names_is_refused() {
    let err = App::builder(MemoryStores::new()).process_manager(Squatter).start().await.expect_err("refused");
    assert!(err.to_string().contains("eventloom's own"), "{err}");
}

/// Started at the head, a deadline of an order placed before it that is already past due at the
/// start fires without issuing anything; one of an order placed after, however soon due, issues.
#[tokio::test]
async fn started_at_the_head_past_deadlines_of_the_past_issue_nothing() {
    let stores = MemoryStores::new();
    let setup = App::builder(stores.clone()).aggregate::<Order>().aggregate::<Stock>().start().await.unwrap();
    setup.execute(AddStock { sku: "date".into(), qty: 10 }).await.unwrap();
    setup.execute(PlaceOrder { order: "past-1".into(), sku: "date".into(), qty: 1 }).await.unwrap();
    setup.shutdown().await.unwrap();

    // An hour on: the old order's 15-minute deadline is long past when the process manager starts.
    let later = Timestamp::from_micros(Timestamp::now().as_micros() + 3_600_000_000);
    let clock = Arc::new(ManualClock::new(later));
    let options = ProcessOptions::new().clock(clock.clone()).tick(Duration::from_millis(10));
    let app = App::builder(stores.clone())
        .aggregate::<Order>()
        .aggregate::<Stock>()
        .process_manager_with(OrderSaga, options.start_from(eventloom_core::app::StartFrom::Now))
        .start()
        .await
        .unwrap();
    app.execute(PlaceOrder { order: "now-1".into(), sku: "date".into(), qty: 1 }).await.unwrap();
    // Its deadline (counted from its event's time) is due at once by this clock: it cancels.
    until_events(&stores, "order", "now-1", "Cancelled", 1).await;
    until_events(&stores, JOURNAL_CATEGORY, "order_saga/past-1", "TimerFired", 1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = app.health(100).await;
        if status.process_managers[0].lag.as_ref().is_some_and(|l| l.as_ref().is_ok_and(|l| l.caught_up())) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not caught up: {status:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Anything the old deadline issued would have run right after the commit that caught up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(events_of(&stores, "order", "past-1").await, ["Placed"], "the past deadline issued nothing");
    app.shutdown().await.unwrap();
}
