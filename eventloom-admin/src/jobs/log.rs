//! `categories`, `streams` and `events`: what the log holds.

use eventloom_core::model::RecordedEvent;
use eventloom_core::store::EventStore;
use eventloom_core::write::AsOf;
use eventloom_core::{Position, StreamId};
use serde::Serialize;

use crate::cli::Output;
use crate::connect::Target;
use crate::render::{self, Table};
use crate::{Error, Result, time};

/// How many names one read of categories or events asks for.
const PAGE: usize = 500;

/// `categories`.
pub(crate) async fn categories(target: &Target, output: Output) -> Result<()> {
    let mut all: Vec<String> = Vec::new();
    loop {
        let after = all.last().cloned().unwrap_or_default();
        let page = target.pg.categories(&after, PAGE).await?;
        let done = page.len() < PAGE;
        all.extend(page);
        if done {
            break;
        }
    }
    match output {
        Output::Json => render::json(&all),
        Output::Human if all.is_empty() => render::line("no streams"),
        Output::Human => render::line(&all.join("\n")),
    }
}

#[derive(Debug, Serialize)]
struct StreamRow {
    stream: String,
    id: String,
    version: u64,
}

/// `streams <category>`.
pub(crate) async fn streams(target: &Target, category: &str, after: &str, limit: usize, output: Output) -> Result<()> {
    // Checked as a stream id would be: a bad category is a usage error, not an empty list.
    StreamId::new(category, "x")?;
    let rows: Vec<StreamRow> = target
        .pg
        .streams(category, after, limit)
        .await?
        .into_iter()
        .map(|(id, version)| StreamRow { stream: format!("{category}/{id}"), id, version })
        .collect();
    if output == Output::Json {
        return render::json(&rows);
    }
    let mut table = Table::new(&["stream", "version"]);
    for row in &rows {
        table.row(vec![row.stream.clone(), row.version.to_string()]);
    }
    table.print(&format!("no streams in category {category}"))
}

/// As of what the events are shown: `--as-of-version` or `--as-of-time`.
pub(crate) fn as_of(version: Option<u64>, at: Option<&str>) -> Result<Option<AsOf>> {
    match (version, at) {
        (Some(_), Some(_)) => Err(Error::Usage("--as-of-version and --as-of-time exclude each other".into())),
        (Some(v), None) => Ok(Some(AsOf::Version(v))),
        (None, Some(text)) => Ok(Some(AsOf::Time(time::parse(text)?))),
        (None, None) => Ok(None),
    }
}

/// One event as printed: its place, its type, its payload and metadata as JSON.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventRow {
    pub(crate) position: Position,
    pub(crate) stream: String,
    pub(crate) version: u64,
    pub(crate) event_type: String,
    pub(crate) schema_version: u32,
    /// Whether the application's upcasters changed it (mounted only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) upcast: Option<bool>,
    /// When it was recorded (RFC 3339), from its metadata.
    pub(crate) recorded_at: Option<String>,
    pub(crate) payload: serde_json::Value,
    pub(crate) metadata: serde_json::Value,
}

impl EventRow {
    /// The event as stored: its payload's JSON as it is (not upcast).
    pub(crate) fn stored(event: &RecordedEvent) -> Self {
        let payload = serde_json::from_str(&event.payload).unwrap_or_else(|_| event.payload.to_string().into());
        let (recorded_at, metadata) = match event.metadata.get() {
            Ok(m) => (Some(time::format(m.timestamp)), serde_json::to_value(m).unwrap_or_default()),
            Err(error) => (None, serde_json::json!({ "unreadable": error.to_string() })),
        };
        EventRow {
            position: event.position,
            stream: event.stream.to_string(),
            version: event.version,
            event_type: event.event_type.to_string(),
            schema_version: event.schema_version,
            upcast: None,
            recorded_at,
            payload,
            metadata,
        }
    }

    /// One line: position, stream and version, type and schema version, time, payload.
    pub(crate) fn line(&self) -> String {
        format!(
            "{}  {}@{}  {} v{}  {}  {}",
            self.position,
            self.stream,
            self.version,
            self.event_type,
            self.schema_version,
            self.recorded_at.as_deref().unwrap_or("-"),
            self.payload
        )
    }
}

/// A stream id from `category/id`.
pub(crate) fn stream_id(text: &str) -> Result<StreamId> {
    let (category, id) = text
        .split_once('/')
        .ok_or_else(|| Error::Usage(format!("a stream is category/id (like task/t-1), not {text:?}")))?;
    Ok(StreamId::new(category, id)?)
}

/// Fails with [`Error::NotFound`] for a stream without events.
pub(crate) async fn ensure_stream(target: &Target, stream: &StreamId) -> Result<u64> {
    match target.stores.events().stream_version(stream).await? {
        0 => Err(Error::NotFound { what: "stream", name: stream.to_string() }),
        version => Ok(version),
    }
}

/// The stored events of `stream` as of `as_of`, at most `limit`.
pub(crate) async fn stored_events(
    target: &Target,
    stream: &StreamId,
    as_of: Option<AsOf>,
    limit: usize,
) -> Result<Vec<EventRow>> {
    let events = target.stores.events();
    let mut rows = Vec::new();
    let mut next = 1;
    while rows.len() < limit {
        let want = match as_of {
            Some(AsOf::Version(v)) if next > v => break,
            Some(AsOf::Version(v)) => PAGE.min(limit - rows.len()).min(usize::try_from(v - next + 1).unwrap_or(PAGE)),
            _ => PAGE.min(limit - rows.len()),
        };
        let batch = events.read_stream(stream, next, want).await?;
        let Some(last) = batch.last() else { break };
        next = last.version + 1;
        let full = batch.len() == want;
        for event in &batch {
            if let Some(AsOf::Time(at)) = as_of {
                if event.metadata.get()?.timestamp > at {
                    return Ok(rows);
                }
            }
            rows.push(EventRow::stored(event));
        }
        if !full {
            break;
        }
    }
    Ok(rows)
}

/// Prints `rows`: a JSON array, or a block per event.
pub(crate) fn print_events(rows: &[EventRow], stream: &StreamId, output: Output) -> Result<()> {
    if output == Output::Json {
        return render::json(rows);
    }
    if rows.is_empty() {
        return render::line(&format!("no events of {stream} as of then"));
    }
    for row in rows {
        render::line(&format!(
            "#{} {} v{} at {} (position {})",
            row.version,
            row.event_type,
            row.schema_version,
            row.recorded_at.as_deref().unwrap_or("-"),
            row.position
        ))?;
        render::line(&format!("  payload:  {}", row.payload))?;
        render::line(&format!("  metadata: {}", row.metadata))?;
    }
    Ok(())
}
