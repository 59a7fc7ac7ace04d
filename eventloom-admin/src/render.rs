//! Printing: JSON for scripts, aligned tables for people, one line per event while following.

use std::io::Write;

use serde::Serialize;

use crate::{Error, Result};

/// Writes `text` and a line break to stdout, flushed. A closed stdout (`| head`) is
/// [`Error::Closed`]: the command stops quietly.
pub(crate) fn line(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).map_err(io_error)
}

/// Writes `value` as one line of JSON.
pub(crate) fn json_line<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string(value).map_err(|e| Error::Failed(format!("cannot encode the output: {e}")))?;
    line(&text)
}

/// Writes `value` as indented JSON.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Error::Failed(format!("cannot encode the output: {e}")))?;
    line(&text)
}

fn io_error(error: std::io::Error) -> Error {
    match error.kind() {
        std::io::ErrorKind::BrokenPipe => Error::Closed,
        _ => Error::Failed(format!("cannot write the output: {error}")),
    }
}

/// A table with a header, its columns as wide as their widest cell.
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&'static str]) -> Self {
        Table { header: header.to_vec(), rows: Vec::new() }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table, or `empty` when it has no row.
    pub(crate) fn print(&self, empty: &str) -> Result<()> {
        if self.rows.is_empty() {
            return line(empty);
        }
        line(&self.render())
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(width) = widths.get_mut(i) {
                    *width = (*width).max(cell.chars().count());
                }
            }
        }
        let format_row = |cells: &mut dyn Iterator<Item = &str>| {
            let mut text = String::new();
            for (i, cell) in cells.enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                if i + 1 < widths.len() {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            text.trim_end().to_owned()
        };
        let mut lines = vec![format_row(&mut self.header.iter().copied())];
        for row in &self.rows {
            lines.push(format_row(&mut row.iter().map(String::as_str)));
        }
        lines.join("\n")
    }
}

/// `-` for nothing.
pub(crate) fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A duration for people: `850ms`, `12.3s`, `4m05s`, `2h07m`.
pub(crate) fn duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_its_columns() {
        let mut table = Table::new(&["name", "status", "lag"]);
        table.row(vec!["tasks".into(), "live".into(), "0".into()]);
        table.row(vec!["task-stats".into(), "building".into(), "12".into()]);
        assert_eq!(table.render(), "name        status    lag\ntasks       live      0\ntask-stats  building  12");
    }

    #[test]
    fn durations_read_well() {
        use std::time::Duration;
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(duration(Duration::from_secs(7620)), "2h07m");
    }
}
