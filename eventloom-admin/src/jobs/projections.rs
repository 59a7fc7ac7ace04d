//! `projections`, `projection <name>` and `dead-letters list`: where the read side stands.

use eventloom_core::Position;
use eventloom_core::model::Timestamp;
use eventloom_core::store::{DeadLetter, EventStore as _, Generation, LeaseInfo, ProjectionStatus, ViewStore as _};
use serde::Serialize;

use crate::cli::Output;
use crate::connect::Target;
use crate::render::{self, Table, or_dash};
use crate::{Error, Result};

/// Lag in events is counted up to this many (then shown as `>=`).
pub(crate) const LAG_CAP: u64 = 1_000_000;

/// A generation as printed.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GenerationRow {
    pub(crate) id: u64,
    pub(crate) version: u32,
    pub(crate) checkpoint: Option<Position>,
}

impl From<Generation> for GenerationRow {
    fn from(g: Generation) -> Self {
        GenerationRow { id: g.id, version: g.version, checkpoint: g.checkpoint }
    }
}

/// Who leads a projection: its lease's last holder.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LeaderRow {
    pub(crate) host: Option<String>,
    pub(crate) pid: Option<u32>,
    pub(crate) role: Option<String>,
    pub(crate) token: u64,
    /// Whether the lease is held now.
    pub(crate) held: bool,
}

/// One projection's status, as printed.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProjectionRow {
    pub(crate) name: String,
    /// `live`, `rebuilding` (live, a new generation being built), `building` (nothing live
    /// yet), `stopped` (its runner stopped on an event), `empty`.
    pub(crate) status: &'static str,
    /// The version of the projection that built the live views.
    pub(crate) version: Option<u32>,
    pub(crate) live: Option<GenerationRow>,
    pub(crate) building: Option<GenerationRow>,
    /// The live generation's checkpoint.
    pub(crate) checkpoint: Option<Position>,
    /// Events after the checkpoint (at most [`LAG_CAP`]).
    pub(crate) lag_events: u64,
    /// Whether the count stopped at the cap.
    pub(crate) lag_capped: bool,
    /// How long the oldest event not applied yet has waited.
    pub(crate) lag_seconds: f64,
    pub(crate) leader: Option<LeaderRow>,
    pub(crate) dead_letters: usize,
    /// Why its runner stopped, while that holds.
    pub(crate) stopped: Option<String>,
}

fn status_name(status: &ProjectionStatus) -> &'static str {
    match (status.active_stop(), status.live, status.building) {
        (Some(_), _, _) => "stopped",
        (None, Some(_), Some(_)) => "rebuilding",
        (None, Some(_), None) => "live",
        (None, None, Some(_)) => "building",
        (None, None, None) => "empty",
    }
}

/// The status of projection `name` from the stores; [`Error::NotFound`] when the view store
/// knows nothing of it.
pub(crate) async fn row(target: &Target, name: &str) -> Result<ProjectionRow> {
    let views = target.stores.views();
    let status = views.status(name).await?;
    if status == ProjectionStatus::default() {
        return Err(Error::NotFound { what: "projection", name: name.to_owned() });
    }
    let dead_letters = views.dead_letters(name).await?.len();
    let checkpoint = status.checkpoint();
    let events = target.stores.events();
    let after = checkpoint.unwrap_or(Position::ZERO);
    let lag_events = events.count_after(after, LAG_CAP).await?;
    let lag_seconds = match events.read_all(after, 1).await?.first() {
        Some(oldest) => {
            let waited = Timestamp::now().as_micros().saturating_sub(oldest.metadata.get()?.timestamp.as_micros());
            // Microseconds as seconds, for people.
            #[allow(clippy::cast_precision_loss)]
            let seconds = waited.max(0) as f64 / 1e6;
            seconds
        }
        None => 0.0,
    };
    Ok(ProjectionRow {
        name: name.to_owned(),
        status: status_name(&status),
        version: status.live.map(|g| g.version),
        live: status.live.map(Into::into),
        building: status.building.map(Into::into),
        checkpoint,
        lag_events,
        lag_capped: lag_events >= LAG_CAP,
        lag_seconds,
        leader: leader_of(target, name).await?,
        dead_letters,
        stopped: status.active_stop().map(ToString::to_string),
    })
}

/// A dead letter as printed (its stream as `category/id`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LetterRow {
    pub(crate) position: Position,
    pub(crate) stream: String,
    pub(crate) version: u64,
    pub(crate) event_type: String,
    pub(crate) reason: String,
}

impl From<&DeadLetter> for LetterRow {
    fn from(l: &DeadLetter) -> Self {
        LetterRow {
            position: l.position,
            stream: l.stream.to_string(),
            version: l.version,
            event_type: l.event_type.clone(),
            reason: l.reason.clone(),
        }
    }
}

/// The dead letters of `name`'s live generation.
pub(crate) async fn letters(target: &Target, name: &str) -> Result<Vec<LetterRow>> {
    Ok(target.stores.views().dead_letters(name).await?.iter().map(LetterRow::from).collect())
}

/// The holder of the lease named `name`, from the stores' lease manager.
pub(crate) async fn leader_of(target: &Target, name: &str) -> Result<Option<LeaderRow>> {
    let Some(leases) = target.stores.leases() else { return Ok(None) };
    let found = leases.leases(name).await?.into_iter().find(|lease| lease.name == name);
    Ok(found.map(|lease| LeaderRow::from(&lease)))
}

