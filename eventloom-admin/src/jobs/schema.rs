//! `migrate` and `schema`: the schema's migrations.

use eventloom_postgres::SchemaVersion;
use serde::Serialize;

use crate::Result;
use crate::cli::Output;
use crate::connect::Target;
use crate::render::{self, Table};
use crate::time;

/// A schema's migrations, as printed.
#[derive(Debug, Serialize)]
struct SchemaReport {
    schema: String,
    /// The highest migration applied (`null`: never migrated).
    version: Option<u32>,
    /// The highest this build knows.
    latest: u32,
    applied: Vec<Migration>,
    /// Known to this build, not applied.
    pending: Vec<u32>,
    /// Applied by a newer release, unknown to this build.
    unknown: Vec<u32>,
}

#[derive(Debug, Serialize)]
struct Migration {
    version: u32,
    name: String,
    applied_at: String,
    applied_at_micros: i64,
}

impl SchemaReport {
    fn of(state: &SchemaVersion) -> Self {
        SchemaReport {
            schema: state.schema.clone(),
            version: state.version(),
            latest: state.latest(),
            applied: state
                .applied
                .iter()
                .map(|m| Migration {
                    version: m.version,
                    name: m.name.clone(),
                    applied_at: time::format(m.applied_at),
                    applied_at_micros: m.applied_at.as_micros(),
                })
                .collect(),
            pending: state.pending(),
            unknown: state.unknown(),
        }
    }
}

/// `schema`.
pub(crate) async fn schema(target: &Target, output: Output) -> Result<()> {
    let state = target.pg.schema_version().await?;
    print(&SchemaReport::of(&state), output)
}

/// `migrate`: applies what is pending, then prints the schema as `schema` does, with what it
/// applied.
pub(crate) async fn migrate(target: &Target, output: Output) -> Result<()> {
    let before = target.pg.schema_version().await?;
    target.pg.migrate().await?;
    let after = target.pg.schema_version().await?;
    let applied: Vec<u32> = before.pending().into_iter().filter(|v| !after.pending().contains(v)).collect();
    match output {
        Output::Json => {
            #[derive(Serialize)]
            struct Migrated {
                applied_now: Vec<u32>,
                #[serde(flatten)]
                schema: SchemaReport,
            }
            render::json(&Migrated { applied_now: applied, schema: SchemaReport::of(&after) })
        }
        Output::Human => {
            match applied.as_slice() {
                [] => render::line(&format!("schema {} is up to date", after.schema))?,
                versions => render::line(&format!(
                    "schema {}: applied {}",
                    after.schema,
                    versions.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                ))?,
            }
            print(&SchemaReport::of(&after), Output::Human)
        }
    }
}

fn print(report: &SchemaReport, output: Output) -> Result<()> {
    if output == Output::Json {
        return render::json(report);
    }
    let version = match report.version {
        None => "not migrated".to_owned(),
        Some(v) if report.pending.is_empty() => format!("{v} (current)"),
        Some(v) => format!("{v} ({} pending: {:?})", report.pending.len(), report.pending),
    };
    render::line(&format!("schema {}: version {version}, this build knows up to {}", report.schema, report.latest))?;
    if !report.unknown.is_empty() {
        render::line(&format!("applied by a newer release: {:?}", report.unknown))?;
    }
    let mut table = Table::new(&["version", "name", "applied at"]);
    for m in &report.applied {
        table.row(vec![m.version.to_string(), m.name.clone(), m.applied_at.clone()]);
    }
    table.print("no migration applied")
}
