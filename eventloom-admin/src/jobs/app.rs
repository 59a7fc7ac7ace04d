//! The commands that run through [`Operations`]: those that run the application's code
//! (mounted only: `rebuild`, `reset`, `dead-letters retry`, and `events` through the
//! application's upcasters), and `dead-letters skip|purge` (standalone too).

use eventloom_core::app::{Operations, RebuildProgress, ShownEvent, UnfinishedPartition};
use eventloom_core::store::DeadLetterSelection;
use eventloom_core::write::AsOf;
use eventloom_core::{Position, StreamId};
use serde::Serialize;

use crate::cli::Output;
use crate::jobs::log::EventRow;
use crate::jobs::projections::{LetterRow, print_letters};
use crate::jobs::rebuild::{Progress, Waits};
use crate::render;
use crate::{Error, Result};

/// `rebuild <name>`, or `reset <name> --to <after>`: the bar while it runs, the position it
/// went live at. A partitioned projection is rebuilt whole (every partition, one switch).
pub(crate) async fn rebuild(ops: &Operations, name: &str, after: Option<Position>, output: Output) -> Result<()> {
    let mut progress = Progress::new(name, output);
    let step = |progress: &mut Progress, step: RebuildProgress| match step {
        RebuildProgress::WaitingForLease { lease, holder } => progress.waiting(&lease, holder.as_ref()),
        RebuildProgress::Started { after, head, total, .. } => progress.batch(after, head, 0, total),
        RebuildProgress::Batch { checkpoint, head, done, total } => progress.batch(checkpoint, head, done, total),
        RebuildProgress::Switched { partitions, checkpoint } => progress.switched(partitions, checkpoint),
        _ => {}
    };
    let result = match after {
        None => ops.rebuild(name, |s| step(&mut progress, s)).await,
        Some(to) => ops.reset(name, to, |s| step(&mut progress, s)).await,
    };
    match result {
        Ok(live) => progress.live(live),
        Err(error) => {
            progress.abandon();
            Err(error.into())
        }
    }
}

#[derive(Debug, Serialize)]
struct Retried<'a> {
    projection: &'a str,
    retried: u64,
    succeeded: u64,
    failed: Vec<LetterRow>,
    /// Partitions whose retry did not go through (their dead letters as they were).
    unfinished: Vec<UnfinishedPartition>,
}

/// `dead-letters retry <name> [--at ...]` (a partitioned projection's: every partition's, or
/// one partition's by its name), saying so while it waits for a lease.
pub(crate) async fn retry(ops: &Operations, name: &str, which: &DeadLetterSelection, output: Output) -> Result<()> {
    let mut waits = Waits::new(name, output);
    let outcome = ops.retry_dead_letters_with(name, which, |wait| waits.tell(&wait)).await?;
    waits.finish()?;
    let report = Retried {
        projection: name,
        retried: outcome.retried,
        succeeded: outcome.succeeded,
        failed: outcome.failed.iter().map(LetterRow::from).collect(),
        unfinished: outcome.unfinished,
    };
    if output == Output::Json {
        // One line: after any `waiting` step, stdout is JSON lines.
        render::json_line(&report)?;
    } else {
        render::line(&format!(
            "retried {} dead letters of {name}: {} went through, {} failed again",
            report.retried,
            report.succeeded,
            report.failed.len()
        ))?;
        if !report.failed.is_empty() {
            print_letters(&report.failed)?;
        }
    }
    unfinished(&report.unfinished)
}

/// `state <stream> [--as-of-version N | --as-of-time T]`: the aggregate's state as of then
/// (now without either), folded by the application's code.
pub(crate) async fn state(ops: &Operations, stream: &StreamId, as_of: Option<AsOf>, output: Output) -> Result<()> {
    let state = ops.state(stream, as_of).await?;
    match output {
        Output::Json => render::json(&state),
        Output::Human => {
            let shown = serde_json::to_string_pretty(&state.state)
                .map_err(|e| Error::Failed(format!("cannot encode the output: {e}")))?;
            render::line(&format!("{} at version {}:\n{shown}", state.stream, state.version))
        }
    }
}

/// A retry that left partitions unfinished fails (after its report), naming each and why.
fn unfinished(partitions: &[UnfinishedPartition]) -> Result<()> {
    if partitions.is_empty() {
        return Ok(());
    }
    let each: Vec<String> = partitions.iter().map(|p| format!("{}: {}", p.partition, p.reason)).collect();
    Err(Error::Failed(format!(
        "the dead letters of {} partition(s) were not retried (run the retry again for them): {}",
        partitions.len(),
        each.join("; ")
    )))
}

/// `dead-letters skip|purge` through `ops` (the application's, or, standalone, those of an
/// application that registers nothing), saying so while it waits for a lease.
pub(crate) async fn skip(ops: &Operations, name: &str, which: &DeadLetterSelection, output: Output) -> Result<()> {
    let mut waits = Waits::new(name, output);
    let removed = ops.skip_dead_letters_with(name, which, |wait| waits.tell(&wait)).await?;
    waits.finish()?;
    match output {
        Output::Json => render::json_line(&serde_json::json!({ "projection": name, "removed": removed })),
        Output::Human => render::line(&format!("removed {removed} dead letters of {name}")),
    }
}

impl From<&ShownEvent> for EventRow {
    fn from(event: &ShownEvent) -> Self {
        let recorded_at = event
            .metadata
            .get("timestamp")
            .and_then(serde_json::Value::as_i64)
            .map(|micros| crate::time::format(eventloom_core::model::Timestamp::from_micros(micros)));
        EventRow {
            position: event.position,
            stream: event.stream.to_string(),
            version: event.version,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            upcast: Some(event.upcast),
            recorded_at,
            payload: event.payload.clone(),
            metadata: event.metadata.clone(),
        }
    }
}

/// A stream's events through the application's upcasters.
pub(crate) async fn events(
    ops: &Operations,
    stream: &StreamId,
    as_of: Option<AsOf>,
    limit: usize,
) -> Result<Vec<EventRow>> {
    Ok(ops.events(stream, as_of, limit).await?.iter().map(EventRow::from).collect())
}
