//! The two services' aggregates. Each service runs its own and reads the other's events, relayed
//! from the bus: the orders service reads `stock` events, the inventory service `order` events.
//! The types are shared, as a contract crate would be between two teams.

use std::collections::BTreeMap;

use eventloom::prelude::*;
use serde::{Deserialize, Serialize};

/// The most items one order line may ask for.
pub const MAX_QTY: u64 = 1_000;
/// The longest sku and order id, in bytes.
pub const MAX_ID: usize = 64;

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// An order id used before.
    #[error("order {0} exists already")]
    Exists(String),
    /// A command for an order that is not there.
    #[error("no order {0}")]
    NoOrder(String),
    /// A command the order's state does not allow.
    #[error("order {id} is {status}: cannot {action}")]
    WrongState {
        /// The order.
        id: String,
        /// Its status.
        status: &'static str,
        /// What was asked.
        action: &'static str,
    },
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
}

/// Checks an id (order or sku): 1 to [`MAX_ID`] bytes of letters, digits, `-` and `_`.
pub fn check_id(what: &str, id: &str) -> Result<(), Refusal> {
    let ok =
        !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(Refusal::Invalid(format!("{what} must be 1 to {MAX_ID} letters, digits, '-' or '_'"))) }
}

// ---- Orders ----

/// What happens to an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
pub enum OrderEvent {
    /// Placed for `qty` items of `sku`.
    Placed { sku: String, qty: u64 },
    /// The customer paid.
    Paid,
    /// The payment failed.
    PaymentFailed,
    /// Shipped (reserved and paid).
    Shipped,
    /// Cancelled, and why.
    Cancelled { reason: String },
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not placed.
    #[default]
    None,
    /// Placed, not paid.
    Placed,
    /// Paid, not shipped yet.
    Paid,
    /// Shipped.
    Shipped,
    /// Cancelled.
    Cancelled,
}

impl Status {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::None => "not placed",
            Status::Placed => "placed",
            Status::Paid => "paid",
            Status::Shipped => "shipped",
            Status::Cancelled => "cancelled",
        }
    }
}

/// One order.
#[derive(Debug, Default)]
pub struct Order {
    status: Status,
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Event = OrderEvent;
    type Error = Refusal;

    fn apply(&mut self, event: &OrderEvent) {
        self.status = match event {
            OrderEvent::Placed { .. } | OrderEvent::PaymentFailed => Status::Placed,
            OrderEvent::Paid => Status::Paid,
            OrderEvent::Shipped => Status::Shipped,
            OrderEvent::Cancelled { .. } => Status::Cancelled,
        };
    }
}

impl Order {
    fn wrong(&self, id: &str, action: &'static str) -> Refusal {
        match self.status {
            Status::None => Refusal::NoOrder(id.to_owned()),
            status => Refusal::WrongState { id: id.to_owned(), status: status.as_str(), action },
        }
    }
}

/// Places an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Order)]
pub struct PlaceOrder {
    /// The order's id.
    #[command(id)]
    pub id: String,
    /// What.
    pub sku: String,
    /// How many.
    pub qty: u64,
}

impl Handle<PlaceOrder> for Order {
    fn handle(&self, c: &PlaceOrder) -> Result<Vec<OrderEvent>, Refusal> {
        check_id("an order id", &c.id)?;
        check_id("a sku", &c.sku)?;
        if !(1..=MAX_QTY).contains(&c.qty) {
            return Err(Refusal::Invalid(format!("qty must be 1 to {MAX_QTY}")));
        }
        if self.status != Status::None {
            return Err(Refusal::Exists(c.id.clone()));
        }
        Ok(vec![OrderEvent::Placed { sku: c.sku.clone(), qty: c.qty }])
    }
}

/// Records the customer's payment (`ok`) or its failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Order)]
pub struct RecordPayment {
    /// The order's id.
    #[command(id)]
    pub id: String,
    /// Whether it went through.
    pub ok: bool,
}

impl Handle<RecordPayment> for Order {
    fn handle(&self, c: &RecordPayment) -> Result<Vec<OrderEvent>, Refusal> {
        if self.status != Status::Placed {
            return Err(self.wrong(&c.id, "record a payment"));
        }
        Ok(vec![if c.ok { OrderEvent::Paid } else { OrderEvent::PaymentFailed }])
    }
}

/// Ships a paid order (the fulfilment saga does, once its stock is reserved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Order)]
pub struct ShipOrder {
    /// The order's id.
    #[command(id)]
    pub id: String,
}

impl Handle<ShipOrder> for Order {
    fn handle(&self, c: &ShipOrder) -> Result<Vec<OrderEvent>, Refusal> {
        if self.status != Status::Paid {
            return Err(self.wrong(&c.id, "ship"));
        }
        Ok(vec![OrderEvent::Shipped])
    }
}

