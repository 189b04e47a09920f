//! The plan: the typed, fully resolved and validated description of everything
//! Dispenser runs. `src/config` produces it from the user's files; every actor
//! consumes it. Nothing downstream of the plan reads a file or parses a string.

mod applied;
mod image;
mod rules;
pub mod sample;
mod schedule;
mod sensitive;
mod zone;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use applied::{PlanApplied, Subscribe};
pub use image::{ImageRef, ImageRefError, DEFAULT_TAG, DOCKER_HUB};
pub use rules::{
    AllowList, BasicAuth, ErrorPages, HtpasswdError, HtpasswdUser, RouteRules, ERROR_PAGE_FILES,
};
pub use schedule::{upstream_differences, Schedule, ScheduleError};
pub use sensitive::Sensitive;
pub use zone::Zone;

/// Name of the bridge network every managed container joins, unless configured.
pub const DEFAULT_NETWORK_NAME: &str = "dispenser";
/// Subnet of the default network, unless configured.
pub const DEFAULT_NETWORK_SUBNET: &str = "172.28.0.0/16";
/// Gateway of the default network, unless configured.
pub const DEFAULT_NETWORK_GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 28, 0, 1);
/// Instance id used when `[daemon] instance` is not set.
pub const DEFAULT_INSTANCE: &str = "default";
/// Seconds between two registry polls when `delay` is not set.
pub const DEFAULT_POLL_DELAY: Duration = Duration::from_secs(60);
/// How long a `depends_on = "healthy"` waits before the start fails.
pub const DEFAULT_DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(300);
/// Default `[daemon] docker_check_interval`.
pub const DEFAULT_DOCKER_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// What a scheduled run does when the previous one still runs, unless configured.
pub const DEFAULT_OVERLAP: Overlap = Overlap::Skip;

/// Everything the daemon runs, as one value. Two plans are compared to reload.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub settings: Settings,
    /// Declared networks, by name (the default network is in `settings`).
    pub networks: BTreeMap<String, Network>,
    /// Services, by name.
    pub services: BTreeMap<String, Service>,
    /// The built-in reverse proxy; `None` when `[proxy] enabled = false`.
    pub proxy: Option<ProxySettings>,
    /// ACME settings, when `[certbot]` is present.
    pub acme: Option<AcmeSettings>,
}

/// Settings of the daemon itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// Time between two registry polls.
    pub poll_delay: Duration,
    /// Written into the `dispenser.instance` label; two installs on one host
    /// must use different ids so they never touch each other's containers.
    pub instance: String,
    /// The bridge network every container joins with its service name as alias.
    pub default_network: DefaultNetwork,
    /// Stop every managed container when the daemon shuts down (default: leave
    /// them running, so restarting Dispenser never restarts a healthy service).
    pub stop_on_shutdown: bool,
    /// Folder for Dispenser's own state (certificates, ledger), absolute.
    pub state_dir: PathBuf,
    /// Longest wait for a `depends_on` condition.
    pub dependency_timeout: Duration,
    /// Time between two checks that the Docker Engine answers (read at
    /// start-up only).
    pub docker_check_interval: Duration,
    /// The time zone of schedules whose service sets none (`[daemon] timezone`).
    pub timezone: Zone,
    /// How deploys replace a container (`[deploy]`).
    pub deploy: DeploySettings,
}

/// How a deploy replaces a service's container (`[deploy]` in dispenser.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeploySettings {
    /// Longest wait for a new container to become ready.
    pub ready_timeout: Duration,
    /// Longest wait for the requests in flight to the old container to finish.
    pub drain_timeout: Duration,
    /// After the swap, the new container must stay up this long or the
    /// deploy is rolled back.
    pub soak: Duration,
    /// `[daemon] keep_images`: how many of a service's versions keep their
    /// image on the host after a deploy is proven (older ones are removed).
    pub keep_images: usize,
}

