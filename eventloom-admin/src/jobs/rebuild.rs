//! `rebuild` and `reset`: a progress bar (or JSON lines) while a projection is rebuilt behind its
//! live views, from the building generation's checkpoint against the head of the log; and the
//! word that a command waits for a lease, which `retry` and `skip` say too.

use std::time::{Duration, Instant};

use eventloom_core::Position;
use eventloom_core::app::LeaseWait;
use eventloom_core::store::LeaseInfo;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::Result;
use crate::cli::Output;
use crate::render;

/// One step of a rebuild, as `--json` prints it (one line each).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub(crate) enum Step {
    /// Waiting for the projection's lease (a partitioned one's: a partition's), held by another
    /// process.
    Waiting { projection: String, lease: String, holder: Option<String> },
    /// A batch folded into the building generation (a partitioned projection's: every
    /// partition's).
    Building { projection: String, checkpoint: Option<Position>, head: Option<Position>, done: u64, total: u64 },
    /// A partitioned projection's partitions switched to their rebuilt generations at once.
    Switched { projection: String, partitions: u32, checkpoint: Option<Position> },
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
        Progress { name: name.to_owned(), output, bar, started: Instant::now(), done: 0, failed: None }
    }

    fn json(&mut self, step: &Step) {
        if self.failed.is_none() {
            if let Err(error) = render::json_line(step) {
                self.failed = Some(error);
            }
        }
    }

    /// Waiting for the lease `lease` (the projection's, or a partition's), held by `holder`: a
    /// line on stderr, and a step on stdout with `--json`.
    pub(crate) fn waiting(&mut self, lease: &str, holder: Option<&LeaseInfo>) {
        let text = waiting_text(lease, holder);
        // A hidden bar (stderr not a terminal, or `--json`) prints nothing of its own.
        if self.bar.is_hidden() {
            eprintln!("{text}")
        } else {
            self.bar.println(text)
        }
        if self.output == Output::Json {
            let step =
                Step::Waiting { projection: self.name.clone(), lease: lease.to_owned(), holder: holder.map(held_by) };
            self.json(&step);
        }
    }

    /// A partitioned projection's partitions switched at `checkpoint`: queries read the rebuilt
    /// views; the old ones go after the grace.
    pub(crate) fn switched(&mut self, partitions: u32, checkpoint: Option<Position>) {
        match self.output {
            Output::Json => self.json(&Step::Switched { projection: self.name.clone(), partitions, checkpoint }),
            Output::Human => {
                let text = format!(
                    "{}: {partitions} partitions switched at {}: queries read the rebuilt views; the old ones go in a few seconds",
                    self.name,
                    render::or_dash(checkpoint)
                );
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

/// Who holds a lease, for people: `projector on box-2, pid 41, token 7`.
pub(crate) fn held_by(lease: &LeaseInfo) -> String {
    match &lease.holder {
        Some(holder) => format!("{holder}, token {}", lease.token),
        None => format!("token {}", lease.token),
    }
}

/// `waiting for the lease of tasks~1of3 (held by projector on box-2, pid 41, token 7)`.
fn waiting_text(lease: &str, holder: Option<&LeaseInfo>) -> String {
    match holder {
        Some(info) if info.held => format!("waiting for the lease of {lease} (held by {})", held_by(info)),
        Some(info) => format!("waiting for the lease of {lease} (last held by {})", held_by(info)),
        None => format!("waiting for the lease of {lease}"),
    }
}

/// Says, for `retry` and `skip` of projection `projection`, that they wait for a lease and who
/// holds it: a line on stderr, and with `--json` a step on stdout (one line, as `rebuild`'s).
pub(crate) struct Waits {
    projection: String,
    output: Output,
    /// A failure to write stdout, reported at the end.
    failed: Option<crate::Error>,
}

impl Waits {
    pub(crate) fn new(projection: &str, output: Output) -> Self {
        Waits { projection: projection.to_owned(), output, failed: None }
    }

    /// One wait, as the operation tells it.
    pub(crate) fn tell(&mut self, wait: &LeaseWait) {
        eprintln!("{}", waiting_text(&wait.lease, wait.holder.as_ref()));
        if self.output == Output::Json && self.failed.is_none() {
            let step = Step::Waiting {
                projection: self.projection.clone(),
                lease: wait.lease.clone(),
                holder: wait.holder.as_ref().map(held_by),
            };
            if let Err(error) = render::json_line(&step) {
                self.failed = Some(error);
            }
        }
    }

    /// Whether stdout took every step.
    pub(crate) fn finish(self) -> Result<()> {
        self.failed.map_or(Ok(()), Err)
    }
}
