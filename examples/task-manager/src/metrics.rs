//! `GET /metrics`: the libraries' metrics (see `eventloom::metrics`), recorded by the Prometheus
//! exporter and rendered in its text format on every role that serves HTTP.
//!
//! The `_seconds` histograms and the projector's batch sizes export as Prometheus histograms
//! with the buckets below (so that they aggregate across processes), not as summaries.

use std::time::Duration;

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::api::AppState;

/// The buckets of every `_seconds` histogram: 0.5 ms to 10 s.
pub const SECONDS_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// The buckets of `eventloom_projector_batch_size`, in events.
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];
/// How often the recorder's upkeep (draining histogram samples into buckets) runs.
const UPKEEP: Duration = Duration::from_secs(5);

/// The Prometheus content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Installs the Prometheus recorder (before the App is built: its engines and projectors take
/// their metric handles then), describes the libraries' metrics, and runs the recorder's upkeep
/// on a task of its own. Fails when a recorder is installed already.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full("eventloom_projector_batch_size".into()), BATCH_SIZE_BUCKETS)
        })
        .and_then(|b| b.install_recorder())
        .map_err(|error| format!("cannot install the metrics recorder: {error}"))?;
    eventloom::metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// `GET /metrics`. A role that reads views first reads each projection's exact lag from the
/// stores (`App::health`, which sets the `eventloom_projection_*` and
/// `eventloom_log_held_back_events` gauges), within the same timeout as `/health`: a store
/// that does not answer leaves the gauges as the last check set them.
pub async fn render(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.plan.views.is_some() {
        let _ = tokio::time::timeout(crate::api::health::STORE_TIMEOUT, state.app.health(crate::api::health::LAG_CAP))
            .await;
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], state.metrics.render())
}
