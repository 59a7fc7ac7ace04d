//! The read models: an order's status (orders service), a sku's stock (inventory service).

use eventloom::prelude::*;
use eventloom::{BoxError, Projection};
use serde::{Deserialize, Serialize};

use crate::domain::{Order, OrderEvent, Status, Stock, StockEvent};

/// An order as the orders service shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// What.
    pub sku: String,
    /// How many.
    pub qty: u64,
    /// Where it stands.
    pub status: Status,
    /// Why it was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The orders, by id.
#[derive(Debug, Clone, Copy)]
pub struct Orders;

impl Projection for Orders {
    const NAME: &'static str = "orders";
    type Events = Order;
    type View = OrderView;

    fn view_id(&self, event: &EventEnvelope<OrderEvent>) -> Option<String> {
        Some(event.stream.id().to_owned())
    }

    fn apply(&self, view: &mut Option<OrderView>, e: &EventEnvelope<OrderEvent>) -> Result<(), BoxError> {
        let v = view.get_or_insert_with(OrderView::default);
        match &e.event {
            OrderEvent::Placed { sku, qty } => {
                v.sku = sku.clone();
                v.qty = *qty;
                v.status = Status::Placed;
            }
            OrderEvent::Paid => v.status = Status::Paid,
            OrderEvent::PaymentFailed => {}
            OrderEvent::Shipped => v.status = Status::Shipped,
            OrderEvent::Cancelled { reason } => {
                v.status = Status::Cancelled;
                v.reason = Some(reason.clone());
            }
        }
        Ok(())
    }
}

/// A sku's stock as the inventory service shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockView {
    /// Items not held.
    pub available: u64,
    /// Items held for open orders.
    pub reserved: u64,
    /// Items sent.
    pub dispatched: u64,
    /// Orders refused for want of items.
    pub refused: u64,
}

/// The stock, by sku.
#[derive(Debug, Clone, Copy)]
pub struct Inventory;

impl Projection for Inventory {
    const NAME: &'static str = "inventory";
    type Events = Stock;
    type View = StockView;

    fn view_id(&self, event: &EventEnvelope<StockEvent>) -> Option<String> {
        Some(event.stream.id().to_owned())
    }

    fn apply(&self, view: &mut Option<StockView>, e: &EventEnvelope<StockEvent>) -> Result<(), BoxError> {
        let v = view.get_or_insert_with(StockView::default);
        match &e.event {
            StockEvent::Added { qty } => v.available += qty,
            StockEvent::Reserved { qty, .. } => {
                v.available = v.available.saturating_sub(*qty);
                v.reserved += qty;
            }
            StockEvent::Refused { .. } => v.refused += 1,
            StockEvent::Released { qty, .. } => {
                v.available += qty;
                v.reserved = v.reserved.saturating_sub(*qty);
            }
            StockEvent::Dispatched { qty, .. } => {
                v.reserved = v.reserved.saturating_sub(*qty);
                v.dispatched += qty;
            }
        }
        Ok(())
    }
}
