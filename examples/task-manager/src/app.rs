//! Runs one role: opens the stores, starts the projector and the HTTP server it needs, and on
//! SIGTERM or Ctrl-C drains requests in flight and stops the projector after its batch.

use std::sync::Arc;
use std::time::Duration;

use eventloom_core::{Projection, read::ViewReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};

use crate::api::{self, AppState, ProjectorStatus};
use crate::cli::{Args, Role};
use crate::projection::TaskViews;
use crate::shutdown;
use crate::stores::{self, Settings, StartupError, Stores};

/// How long requests in flight and the projector's last batch get once a stop is asked for.
const DRAIN: Duration = Duration::from_secs(30);

/// Why a process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// It could not start.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Serve(String),
    /// The projector stopped on an error it cannot get past.
    #[error("the projector stopped: {0}")]
    Projector(String),
}

async fn join<T>(handle: &mut Option<JoinHandle<T>>) -> Result<T, JoinError> {
    match handle {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

fn projector_error(joined: Result<eventloom_core::Result<()>, JoinError>) -> Option<String> {
    match joined {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(error) => Some(format!("the projector task ended abnormally: {error}")),
    }
}

/// Runs `args.role` until SIGTERM or Ctrl-C (or a failure it cannot get past).
pub async fn run(args: Args, settings: Settings) -> Result<(), AppError> {
    let role = args.role;
    let plan = stores::plan(&settings, role)?;
    tracing::info!(%role, events = ?plan.events, views = ?plan.views, "starting");
    let stores = Stores::open(plan, &settings).await?;
    let (trigger, shutdown) = shutdown::channel();
    let trigger = Arc::new(trigger);
    tokio::spawn({
        let trigger = trigger.clone();
        async move { trigger.fire_on_signal().await }
    });

    let mut projecting = None;
    let mut projector_status = None;
    let mut leadership = None;
    if role.projects() {
        let (projector, lease) =
            stores.projector().ok_or_else(|| StartupError::Config("the projector needs a view store".into()))?;
        leadership = lease;
        let (status, watch) = watch::channel(ProjectorStatus::Running);
        projector_status = Some(watch);
        let stop = shutdown.clone();
        projecting = Some(tokio::spawn(async move {
            let result = projector.run(TaskViews, stop.wait()).await;
            status.send_replace(match &result {
                Ok(()) => ProjectorStatus::Stopped,
                Err(error) => ProjectorStatus::Failed { error: error.to_string() },
            });
            result
        }));
    }

    let state = Arc::new(AppState {
        role,
        plan,
        events: stores.events.clone(),
        engine: role.commands().then(|| stores.engine()),
        views: stores.views.clone(),
        tasks: if role.queries() { stores.views.clone().map(|v| ViewReader::new(v, TaskViews::NAME)) } else { None },
        projector: projector_status,
        leadership,
        shutdown: shutdown.clone(),
    });

    let mut serving = None;
    if let Some(addr) = &args.addr {
        let listener = TcpListener::bind(addr).await.map_err(|source| AppError::Bind { addr: addr.clone(), source })?;
        match listener.local_addr() {
            Ok(local) => tracing::info!(%role, "listening on http://{local}"),
            Err(_) => tracing::info!(%role, %addr, "listening"),
        }
        let app = api::router(state.clone());
        let stop = shutdown.clone();
        serving =
            Some(tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop.wait()).await }));
    }

    // Until a stop is asked for, or a part ends by itself.
    let mut failure = None;
    loop {
        tokio::select! {
            biased;
            () = shutdown.clone().wait() => break,
            joined = join(&mut projecting) => {
                projecting = None;
                if let Some(error) = projector_error(joined) {
                    tracing::error!(%error, "the projector stopped");
                    if role == Role::Projector {
                        failure = Some(AppError::Projector(error));
                        trigger.fire();
                        break;
                    }
                    // With every role in one process, queries go on answering from the views
                    // as they are; /health tells.
                }
            }
            joined = join(&mut serving) => {
                serving = None;
                let error = match joined {
                    Ok(Ok(())) if shutdown.is_set() => break,
                    Ok(Ok(())) => "it stopped unexpectedly".to_owned(),
                    Ok(Err(error)) => error.to_string(),
                    Err(error) => error.to_string(),
                };
                failure = Some(AppError::Serve(error));
                trigger.fire();
                break;
            }
        }
    }

    // Drain.
    if let Some(server) = serving {
        match tokio::time::timeout(DRAIN, server).await {
            Ok(Ok(Ok(()))) => tracing::info!("HTTP server stopped; requests in flight were answered"),
            Ok(Ok(Err(error))) => {
                failure.get_or_insert(AppError::Serve(error.to_string()));
            }
            Ok(Err(error)) => {
                failure.get_or_insert(AppError::Serve(error.to_string()));
            }
            Err(_) => {
                tracing::warn!(seconds = DRAIN.as_secs(), "requests still in flight after the drain time; stopping")
            }
        }
    }
    if let Some(projector) = projecting {
        match tokio::time::timeout(DRAIN, projector).await {
            Ok(joined) => match projector_error(joined) {
                None => tracing::info!("projector stopped after its batch"),
                Some(error) if role == Role::Projector => {
                    failure.get_or_insert(AppError::Projector(error));
                }
                Some(error) => tracing::error!(%error, "the projector stopped"),
            },
            Err(_) => tracing::warn!(seconds = DRAIN.as_secs(), "the projector did not stop in time"),
        }
    }
    match failure {
        Some(error) => Err(error),
        None => {
            tracing::info!(%role, projection = TaskViews::NAME, "stopped");
            Ok(())
        }
    }
}
