//! The tables of dispenser.toml that make the plan's settings, one function
//! each: the top level (`delay`, `[telemetry]`), `[daemon]` with
//! `[daemon.network]`, `[deploy]`, `[[network]]`, `[proxy]` and `[certbot]`.
//! Pure: the CA bundle is looked up in [`FileFacts`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use dispenser_actors::plan::{
    AcmeSettings, Challenge, DefaultNetwork, DeploySettings, Network, NetworkDriver, ProxySettings,
    ProxyStrategy, Settings, Zone, DEFAULT_ACME_DIRECTORY, DEFAULT_ACME_RETRY,
    DEFAULT_DEPENDENCY_TIMEOUT, DEFAULT_DOCKER_CHECK_INTERVAL, DEFAULT_INSTANCE,
    DEFAULT_NETWORK_NAME, DEFAULT_NETWORK_SUBNET, DEFAULT_POLL_DELAY,
};

use super::field::{
    contains, duration, in_range, is_instance_name, listen, parse_cidr, pick, resolve, zone,
};
use crate::config::check::FileCheck;
use crate::config::file::{
    CertbotTable, DaemonNetworkTable, DaemonTable, DeployTable, DispenserFile, NetworkEntry,
    ProxyTable,
};
use crate::config::files::{FileFacts, FileKind};
use crate::config::paths::normalize;
use crate::config::values::{NETWORK_DRIVERS, PROXY_STRATEGIES};

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

/// The top-level `delay`: the registry poll interval, at least 1 second.
pub(super) fn poll_delay(check: &mut FileCheck<'_>, delay: Option<u64>) -> Duration {
    match delay {
        Some(0) => {
            check.error("delay", "`delay` must be at least 1 second", "zero");
            DEFAULT_POLL_DELAY
        }
        Some(seconds) => Duration::from_secs(seconds),
        None => DEFAULT_POLL_DELAY,
    }
}

/// `[telemetry]`: accepted for files written for ixpantia/dispenser, ignored.
pub(super) fn telemetry(check: &mut FileCheck<'_>, file: &DispenserFile) {
    if file.telemetry.is_some() {
        check
            .warning(
                "telemetry",
                "the [telemetry] table is ignored by this version",
                "ignored",
            )
            .help = Some("remove it to silence this warning".into());
    }
}

