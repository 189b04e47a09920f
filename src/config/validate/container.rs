//! The tables of service.toml that shape the container besides `[service]`,
//! one function each: `[[port]]`, `[[volume]]`, `[env]`, `[[network]]`,
//! `[[extra_host]]`, `[healthcheck]` and `[logging]`. Pure: whether a folder stands
//! beside a named volume comes from [`FileFacts`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use dispenser_actors::plan::{
    ExtraHost, Healthcheck, LogConfig, Mount, MountSource, Network, PortBinding, Sensitive,
    DEFAULT_LOG_DRIVER,
};

use super::field::duration;
use crate::config::check::FileCheck;
use crate::config::file::{
    ExtraHostEntry, HealthcheckTable, LoggingTable, NetworkRef, PortEntry, VolumeEntry,
};
use crate::config::files::{FileFacts, FileKind};
use crate::config::paths::normalize;
use crate::config::values::did_you_mean;

/// The only value of `ipv4` in `[[extra_host]]` that is not an address.
pub const HOST_GATEWAY: &str = "host-gateway";

/// How a volume `source` is read, from its text alone: `./x`, `../x`
/// relative to the service folder; `/x` absolute; a bare name is a named
/// volume; other paths with a slash are relative too, with a warning.
pub(super) enum SourceRule {
    Empty,
    /// A bind mount of this path: `/x`, or `./x`, `../x` in the service folder.
    Bind(PathBuf),
    /// A bind mount of a path with a slash that does not start with `./`.
    Ambiguous(PathBuf),
    /// A named volume; the path is where a folder of that name would stand
    /// in the service folder.
    Named(PathBuf),
}

/// `[[port]]`: host and container ports, neither 0.
pub(super) fn ports(check: &mut FileCheck<'_>, entries: &[PortEntry]) -> Vec<PortBinding> {
    let mut ports = Vec::new();
    for (index, port) in entries.iter().enumerate() {
        for (side, number) in [("host", port.host), ("container", port.container)] {
            if number == 0 {
                check.error(
                    &format!("port[{index}].{side}"),
                    format!("`{side}` port must not be 0"),
                    "zero port",
                );
            }
        }
        ports.push(PortBinding {
            host: port.host,
            container: port.container,
        });
    }
    ports
}

/// `[[volume]]`: an absolute target and a source by [`SourceRule`].
pub(super) fn volumes(
    check: &mut FileCheck<'_>,
    entries: &[VolumeEntry],
    folder: &Path,
    facts: &FileFacts,
) -> Vec<Mount> {
    let mut volumes = Vec::new();
    for (index, volume) in entries.iter().enumerate() {
        let path = format!("volume[{index}]");
        if !volume.target.starts_with('/') {
            check
                .error(
                    &format!("{path}.target"),
                    "a volume `target` must be an absolute path",
                    "not absolute",
                )
                .help = Some("write the path inside the container, e.g. `/data`".into());
        }
        let source = volume_source(
            check,
            &format!("{path}.source"),
            &volume.source,
            folder,
            facts,
        );
        volumes.push(Mount {
            source,
            target: volume.target.clone(),
            readonly: volume.readonly.unwrap_or(false),
        });
    }
    volumes
}

/// A volume `source`, with a warning when it is ambiguous or a named volume
/// shares its name with a folder beside service.toml.
fn volume_source(
    check: &mut FileCheck<'_>,
    path: &str,
    source: &str,
    folder: &Path,
    facts: &FileFacts,
) -> MountSource {
    match source_rule(source, folder) {
        SourceRule::Empty => {
            check.error(path, "a volume `source` cannot be empty", "empty");
            MountSource::Volume(String::new())
        }
        SourceRule::Bind(full) => MountSource::Bind(full),
        SourceRule::Ambiguous(full) => {
            let shown = check.masked(path, source);
            check
                .warning(
                    path,
                    format!("`{shown}` is read as a path relative to the service folder"),
                    "ambiguous source",
                )
                .help = Some(format!("write `./{shown}` to say so"));
            MountSource::Bind(full)
        }
        SourceRule::Named(beside) => {
            if facts.get(&beside).kind == FileKind::Folder {
                let shown = check.masked(path, source);
                check.warning(path, format!("`{shown}` is a named volume, but the service folder has a folder with that name"), "named volume")
                    .help = Some(format!("did you mean `./{shown}`?"));
            }
            MountSource::Volume(source.to_string())
        }
    }
}

