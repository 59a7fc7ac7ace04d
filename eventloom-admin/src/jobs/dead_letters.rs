//! `dead-letters skip|purge` (standalone) and `retry`: removing dead letters under the
//! projection's lease.

use eventloom_core::app::Operations;
use eventloom_core::store::{DeadLetterSelection, ViewStore as _};
use eventloom_core::{App, Position};

use crate::cli::Output;
use crate::connect::Target;
use crate::jobs::{app, projections};
use crate::{Error, Result};

/// The selection the command line names: `--at` positions, or all.
pub(crate) fn selection(at: &[String]) -> Result<DeadLetterSelection> {
    if at.is_empty() {
        return Ok(DeadLetterSelection::All);
    }
    let positions = at
        .iter()
        .map(|text| {
            text.parse::<Position>().map_err(|_| Error::Usage(format!("--at takes positions like 7.42, not {text:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(DeadLetterSelection::At(positions))
}

/// Fails with [`Error::NotFound`] for a position that holds no dead letter of `name` (with the
/// application's operations, `ops`: of any of its partitions, for a partitioned projection).
pub(crate) async fn ensure_letters(
    target: &Target,
    ops: Option<&Operations>,
    name: &str,
    which: &DeadLetterSelection,
) -> Result<()> {
    let DeadLetterSelection::At(positions) = which else { return Ok(()) };
    let letters = match ops {
        Some(ops) => ops.dead_letters(name).await?,
        None => target.stores.views().dead_letters(name).await?,
    };
    match positions.iter().find(|p| !letters.iter().any(|l| l.position == **p)) {
        Some(missing) => {
            Err(Error::NotFound { what: "dead letter of projection", name: format!("{name} at {missing}") })
        }
        None => Ok(()),
    }
}

/// `skip` (with `--at`) and `purge` without the application's definitions: removes them
/// without applying them, under each partition's lease, through the operations of an
/// application that registers nothing (so a partition left within the grace of a switch is
/// made live first, as the mounted command does).
pub(crate) async fn remove(target: &Target, name: &str, which: DeadLetterSelection, output: Output) -> Result<()> {
    if eventloom_core::read::is_partition_record(name) {
        return Err(Error::Usage(format!(
            "{name} is the partition set a partitioned projection keeps for itself: it has no dead letters of its own"
        )));
    }
    projections::row(target, name).await?;
    ensure_letters(target, None, name, &which).await?;
    let ops = App::builder(target.stores.clone()).operations()?;
    app::skip(&ops, name, &which, output).await
}
