//! Validation: file structs to plan types. Every problem is reported at its
//! span; a file with errors yields no plan part but its siblings are still checked.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dispenser_actors::plan::{
    AcmeSettings, ContainerSpec, DefaultNetwork, DeploySettings, ExtraHost, Healthcheck, ImageRef,
    Initialize, Lifecycle, Mount, MountSource, Network, NetworkDriver, PortBinding, ProxySettings,
    ProxyStrategy, PullPolicy, RestartPolicy, Route, Schedule, Sensitive, Service, Settings,
    TlsSource, Zone, DEFAULT_ACME_DIRECTORY, DEFAULT_ACME_RETRY, DEFAULT_DEPENDENCY_TIMEOUT,
    DEFAULT_DOCKER_CHECK_INTERVAL, DEFAULT_INSTANCE, DEFAULT_NETWORK_NAME, DEFAULT_NETWORK_SUBNET,
    DEFAULT_OVERLAP, DEFAULT_POLL_DELAY,
};

use dispenser_actors::proxy::tls::{MAX_PEM_FILE_BYTES, MAX_PEM_FILE_SIZE_TEXT};

use super::check::FileCheck;
use super::file::{DeployTable, DispenserFile, ServiceFile};
use super::files::{FileFacts, FileKind, Want};
use super::hash::spec_hash;
use super::paths::normalize;
use super::values::{
    bounded_duration, canonical_names, choose, did_you_mean, parse_cpus, parse_duration,
    parse_memory, split_command, Choices, DEPENDS_ON, INITIALIZE, NETWORK_DRIVERS, OVERLAPS,
    PROXY_STRATEGIES, PULL_POLICIES, RESTART_POLICIES,
};

/// Folder for Dispenser's state when `[daemon] state_dir` is not set.
pub const DEFAULT_STATE_DIR: &str = ".dispenser";
/// Default HTTP listener of the proxy.
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:80";
/// Default HTTPS listener of the proxy.
pub const DEFAULT_HTTPS_LISTEN: &str = "0.0.0.0:443";
/// Smallest `[proxy] max_header_bytes` accepted (a real browser's head fits).
const MIN_PROXY_HEADER_BYTES: u64 = 8 * 1024;
/// Largest `[proxy] max_header_bytes` accepted.
const MAX_PROXY_HEADER_BYTES: u64 = 1024 * 1024;
/// Most `[proxy] workers` accepted.
const MAX_PROXY_WORKERS: u64 = 64;
/// The only value of `ipv4` in `[[extra_host]]` that is not an address.
pub const HOST_GATEWAY: &str = "host-gateway";

/// What dispenser.toml says, validated.
#[derive(Debug, Clone)]
pub struct Global {
    pub settings: Settings,
    pub networks: BTreeMap<String, Network>,
    pub proxy: Option<ProxySettings>,
    pub acme: Option<AcmeSettings>,
    pub operator: OperatorSettings,
}

/// The operator's settings: read by the binary (admin API, notifications),
/// never part of the plan the actors apply.
#[derive(Debug, Clone, Default)]
pub struct OperatorSettings {
    /// `[admin] listen`: a loopback address for the admin API.
    pub admin_listen: Option<SocketAddr>,
    /// `[notify]`.
    pub notify: Option<NotifySettings>,
}

/// Where and how events are sent.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// The webhook URL; it often holds a token, so it is never shown.
    pub webhook: Sensitive,
    /// The body template's text (handlebars), already checked to compile.
    pub template: Option<String>,
}

/// The files dispenser.toml names, and what validation needs of each: for
/// the I/O pre-pass. `config_dir` is absolute.
pub fn global_files(file: &DispenserFile, config_dir: &Path) -> Vec<(PathBuf, Want)> {
    let bundle = file.certbot.as_ref().and_then(|t| t.ca_bundle.as_ref());
    let template = file.notify.as_ref().and_then(|t| t.template.as_ref());
    let bundle = bundle.map(|bundle| (normalize(&config_dir.join(bundle)), Want::Metadata));
    let template = template.map(|template| (normalize(&config_dir.join(template)), Want::Content));
    bundle.into_iter().chain(template).collect()
}

