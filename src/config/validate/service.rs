//! The `[service]` table of service.toml: the container's name, image,
//! command, resources, restart policy and how it is stopped.

use dispenser_actors::plan::{ContainerSpec, ImageRef, RestartPolicy};

use super::field::{duration, is_container_name, pick};
use crate::config::check::FileCheck;
use crate::config::file::ServiceTable;
use crate::config::values::{
    did_you_mean, parse_cpus, parse_memory, split_command, RESTART_POLICIES,
};

/// Signals a container may be asked to stop with, without `SIG` (Linux).
const SIGNALS: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];
/// The highest signal number Linux has (`SIGRTMAX`).
const MAX_SIGNAL: u32 = 64;

/// `[service]`: the service's name, and the container spec with what this
/// table sets (the other tables' fields empty); no spec when the image is
/// invalid.
pub(super) fn service_table(
    check: &mut FileCheck<'_>,
    table: &ServiceTable,
) -> (String, Option<ContainerSpec>) {
    let name = table.name.clone();
    if !is_container_name(&name) {
        check
            .error(
                "service.name",
                format!("invalid service name{}", check.shown("service.name", &name)),
                "invalid name",
            )
            .help = Some(
            "a name starts with a letter or digit, then letters, digits, `_`, `.` or `-`".into(),
        );
    }
    let image = image(check, &table.image);
    let command = table
        .command
        .as_ref()
        .and_then(|v| command_line(check, "service.command", v));
    let entrypoint = table
        .entrypoint
        .as_ref()
        .and_then(|v| command_line(check, "service.entrypoint", v));
    let memory_bytes = table.memory.as_ref().and_then(|value| memory(check, value));
    let nano_cpus = table.cpus.as_ref().and_then(|value| cpus(check, value));
    let restart = match &table.restart {
        Some(word) => pick(
            check,
            "service.restart",
            RESTART_POLICIES,
            word,
            "restart policy",
        )
        .unwrap_or(RestartPolicy::No),
        None => RestartPolicy::No,
    };
    let stop_signal = table
        .stop_signal
        .as_deref()
        .and_then(|word| stop_signal(check, word));
    let stop_grace_period = duration(
        check,
        "service.stop_grace_period",
        table.stop_grace_period.as_ref(),
    );
    let container = image.map(|image| ContainerSpec {
        image,
        command,
        entrypoint,
        working_dir: table.working_dir.clone(),
        user: table.user.clone(),
        hostname: table.hostname.clone(),
        memory_bytes,
        nano_cpus,
        restart,
        ports: Vec::new(),
        volumes: Vec::new(),
        env: Default::default(),
        networks: Vec::new(),
        extra_hosts: Vec::new(),
        healthcheck: None,
        stop_signal,
        stop_grace_period,
        logging: None,
    });
    (name, container)
}

/// `image`: a reference as Docker reads it.
fn image(check: &mut FileCheck<'_>, text: &str) -> Option<ImageRef> {
    match ImageRef::parse(text) {
        Ok(image) => Some(image),
        Err(error) => {
            // The reason may quote the value: not when it is a secret.
            let reason = if check.masked("service.image", text).masked {
                "the value does not parse".to_string()
            } else {
                error.reason
            };
            check
                .error(
                    "service.image",
                    format!("invalid image reference: {reason}"),
                    "invalid image",
                )
                .help = Some("write an image such as `nginx:1.27` or `ghcr.io/org/app:tag`".into());
            None
        }
    }
}

/// `command` or `entrypoint`: a command line split as a shell would, or an
/// array of words.
fn command_line(check: &mut FileCheck<'_>, path: &str, value: &toml::Value) -> Option<Vec<String>> {
    match value {
        toml::Value::String(text) => split_command(text)
            .map_err(|why| {
                check.error(
                    path,
                    format!("invalid command line: {why}"),
                    "unbalanced quotes",
                );
            })
            .ok(),
        toml::Value::Array(items) => {
            let words: Option<Vec<String>> = items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect();
            if words.is_none() {
                check.error(
                    path,
                    "every item of the array must be a string",
                    "not strings",
                );
            }
            words
        }
        _ => {
            check.error(
                path,
                "expected a string or an array of strings",
                "wrong type",
            );
            None
        }
    }
}

/// `memory`: a size with a unit, or a number of bytes above zero.
fn memory(check: &mut FileCheck<'_>, value: &toml::Value) -> Option<u64> {
    let result = match value {
        toml::Value::String(text) => parse_memory(text).map_err(|why| (Some(text.clone()), why)),
        toml::Value::Integer(bytes) if *bytes > 0 => Ok(*bytes as u64),
        _ => Err((
            None,
            "expected a size such as `512m`, `2g` or a number of bytes".into(),
        )),
    };
    result
        .map_err(|(text, why)| {
            let shown = text
                .map(|t| check.shown("service.memory", &t))
                .unwrap_or_default();
            check
                .error(
                    "service.memory",
                    format!("invalid memory value{shown}: {why}"),
                    "invalid memory",
                )
                .help =
                Some("units are b, k, m, g, t (binary, case-insensitive), e.g. `512m`".into());
        })
        .ok()
}

/// `cpus`: a number of CPUs above zero, as nano CPUs.
fn cpus(check: &mut FileCheck<'_>, value: &toml::Value) -> Option<u64> {
    let cpus = match value {
        toml::Value::String(text) => text
            .trim()
            .parse::<f64>()
            .map_err(|_| "expected a number such as \"0.5\" or 2".to_string()),
        toml::Value::Integer(number) => Ok(*number as f64),
        toml::Value::Float(number) => Ok(*number),
        _ => Err("expected a number such as \"0.5\" or 2".to_string()),
    };
    cpus.and_then(parse_cpus)
        .map_err(|why| {
            check.error(
                "service.cpus",
                format!("invalid cpus value: {why}"),
                "invalid cpus",
            );
        })
        .ok()
}

/// `stop_signal`, as Compose and Docker take it: a name with or without
/// `SIG` in any case (`SIGQUIT`, `quit`), `SIGRTMIN+n`/`SIGRTMAX-n`, or a
/// number. Returned as Docker spells it: `SIGQUIT`, or the number.
fn stop_signal(check: &mut FileCheck<'_>, word: &str) -> Option<String> {
    const PATH: &str = "service.stop_signal";
    let upper = word.trim().to_ascii_uppercase();
    if let Ok(number) = upper.parse::<u32>() {
        if (1..=MAX_SIGNAL).contains(&number) {
            return Some(number.to_string());
        }
    }
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = ["RTMIN+", "RTMAX-"].iter().any(|base| {
        name.strip_prefix(base)
            .and_then(|offset| offset.parse::<u32>().ok())
            .is_some_and(|offset| offset <= 30)
    });
    if SIGNALS.contains(&name) || realtime || name == "RTMIN" || name == "RTMAX" {
        return Some(format!("SIG{name}"));
    }
    let shown = check.shown(PATH, word);
    let close = match check.masked(PATH, word).masked {
        true => None,
        false => did_you_mean(name, SIGNALS.iter().copied()),
    };
    let error = check.error(PATH, format!("unknown stop signal{shown}"), "not a signal");
    error.help = Some(match close {
        Some(close) => format!("did you mean `SIG{close}`?"),
        None => "write a signal name such as `SIGTERM`, `SIGQUIT` or `SIGINT`, or a number".into(),
    });
    None
}
