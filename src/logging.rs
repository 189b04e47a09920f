//! Logging: under systemd (`JOURNAL_STREAM` set) structured events go to
//! journald, each tracing field a journal field in upper case (`SERVICE`,
//! `CONTAINER`, `DIGEST`...), so `journalctl -u dispenser SERVICE=api`
//! filters; elsewhere human-readable lines on stderr. The level comes from
//! `--log-level`, else `RUST_LOG`, else the command's default.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Set by systemd when stderr is connected to the journal.
const JOURNAL_STREAM: &str = "JOURNAL_STREAM";

/// Installs the process's subscriber.
pub fn init(level: Option<&str>, default_level: &str) {
    let filter = match level {
        Some(level) => EnvFilter::try_new(level).unwrap_or_else(|err| {
            eprintln!("warning: invalid --log-level `{level}` ({err}); using {default_level}");
            EnvFilter::new(default_level)
        }),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
    };
    if std::env::var_os(JOURNAL_STREAM).is_some() {
        match tracing_journald::layer() {
            Ok(journald) => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(journald.with_field_prefix(None))
                    .init();
                return;
            }
            Err(err) => eprintln!("warning: cannot reach journald ({err}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
