//! One service's process: its stores (PostgreSQL, from `DATABASE_URL`), its App (aggregate,
//! read model, process manager, and the relay of the other service's events from the bus), the
//! publisher of its own events, and the HTTP server. On SIGTERM or Ctrl-C it stops the server,
//! then the App, then the publisher.

use std::sync::Arc;
use std::time::Duration;

use eventloom::nats::{JetStreamFeed, JetStreamFeedConfig, NatsConfig, Publisher, PublisherConfig};
use eventloom::{App, Stores, StoresConfig};
use tokio::net::TcpListener;

use crate::domain::{Order, Stock};
use crate::http::{self, Http};
use crate::sagas::{Fulfilment, Reservations};
use crate::views::{Inventory, Orders};
use crate::{Args, Service};

/// Why a service stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The stores could not be reached or refused the settings.
    #[error(transparent)]
    Stores(#[from] eventloom::StoresError),
    /// The App refused to start.
    #[error(transparent)]
    App(#[from] eventloom::Error),
    /// The bus could not be reached or refused the settings.
    #[error(transparent)]
    Bus(#[from] eventloom::nats::Error),
    /// The address could not be bound, or the server failed.
    #[error("HTTP on {addr}: {source}")]
    Http {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The stream and subject prefix a service publishes its events to.
pub fn bus_of(bus: &str, service: Service) -> (String, String) {
    let name = match service {
        Service::Orders => "orders",
        Service::Inventory => "inventory",
    };
    (format!("{bus}-{name}"), format!("{bus}.{name}"))
}

/// Runs the service until SIGTERM or Ctrl-C.
pub async fn run(args: &Args, payment_deadline: Duration) -> Result<(), ServiceError> {
    let stores: Stores = StoresConfig::from_env().connect().await?;
    let nats = NatsConfig::from_env()?;
    let (own, other, category) = match args.service {
        Service::Orders => (Service::Orders, Service::Inventory, "order"),
        Service::Inventory => (Service::Inventory, Service::Orders, "stock"),
    };
    let (own_stream, own_prefix) = bus_of(&args.bus, own);
    let (other_stream, other_prefix) = bus_of(&args.bus, other);
    let durable = match own {
        Service::Orders => "orders",
        Service::Inventory => "inventory",
    };
    // The other service's events, read on a durable consumer of this service's own name.
    let feed = JetStreamFeed::connect(&nats, JetStreamFeedConfig::new(other_stream, other_prefix, durable)).await?;
    let builder = App::builder(stores.clone());
    let app = match own {
        Service::Orders => {
            builder
                .aggregate::<Order>()
                .projection(Orders)
                .process_manager(Fulfilment { payment_deadline })
                .relay("inventory", feed)
                .start()
                .await?
        }
        Service::Inventory => {
            builder
                .aggregate::<Stock>()
                .projection(Inventory)
                .process_manager(Reservations)
                .relay("orders", feed)
                .start()
                .await?
        }
    };
    // This service's own events, to the stream it alone writes.
    let mut config = PublisherConfig::new(own_stream, own_prefix).category(category);
    if let Some(leases) = stores.leases() {
        config = config.lease(Arc::clone(leases), format!("publisher/{category}"));
    }
    let publisher = Publisher::connect(&nats, config).await?;
    let events = stores.events().clone();
    let publishing = {
        let stopped = app.stopped();
        tokio::spawn(async move { publisher.run(&events, stopped).await })
    };
    let router = match own {
        Service::Orders => http::orders(Http { app: app.clone() }),
        Service::Inventory => http::inventory(Http { app: app.clone() }),
    };
    let listener =
        TcpListener::bind(&args.addr).await.map_err(|source| ServiceError::Http { addr: args.addr.clone(), source })?;
    tracing::info!(service = ?own, addr = %args.addr, "listening");
    let stop = {
        let app = app.clone();
        async move {
            signal().await;
            tracing::info!("stopping");
            let _ = app.shutdown().await;
        }
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|source| ServiceError::Http { addr: args.addr.clone(), source })?;
    app.shutdown().await?;
    match publishing.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "the publisher stopped"),
        Err(error) => tracing::error!(%error, "the publisher's task failed"),
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