/// Default of `[deploy] ready_timeout`.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Default of `[deploy] drain_timeout`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of `[deploy] soak`.
pub const DEFAULT_SOAK: Duration = Duration::from_secs(60);
/// Default of `[daemon] keep_images`.
pub const DEFAULT_KEEP_IMAGES: usize = 3;

impl Default for DeploySettings {
    fn default() -> Self {
        DeploySettings {
            ready_timeout: DEFAULT_READY_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            soak: DEFAULT_SOAK,
            keep_images: DEFAULT_KEEP_IMAGES,
        }
    }
}

/// The default bridge network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefaultNetwork {
    pub name: String,
    /// CIDR, for example `172.28.0.0/16`.
    pub subnet: String,
    pub gateway: Ipv4Addr,
}

/// A network declared with `[[network]]` in dispenser.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    pub name: String,
    pub driver: NetworkDriver,
    /// Created by someone else: used, never created or removed.
    pub external: bool,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
}

/// Docker network drivers Dispenser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkDriver {
    Bridge,
    Host,
    Overlay,
    Macvlan,
    None,
}

/// One service: a container (or a job run as a container) and how to run it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    /// The folder holding its service.toml, absolute.
    pub folder: PathBuf,
    /// Everything that shapes the container; `spec_hash` covers exactly this.
    pub container: ContainerSpec,
    /// How Dispenser drives it: watching, schedules, pulls.
    pub lifecycle: Lifecycle,
    /// Services that must reach a condition before this one starts.
    pub depends_on: BTreeMap<String, DependsOn>,
    /// The proxy route to this service, if it has a `[proxy]` table.
    pub route: Option<Route>,
    /// Hex SHA-256 of `container` and of the content of single files it
    /// bind-mounts from the service folder. A change recreates the container.
    pub spec_hash: String,
}

/// The container's part of a service: what Docker is asked to create.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerSpec {
    pub image: ImageRef,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU limit in billionths of a CPU (Docker's `NanoCpus`).
    pub nano_cpus: Option<u64>,
    pub restart: RestartPolicy,
    pub ports: Vec<PortBinding>,
    pub volumes: Vec<Mount>,
    /// Environment; values may carry secrets, so they are masked in Debug.
    pub env: BTreeMap<String, Sensitive>,
    /// Declared networks the container joins besides the default one.
    pub networks: Vec<String>,
    pub extra_hosts: Vec<ExtraHost>,
    pub healthcheck: Option<Healthcheck>,
    /// The signal that asks the container to stop (`SIGTERM`, `SIGQUIT`,
    /// ...); `None`: the image's `STOPSIGNAL`, else SIGTERM. Left out of
    /// the spec hash's input when unset, like the grace period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// How long a stop waits after the stop signal before it kills;
    /// `None`: `STOP_GRACE` (10 s, Docker's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<Duration>,
    /// The service's `[logging]`; `None`: `LogConfig::rotated`. Left out of
    /// the spec hash's input when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<LogConfig>,
}

impl ContainerSpec {
    /// The wait between the stop signal and a kill.
    pub fn stop_grace(&self) -> Duration {
        self.stop_grace_period.unwrap_or(DEFAULT_STOP_GRACE)
    }

    /// The log driver the container is created with.
    pub fn log_config(&self) -> LogConfig {
        self.logging.clone().unwrap_or_else(LogConfig::rotated)
    }
}

/// A container's log driver and its options (Docker's `HostConfig.LogConfig`).
/// Option values may come from secrets (a driver's token): `Debug` shows
/// the keys only.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct LogConfig {
    pub driver: String,
    pub options: BTreeMap<String, String>,
}

/// The driver of a service whose `[logging]` names none, as Docker's own default.
pub const DEFAULT_LOG_DRIVER: &str = "json-file";

impl LogConfig {
    /// What a container gets when its service sets no `[logging]`:
    /// Docker's `json-file` driver, a new file every 10 MB, three kept, so
    /// a chatty container never fills the disk.
    pub fn rotated() -> LogConfig {
        LogConfig {
            driver: DEFAULT_LOG_DRIVER.to_string(),
            options: BTreeMap::from([
                ("max-size".to_string(), "10m".to_string()),
                ("max-file".to_string(), "3".to_string()),
            ]),
        }
    }
}

