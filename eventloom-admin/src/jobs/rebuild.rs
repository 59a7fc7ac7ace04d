//! `rebuild` and `reset`: a progress bar (or JSON lines) while a projection is rebuilt behind its
//! live views, from the building generation's checkpoint against the head of the log.

use std::time::{Duration, Instant};

use eventloom_core::Position;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::Result;
use crate::cli::Output;
use crate::render;

/// One step of a rebuild, as `--json` prints it (one line each).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub(crate) enum Step {
    /// Waiting for the projection's lease, held by another process.
    Waiting { projection: String, holder: Option<String> },
    /// A batch folded into the building generation.
    Building { projection: String, checkpoint: Option<Position>, head: Option<Position>, done: u64, total: u64 },
    /// The new generation is live.
    Live { projection: String, position: Option<Position>, done: u64, seconds: f64 },
}

/// Shows a rebuild's steps: a bar with rate and ETA on a terminal's stderr, lines of JSON on
/// stdout with `--json`, and nothing but the last line when stderr is not a terminal.
pub(crate) struct Progress {
    name: String,
    output: Output,
    bar: ProgressBar,
    started: Instant,
    waiting_shown: bool,
    done: u64,
    /// A failure to write stdout (`--json`), reported at the end.
    failed: Option<crate::Error>,
}

impl Progress {
    pub(crate) fn new(name: &str, output: Output) -> Self {
        let target = match output {
            Output::Human => ProgressDrawTarget::stderr(),
            Output::Json => ProgressDrawTarget::hidden(),
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        let style = ProgressStyle::with_template(
            "{spinner} {prefix} [{bar:30}] {human_pos}/{human_len} events ({per_sec}, ETA {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#>-");
        bar.set_style(style);
        bar.set_prefix(name.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            name: name.to_owned(),
            output,
            bar,
            started: Instant::now(),
            waiting_shown: false,
            done: 0,
            failed: None,
        }
    }

    fn json(&mut self, step: &Step) {
        if self.failed.is_none() {
            if let Err(error) = render::json_line(step) {
                self.failed = Some(error);
            }
        }
    }

    /// Waiting for the lease, held by `holder`.
    pub(crate) fn waiting(&mut self, holder: Option<String>) {
        if self.waiting_shown {
            return;
        }
        self.waiting_shown = true;
        match self.output {
            Output::Json => self.json(&Step::Waiting { projection: self.name.clone(), holder }),
            Output::Human => {
                let by = holder.map_or_else(String::new, |h| format!(" (held by {h})"));
                let text = format!("waiting for the lease of {}{by}", self.name);
                // A hidden bar (stderr not a terminal) prints nothing of its own.
                if self.bar.is_hidden() { eprintln!("{text}") } else { self.bar.println(text) }
            }
        }
    }

    /// A batch done: the building generation at `checkpoint`, `done` of about `total` events.
    pub(crate) fn batch(&mut self, checkpoint: Option<Position>, head: Option<Position>, done: u64, total: u64) {
        self.done = done;
        match self.output {
            Output::Json => self.json(&Step::Building { projection: self.name.clone(), checkpoint, head, done, total }),
            Output::Human => {
                self.bar.set_length(total.max(done));
                self.bar.set_position(done);
            }
        }
    }

    /// Live at `position`: the last line.
    pub(crate) fn live(mut self, position: Option<Position>) -> Result<()> {
        let seconds = self.started.elapsed().as_secs_f64();
        self.bar.finish_and_clear();
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        match self.output {
            Output::Json => {
                render::json_line(&Step::Live { projection: self.name.clone(), position, done: self.done, seconds })
            }
            Output::Human => render::line(&format!(
                "{}: rebuilt and live at {} ({} events in {})",
                self.name,
                render::or_dash(position),
                self.done,
                render::duration(self.started.elapsed())
            )),
        }
    }

    /// Stopped by a failure: the bar goes.
    pub(crate) fn abandon(self) {
        self.bar.abandon();
    }
}
