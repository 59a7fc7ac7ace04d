//! `follow`: the log, live, until Ctrl-C or SIGTERM.

use eventloom_core::Position;
use eventloom_core::read::Subscription;
use eventloom_core::store::EventStore as _;

use crate::cli::Output;
use crate::connect::Target;
use crate::jobs::log::EventRow;
use crate::render;
use crate::{Error, Result};

/// Where `--from` says to start: after the last event readable now (`head`), from the first
/// (`start`), or after a position.
pub(crate) async fn start(target: &Target, from: &str) -> Result<Position> {
    match from {
        "head" => Ok(target.stores.events().head().await?.unwrap_or(Position::ZERO)),
        "start" | "0" => Ok(Position::ZERO),
        text => text
            .parse()
            .map_err(|_| Error::Usage(format!("--from takes head, start or a position like 7.42, not {text:?}"))),
    }
}

/// Prints every event after `after` as it is appended, one line each, until a stop signal.
pub(crate) async fn follow(target: &Target, from: &str, output: Output) -> Result<()> {
    let after = start(target, from).await?;
    if output == Output::Human {
        // On stderr: stdout stays the events alone.
        eprintln!("following {} after {after} (Ctrl-C to stop)", target.stores.description());
    }
    let mut subscription = Subscription::new(target.pg.clone(), after);
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let batch = tokio::select! {
            biased;
            () = &mut stop => return Ok(()),
            batch = subscription.next_batch() => batch?,
        };
        for event in &batch {
            let row = EventRow::stored(event);
            match output {
                Output::Json => render::json_line(&row)?,
                Output::Human => render::line(&row.line())?,
            }
        }
    }
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
pub(crate) async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