impl std::fmt::Debug for LogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogConfig")
            .field("driver", &self.driver)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Docker's own grace period between the stop signal and a kill.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// Docker restart policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    Always,
    OnFailure,
    UnlessStopped,
}

/// A host port published to a container port (TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortBinding {
    pub host: u16,
    pub container: u16,
}

/// A volume or bind mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub source: MountSource,
    /// Absolute path inside the container.
    pub target: String,
    pub readonly: bool,
}

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum MountSource {
    /// A host path, absolute (relative sources are resolved against the service folder).
    Bind(PathBuf),
    /// A named Docker volume.
    Volume(String),
}

/// An `/etc/hosts` entry in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtraHost {
    pub hostname: String,
    /// An IPv4 address, or `host-gateway`.
    pub address: String,
}

/// A Docker healthcheck.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    /// In Docker's form: `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`.
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    pub start_period: Option<Duration>,
}

/// How Dispenser drives a service over time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lifecycle {
    /// Poll the registry for new digests of the image and redeploy.
    pub watch: bool,
    pub initialize: Initialize,
    pub schedule: Option<Schedule>,
    pub pull: PullPolicy,
    /// The zone `schedule` is read in: the service's, else the daemon's, else local time.
    pub timezone: Zone,
    /// What a scheduled run does while the previous run still goes.
    pub overlap: Overlap,
    /// A run going longer than this is stopped and recorded as failed.
    pub max_runtime: Option<Duration>,
    /// `track`: follow the newest registry tag in this semver range (a
    /// valid `semver::VersionReq`, checked by the config front-end) instead
    /// of the digest of the image's own tag. Implies watching.
    pub track: Option<String>,
}

/// What a scheduled run does when the previous run of the same job still goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overlap {
    /// The new run is skipped (and recorded as skipped).
    Skip,
    /// The old run is stopped, then the new one starts.
    Replace,
}

/// When a service is first started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Initialize {
    /// At start-up (and on reload when added).
    Immediately,
    /// Created but not started until a cron run or a new image triggers it.
    OnTrigger,
}

/// When the image is pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Before every (re)create.
    Always,
    /// Only when the image is missing locally.
    OnStartup,
}

/// A `depends_on` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DependsOn {
    /// The dependency's container is running.
    Started,
    /// The dependency's healthcheck passes (or it runs and has none).
    Healthy,
    /// The dependency's container exited with code 0.
    Completed,
}

/// A proxy route: requests for `host` under `path` go to `service_port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Lowercase, without a port.
    pub host: String,
    /// Starts with `/`; matched as a prefix on segment boundaries.
    pub path: String,
    pub service_port: u16,
    /// Optional HTTP path probed to decide readiness.
    pub health_path: Option<String>,
    pub tls: TlsSource,
    /// How the CA checks the route's names when its certificate is from
    /// ACME; `None` follows `[certbot] challenge`.
    pub challenge: Option<Challenge>,
    /// Aliases, redirects, guards and pages; the default is a plain route.
    pub rules: RouteRules,
}

/// How the CA checks that the daemon controls a name (RFC 8555 section 8,
/// RFC 8737).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Challenge {
    /// A token served on port 80 (`/.well-known/acme-challenge/`).
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// A TXT record under `_acme-challenge`, through a DNS provider; the only
    /// one that can prove a wildcard name.
    #[serde(rename = "dns-01")]
    Dns01,
    /// A self-signed certificate answered on the HTTPS listener for the
    /// `acme-tls/1` protocol, for hosts that cannot open port 80.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

/// Where the certificate for a route's host comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TlsSource {
    /// ACME when `[certbot]` is set, else a self-signed certificate.
    Automatic,
    /// Files given by `cert_file` and `key_file`, absolute.
    Manual {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
}

