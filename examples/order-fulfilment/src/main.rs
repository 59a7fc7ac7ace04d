//! Order fulfilment across two services that talk only through NATS JetStream: **orders** (its
//! fulfilment saga waits for the stock and the payment, with a deadline) and **inventory** (its
//! reservations process holds, releases and dispatches items). Each is a separate process with
//! its own PostgreSQL database; each publishes its own events to a stream of its own and relays
//! the other's into its log.
//!
//! ```text
//! DATABASE_URL=postgres://.../orders    NATS_URL=nats://127.0.0.1:4222 cargo run -p order-fulfilment -- orders --addr 127.0.0.1:8081
//! DATABASE_URL=postgres://.../inventory NATS_URL=nats://127.0.0.1:4222 cargo run -p order-fulfilment -- inventory --addr 127.0.0.1:8082
//! ```
//!
//! See `README.md` for the API and what happens to an order.

mod domain;
mod http;
mod sagas;
mod service;
mod views;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Which service this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    /// Orders, payments and the fulfilment saga.
    Orders,
    /// Stock and the reservations process.
    Inventory,
}

/// Runs one service of the order fulfilment example.
#[derive(Debug, Parser)]
#[command(name = "order-fulfilment", version)]
pub struct Args {
    /// Which service.
    #[arg(value_enum)]
    pub service: Service,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// How long a placed order waits for its payment before it is cancelled, in seconds.
    #[arg(long, default_value_t = 900.0)]
    pub payment_deadline: f64,
    /// The prefix of the bus's streams and subjects (tests give each run its own).
    #[arg(long, default_value = "shop", env = "ORDER_FULFILMENT_BUS")]
    pub bus: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let Ok(deadline) = Duration::try_from_secs_f64(args.payment_deadline) else {
        eprintln!("order-fulfilment: --payment-deadline must be a non-negative number of seconds");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("order-fulfilment: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(service::run(&args, deadline)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("order-fulfilment: {error}");
            ExitCode::FAILURE
        }
    }
}
