//! `dispenser status --watch`: the status again every interval until
//! SIGINT or SIGTERM. On a terminal the table is redrawn in place (cursor
//! home, screen cleared) under a line with the time; elsewhere each
//! refresh is printed after a blank line, or, with `--json`, as one JSON
//! document per line. A daemon that stops answering after the first
//! refresh is said so in place of the table, and asked again.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use super::client::{self, Client, ClientError};

/// Cursor home and clear the screen.
const REDRAW: &str = "\x1b[H\x1b[2J";

/// Refreshes the status every `interval` until interrupted. The first
/// refresh's error ends it (a wrong socket fails at once).
pub async fn status(client: Client, json: bool, interval: Duration) -> Result<(), ClientError> {
    let terminal = std::io::stdout().is_terminal();
    let listen = |kind| {
        signal(kind).map_err(|err| ClientError::Local(format!("cannot watch for signals: {err}")))
    };
    let (mut interrupt, mut terminate) = (
        listen(SignalKind::interrupt())?,
        listen(SignalKind::terminate())?,
    );
    let mut first = true;
    loop {
        let frame = match client.status().await {
            Ok(report) if json => serde_json::to_string(&report)
                .map(|line| format!("{line}\n"))
                .map_err(|err| ClientError::Decode(err.to_string()))?,
            Ok(report) => client::table(&report),
            Err(err) if first => return Err(err),
            Err(err) => format!("the daemon does not answer: {err}\n"),
        };
        let mut out = std::io::stdout().lock();
        let shown = if terminal && !json {
            let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
            write!(
                out,
                "{REDRAW}dispenser status, every {}s (Ctrl-C stops)    {now}\n\n{frame}",
                interval.as_secs()
            )
        } else if json || first {
            write!(out, "{frame}")
        } else {
            write!(out, "\n{frame}")
        };
        // A closed pipe (`| head`) ends the watch.
        if shown.and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
        drop(out);
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
        }
    }
}