impl From<&LeaseInfo> for LeaderRow {
    fn from(lease: &LeaseInfo) -> Self {
        LeaderRow {
            host: lease.holder.as_ref().map(|h| h.host.clone()),
            pid: lease.holder.as_ref().map(|h| h.pid),
            role: lease.holder.as_ref().map(|h| h.role.clone()),
            token: lease.token,
            held: lease.held,
        }
    }
}

/// `projection <name>`: the status and the dead letters.
pub(crate) async fn projection(target: &Target, name: &str, output: Output) -> Result<()> {
    let row = row(target, name).await?;
    let letters = letters(target, name).await?;
    if output == Output::Json {
        #[derive(Serialize)]
        struct Detail<'a> {
            #[serde(flatten)]
            projection: &'a ProjectionRow,
            dead_letter_list: &'a [LetterRow],
        }
        return render::json(&Detail { projection: &row, dead_letter_list: &letters });
    }
    let generation = |g: &Option<GenerationRow>| {
        g.as_ref().map_or_else(
            || "-".to_owned(),
            |g| format!("{} (version {}, checkpoint {})", g.id, g.version, or_dash(g.checkpoint)),
        )
    };
    render::line(&format!("projection {}: {}", row.name, row.status))?;
    render::line(&format!("  live generation:     {}", generation(&row.live)))?;
    render::line(&format!("  building generation: {}", generation(&row.building)))?;
    render::line(&format!("  lag:                 {}", lag(&row)))?;
    render::line(&format!("  leader:              {}", leader(row.leader.as_ref())))?;
    if let Some(stop) = &row.stopped {
        render::line(&format!("  stopped:             {stop}"))?;
    }
    render::line(&format!("  dead letters:        {}", row.dead_letters))?;
    if !letters.is_empty() {
        print_letters(&letters)?;
    }
    Ok(())
}

/// `dead-letters list <name>`.
pub(crate) async fn list_dead_letters(target: &Target, name: &str, output: Output) -> Result<()> {
    row(target, name).await?;
    let letters = letters(target, name).await?;
    match output {
        Output::Json => render::json(&letters),
        Output::Human if letters.is_empty() => render::line(&format!("projection {name} has no dead letters")),
        Output::Human => print_letters(&letters),
    }
}

pub(crate) fn print_letters(letters: &[LetterRow]) -> Result<()> {
    let mut table = Table::new(&["position", "stream", "version", "type", "reason"]);
    for l in letters {
        table.row(vec![
            l.position.to_string(),
            l.stream.clone(),
            l.version.to_string(),
            l.event_type.clone(),
            l.reason.clone(),
        ]);
    }
    table.print("")
}

/// `12 events, 3.2s` (or `>= 1000000 events`).
pub(crate) fn lag(row: &ProjectionRow) -> String {
    let events = if row.lag_capped { format!(">= {}", row.lag_events) } else { row.lag_events.to_string() };
    format!("{events} events, {}", render::duration(std::time::Duration::from_secs_f64(row.lag_seconds.max(0.0))))
}

/// `host/pid (role), token 7` or `-`.
pub(crate) fn leader(leader: Option<&LeaderRow>) -> String {
    let Some(l) = leader else { return "-".to_owned() };
    let who = format!("{}/{} ({})", or_dash(l.host.clone()), or_dash(l.pid), or_dash(l.role.clone()));
    format!("{who}, token {}{}", l.token, if l.held { "" } else { ", not held now" })
}

/// The names of the projections the view store holds (partitions as their members, without
/// the partition records), and `registered` ones it has nothing of yet.
pub(crate) async fn names(target: &Target, registered: &[String]) -> Result<Vec<String>> {
    let mut names: Vec<String> = target
        .stores
        .views()
        .projections()
        .await?
        .into_iter()
        .filter(|name| !name.ends_with(PARTITION_RECORD))
        .collect();
    names.extend(registered.iter().cloned());
    names.sort();
    names.dedup();
    Ok(names)
}

/// The suffix of a partitioned projection's record of its partitions (not a projection).
const PARTITION_RECORD: &str = "~partitions";

/// `projections`: one row per projection (and partition).
pub(crate) async fn list(target: &Target, registered: &[String], output: Output) -> Result<()> {
    let mut rows = Vec::new();
    let mut unbuilt = Vec::new();
    for name in names(target, registered).await? {
        match row(target, &name).await {
            Ok(row) => rows.push(row),
            Err(Error::NotFound { .. }) => unbuilt.push(name),
            Err(error) => return Err(error),
        }
    }
    if output == Output::Json {
        #[derive(Serialize)]
        struct Listed<'a> {
            projections: &'a [ProjectionRow],
            /// Registered with the application, nothing stored yet.
            never_run: &'a [String],
        }
        return render::json(&Listed { projections: &rows, never_run: &unbuilt });
    }
    let mut table = Table::new(&[
        "projection",
        "status",
        "version",
        "live",
        "building",
        "checkpoint",
        "lag",
        "leader",
        "dead letters",
    ]);
    for row in &rows {
        table.row(vec![
            row.name.clone(),
            row.status.to_owned(),
            or_dash(row.version),
            or_dash(row.live.as_ref().map(|g| g.id)),
            or_dash(row.building.as_ref().map(|g| format!("{} at {}", g.id, or_dash(g.checkpoint)))),
            or_dash(row.checkpoint),
            lag(row),
            leader(row.leader.as_ref()),
            row.dead_letters.to_string(),
        ]);
    }
    table.print("no projections")?;
    if !unbuilt.is_empty() {
        render::line(&format!("registered, never run: {}", unbuilt.join(", ")))?;
    }
    Ok(())
}