/// Cancels an order not shipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Order)]
pub struct CancelOrder {
    /// The order's id.
    #[command(id)]
    pub id: String,
    /// Why.
    pub reason: String,
}

impl Handle<CancelOrder> for Order {
    fn handle(&self, c: &CancelOrder) -> Result<Vec<OrderEvent>, Refusal> {
        if !matches!(self.status, Status::Placed | Status::Paid) {
            return Err(self.wrong(&c.id, "cancel"));
        }
        Ok(vec![OrderEvent::Cancelled { reason: c.reason.clone() }])
    }
}

/// Cancels an order still waiting for its payment (its deadline passed); refused once it is
/// paid, so that a payment that came just before the deadline is never undone by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Order)]
pub struct ExpireOrder {
    /// The order's id.
    #[command(id)]
    pub id: String,
}

/// Why an expired order was cancelled.
pub const EXPIRED: &str = "no payment in time";

impl Handle<ExpireOrder> for Order {
    fn handle(&self, c: &ExpireOrder) -> Result<Vec<OrderEvent>, Refusal> {
        if self.status != Status::Placed {
            return Err(self.wrong(&c.id, "expire"));
        }
        Ok(vec![OrderEvent::Cancelled { reason: EXPIRED.to_owned() }])
    }
}

// ---- Inventory ----

/// What happens to the stock of one sku.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
pub enum StockEvent {
    /// Items arrived.
    Added { qty: u64 },
    /// Items held for an order.
    Reserved { order: String, qty: u64 },
    /// Not enough items for an order.
    Refused { order: String, qty: u64 },
    /// An order's items put back.
    Released { order: String, qty: u64 },
    /// An order's items sent.
    Dispatched { order: String, qty: u64 },
}

/// The stock of one sku.
#[derive(Debug, Default)]
pub struct Stock {
    available: u64,
    reserved: BTreeMap<String, u64>,
    /// Orders reserved for (or refused) before: a reservation asked again is answered once.
    answered: std::collections::BTreeSet<String>,
}

impl Aggregate for Stock {
    const TYPE: &'static str = "stock";
    type Event = StockEvent;
    type Error = Refusal;

    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::Added { qty } => self.available += qty,
            StockEvent::Reserved { order, qty } => {
                self.available = self.available.saturating_sub(*qty);
                self.reserved.insert(order.clone(), *qty);
                self.answered.insert(order.clone());
            }
            StockEvent::Refused { order, .. } => {
                self.answered.insert(order.clone());
            }
            StockEvent::Released { order, qty } => {
                self.available += qty;
                self.reserved.remove(order);
            }
            StockEvent::Dispatched { order, .. } => {
                self.reserved.remove(order);
            }
        }
    }
}

/// Adds items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Stock)]
pub struct AddStock {
    /// The sku.
    #[command(id)]
    pub sku: String,
    /// How many.
    pub qty: u64,
}

impl Handle<AddStock> for Stock {
    fn handle(&self, c: &AddStock) -> Result<Vec<StockEvent>, Refusal> {
        check_id("a sku", &c.sku)?;
        if !(1..=1_000_000).contains(&c.qty) {
            return Err(Refusal::Invalid("qty must be 1 to 1,000,000".into()));
        }
        Ok(vec![StockEvent::Added { qty: c.qty }])
    }
}

/// Holds items for an order, or says there are not enough (an event: the orders service
/// learns of it from the bus).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Stock)]
pub struct Reserve {
    /// The sku.
    #[command(id)]
    pub sku: String,
    /// For which order.
    pub order: String,
    /// How many.
    pub qty: u64,
}

impl Handle<Reserve> for Stock {
    fn handle(&self, c: &Reserve) -> Result<Vec<StockEvent>, Refusal> {
        if self.answered.contains(&c.order) {
            return Ok(vec![]);
        }
        if self.available < c.qty {
            return Ok(vec![StockEvent::Refused { order: c.order.clone(), qty: c.qty }]);
        }
        Ok(vec![StockEvent::Reserved { order: c.order.clone(), qty: c.qty }])
    }
}

/// Puts an order's items back (nothing when none are held).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Stock)]
pub struct Release {
    /// The sku.
    #[command(id)]
    pub sku: String,
    /// For which order.
    pub order: String,
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

/// Sends an order's items (nothing when none are held).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Command)]
#[command(aggregate = Stock)]
pub struct Dispatch {
    /// The sku.
    #[command(id)]
    pub sku: String,
    /// For which order.
    pub order: String,
}

impl Handle<Dispatch> for Stock {
    fn handle(&self, c: &Dispatch) -> Result<Vec<StockEvent>, Refusal> {
        Ok(self
            .reserved
            .get(&c.order)
            .map(|qty| StockEvent::Dispatched { order: c.order.clone(), qty: *qty })
            .into_iter()
            .collect())
    }
}