/// The proxy's global settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxySettings {
    pub strategy: ProxyStrategy,
    pub trust_forwarded_headers: bool,
    pub http_listen: SocketAddr,
    pub https_listen: SocketAddr,
    /// Longest wait for a TCP connection to an upstream container.
    pub connect_timeout: Duration,
    /// Longest wait for a request's headers from a client, and for the
    /// response headers from an upstream.
    pub header_timeout: Duration,
    /// A keep-alive connection (client or upstream) idle this long is closed.
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers) accepted, in bytes.
    pub max_header_bytes: usize,
    /// Longest time a request for a service being replaced (stop-first) is
    /// held until the new container is ready.
    pub hold_timeout: Duration,
    /// Worker threads serving traffic; `None`: one per core plus one.
    pub workers: Option<usize>,
}

/// Default of `[proxy] connect_timeout`.
pub const DEFAULT_PROXY_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of `[proxy] header_timeout`.
pub const DEFAULT_PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of `[proxy] idle_timeout`.
pub const DEFAULT_PROXY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of `[proxy] max_header_bytes`.
pub const DEFAULT_PROXY_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Default of `[proxy] hold_timeout`.
pub const DEFAULT_PROXY_HOLD_TIMEOUT: Duration = Duration::from_secs(10);

/// Which listeners serve traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyStrategy {
    /// Port 80 redirects to HTTPS, except ACME challenges.
    HttpsOnly,
    HttpOnly,
    Both,
}

/// ACME account and CA settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcmeSettings {
    pub email: String,
    pub directory_url: String,
    /// Extra CA certificates (PEM) to trust for the ACME server.
    pub ca_bundle: Option<PathBuf>,
    /// Wait after a first failed certificate request; doubles with each
    /// further failure (read at start-up only).
    pub retry_after_failure: std::time::Duration,
    /// The challenge of every route that does not choose its own.
    pub challenge: Challenge,
    /// `[certbot.dns]`: where DNS-01 records are published; `None` when
    /// no route uses DNS-01.
    pub dns: Option<DnsSettings>,
}

/// `[certbot.dns]`: the DNS provider DNS-01 challenges are published
/// through, and how long the daemon waits for the record to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsSettings {
    /// The zone the records go in, fully qualified with its trailing dot
    /// (`example.com.`); every DNS-01 name must be at or under it.
    pub zone: String,
    pub provider: DnsProviderSettings,
    /// The servers asked whether the record is there yet (`host:port`);
    /// empty: the zone's authoritative servers, from its NS records.
    pub propagation_servers: Vec<String>,
    /// Longest wait for every server to answer with the record before the
    /// CA is told to validate (the order then fails and is retried).
    pub propagation_timeout: Duration,
    /// The TTL of the TXT records.
    pub ttl: u32,
}

/// Default of `[certbot.dns] propagation_timeout`.
pub const DEFAULT_DNS_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(120);
/// Default of `[certbot.dns] ttl`.
pub const DEFAULT_DNS_TTL: u32 = 60;

/// One DNS provider and its credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "provider", rename_all = "kebab-case")]
pub enum DnsProviderSettings {
    /// RFC 2136 dynamic updates signed with TSIG (RFC 8945): BIND, Knot,
    /// PowerDNS.
    Rfc2136 {
        /// The primary server that takes updates, `host:port`.
        server: String,
        /// The TSIG key's name (`dispenser-key.`).
        key_name: String,
        algorithm: TsigAlgorithm,
        /// The key's secret, base64.
        secret: Sensitive,
    },
    /// Google Cloud DNS, with the credentials the secrets use.
    Google {
        project: String,
        managed_zone: String,
    },
    /// Cloudflare, with an API token that may edit the zone's DNS.
    Cloudflare { api_token: Sensitive },
}

impl DnsProviderSettings {
    /// The provider's name in configs, errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            DnsProviderSettings::Rfc2136 { .. } => "rfc2136",
            DnsProviderSettings::Google { .. } => "google",
            DnsProviderSettings::Cloudflare { .. } => "cloudflare",
        }
    }
}