/// The files one service.toml names, and what validation needs of each: for
/// the I/O pre-pass. `folder` is the service folder, absolute.
pub fn service_files(file: &ServiceFile, folder: &Path) -> Vec<(PathBuf, Want)> {
    let mut wanted = Vec::new();
    for volume in &file.volumes {
        match source_rule(&volume.source, folder) {
            SourceRule::Empty => {}
            SourceRule::Bind(path) | SourceRule::Ambiguous(path) => {
                wanted.push((path, Want::Digest));
            }
            SourceRule::Named(beside) => wanted.push((beside, Want::Metadata)),
        }
    }
    if let Some(route) = &file.proxy {
        for written in [&route.cert_file, &route.key_file].into_iter().flatten() {
            wanted.push((normalize(&folder.join(written)), Want::Metadata));
        }
    }
    wanted
}

/// Validates dispenser.toml. `config_dir` is absolute; `facts` holds what
/// the pre-pass found at the files it names.
pub fn global(
    check: &mut FileCheck<'_>,
    file: &DispenserFile,
    config_dir: &Path,
    facts: &FileFacts,
) -> Option<Global> {
    let errors_before = check.error_count();
    let poll_delay = match file.delay {
        Some(0) => {
            check.error("delay", "`delay` must be at least 1 second", "zero");
            DEFAULT_POLL_DELAY
        }
        Some(seconds) => Duration::from_secs(seconds),
        None => DEFAULT_POLL_DELAY,
    };
    if file.telemetry.is_some() {
        check
            .warning(
                "telemetry",
                "the [telemetry] table is ignored by this version",
                "ignored",
            )
            .help = Some("remove it to silence this warning".into());
    }
    let daemon = file.daemon.clone();
    let instance = daemon
        .as_ref()
        .and_then(|d| d.instance.clone())
        .unwrap_or_else(|| DEFAULT_INSTANCE.to_string());
    if !is_instance_name(&instance) {
        check.error(
            "daemon.instance",
            "`instance` may only hold letters, digits, `_`, `.` and `-`",
            "invalid instance",
        );
    }
    let state_dir = daemon
        .as_ref()
        .and_then(|d| d.state_dir.clone())
        .unwrap_or_else(|| DEFAULT_STATE_DIR.to_string());
    let network = daemon.as_ref().and_then(|d| d.network.clone());
    let network_name = network
        .as_ref()
        .and_then(|n| n.name.clone())
        .unwrap_or_else(|| DEFAULT_NETWORK_NAME.to_string());
    let subnet_text = network
        .as_ref()
        .and_then(|n| n.subnet.clone())
        .unwrap_or_else(|| DEFAULT_NETWORK_SUBNET.to_string());
    let subnet = parse_cidr(&subnet_text);
    if subnet.is_none() {
        check
            .error(
                "daemon.network.subnet",
                format!(
                    "invalid subnet{}",
                    check.shown("daemon.network.subnet", &subnet_text)
                ),
                "not an IPv4 CIDR",
            )
            .help = Some("write a subnet such as \"172.28.0.0/16\"".into());
    }
    let gateway = match (network.as_ref().and_then(|n| n.gateway.clone()), subnet) {
        (Some(text), subnet) => match text.parse::<Ipv4Addr>() {
            Ok(address) if subnet.is_none_or(|s| contains(s, address)) => address,
            Ok(_) => {
                check.error(
                    "daemon.network.gateway",
                    "the gateway is not inside the subnet",
                    "outside the subnet",
                );
                Ipv4Addr::UNSPECIFIED
            }
            Err(_) => {
                check.error(
                    "daemon.network.gateway",
                    "invalid gateway address",
                    "not an IPv4 address",
                );
                Ipv4Addr::UNSPECIFIED
            }
        },
        (None, Some((base, _))) => Ipv4Addr::from(u32::from(base).wrapping_add(1)),
        (None, None) => Ipv4Addr::UNSPECIFIED,
    };
    let settings = Settings {
        poll_delay,
        instance,
        default_network: DefaultNetwork {
            name: network_name,
            subnet: subnet_text,
            gateway,
        },
        stop_on_shutdown: daemon
            .as_ref()
            .and_then(|d| d.stop_on_shutdown)
            .unwrap_or(false),
        state_dir: normalize(&config_dir.join(state_dir)),
        dependency_timeout: daemon
            .as_ref()
            .and_then(|d| d.dependency_timeout)
            .map_or(DEFAULT_DEPENDENCY_TIMEOUT, Duration::from_secs),
        docker_check_interval: match daemon.as_ref().and_then(|d| d.docker_check_interval) {
            Some(0) => {
                check.error(
                    "daemon.docker_check_interval",
                    "`docker_check_interval` must be at least 1 second",
                    "zero",
                );
                DEFAULT_DOCKER_CHECK_INTERVAL
            }
            Some(seconds) => Duration::from_secs(seconds),
            None => DEFAULT_DOCKER_CHECK_INTERVAL,
        },
        timezone: daemon
            .as_ref()
            .and_then(|d| d.timezone.as_deref())
            .map_or(Zone::Local, |name| zone(check, "daemon.timezone", name)),
        deploy: deploy_settings(check, file.deploy.as_ref()),
    };

    let mut networks = BTreeMap::new();
    for (index, entry) in file.networks.iter().enumerate() {
        let path = format!("network[{index}]");
        let driver = match &entry.driver {
            Some(word) => pick(
                check,
                &format!("{path}.driver"),
                NETWORK_DRIVERS,
                word,
                "network driver",
            )
            .unwrap_or(NetworkDriver::Bridge),
            None => NetworkDriver::Bridge,
        };
        if networks.contains_key(&entry.name) {
            let shown = check.shown(&format!("{path}.name"), &entry.name);
            check.error(
                &format!("{path}.name"),
                format!("network{shown} is declared twice"),
                "duplicate network",
            );
        }
        networks.insert(
            entry.name.clone(),
            Network {
                name: entry.name.clone(),
                driver,
                external: entry.external.unwrap_or(false),
                internal: entry.internal.unwrap_or(false),
                attachable: entry.attachable.unwrap_or(true),
                labels: entry.labels.clone().unwrap_or_default(),
            },
        );
    }

    let proxy = file.proxy.as_ref().and_then(|table| {
        let strategy = match &table.strategy {
            Some(word) => pick(
                check,
                "proxy.strategy",
                PROXY_STRATEGIES,
                word,
                "proxy strategy",
            )
            .unwrap_or(ProxyStrategy::HttpsOnly),
            None => ProxyStrategy::HttpsOnly,
        };
        let http_listen = listen(
            check,
            "proxy.http_listen",
            table.http_listen.as_deref(),
            DEFAULT_HTTP_LISTEN,
        );
        let https_listen = listen(
            check,
            "proxy.https_listen",
            table.https_listen.as_deref(),
            DEFAULT_HTTPS_LISTEN,
        );
        let mut settings = ProxySettings::with_listeners(strategy, http_listen, https_listen);
        settings.trust_forwarded_headers = table.trust_forwarded_headers.unwrap_or(false);
        let timeouts = [
            (
                "proxy.connect_timeout",
                &table.connect_timeout,
                &mut settings.connect_timeout,
            ),
            (
                "proxy.header_timeout",
                &table.header_timeout,
                &mut settings.header_timeout,
            ),
            (
                "proxy.idle_timeout",
                &table.idle_timeout,
                &mut settings.idle_timeout,
            ),
        ];
        for (path, value, slot) in timeouts {
            match duration(check, path, value.as_ref()) {
                Some(zero) if zero.is_zero() => {
                    check.error(path, "a proxy timeout must be above zero", "zero");
                }
                Some(parsed) => *slot = parsed,
                None => {}
            }
        }
        if let Some(parsed) = duration(check, "proxy.hold_timeout", table.hold_timeout.as_ref()) {
            settings.hold_timeout = parsed;
        }
        let max_header_bytes = in_range(
            check,
            "proxy.max_header_bytes",
            table.max_header_bytes,
            MIN_PROXY_HEADER_BYTES..=MAX_PROXY_HEADER_BYTES,
        );
        if let Some(bytes) = max_header_bytes {
            settings.max_header_bytes = bytes as usize;
        }
        settings.workers = in_range(check, "proxy.workers", table.workers, 1..=MAX_PROXY_WORKERS)
            .map(|workers| workers as usize);
        table.enabled.unwrap_or(true).then_some(settings)
    });
    let proxy = match &file.proxy {
        None => Some(ProxySettings::with_listeners(
            ProxyStrategy::HttpsOnly,
            DEFAULT_HTTP_LISTEN.parse().ok()?,
            DEFAULT_HTTPS_LISTEN.parse().ok()?,
        )),
        Some(_) => proxy,
    };

    let acme = file.certbot.as_ref().map(|table| {
        if !table.email.contains('@') {
            check.error(
                "certbot.email",
                "`email` must be an email address",
                "not an email address",
            );
        }
        let ca_bundle = table.ca_bundle.as_ref().map(|bundle| {
            let path = normalize(&config_dir.join(bundle));
            if !matches!(facts.get(&path).kind, FileKind::File { .. }) {
                check
                    .error(
                        "certbot.ca_bundle",
                        format!(
                            "CA bundle{} does not exist",
                            check.shown("certbot.ca_bundle", bundle)
                        ),
                        "no such file",
                    )
                    .help = Some("the path is relative to the folder of dispenser.toml".into());
            }
            path
        });
        let retry_after_failure = match duration(
            check,
            "certbot.retry_after_failure",
            table.retry_after_failure.as_ref(),
        ) {
            Some(zero) if zero.is_zero() => {
                check.error(
                    "certbot.retry_after_failure",
                    "`retry_after_failure` must be above zero",
                    "zero",
                );
                DEFAULT_ACME_RETRY
            }
            Some(wait) => wait,
            None => DEFAULT_ACME_RETRY,
        };
        AcmeSettings {
            retry_after_failure,
            email: table.email.clone(),
            directory_url: table
                .directory_url
                .clone()
                .unwrap_or_else(|| DEFAULT_ACME_DIRECTORY.to_string()),
            ca_bundle,
        }
    });

    let operator = operator(check, file, config_dir, facts);
    (check.error_count() == errors_before).then_some(Global {
        settings,
        networks,
        proxy,
        acme,
        operator,
    })
}

