//! The tables of service.toml that shape the container besides `[service]`,
//! one function each: `[[port]]`, `[[volume]]`, `[env]`, `[[network]]`,
//! `[[extra_host]]` and `[healthcheck]`. Pure: whether a folder stands
//! beside a named volume comes from [`FileFacts`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use dispenser_actors::plan::{
    ExtraHost, Healthcheck, Mount, MountSource, Network, PortBinding, Sensitive,
};

use super::field::duration;
use crate::config::check::FileCheck;
use crate::config::file::{ExtraHostEntry, HealthcheckTable, NetworkRef, PortEntry, VolumeEntry};
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