/// `[daemon]`: the settings but `[deploy]`'s, which stay at their defaults.
pub(super) fn daemon(
    check: &mut FileCheck<'_>,
    daemon: Option<&DaemonTable>,
    config_dir: &Path,
    poll_delay: Duration,
) -> Settings {
    let instance = daemon
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
        .and_then(|d| d.state_dir.clone())
        .unwrap_or_else(|| DEFAULT_STATE_DIR.to_string());
    let default_network = default_network(check, daemon.and_then(|d| d.network.as_ref()));
    Settings {
        poll_delay,
        instance,
        default_network,
        stop_on_shutdown: daemon.and_then(|d| d.stop_on_shutdown).unwrap_or(false),
        state_dir: normalize(&config_dir.join(state_dir)),
        dependency_timeout: daemon
            .and_then(|d| d.dependency_timeout)
            .map_or(DEFAULT_DEPENDENCY_TIMEOUT, Duration::from_secs),
        docker_check_interval: match daemon.and_then(|d| d.docker_check_interval) {
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
            .and_then(|d| d.timezone.as_deref())
            .map_or(Zone::Local, |name| zone(check, "daemon.timezone", name)),
        deploy: DeploySettings::default(),
    }
}

/// `[daemon.network]`: the network every service joins; the gateway is the
/// subnet's first address unless set.
fn default_network(
    check: &mut FileCheck<'_>,
    network: Option<&DaemonNetworkTable>,
) -> DefaultNetwork {
    let name = network
        .and_then(|n| n.name.clone())
        .unwrap_or_else(|| DEFAULT_NETWORK_NAME.to_string());
    let subnet_text = network
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
    let gateway = match (network.and_then(|n| n.gateway.as_deref()), subnet) {
        (Some(text), subnet) => gateway(check, text, subnet),
        (None, Some((base, _))) => Ipv4Addr::from(u32::from(base).wrapping_add(1)),
        (None, None) => Ipv4Addr::UNSPECIFIED,
    };
    DefaultNetwork {
        name,
        subnet: subnet_text,
        gateway,
    }
}

/// `[daemon.network] gateway`: an IPv4 address inside the subnet (when the
/// subnet itself is valid).
fn gateway(check: &mut FileCheck<'_>, text: &str, subnet: Option<(Ipv4Addr, u8)>) -> Ipv4Addr {
    match text.parse::<Ipv4Addr>() {
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
    }
}

/// `[daemon] keep_images`: 1 to 100 versions per service; `None` when unset
/// (the default) or out of range (an error).
pub(super) fn keep_images(
    check: &mut FileCheck<'_>,
    daemon: Option<&DaemonTable>,
) -> Option<usize> {
    let keep = in_range(
        check,
        "daemon.keep_images",
        daemon.and_then(|d| d.keep_images),
        1..=100,
    )?;
    usize::try_from(keep).ok()
}

/// `[deploy]`: each timeout at its default unless set; `ready_timeout` and
/// `drain_timeout` must be above zero (`soak = 0` turns the soak off).
pub(super) fn deploy(check: &mut FileCheck<'_>, table: Option<&DeployTable>) -> DeploySettings {
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

/// `[[network]]`: the declared networks by name; a name declared twice is an error.
pub(super) fn networks(
    check: &mut FileCheck<'_>,
    entries: &[NetworkEntry],
) -> BTreeMap<String, Network> {
    let mut networks = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
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
    networks
}

/// `[proxy]`: its defaults when the table is absent, none when `enabled = false`.
pub(super) fn proxy(
    check: &mut FileCheck<'_>,
    table: Option<&ProxyTable>,
) -> Option<ProxySettings> {
    let Some(table) = table else {
        return Some(ProxySettings::with_listeners(
            ProxyStrategy::HttpsOnly,
            DEFAULT_HTTP_LISTEN.parse().ok()?,
            DEFAULT_HTTPS_LISTEN.parse().ok()?,
        ));
    };
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
    proxy_timeouts(check, table, &mut settings);
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
}

/// `[proxy]`'s timeouts: each above zero but `hold_timeout`.
fn proxy_timeouts(check: &mut FileCheck<'_>, table: &ProxyTable, settings: &mut ProxySettings) {
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
}

/// `[certbot]`: the ACME account and where to reach the CA.
pub(super) fn certbot(
    check: &mut FileCheck<'_>,
    table: &CertbotTable,
    config_dir: &Path,
    facts: &FileFacts,
) -> AcmeSettings {
    if !table.email.contains('@') {
        check.error(
            "certbot.email",
            "`email` must be an email address",
            "not an email address",
        );
    }
    let ca_bundle = table.ca_bundle.as_ref().map(|bundle| {
        let path = resolve(config_dir, bundle);
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
    let challenge = table
        .challenge
        .as_deref()
        .and_then(|word| super::field::challenge(check, "certbot.challenge", word))
        .unwrap_or_default();
    let dns = table
        .dns
        .as_ref()
        .and_then(|dns| super::dns::dns(check, dns));
    if challenge == Challenge::Dns01 && table.dns.is_none() {
        check
            .error(
                "certbot.challenge",
                "the `dns-01` challenge needs a DNS provider in [certbot.dns]",
                "no [certbot.dns]",
            )
            .help = Some(
            "add [certbot.dns] with `provider`, `zone` and the provider's keys (docs/certificates.md)"
                .to_string(),
        );
    }
    AcmeSettings {
        retry_after_failure,
        challenge,
        dns,
        email: table.email.clone(),
        directory_url: table
            .directory_url
            .clone()
            .unwrap_or_else(|| DEFAULT_ACME_DIRECTORY.to_string()),
        ca_bundle,
    }
}