/// `[admin]` and `[notify]`.
fn operator(
    check: &mut FileCheck<'_>,
    file: &DispenserFile,
    config_dir: &Path,
    facts: &FileFacts,
) -> OperatorSettings {
    let admin_listen = file
        .admin
        .as_ref()
        .and_then(|table| table.listen.as_deref())
        .and_then(|text| match text.parse::<SocketAddr>() {
            Ok(address) if address.ip().is_loopback() => Some(address),
            Ok(_) => {
                check
                    .error(
                        "admin.listen",
                        "the admin API only listens on a loopback address",
                        "not loopback",
                    )
                    .help = Some(
                    "use 127.0.0.1:PORT or [::1]:PORT; reach it from elsewhere through an SSH tunnel"
                        .into(),
                );
                None
            }
            Err(_) => {
                check.error(
                    "admin.listen",
                    "`listen` must be an address with a port, e.g. 127.0.0.1:9180",
                    "not an address",
                );
                None
            }
        });
    let notify = file.notify.as_ref().map(|table| {
        let scheme_ok =
            table.webhook.starts_with("https://") || table.webhook.starts_with("http://");
        if !scheme_ok || table.webhook.parse::<http::Uri>().is_err() {
            check.error(
                "notify.webhook",
                "`webhook` must be an http:// or https:// URL",
                "not a URL",
            );
        }
        let template = table.template.as_ref().and_then(|relative| {
            let path = normalize(&config_dir.join(relative));
            match facts.get(&path).text() {
                Ok(text) => match handlebars::Template::compile(&text) {
                    Ok(_) => Some(text),
                    Err(err) => {
                        check.error(
                            "notify.template",
                            format!("the template does not compile: {err}"),
                            "invalid template",
                        );
                        None
                    }
                },
                Err(err) => {
                    check
                        .error(
                            "notify.template",
                            format!(
                                "cannot read the template{}: {err}",
                                check.shown("notify.template", relative)
                            ),
                            "unreadable",
                        )
                        .help = Some("the path is relative to the folder of dispenser.toml".into());
                    None
                }
            }
        });
        NotifySettings {
            webhook: Sensitive::new(table.webhook.clone()),
            template,
        }
    });
    OperatorSettings {
        admin_listen,
        notify,
    }
}

