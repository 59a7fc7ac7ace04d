//! `dead-letters skip|purge` (standalone) and `retry`: removing dead letters under the
//! projection's lease.

use eventloom_core::Position;
use eventloom_core::app::Operations;
use eventloom_core::store::{DeadLetterSelection, Lease, ViewStore as _};
use serde::Serialize;

use crate::cli::Output;
use crate::connect::Target;
use crate::jobs::projections;
use crate::render;
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

/// The projection's lease: at once when free, else after waiting (said on stderr, with its
/// holder) for its holder to let go. `None` for stores without leases.
pub(crate) async fn lease(target: &Target, name: &str) -> Result<Option<Lease>> {
    let Some(leases) = target.stores.leases() else { return Ok(None) };
    if let Some(lease) = leases.try_acquire(name).await? {
        return Ok(Some(lease));
    }
    let holder = projections::leader_of(target, name).await?;
    eprintln!("waiting for the lease of {name} (held by {})", projections::leader(holder.as_ref()));
    Ok(Some(leases.acquire(name).await?))
}

#[derive(Debug, Serialize)]
struct Removed<'a> {
    projection: &'a str,
    removed: u64,
}

/// `skip` (with `--at`) and `purge`: removes them without applying them.
pub(crate) async fn remove(target: &Target, name: &str, which: DeadLetterSelection, output: Output) -> Result<()> {
    if eventloom_core::read::is_partition_record(name) {
        return Err(Error::Usage(format!(
            "{name} is the partition set a partitioned projection keeps for itself: it has no dead letters of its own"
        )));
    }
    projections::row(target, name).await?;
    ensure_letters(target, None, name, &which).await?;
    let lease = lease(target, name).await?;
    let token = lease.as_ref().map_or(0, Lease::token);
    let written = target.stores.views().remove_dead_letters(name, &which, token).await?;
    drop(lease);
    let removed = written.map_err(|refusal| Error::Failed(format!("the view store refused: {refusal}")))?;
    match output {
        Output::Json => render::json(&Removed { projection: name, removed }),
        Output::Human => render::line(&format!("removed {removed} dead letters of {name}")),
    }
}