/// The TSIG algorithms an RFC 2136 key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TsigAlgorithm {
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "hmac-sha384")]
    HmacSha384,
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

/// Default `[certbot] retry_after_failure`: the ACME manager's back-off base.
pub const DEFAULT_ACME_RETRY: Duration = crate::proxy::acme::policy::DEFAULT_BACKOFF_BASE;

/// The Let's Encrypt production directory, used when none is configured.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

impl Route {
    /// The challenge that proves this route's names: its own, else the
    /// global one.
    pub fn challenge_or(&self, global: Challenge) -> Challenge {
        self.challenge.unwrap_or(global)
    }

    /// Every name the route answers: `host`, its aliases, then the names it
    /// redirects from. Each needs a certificate.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.host.as_str())
            .chain(self.rules.aliases.iter().map(String::as_str))
            .chain(self.rules.redirect_from.iter().map(String::as_str))
    }
}

impl Service {
    /// True for a job: a container that runs to completion (`initialize =
    /// "on-trigger"` or `restart = "no"`), as opposed to a long-running service.
    pub fn is_job(&self) -> bool {
        self.lifecycle.initialize == Initialize::OnTrigger
            || self.container.restart == RestartPolicy::No
    }
}

/// The certificate files of one host, from the first of its routes that names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManualCertificate<'a> {
    /// The service whose route names the files.
    pub service: &'a str,
    pub cert_file: &'a Path,
    pub key_file: &'a Path,
}

impl Plan {
    /// The manual certificate of every host that has a route naming
    /// `cert_file` and `key_file`, by host: it covers all the routes of that
    /// host, those without files too. Validation refuses two different pairs
    /// on one host; should a plan still hold them, the first service by name wins.
    pub fn manual_certificates(&self) -> BTreeMap<String, ManualCertificate<'_>> {
        let mut certificates = BTreeMap::new();
        for service in self.services.values() {
            let Some(route) = &service.route else {
                continue;
            };
            if let TlsSource::Manual {
                cert_file,
                key_file,
            } = &route.tls
            {
                for name in route.names() {
                    certificates
                        .entry(name.to_ascii_lowercase())
                        .or_insert(ManualCertificate {
                            service: &service.name,
                            cert_file,
                            key_file,
                        });
                }
            }
        }
        certificates
    }

    /// Service names in an order where every service comes after its dependencies.
    /// Validation guarantees there is no cycle; ties are broken by name.
    pub fn start_order(&self) -> Vec<&str> {
        let mut done: Vec<&str> = Vec::with_capacity(self.services.len());
        while done.len() < self.services.len() {
            let before = done.len();
            for (name, service) in &self.services {
                if done.contains(&name.as_str()) {
                    continue;
                }
                let ready = service
                    .depends_on
                    .keys()
                    .all(|dep| done.contains(&dep.as_str()) || !self.services.contains_key(dep));
                if ready {
                    done.push(name);
                }
            }
            if done.len() == before {
                // A cycle slipped past validation: append the rest by name
                // rather than loop forever.
                for name in self.services.keys() {
                    if !done.contains(&name.as_str()) {
                        done.push(name);
                    }
                }
            }
        }
        done
    }
}

impl ProxySettings {
    /// The settings with every optional value at its default.
    pub fn with_listeners(
        strategy: ProxyStrategy,
        http_listen: SocketAddr,
        https_listen: SocketAddr,
    ) -> Self {
        ProxySettings {
            strategy,
            trust_forwarded_headers: false,
            http_listen,
            https_listen,
            connect_timeout: DEFAULT_PROXY_CONNECT_TIMEOUT,
            header_timeout: DEFAULT_PROXY_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_PROXY_IDLE_TIMEOUT,
            max_header_bytes: DEFAULT_PROXY_MAX_HEADER_BYTES,
            hold_timeout: DEFAULT_PROXY_HOLD_TIMEOUT,
            workers: None,
        }
    }
}

#[cfg(test)]
mod properties;