/// The [`SourceRule`] of a volume `source` in the service folder `folder`.
pub(super) fn source_rule(source: &str, folder: &Path) -> SourceRule {
    if source.is_empty() {
        SourceRule::Empty
    } else if source.starts_with('/') {
        SourceRule::Bind(normalize(Path::new(source)))
    } else if source.starts_with("./")
        || source.starts_with("../")
        || source == "."
        || source == ".."
    {
        SourceRule::Bind(normalize(&folder.join(source)))
    } else if source.contains('/') {
        SourceRule::Ambiguous(normalize(&folder.join(source)))
    } else {
        SourceRule::Named(folder.join(source))
    }
}

/// `[env]`: each value a string (numbers and booleans are written out).
pub(super) fn env(
    check: &mut FileCheck<'_>,
    table: &BTreeMap<String, toml::Value>,
) -> BTreeMap<String, Sensitive> {
    let mut env = BTreeMap::new();
    for (key, value) in table {
        let path = format!("env.{key}");
        let text = match value {
            toml::Value::String(text) => Some(text.clone()),
            toml::Value::Integer(number) => Some(number.to_string()),
            toml::Value::Float(number) => Some(number.to_string()),
            toml::Value::Boolean(flag) => Some(flag.to_string()),
            _ => None,
        };
        match text {
            Some(text) => {
                env.insert(key.clone(), Sensitive::new(text));
            }
            None => {
                let shown = check.masked_key(&path, key);
                check
                    .error(
                        &path,
                        format!("env `{shown}` must be a string"),
                        "not a string",
                    )
                    .help = Some("quote the value: `KEY = \"value\"`".into());
            }
        }
    }
    env
}

/// `[[network]]`: each a network dispenser.toml declares.
pub(super) fn networks(
    check: &mut FileCheck<'_>,
    refs: &[NetworkRef],
    declared: &BTreeMap<String, Network>,
) -> Vec<String> {
    let mut networks = Vec::new();
    for (index, network) in refs.iter().enumerate() {
        if !declared.contains_key(&network.name) {
            let path = format!("network[{index}].name");
            let shown = check.masked(&path, &network.name);
            // A suggestion close to a secret would hint at its value.
            let close = match shown.masked {
                true => None,
                false => did_you_mean(&network.name, declared.keys().map(String::as_str)),
            };
            let help = match close {
                Some(close) => format!("did you mean `{close}`?"),
                None if shown.masked => {
                    "declare it in dispenser.toml with a [[network]] table".to_string()
                }
                None => format!(
                    "declare it in dispenser.toml: [[network]] name = \"{}\"",
                    network.name
                ),
            };
            check
                .error(
                    &path,
                    format!("network `{shown}` is not declared in dispenser.toml"),
                    "undeclared network",
                )
                .help = Some(help);
        }
        networks.push(network.name.clone());
    }
    networks
}

/// `[[extra_host]]`: a host name and an IPv4 address or [`HOST_GATEWAY`].
pub(super) fn extra_hosts(check: &mut FileCheck<'_>, entries: &[ExtraHostEntry]) -> Vec<ExtraHost> {
    let mut extra_hosts = Vec::new();
    for (index, host) in entries.iter().enumerate() {
        if host.ipv4 != HOST_GATEWAY && host.ipv4.parse::<Ipv4Addr>().is_err() {
            check
                .error(
                    &format!("extra_host[{index}].ipv4"),
                    format!(
                        "invalid address{}",
                        check.shown(&format!("extra_host[{index}].ipv4"), &host.ipv4)
                    ),
                    "not an IPv4 address",
                )
                .help = Some("write an IPv4 address or \"host-gateway\"".into());
        }
        extra_hosts.push(ExtraHost {
            hostname: host.hostname.clone(),
            address: host.ipv4.clone(),
        });
    }
    extra_hosts
}

/// `[healthcheck]`: Docker's health check; none when `test` is invalid.
pub(super) fn healthcheck(
    check: &mut FileCheck<'_>,
    table: &HealthcheckTable,
) -> Option<Healthcheck> {
    let test = healthcheck_test(&table.test);
    if test.is_none() {
        check.error(
            "healthcheck.test",
            "`test` must be a command string or a non-empty array of strings",
            "invalid test",
        );
    }
    let interval = duration(check, "healthcheck.interval", table.interval.as_ref());
    let timeout = duration(check, "healthcheck.timeout", table.timeout.as_ref());
    let start_period = duration(
        check,
        "healthcheck.start_period",
        table.start_period.as_ref(),
    );
    Some(Healthcheck {
        test: test?,
        interval,
        timeout,
        retries: table.retries,
        start_period,
    })
}

