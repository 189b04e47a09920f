//! Logging: under systemd (`JOURNAL_STREAM` names our stderr) structured events go to
//! journald, each tracing field a journal field in upper case (`SERVICE`,
//! `CONTAINER`, `DIGEST`...), so `journalctl -u dispenser SERVICE=api`
//! filters; elsewhere human-readable lines on stderr. The level comes from
//! `--log-level`, else `RUST_LOG`, else the command's default.
//!
//! A bare level (`debug`, `trace`) applies to Dispenser's own targets only:
//! the libraries below it (bollard, hyper, rustls, actix...) stay at `info`
//! at most unless the filter names them, because their debug lines carry
//! whole container configs (every env value, secrets included). See
//! [`scope_filter`].

use std::io::IsTerminal;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Set by systemd when stderr is connected to the journal.
const JOURNAL_STREAM: &str = "JOURNAL_STREAM";
/// The targets (crate names) of Dispenser's own events.
const OWN_TARGETS: [&str; 2] = ["dispenser", "dispenser_actors"];
/// The most a bare level enables for every other target.
const LIBRARY_CEILING: LevelFilter = LevelFilter::INFO;

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

/// Rewrites a `RUST_LOG`-style filter so that its bare levels apply to
/// Dispenser's own targets, and every other target gets the same level
/// capped at [`LIBRARY_CEILING`]: `debug` becomes
/// `info,dispenser=debug,dispenser_actors=debug`. A directive that names a
/// target (`bollard=debug`) is kept as written: naming a library is the only
/// way to see its debug lines. A directive with a span and no target
/// (`[deploy]=trace`) is scoped to Dispenser's targets too.
pub fn scope_filter(spec: &str) -> String {
    let mut scoped = Vec::new();
    for directive in spec.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        if let Ok(level) = directive.parse::<LevelFilter>() {
            if level > LIBRARY_CEILING {
                scoped.push(LIBRARY_CEILING.to_string().to_lowercase());
            } else {
                scoped.push(directive.to_string());
            }
            scoped.extend(
                OWN_TARGETS
                    .iter()
                    .map(|target| format!("{target}={directive}")),
            );
        } else if directive.starts_with('[') {
            scoped.extend(
                OWN_TARGETS
                    .iter()
                    .map(|target| format!("{target}{directive}")),
            );
        } else {
            scoped.push(directive.to_string());
        }
    }
    scoped.join(",")
}

/// Installs the process's subscriber.
pub fn init(level: Option<&str>, default_level: &str) {
    let default_filter = || EnvFilter::new(scope_filter(default_level));
    let filter = match level {
        Some(level) => EnvFilter::try_new(scope_filter(level)).unwrap_or_else(|err| {
            eprintln!("warning: invalid --log-level `{level}` ({err}); using {default_level}");
            default_filter()
        }),
        None => match std::env::var(EnvFilter::DEFAULT_ENV) {
            Ok(spec) if !spec.trim().is_empty() => {
                EnvFilter::try_new(scope_filter(&spec)).unwrap_or_else(|_| default_filter())
            }
            _ => default_filter(),
        },
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
        .with_writer(|| AboveTheBars)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// stderr, written with any progress bars out of the way (one formatted
/// event is one write).
struct AboveTheBars;

impl std::io::Write for AboveTheBars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::admin::progress::suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_level_above_info_is_for_dispensers_own_targets() {
        assert_eq!(
            scope_filter("debug"),
            "info,dispenser=debug,dispenser_actors=debug"
        );
        assert_eq!(
            scope_filter("TRACE"),
            "info,dispenser=TRACE,dispenser_actors=TRACE"
        );
    }

    #[test]
    fn a_bare_level_at_or_below_info_applies_to_everything() {
        assert_eq!(
            scope_filter("info"),
            "info,dispenser=info,dispenser_actors=info"
        );
        assert_eq!(
            scope_filter("warn"),
            "warn,dispenser=warn,dispenser_actors=warn"
        );
        assert_eq!(
            scope_filter("off"),
            "off,dispenser=off,dispenser_actors=off"
        );
    }

    #[test]
    fn a_named_target_is_kept_as_written() {
        assert_eq!(
            scope_filter("debug, bollard=debug,hyper"),
            "info,dispenser=debug,dispenser_actors=debug,bollard=debug,hyper"
        );
        assert_eq!(
            scope_filter("info,dispenser_actors=debug"),
            "info,dispenser=info,dispenser_actors=info,dispenser_actors=debug"
        );
    }

    #[test]
    fn a_span_directive_without_a_target_is_scoped_to_dispenser() {
        assert_eq!(
            scope_filter("[deploy]=trace"),
            "dispenser[deploy]=trace,dispenser_actors[deploy]=trace"
        );
    }

    /// The rewritten filter really enables what it says: debug for
    /// Dispenser's targets, info at most for a library's, unless named.
    #[test]
    fn the_scoped_filter_keeps_library_debug_lines_out() {
        use tracing::Level;

        fn under(spec: &str, probe: impl Fn() -> bool) -> bool {
            let filter = EnvFilter::try_new(scope_filter(spec)).unwrap();
            let subscriber = tracing_subscriber::registry().with(filter);
            tracing::subscriber::with_default(subscriber, probe)
        }
        let own_debug = || tracing::enabled!(target: "dispenser_actors::engine", Level::DEBUG);
        let own_trace = || tracing::enabled!(target: "dispenser::daemon", Level::TRACE);
        let bollard_debug = || tracing::enabled!(target: "bollard::docker", Level::DEBUG);
        let bollard_info = || tracing::enabled!(target: "bollard::docker", Level::INFO);

        assert!(under("debug", own_debug));
        assert!(!under("debug", bollard_debug));
        assert!(under("debug", bollard_info));
        assert!(under("trace", own_trace));
        assert!(!under("trace", bollard_debug));
        assert!(under("debug,bollard=debug", bollard_debug));
        assert!(!under("warn", bollard_info));
    }
}
