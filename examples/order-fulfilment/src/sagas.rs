//! The process managers: the orders service's fulfilment saga, and the inventory service's
//! reservations. Each issues commands to its own service's aggregates only, and reacts to the
//! other service's events relayed from the bus.

use std::time::Duration;

use eventloom::BoxError;
use eventloom::prelude::*;
use eventloom::process::{CommandSet, Decision, Dispatched, Dispatcher, Timer};
use serde::{Deserialize, Serialize};

use crate::domain::{
    CancelOrder, Dispatch, ExpireOrder, Order, OrderEvent, Release, Reserve, ShipOrder, Stock, StockEvent,
};

/// What the fulfilment saga reads: its orders, and the inventory's answers.
#[derive(Debug, EventSet)]
pub enum FulfilmentEvent {
    /// The service's own orders.
    #[events(aggregate = Order)]
    Order(OrderEvent),
    /// The inventory's stock, relayed.
    #[events(aggregate = Stock)]
    Stock(StockEvent),
}

/// The orders service's commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderCommand {
    /// Ship a paid, reserved order.
    Ship(ShipOrder),
    /// Cancel it.
    Cancel(CancelOrder),
    /// Cancel it if it is still unpaid.
    Expire(ExpireOrder),
}

impl CommandSet for OrderCommand {
    async fn dispatch(self, to: &Dispatcher, options: ExecuteOptions) -> Dispatched {
        match self {
            OrderCommand::Ship(c) => to.execute(c, options).await,
            OrderCommand::Cancel(c) => to.execute(c, options).await,
            OrderCommand::Expire(c) => to.execute(c, options).await,
        }
    }
}

/// What the fulfilment saga knows of one order.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fulfilling {
    placed: bool,
    reserved: bool,
    paid: bool,
}

/// Ships an order once it is paid and its stock reserved; cancels it when the stock is refused,
/// the payment fails, or no payment comes within the deadline.
#[derive(Debug, Clone, Copy)]
pub struct Fulfilment {
    /// How long a placed order waits for its payment.
    pub payment_deadline: Duration,
}

impl ProcessManager for Fulfilment {
    const NAME: &'static str = "fulfilment";
    type Events = FulfilmentEvent;
    type State = Fulfilling;
    type Commands = OrderCommand;

    fn correlate(&self, e: &EventEnvelope<FulfilmentEvent>) -> Option<String> {
        match &e.event {
            FulfilmentEvent::Order(_) => Some(e.stream.id().to_owned()),
            FulfilmentEvent::Stock(StockEvent::Reserved { order, .. } | StockEvent::Refused { order, .. }) => {
                Some(order.clone())
            }
            FulfilmentEvent::Stock(_) => None,
        }
    }

    fn on_event(
        &self,
        s: &mut Fulfilling,
        e: &EventEnvelope<FulfilmentEvent>,
        d: &mut Decision<OrderCommand>,
    ) -> Result<(), BoxError> {
        let cancel = |order: &str, reason: &str| {
            OrderCommand::Cancel(CancelOrder { id: order.to_owned(), reason: reason.to_owned() })
        };
        // An answer of the inventory for an order that is over (it came after the order was
        // cancelled): nothing to do, and no instance to keep.
        if matches!(e.event, FulfilmentEvent::Stock(_)) && !s.placed {
            d.complete();
            return Ok(());
        }
        match &e.event {
            FulfilmentEvent::Order(OrderEvent::Placed { .. }) => {
                s.placed = true;
                d.schedule("payment", self.payment_deadline);
            }
            FulfilmentEvent::Order(OrderEvent::Paid) => {
                s.paid = true;
                d.cancel("payment");
                if s.reserved {
                    d.issue(OrderCommand::Ship(ShipOrder { id: e.stream.id().to_owned() }));
                }
            }
            FulfilmentEvent::Order(OrderEvent::PaymentFailed) => {
                d.cancel("payment");
                d.issue(cancel(e.stream.id(), "the payment failed"));
            }
            FulfilmentEvent::Order(OrderEvent::Shipped | OrderEvent::Cancelled { .. }) => d.complete(),
            FulfilmentEvent::Stock(StockEvent::Reserved { order, .. }) => {
                s.reserved = true;
                if s.paid {
                    d.issue(OrderCommand::Ship(ShipOrder { id: order.clone() }));
                }
            }
            FulfilmentEvent::Stock(StockEvent::Refused { order, .. }) => {
                d.cancel("payment");
                d.issue(cancel(order, "out of stock"));
            }
            FulfilmentEvent::Stock(_) => {}
        }
        Ok(())
    }

    fn on_timer(&self, _: &mut Fulfilling, timer: &Timer, d: &mut Decision<OrderCommand>) -> Result<(), BoxError> {
        // Refused if the payment came meanwhile: then the order goes on.
        d.issue(OrderCommand::Expire(ExpireOrder { id: timer.key.clone() }));
        Ok(())
    }
}

/// What the reservations process reads: the orders, relayed.
#[derive(Debug, EventSet)]
pub enum ReservationEvent {
    /// The orders service's orders.
    #[events(aggregate = Order)]
    Order(OrderEvent),
}

/// The inventory service's commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StockCommand {
    /// Hold an order's items.
    Reserve(Reserve),
    /// Put them back.
    Release(Release),
    /// Send them.
    Dispatch(Dispatch),
}

impl CommandSet for StockCommand {
    async fn dispatch(self, to: &Dispatcher, options: ExecuteOptions) -> Dispatched {
        match self {
            StockCommand::Reserve(c) => to.execute(c, options).await,
            StockCommand::Release(c) => to.execute(c, options).await,
            StockCommand::Dispatch(c) => to.execute(c, options).await,
        }
    }
}

/// The sku an order asked for.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reserving {
    sku: String,
}

/// Reserves a placed order's items, releases them when it is cancelled, dispatches them when it
/// ships.
#[derive(Debug, Clone, Copy)]
pub struct Reservations;

impl ProcessManager for Reservations {
    const NAME: &'static str = "reservations";
    type Events = ReservationEvent;
    type State = Reserving;
    type Commands = StockCommand;

    fn correlate(&self, e: &EventEnvelope<ReservationEvent>) -> Option<String> {
        Some(e.stream.id().to_owned())
    }

    fn on_event(
        &self,
        s: &mut Reserving,
        e: &EventEnvelope<ReservationEvent>,
        d: &mut Decision<StockCommand>,
    ) -> Result<(), BoxError> {
        let order = e.stream.id().to_owned();
        let ReservationEvent::Order(event) = &e.event;
        match event {
            OrderEvent::Placed { sku, qty } => {
                s.sku = sku.clone();
                d.issue(StockCommand::Reserve(Reserve { sku: sku.clone(), order, qty: *qty }));
            }
            OrderEvent::Cancelled { .. } if !s.sku.is_empty() => {
                d.issue(StockCommand::Release(Release { sku: s.sku.clone(), order }));
                d.complete();
            }
            OrderEvent::Shipped if !s.sku.is_empty() => {
                d.issue(StockCommand::Dispatch(Dispatch { sku: s.sku.clone(), order }));
                d.complete();
            }
            _ => {}
        }
        Ok(())
    }
}