/// Validates one service.toml. `folder` is the service folder, absolute.
/// Returns `None` only when no image can be derived; other errors are
/// reported and the service still returned for cross-service checks.
pub fn service(
    check: &mut FileCheck<'_>,
    file: &ServiceFile,
    folder: &Path,
    declared_networks: &BTreeMap<String, Network>,
    default_zone: Zone,
    facts: &FileFacts,
) -> Option<Service> {
    let table = &file.service;
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
    let image = match ImageRef::parse(&table.image) {
        Ok(image) => Some(image),
        Err(error) => {
            // The reason may quote the value: not when it is a secret.
            let reason = if check.masked("service.image", &table.image).masked {
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
    };
    let command = table
        .command
        .as_ref()
        .and_then(|v| command_line(check, "service.command", v));
    let entrypoint = table
        .entrypoint
        .as_ref()
        .and_then(|v| command_line(check, "service.entrypoint", v));
    let memory_bytes = table.memory.as_ref().and_then(|value| {
        let result = match value {
            toml::Value::String(text) => {
                parse_memory(text).map_err(|why| (Some(text.clone()), why))
            }
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
    });
    let nano_cpus = table.cpus.as_ref().and_then(|value| {
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
    });
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

    let mut ports = Vec::new();
    for (index, port) in file.ports.iter().enumerate() {
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

    let mut volumes = Vec::new();
    for (index, volume) in file.volumes.iter().enumerate() {
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

    let mut env = BTreeMap::new();
    for (key, value) in &file.env {
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

    let mut networks = Vec::new();
    for (index, network) in file.networks.iter().enumerate() {
        if !declared_networks.contains_key(&network.name) {
            let path = format!("network[{index}].name");
            let shown = check.masked(&path, &network.name);
            // A suggestion close to a secret would hint at its value.
            let close = match shown.masked {
                true => None,
                false => did_you_mean(&network.name, declared_networks.keys().map(String::as_str)),
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

    let mut extra_hosts = Vec::new();
    for (index, host) in file.extra_hosts.iter().enumerate() {
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

    let healthcheck = file.healthcheck.as_ref().and_then(|table| {
        let test = match &table.test {
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
        };
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
    });

    let lifecycle = lifecycle(check, file, default_zone);

    let mut depends_on = BTreeMap::new();
    for (dependency, word) in &file.depends_on {
        if let Some(condition) = pick(
            check,
            &format!("depends_on.{dependency}"),
            DEPENDS_ON,
            word,
            "dependency condition",
        ) {
            depends_on.insert(dependency.clone(), condition);
        }
    }

    let route = file
        .proxy
        .as_ref()
        .and_then(|table| route(check, table, folder, facts));

    let image = image?;
    let container = ContainerSpec {
        image,
        command,
        entrypoint,
        working_dir: table.working_dir.clone(),
        user: table.user.clone(),
        hostname: table.hostname.clone(),
        memory_bytes,
        nano_cpus,
        restart,
        ports,
        volumes,
        env,
        networks,
        extra_hosts,
        healthcheck,
        stop_signal,
        stop_grace_period,
    };
    // A service with errors is still returned (unless its image is invalid)
    // so cross-service checks see it; the caller rejects the plan anyway.
    let spec_hash = spec_hash(&container, facts);
    Some(Service {
        name,
        folder: folder.to_path_buf(),
        container,
        lifecycle,
        depends_on,
        route,
        spec_hash,
    })
}

fn lifecycle(check: &mut FileCheck<'_>, file: &ServiceFile, default_zone: Zone) -> Lifecycle {
    let table = file.dispenser.clone();
    let initialize = match table.as_ref().and_then(|t| t.initialize.clone()) {
        Some(word) => pick(
            check,
            "dispenser.initialize",
            INITIALIZE,
            &word,
            "initialize mode",
        )
        .unwrap_or(Initialize::Immediately),
        None => Initialize::Immediately,
    };
    let pull = match table.as_ref().and_then(|t| t.pull.clone()) {
        Some(word) => pick(check, "dispenser.pull", PULL_POLICIES, &word, "pull policy")
            .unwrap_or(PullPolicy::OnStartup),
        None => PullPolicy::OnStartup,
    };
    let schedule = table.as_ref().and_then(|t| t.cron.clone()).and_then(|expression| {
        // Files written for ixpantia/dispenser: where this expression meant
        // other days there, say so (not for a value from a secret).
        if !check.masked("dispenser.cron", &expression).masked {
            for note in dispenser_actors::plan::upstream_differences(&expression) {
                check.warning("dispenser.cron", note, "other days than in ixpantia/dispenser");
            }
        }
        Schedule::parse(&expression)
            .map_err(|error| {
                // The reason quotes the bad field: not when it is a secret.
                let reason = match check.masked("dispenser.cron", &expression).masked {
                    true => "the expression does not parse".to_string(),
                    false => error.reason,
                };
                check.error("dispenser.cron", format!("invalid cron expression: {reason}"), "invalid schedule")
                    .help = Some("write 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or @daily".into());
            })
            .ok()
    });
    let timezone = table
        .as_ref()
        .and_then(|t| t.timezone.as_deref())
        .map_or(default_zone, |name| zone(check, "dispenser.timezone", name));
    let overlap = match table.as_ref().and_then(|t| t.overlap.clone()) {
        Some(word) => pick(check, "dispenser.overlap", OVERLAPS, &word, "overlap mode")
            .unwrap_or(DEFAULT_OVERLAP),
        None => DEFAULT_OVERLAP,
    };
    let max_runtime = duration(
        check,
        "dispenser.max_runtime",
        table.as_ref().and_then(|t| t.max_runtime.as_ref()),
    );
    if max_runtime == Some(Duration::ZERO) {
        check.error(
            "dispenser.max_runtime",
            "`max_runtime` must be longer than zero",
            "zero",
        );
    }
    Lifecycle {
        watch: table.as_ref().and_then(|t| t.watch).unwrap_or(false),
        initialize,
        schedule,
        pull,
        timezone,
        overlap,
        max_runtime,
    }
}

/// An IANA time zone name; an unknown one is an error with a suggestion.
fn zone(check: &mut FileCheck<'_>, path: &str, name: &str) -> Zone {
    if let Some(zone) = Zone::named(name) {
        return zone;
    }
    let close = match check.masked(path, name).masked {
        true => None,
        false => did_you_mean(name, Zone::names()),
    };
    let help = match close {
        Some(close) => format!("did you mean `{close}`?"),
        None => "write an IANA time zone name such as \"Europe/Zurich\" or \"UTC\"".to_string(),
    };
    check
        .error(
            path,
            format!("unknown time zone{}", check.shown(path, name)),
            "not an IANA time zone",
        )
        .help = Some(help);
    Zone::Local
}

fn route(
    check: &mut FileCheck<'_>,
    table: &super::file::RouteTable,
    folder: &Path,
    facts: &FileFacts,
) -> Option<Route> {
    let host = table.host.trim().to_ascii_lowercase();
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !host_ok {
        check
            .error(
                "proxy.host",
                "`host` must be a bare host name",
                "not a host name",
            )
            .help =
            Some("write only the name, without scheme, port or path: `app.example.com`".into());
    }
    let mut path = table.path.clone().unwrap_or_else(|| "/".to_string());
    if !path.starts_with('/') {
        check.error("proxy.path", "`path` must start with `/`", "relative path");
    }
    while path.len() > 1 && path.ends_with('/') {
        path.pop();
    }
    if table.service_port == 0 {
        check.error(
            "proxy.service_port",
            "`service_port` must not be 0",
            "zero port",
        );
    }
    if let Some(health) = &table.health_path {
        if !health.starts_with('/') {
            check.error(
                "proxy.health_path",
                "`health_path` must start with `/`",
                "relative path",
            );
        }
    }
    let tls = match (&table.cert_file, &table.key_file) {
        (None, None) => TlsSource::Automatic,
        (Some(_), None) => {
            check
                .error(
                    "proxy.cert_file",
                    "`cert_file` is set without `key_file`",
                    "no key_file",
                )
                .help = Some(
                "set both `cert_file` and `key_file`, or neither for automatic certificates".into(),
            );
            TlsSource::Automatic
        }
        (None, Some(_)) => {
            check
                .error(
                    "proxy.key_file",
                    "`key_file` is set without `cert_file`",
                    "no cert_file",
                )
                .help = Some(
                "set both `cert_file` and `key_file`, or neither for automatic certificates".into(),
            );
            TlsSource::Automatic
        }
        (Some(cert), Some(key)) => {
            let cert_file = pem_file(check, "proxy.cert_file", cert, folder, facts);
            let key_file = pem_file(check, "proxy.key_file", key, folder, facts);
            TlsSource::Manual {
                cert_file,
                key_file,
            }
        }
    };
    Some(Route {
        host,
        path,
        service_port: table.service_port,
        health_path: table.health_path.clone(),
        tls,
    })
}

/// A `cert_file` or `key_file`: it must exist and, as the proxy reads it,
/// be a regular file (a link is followed to its target) of at most
/// [`MAX_PEM_FILE_BYTES`]. Only its metadata matters here.
fn pem_file(
    check: &mut FileCheck<'_>,
    path: &str,
    value: &str,
    folder: &Path,
    facts: &FileFacts,
) -> PathBuf {
    let full = normalize(&folder.join(value));
    let shown = check.shown(path, value);
    let problem = match &facts.get(&full).kind {
        FileKind::Missing => Some((
            format!("file{shown} does not exist"),
            "no such file",
            "the path is relative to the service folder".to_string(),
        )),
        FileKind::Unreadable(error) => Some((
            format!("cannot read file{shown}: {error}"),
            "unreadable",
            "the path is relative to the service folder".to_string(),
        )),
        FileKind::Folder | FileKind::Special => Some((
            format!("file{shown} is not a regular file"),
            "not a regular file",
            "name a PEM file; a symbolic link is followed, to a regular file only".to_string(),
        )),
        FileKind::File { size } if *size > MAX_PEM_FILE_BYTES => Some((
            format!("file{shown} is larger than {MAX_PEM_FILE_SIZE_TEXT}"),
            "too large",
            "a PEM certificate chain or key is a few KiB: check what was written there".to_string(),
        )),
        FileKind::File { .. } => None,
    };
    if let Some((message, label, help)) = problem {
        check.error(path, message, label).help = Some(help);
    }
    full
}

/// The volume source rule: `./x`, `../x` relative to the service folder;
/// `/x` absolute; a bare name is a named volume; other paths with a slash are
/// relative too, with a warning.
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

/// How a volume `source` is read.
enum SourceRule {
    Empty,
    /// A bind mount of this path: `/x`, or `./x`, `../x` in the service folder.
    Bind(PathBuf),
    /// A bind mount of a path with a slash that does not start with `./`.
    Ambiguous(PathBuf),
    /// A named volume; the path is the folder of that name beside service.toml.
    Named(PathBuf),
}

/// The volume source rule, on the text alone (see [`volume_source`]).
fn source_rule(source: &str, folder: &Path) -> SourceRule {
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

/// `[deploy]`: each timeout at its default unless set; `ready_timeout` and
/// `drain_timeout` must be above zero (`soak = 0` turns the soak off).
fn deploy_settings(check: &mut FileCheck<'_>, table: Option<&DeployTable>) -> DeploySettings {
    let mut settings = DeploySettings::default();
    let Some(table) = table else {
        return settings;
    };
    let fields = [
        (
            "deploy.ready_timeout",
            &table.ready_timeout,
            &mut settings.ready_timeout,
            false,
        ),
        (
            "deploy.drain_timeout",
            &table.drain_timeout,
            &mut settings.drain_timeout,
            false,
        ),
        ("deploy.soak", &table.soak, &mut settings.soak, true),
    ];
    for (path, value, slot, zero_allowed) in fields {
        match duration(check, path, value.as_ref()) {
            Some(zero) if zero.is_zero() && !zero_allowed => {
                check.error(path, "this timeout must be above zero", "zero");
            }
            Some(parsed) => *slot = parsed,
            None => {}
        }
    }
    settings
}

/// Signals a container may be asked to stop with, without `SIG` (Linux).
const SIGNALS: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];
/// The highest signal number Linux has (`SIGRTMAX`).
const MAX_SIGNAL: u32 = 64;

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

fn duration(
    check: &mut FileCheck<'_>,
    path: &str,
    value: Option<&toml::Value>,
) -> Option<Duration> {
    let result = match value? {
        // The reason may quote a part of the value: not when it is a secret.
        toml::Value::String(text) if check.masked(path, text).masked => parse_duration(text)
            .map_err(|_| "expected a duration such as `5s`, `500ms`, `1m` or `1h30m`".to_string()),
        toml::Value::String(text) => parse_duration(text),
        toml::Value::Integer(seconds) if *seconds >= 0 => {
            bounded_duration(Duration::from_secs(*seconds as u64))
        }
        toml::Value::Integer(_) => Err("a duration cannot be negative".to_string()),
        _ => Err("expected a duration such as \"5s\" or a number of seconds".to_string()),
    };
    result
        .map_err(|why| {
            check.error(path, format!("invalid duration: {why}"), "invalid duration");
        })
        .ok()
}

/// Looks a word up among its aliases, reporting an error that lists them.
fn pick<T: Copy + PartialEq>(
    check: &mut FileCheck<'_>,
    path: &str,
    choices: Choices<T>,
    word: &str,
    what: &str,
) -> Option<T> {
    let chosen = choose(choices, word);
    if chosen.is_none() {
        // A suggestion close to a secret would hint at its value.
        let close = match check.masked(path, word).masked {
            true => None,
            false => did_you_mean(word, choices.iter().map(|(name, _)| *name)),
        };
        let help = match close {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("expected one of {}", canonical_names(choices)),
        };
        check
            .error(
                path,
                format!("unknown {what}{}", check.shown(path, word)),
                &format!("{} {what}", article(what)),
            )
            .help = Some(help);
    }
    chosen
}

/// "not a" or "not an", for a label that names what a word is not.
fn article(what: &str) -> &'static str {
    match what.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "not an",
        _ => "not a",
    }
}

/// A whole number that must lie in `range`; out of it, an error at `path`
/// (whose last segment names the key) and `None`.
fn in_range(
    check: &mut FileCheck<'_>,
    path: &str,
    value: Option<u64>,
    range: std::ops::RangeInclusive<u64>,
) -> Option<u64> {
    let value = value?;
    if range.contains(&value) {
        return Some(value);
    }
    let key = path.rsplit('.').next().unwrap_or(path);
    check.error(
        path,
        format!(
            "`{key}` must be between {} and {}",
            range.start(),
            range.end()
        ),
        "out of range",
    );
    None
}

fn listen(check: &mut FileCheck<'_>, path: &str, text: Option<&str>, default: &str) -> SocketAddr {
    let fallback = SocketAddr::from(([0, 0, 0, 0], 0));
    match text.unwrap_or(default).parse() {
        Ok(address) => address,
        Err(_) => {
            check
                .error(path, "invalid listen address", "not an address:port")
                .help = Some(format!("write an address and port such as \"{default}\""));
            fallback
        }
    }
}

fn is_container_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn is_instance_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Parses `a.b.c.d/n`, returning the network address and prefix length.
fn parse_cidr(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    let address: Ipv4Addr = address.parse().ok()?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Some((Ipv4Addr::from(u32::from(address) & mask), prefix))
}

fn contains((base, prefix): (Ipv4Addr, u8), address: Ipv4Addr) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(address) & mask == u32::from(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_and_gateway() {
        assert_eq!(
            parse_cidr("172.28.0.0/16"),
            Some((Ipv4Addr::new(172, 28, 0, 0), 16))
        );
        assert_eq!(
            parse_cidr("10.1.2.3/8"),
            Some((Ipv4Addr::new(10, 0, 0, 0), 8))
        );
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(parse_cidr("10.0.0.0"), None);
        let subnet = parse_cidr("172.28.0.0/16").unwrap();
        assert!(contains(subnet, Ipv4Addr::new(172, 28, 5, 1)));
        assert!(!contains(subnet, Ipv4Addr::new(172, 29, 0, 1)));
    }

    #[test]
    fn names() {
        assert!(is_container_name("web-1.app_x"));
        assert!(!is_container_name("-web"));
        assert!(!is_container_name("we b"));
        assert!(is_instance_name("prod.eu-1"));
        assert!(!is_instance_name(""));
    }
}
