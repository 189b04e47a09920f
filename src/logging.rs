//! Logging: under systemd (`JOURNAL_STREAM` names our stderr) structured events go to
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

/// True when stderr is the journal stream systemd gave us: `JOURNAL_STREAM`
/// (`DEVICE:INODE`) matches stderr. A child whose stderr was redirected (a
/// test, a pipe) inherits the variable but not the stream, and keeps text.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(value) = std::env::var_os(JOURNAL_STREAM) else {
        return false;
    };
    let Some((device, inode)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(meta) => device.parse() == Ok(meta.dev()) && inode.parse() == Ok(meta.ino()),
        Err(_) => false,
    }
}

/// Installs the process's subscriber.
pub fn init(level: Option<&str>, default_level: &str) {
    let filter = match level {
        Some(level) => EnvFilter::try_new(level).unwrap_or_else(|err| {
            eprintln!("warning: invalid --log-level `{level}` ({err}); using {default_level}");
            EnvFilter::new(default_level)
        }),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
    };
    if stderr_is_journal() {
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
