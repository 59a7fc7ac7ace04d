//! `horizon`: what holds the subscriptions back.

use serde::Serialize;

use crate::Result;
use crate::cli::Output;
use crate::connect::Target;
use crate::render::{self, Table, or_dash};

#[derive(Debug, Serialize)]
struct HorizonReport {
    /// Committed events that subscribers cannot read yet.
    hidden_events: u64,
    held: bool,
    /// The oldest transaction of the cluster, which the horizon waits for.
    oldest: Option<BlockerRow>,
    /// The read replica's lag, when the log is read from one.
    replica: Option<ReplicaRow>,
}

#[derive(Debug, Serialize)]
struct BlockerRow {
    pid: Option<i32>,
    database: Option<String>,
    state: Option<String>,
    transaction: u64,
    age_seconds: f64,
    prepared: Option<String>,
    /// What ends it.
    remedy: String,
}

#[derive(Debug, Serialize)]
struct ReplicaRow {
    bytes: u64,
    last_replayed_seconds: Option<f64>,
    paused: bool,
}

/// `horizon`.
pub(crate) async fn horizon(target: &Target, output: Output) -> Result<()> {
    let holdback = target.pg.holdback().await?;
    let replica = target.pg.replica_lag().await?;
    let report = HorizonReport {
        hidden_events: holdback.hidden_events,
        held: holdback.is_held(),
        oldest: holdback.oldest.map(|b| BlockerRow {
            remedy: match (&b.prepared, b.pid) {
                (Some(gid), _) => format!("COMMIT PREPARED '{gid}' or ROLLBACK PREPARED '{gid}'"),
                (None, Some(pid)) => format!("SELECT pg_terminate_backend({pid})"),
                (None, None) => "end the transaction".to_owned(),
            },
            pid: b.pid,
            database: b.database,
            state: b.state,
            transaction: b.transaction,
            age_seconds: b.age.as_secs_f64(),
            prepared: b.prepared,
        }),
        replica: replica.map(|lag| ReplicaRow {
            bytes: lag.bytes,
            last_replayed_seconds: lag.last_replayed.map(|d| d.as_secs_f64()),
            paused: lag.paused,
        }),
    };
    if output == Output::Json {
        return render::json(&report);
    }
    match report.hidden_events {
        0 => render::line("the horizon is not held back: every committed event is readable")?,
        n => render::line(&format!("{n} committed events are held back from subscribers"))?,
    }
    match &report.oldest {
        None => render::line("no transaction holds an id in the cluster")?,
        Some(b) => {
            render::line(if report.held { "held back by:" } else { "the oldest transaction of the cluster:" })?;
            let mut table = Table::new(&["pid", "database", "state", "transaction", "age", "prepared", "to end it"]);
            table.row(vec![
                or_dash(b.pid),
                or_dash(b.database.clone()),
                or_dash(b.state.clone()),
                b.transaction.to_string(),
                render::duration(std::time::Duration::from_secs_f64(b.age_seconds)),
                or_dash(b.prepared.clone()),
                b.remedy.clone(),
            ]);
            table.print("")?;
        }
    }
    if let Some(r) = &report.replica {
        render::line(&format!(
            "read replica: {} bytes behind, last replay {} ago{}",
            r.bytes,
            or_dash(r.last_replayed_seconds.map(|s| render::duration(std::time::Duration::from_secs_f64(s)))),
            if r.paused { ", replay paused" } else { "" }
        ))?;
    }
    Ok(())
}