/// `[logging]`: Compose's `driver` and `options`. The driver defaults to
/// Docker's `json-file`; `json-file` and `local` get their `max-size` and
/// `max-file` checked here, since Docker's refusal would come only at the
/// deploy. Other drivers' options are Docker's to check.
pub(super) fn logging(check: &mut FileCheck<'_>, table: &LoggingTable) -> Option<LogConfig> {
    let driver = table
        .driver
        .clone()
        .unwrap_or_else(|| DEFAULT_LOG_DRIVER.to_string());
    let mut valid = true;
    if !is_driver_name(&driver) {
        valid = false;
        let shown = check.shown("logging.driver", &driver);
        check
            .error(
                "logging.driver",
                format!("log driver{shown} is not a driver name"),
                "invalid driver",
            )
            .help = Some(
            "name a Docker log driver, such as `json-file`, `local`, `journald`, `syslog` or `none`"
                .into(),
        );
    }
    let mut options = BTreeMap::new();
    for (key, value) in &table.options {
        let path = format!("logging.options.{key}");
        let text = match value {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            _ => {
                valid = false;
                check.error(
                    &path,
                    format!("log option `{key}` must be a string"),
                    "not a string",
                );
                continue;
            }
        };
        options.insert(key.clone(), text);
    }
    if driver == "none" && !options.is_empty() {
        valid = false;
        check.error(
            "logging.options",
            "the `none` log driver keeps no logs and takes no options",
            "options for `none`",
        );
    }
    if matches!(driver.as_str(), "json-file" | "local") {
        valid &= rotation_options(check, &options);
    }
    valid.then_some(LogConfig { driver, options })
}

/// A Docker log driver's name (plugins included, as `vendor/name:tag`).
fn is_driver_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'))
}

/// `max-size` (a number with `k`, `m` or `g`) and `max-file` (at least 1)
/// of the `json-file` and `local` drivers; a warning when `json-file` logs
/// would grow without bound.
fn rotation_options(check: &mut FileCheck<'_>, options: &BTreeMap<String, String>) -> bool {
    let mut valid = true;
    if let Some(size) = options.get("max-size") {
        let digits = size.trim_end_matches(['k', 'm', 'g']);
        let ok = !digits.is_empty()
            && digits.len() + 1 >= size.len()
            && digits.parse::<u64>().is_ok_and(|n| n > 0);
        if !ok {
            valid = false;
            let shown = check.shown("logging.options.max-size", size);
            check
                .error(
                    "logging.options.max-size",
                    format!("log option `max-size` is not a size:{shown}"),
                    "invalid size",
                )
                .help = Some("a whole number with `k`, `m` or `g`, such as `\"10m\"`".into());
        }
    }
    if let Some(files) = options.get("max-file") {
        if !files.parse::<u32>().is_ok_and(|n| n >= 1) {
            valid = false;
            let shown = check.shown("logging.options.max-file", files);
            check.error(
                "logging.options.max-file",
                format!("log option `max-file` must be a whole number of at least 1:{shown}"),
                "invalid count",
            );
        }
    }
    if valid && !options.contains_key("max-size") && !options.is_empty() {
        check
            .warning(
                "logging.options",
                "these options set no `max-size`: the container's log file grows without bound",
                "no max-size",
            )
            .help = Some(
            "add `max-size = \"10m\"` (Dispenser's default when `[logging]` is absent)".into(),
        );
    }
    valid
}

/// `[healthcheck] test` as Docker takes it: a string runs in a shell
/// (`CMD-SHELL`); an array is a command (`CMD` added unless it starts with
/// `CMD`, `CMD-SHELL` or `NONE`).
fn healthcheck_test(test: &toml::Value) -> Option<Vec<String>> {
    match test {
        toml::Value::String(text) => Some(vec!["CMD-SHELL".to_string(), text.clone()]),
        toml::Value::Array(items) => {
            let words: Option<Vec<String>> = items
                .iter()
                .map(|item| item.as_str().map(str::to_string))
                .collect();
            match words {
                Some(words) if words.is_empty() => None,
                Some(words) if matches!(words[0].as_str(), "CMD" | "CMD-SHELL" | "NONE") => {
                    Some(words)
                }
                Some(words) => Some(std::iter::once("CMD".to_string()).chain(words).collect()),
                None => None,
            }
        }
        _ => None,
    }
}
