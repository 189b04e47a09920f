//! File structs: `dispenser.toml` and `service.toml` exactly as written, after
//! rendering. Unknown keys are errors. Fields whose spelling is flexible
//! (aliases, a string or a list, a string or a number) are kept as text or raw
//! values here and settled in `validate`, where errors get spans.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `dispenser.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispenserFile {
    pub delay: Option<u64>,
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceEntry>,
    #[serde(default, rename = "network")]
    pub networks: Vec<NetworkEntry>,
    pub proxy: Option<ProxyTable>,
    pub certbot: Option<CertbotTable>,
    pub daemon: Option<DaemonTable>,
    pub admin: Option<AdminTable>,
    pub notify: Option<NotifyTable>,
    pub deploy: Option<DeployTable>,
    /// ixpantia's telemetry settings: accepted and ignored with a warning.
    pub telemetry: Option<toml::Value>,
}

/// `[[service]]`: a folder holding a service.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    pub path: String,
}

/// `[[network]]` in dispenser.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkEntry {
    pub name: String,
    pub driver: Option<String>,
    pub external: Option<bool>,
    pub internal: Option<bool>,
    pub attachable: Option<bool>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// `[admin]` in dispenser.toml: the admin API beyond its unix socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTable {
    /// A loopback address for the page and metrics, e.g. `127.0.0.1:9180`.
    pub listen: Option<String>,
}

/// `[notify]` in dispenser.toml: a webhook told about deploys and trouble.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyTable {
    pub webhook: String,
    /// A handlebars file for the body, relative to dispenser.toml.
    pub template: Option<String>,
}

/// `[proxy]` in dispenser.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyTable {
    pub enabled: Option<bool>,
    pub strategy: Option<String>,
    pub trust_forwarded_headers: Option<bool>,
    pub http_listen: Option<String>,
    pub https_listen: Option<String>,
    pub connect_timeout: Option<toml::Value>,
    pub header_timeout: Option<toml::Value>,
    pub idle_timeout: Option<toml::Value>,
    pub max_header_bytes: Option<u64>,
    pub hold_timeout: Option<toml::Value>,
    pub workers: Option<u64>,
}

/// `[certbot]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertbotTable {
    pub email: String,
    pub directory_url: Option<String>,
    pub ca_bundle: Option<String>,
    pub retry_after_failure: Option<toml::Value>,
    /// `http-01` (the default), `dns-01` or `tls-alpn-01`.
    pub challenge: Option<String>,
    pub dns: Option<CertbotDnsTable>,
}

/// `[certbot.dns]`: the DNS provider DNS-01 records are published through.
/// One flat table: `provider` says which of the provider keys apply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertbotDnsTable {
    /// `rfc2136`, `google` or `cloudflare`.
    pub provider: String,
    pub zone: String,
    /// rfc2136: the primary server, `host` or `host:port`.
    pub server: Option<String>,
    pub key_name: Option<String>,
    pub algorithm: Option<String>,
    pub secret: Option<String>,
    /// google
    pub project: Option<String>,
    pub managed_zone: Option<String>,
    /// cloudflare
    pub api_token: Option<String>,
    pub propagation_servers: Option<Vec<String>>,
    pub propagation_timeout: Option<toml::Value>,
    pub ttl: Option<u64>,
}

/// `[daemon]`: Dispenser's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonTable {
    pub instance: Option<String>,
    pub stop_on_shutdown: Option<bool>,
    pub state_dir: Option<String>,
    pub dependency_timeout: Option<u64>,
    /// Seconds between two checks that the Docker Engine answers.
    pub docker_check_interval: Option<u64>,
    pub keep_images: Option<u64>,
    /// IANA zone of schedules whose service sets none; default: local time.
    pub timezone: Option<String>,
    pub network: Option<DaemonNetworkTable>,
}

/// `[deploy]`: how deploys replace containers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployTable {
    pub ready_timeout: Option<toml::Value>,
    pub drain_timeout: Option<toml::Value>,
    pub soak: Option<toml::Value>,
}

/// `[daemon.network]`: the default bridge network.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonNetworkTable {
    pub name: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
}

/// `service.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    pub service: ServiceTable,
    #[serde(default, rename = "port")]
    pub ports: Vec<PortEntry>,
    #[serde(default, rename = "volume")]
    pub volumes: Vec<VolumeEntry>,
    #[serde(default)]
    pub env: BTreeMap<String, toml::Value>,
    #[serde(default, rename = "network")]
    pub networks: Vec<NetworkRef>,
    #[serde(default, rename = "extra_host")]
    pub extra_hosts: Vec<ExtraHostEntry>,
    pub dispenser: Option<DispenserTable>,
    #[serde(default)]
    pub depends_on: BTreeMap<String, String>,
    pub proxy: Option<RouteTable>,
    pub healthcheck: Option<HealthcheckTable>,
    pub logging: Option<LoggingTable>,
}

/// `[service]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTable {
    pub name: String,
    pub image: String,
    pub command: Option<toml::Value>,
    pub entrypoint: Option<toml::Value>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub memory: Option<toml::Value>,
    pub cpus: Option<toml::Value>,
    pub restart: Option<String>,
    /// Compose's `stop_signal`: the signal that asks the container to stop.
    pub stop_signal: Option<String>,
    /// Compose's `stop_grace_period`: the wait after it, before a kill.
    pub stop_grace_period: Option<toml::Value>,
}

/// `[[port]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortEntry {
    pub host: u16,
    pub container: u16,
}

/// `[[volume]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeEntry {
    pub source: String,
    pub target: String,
    pub readonly: Option<bool>,
}

/// `[[network]]` in a service.toml: a network declared in dispenser.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRef {
    pub name: String,
}

/// `[[extra_host]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraHostEntry {
    pub hostname: String,
    pub ipv4: String,
}

/// `[dispenser]` in a service.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispenserTable {
    pub watch: Option<bool>,
    pub initialize: Option<String>,
    pub cron: Option<String>,
    pub pull: Option<String>,
    /// IANA zone the `cron` expression is read in.
    pub timezone: Option<String>,
    /// `skip` or `replace`: what a run does while the previous one still goes.
    pub overlap: Option<String>,
    /// A duration such as "10m" or a number of seconds.
    pub max_runtime: Option<toml::Value>,
    pub track: Option<String>,
}

/// `[proxy]` in a service.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    /// A name, or a list of names all served by the route (the first is its own).
    pub host: toml::Value,
    pub path: Option<String>,
    pub service_port: u16,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub health_path: Option<String>,
    /// Names answered with a redirect to the first host.
    pub redirect_from: Option<Vec<String>>,
    pub strip_prefix: Option<bool>,
    /// htpasswd lines (bcrypt).
    pub basic_auth: Option<Vec<String>>,
    /// Addresses and networks (CIDR) let in; everyone else gets 403.
    pub allow: Option<Vec<String>>,
    /// A folder with `502.html`, `503.html` and `504.html`, any of them.
    pub error_pages: Option<String>,
    /// The ACME challenge for this route's names, over `[certbot] challenge`.
    pub challenge: Option<String>,
}

/// `[logging]`: Compose's `logging`, the container's log driver and its
/// options. Unset: `json-file` with rotation (see the plan's `LogConfig`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingTable {
    pub driver: Option<String>,
    #[serde(default)]
    pub options: BTreeMap<String, toml::Value>,
}

/// `[healthcheck]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckTable {
    pub test: toml::Value,
    pub interval: Option<toml::Value>,
    pub timeout: Option<toml::Value>,
    pub start_period: Option<toml::Value>,
    pub retries: Option<u32>,
}
