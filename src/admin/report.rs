//! The status report: what `GET /v1/status` answers, what `dispenser status`
//! prints and what the web page shows. Serde types shared by the daemon and
//! the CLI, plus the gathering from the actors and the engine.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use dispenser_actors::cron::NextRuns;
use dispenser_actors::engine::labels;
use dispenser_actors::ledger::{DeployOutcomeKind, RecentDeploys, RecentRuns};
use dispenser_actors::metrics::{self, traffic::current_minute};
use dispenser_actors::plan::{ProxySettings, ProxyStrategy, Route};
use dispenser_actors::proxy::table::Upstream;
use dispenser_actors::service::quarantined_in;
use dispenser_actors::supervisor::GetStatus;
use serde::{Deserialize, Serialize};

use super::AdminState;

/// Runs per scheduled service the web page shows.
const RECENT_RUNS_SHOWN: usize = 5;
/// The deploy timeline's window.
pub const TIMELINE_HOURS: i64 = 24;
/// Deploys read per service for the timeline (and its quarantine marks).
const DEPLOYS_READ: usize = 100;
/// Characters of a digest shown in the table (after `sha256:`).
const SHORT_DIGEST: usize = 12;

/// Everything the daemon knows about its services.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    pub instance: String,
    pub generated_at: String,
    pub services: Vec<ServiceReport>,
    pub certificates: Vec<CertificateReport>,
    pub recent_runs: Vec<RunReport>,
    /// `generated_at` in seconds since the epoch.
    #[serde(default)]
    pub generated_unix: i64,
    /// Each service's deploys of the last `TIMELINE_HOURS`, oldest first, back
    /// to the last success before them (the version running when the window opens).
    #[serde(default)]
    pub deploy_history: Vec<DeployHistoryReport>,
    /// Each route's last hour, minute by minute.
    #[serde(default)]
    pub traffic: Vec<RouteTrafficReport>,
    /// The Docker Engine and each watched registry.
    #[serde(default)]
    pub dependencies: Vec<DependencyReport>,
}

/// One deploy as the ledger holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeployHistoryReport {
    pub service: String,
    /// `new-digest`, `reload`, `cron`, `manual`, `rollback` or `takeover`.
    pub trigger: String,
    /// `succeeded`, `rolled-back`, `failed`, `abandoned` or `superseded`.
    pub outcome: String,
    /// When it ended (RFC 3339), and in seconds since the epoch.
    pub ended_at: String,
    pub ended_unix: i64,
    /// The digest it put in place (or tried to).
    pub digest: Option<String>,
    /// The digest is quarantined: it was rolled back and is not tried again.
    pub quarantined: bool,
    pub reason: Option<String>,
}

/// One route's traffic: `MINUTES` minutes, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteTrafficReport {
    pub route: String,
    /// The first minute's start, in seconds since the epoch.
    pub first_minute_unix: i64,
    pub requests: Vec<u64>,
    pub client_errors: Vec<u64>,
    pub server_errors: Vec<u64>,
}

/// Whether a dependency answered when last asked, and since when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DependencyReport {
    pub name: String,
    pub reachable: bool,
    /// RFC 3339, and in seconds since the epoch.
    pub since: String,
    pub since_unix: i64,
}

/// One service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceReport {
    pub name: String,
    pub state: String,
    pub image: String,
    /// The digest the container was deployed from (`sha256:...`), if known.
    pub digest: Option<String>,
    pub short_digest: Option<String>,
    pub container: Option<String>,
    /// When its container started (RFC 3339).
    pub started_at: Option<String>,
    pub uptime_seconds: Option<i64>,
    /// The next scheduled run (RFC 3339), for services with `cron`.
    pub next_run: Option<String>,
    /// The URL that serves each route of the service: `https://host/path`
    /// (then one per alias of the route's `host` list),
    /// `http://` under `strategy = "http-only"`, with the listener's port
    /// unless it is the scheme's default.
    pub routes: Vec<String>,
    /// What the proxy knows of the upstream: `ready`, `starting` or `down`.
    pub route_state: Option<String>,
    /// The route certificate's expiry (RFC 3339).
    pub certificate_expires: Option<String>,
    /// The last deploy or rollback since the daemon started.
    pub last_deploy: Option<DeployReport>,
    /// Restarts by Docker's restart policy since the daemon started.
    #[serde(default)]
    pub restarts: u64,
    /// True while the container keeps exiting and Docker keeps restarting it.
    #[serde(default)]
    pub crash_loop: bool,
    /// Set while an operator holds the service in maintenance.
    #[serde(default)]
    pub maintenance: Option<MaintenanceReport>,
}

/// A service in maintenance: its routes answer 503 with a page.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MaintenanceReport {
    /// RFC 3339.
    pub since: String,
    pub message: Option<String>,
}

/// One deploy or rollback and how it ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeployReport {
    /// RFC 3339.
    pub at: String,
    /// `deployed`, `deploy_failed`, `rolled_back` or `rollback_failed`.
    pub outcome: String,
    pub message: String,
}

/// One certificate the proxy serves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CertificateReport {
    pub host: String,
    /// `self-signed`, `acme` or `manual`.
    pub source: String,
    pub expires: Option<String>,
    pub expires_unix: Option<i64>,
}

/// One recorded scheduled run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    pub service: String,
    pub started_at: String,
    pub outcome: String,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    /// From start to exit; `None` for a skipped run.
    #[serde(default)]
    pub duration_seconds: Option<i64>,
}

impl ServiceReport {
    /// The last deploy in words: `deployed 2026-01-01T10:00:00Z`.
    pub fn last_deploy_text(&self) -> Option<String> {
        self.last_deploy
            .as_ref()
            .map(|deploy| format!("{} {}", deploy.outcome, deploy.at))
    }

    /// The state with its restarts: `running`, `running (2 restarts)`,
    /// `running (crash loop, 7 restarts)`.
    pub fn state_text(&self) -> String {
        let plural = if self.restarts == 1 { "" } else { "s" };
        let state = match (self.crash_loop, self.restarts) {
            (true, restarts) => format!("{} (crash loop, {restarts} restart{plural})", self.state),
            (false, 0) => self.state.clone(),
            (false, restarts) => format!("{} ({restarts} restart{plural})", self.state),
        };
        match &self.maintenance {
            Some(_) => format!("{state}, in maintenance"),
            None => state,
        }
    }

    /// Uptime in words: `3d 4h`, `5m 2s`.
    pub fn uptime(&self) -> Option<String> {
        self.uptime_seconds.map(human_duration)
    }
}

/// Gathers the report: the supervisor's status board, the ticker's next
/// runs, the plan's routes, the certificate map and each container.
pub async fn gather(state: &AdminState) -> StatusReport {
    let now = Utc::now();
    let statuses = state.supervisor.send(GetStatus).await.unwrap_or_default();
    let next_runs = match &state.ticker {
        Some(ticker) => ticker.send(NextRuns).await.unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let plan = state.plan.current();
    let certificates = gather_certificates(state);
    let expiry_of = |host: &str| {
        certificates
            .iter()
            .find(|cert| cert.host.eq_ignore_ascii_case(host))
            .and_then(|cert| cert.expires.clone())
    };
    let mut services = Vec::new();
    for status in statuses {
        let container = match &status.container_id {
            Some(id) => state.engine.inspect(id).await.ok().flatten(),
            None => None,
        };
        let started = container
            .as_ref()
            .filter(|c| c.state == dispenser_actors::engine::ContainerState::Running)
            .and_then(|c| DateTime::parse_from_rfc3339(&c.started_at).ok())
            .map(|at| at.with_timezone(&Utc));
        let digest = container
            .as_ref()
            .and_then(|c| c.labels.get(labels::IMAGE_DIGEST).cloned());
        let route = plan
            .as_ref()
            .and_then(|plan| plan.services.get(&status.name))
            .and_then(|service| service.route.clone());
        let (routes, certificate_expires) = match &route {
            Some(route) => {
                let proxy = plan.as_ref().and_then(|plan| plan.proxy.as_ref());
                let aliases = route
                    .rules
                    .aliases
                    .iter()
                    .map(|alias| host_url(alias, &route.path, proxy));
                (
                    std::iter::once(route_url(route, proxy))
                        .chain(aliases)
                        .collect(),
                    expiry_of(&route.host),
                )
            }
            None => (Vec::new(), None),
        };
        services.push(ServiceReport {
            short_digest: digest.as_deref().map(short_digest),
            digest,
            container: status
                .container_id
                .as_ref()
                .map(|id| id.chars().take(12).collect()),
            started_at: started.map(rfc3339),
            uptime_seconds: started.map(|at| (now - at).num_seconds().max(0)),
            next_run: next_runs.get(&status.name).copied().map(rfc3339),
            routes,
            certificate_expires,
            route_state: route_state(state, &status.name),
            last_deploy: state.deploys.last(&status.name),
            restarts: status.restarts,
            crash_loop: status.in_crash_loop(),
            maintenance: maintenance(state, &status.name),
            name: status.name,
            state: status.state.to_string(),
            image: status.image,
        });
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let recent_runs = recent_runs(state, &next_runs).await;
    let names: Vec<String> = services
        .iter()
        .map(|service| service.name.clone())
        .collect();
    let deploy_history = deploy_history(state, &names, now).await;
    StatusReport {
        instance: plan
            .as_ref()
            .map(|plan| plan.settings.instance.clone())
            .unwrap_or_default(),
        generated_at: rfc3339(now),
        services,
        certificates,
        recent_runs,
        generated_unix: now.timestamp(),
        deploy_history,
        traffic: traffic(),
        dependencies: dependencies(),
    }
}

/// Whether the proxy holds `service` in maintenance.
fn maintenance(state: &AdminState, service: &str) -> Option<MaintenanceReport> {
    let table = state.routes.as_ref()?.load();
    table.maintenance(service).map(|entry| MaintenanceReport {
        since: entry.since.clone(),
        message: entry.message.clone(),
    })
}

/// Each service's deploys in the timeline's window, oldest first, with the
/// newest one before it; quarantine as the service actor rebuilds it.
async fn deploy_history(
    state: &AdminState,
    services: &[String],
    now: DateTime<Utc>,
) -> Vec<DeployHistoryReport> {
    let Some(ledger) = &state.ledger else {
        return Vec::new();
    };
    let window_start = now - chrono::Duration::hours(TIMELINE_HOURS);
    let mut history = Vec::new();
    for service in services {
        let asked = ledger.send(RecentDeploys {
            service: service.clone(),
            limit: DEPLOYS_READ,
        });
        let Ok(Ok(records)) = asked.await else {
            continue;
        };
        let quarantined = quarantined_in(&records);
        // Newest first: those in the window, then back to the last success
        // before it (the version running when the window opens).
        let before = records
            .iter()
            .position(|deploy| {
                deploy.ended_at < window_start && deploy.outcome == DeployOutcomeKind::Succeeded
            })
            .map_or(records.len(), |index| index + 1);
        history.extend(records[..before].iter().rev().map(|deploy| {
            let digest = deploy
                .new_digest
                .clone()
                .filter(|digest| !digest.is_empty());
            DeployHistoryReport {
                service: deploy.service.clone(),
                trigger: deploy.trigger.to_string(),
                outcome: deploy.outcome.to_string(),
                ended_at: rfc3339(deploy.ended_at),
                ended_unix: deploy.ended_at.timestamp(),
                quarantined: deploy.outcome == DeployOutcomeKind::RolledBack
                    && digest
                        .as_ref()
                        .is_some_and(|digest| quarantined.contains(digest)),
                digest,
                reason: deploy.reason.clone(),
            }
        }));
    }
    history
}

/// Every route's last hour from the proxy's traffic rings.
fn traffic() -> Vec<RouteTrafficReport> {
    let now = current_minute();
    metrics::global()
        .traffic(now)
        .into_iter()
        .map(|(route, minutes)| RouteTrafficReport {
            route,
            first_minute_unix: minutes
                .first()
                .map_or(0, |minute| i64::try_from(minute.minute * 60).unwrap_or(0)),
            requests: minutes.iter().map(|minute| minute.requests).collect(),
            client_errors: minutes.iter().map(|minute| minute.client_errors).collect(),
            server_errors: minutes.iter().map(|minute| minute.server_errors).collect(),
        })
        .collect()
}

/// The dependencies board.
fn dependencies() -> Vec<DependencyReport> {
    dispenser_actors::dependencies::global()
        .snapshot()
        .into_iter()
        .map(|(name, reach)| DependencyReport {
            name,
            reachable: reach.reachable,
            since: rfc3339(reach.since),
            since_unix: reach.since.timestamp(),
        })
        .collect()
}

/// The proxy table's view of a service's route.
fn route_state(state: &AdminState, service: &str) -> Option<String> {
    let table = state.routes.as_ref()?.load();
    let entries = table.entries();
    let entry = entries
        .values()
        .flat_map(|entries| entries.iter())
        .find(|entry| &*entry.service == service)?;
    Some(
        match entry.upstream {
            Upstream::Ready { .. } => "ready",
            Upstream::Starting => "starting",
            Upstream::Down => "down",
        }
        .to_owned(),
    )
}

pub fn gather_certificates(state: &AdminState) -> Vec<CertificateReport> {
    let Some(certs) = &state.certs else {
        return Vec::new();
    };
    certs
        .expiries()
        .into_iter()
        .map(|(host, source, expires_unix)| CertificateReport {
            host,
            source: match source {
                dispenser_actors::proxy::certs::CertSource::SelfSigned => "self-signed",
                dispenser_actors::proxy::certs::CertSource::Acme => "acme",
                dispenser_actors::proxy::certs::CertSource::Manual => "manual",
            }
            .to_owned(),
            expires: expires_unix
                .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0))
                .map(rfc3339),
            expires_unix,
        })
        .collect()
}

/// The newest runs of every scheduled service, newest first.
async fn recent_runs(
    state: &AdminState,
    scheduled: &BTreeMap<String, DateTime<Utc>>,
) -> Vec<RunReport> {
    let Some(ledger) = &state.ledger else {
        return Vec::new();
    };
    let mut runs = Vec::new();
    for service in scheduled.keys() {
        let asked = ledger.send(RecentRuns {
            service: service.clone(),
            limit: RECENT_RUNS_SHOWN,
        });
        if let Ok(Ok(records)) = asked.await {
            runs.extend(records.into_iter().map(|run| {
                RunReport {
                    service: run.service,
                    started_at: rfc3339(run.started_at),
                    outcome: run.outcome.to_string(),
                    exit_code: run.exit_code,
                    reason: run.reason,
                    duration_seconds: run
                        .ended_at
                        .map(|ended| (ended - run.started_at).num_seconds().max(0)),
                }
            }));
        }
    }
    runs.sort_by(|a, b| b.started_at.cmp(&a.started_at));
    runs
}

/// `sha256:0123456789ab` from a full digest.
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => {
            format!(
                "{algorithm}:{}",
                hex.chars().take(SHORT_DIGEST).collect::<String>()
            )
        }
        None => digest.chars().take(SHORT_DIGEST).collect(),
    }
}

/// The URL that serves `route` through the proxy's listeners: HTTPS unless
/// only the HTTP listener serves routes; the port when it is not the default.
pub fn route_url(route: &Route, proxy: Option<&ProxySettings>) -> String {
    host_url(&route.host, &route.path, proxy)
}

/// The URL of `host` + `path` through the proxy's listeners, as [`route_url`].
fn host_url(host: &str, path: &str, proxy: Option<&ProxySettings>) -> String {
    let (scheme, port, default_port) = match proxy {
        Some(proxy) if proxy.strategy == ProxyStrategy::HttpOnly => {
            ("http", proxy.http_listen.port(), 80)
        }
        Some(proxy) => ("https", proxy.https_listen.port(), 443),
        None => ("https", 443, 443),
    };
    match port == default_port {
        true => format!("{scheme}://{host}{path}"),
        false => format!("{scheme}://{host}:{port}{path}"),
    }
}

/// Two units at most: `3d 4h`, `2h 5m`, `5m 2s`, `9s`.
pub fn human_duration(seconds: i64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_urls_name_the_scheme_and_port_that_serve() {
        let route = Route {
            host: "app.example.test".into(),
            path: "/api".into(),
            service_port: 8080,
            health_path: None,
            tls: dispenser_actors::plan::TlsSource::Automatic,
            challenge: None,
            rules: Default::default(),
        };
        let mut proxy = ProxySettings::with_listeners(
            ProxyStrategy::HttpsOnly,
            "0.0.0.0:80".parse().unwrap(),
            "0.0.0.0:443".parse().unwrap(),
        );
        let url = |proxy: &ProxySettings| route_url(&route, Some(proxy));
        proxy.strategy = ProxyStrategy::HttpsOnly;
        assert_eq!(url(&proxy), "https://app.example.test/api");
        proxy.strategy = ProxyStrategy::Both;
        assert_eq!(url(&proxy), "https://app.example.test/api");
        proxy.strategy = ProxyStrategy::HttpOnly;
        assert_eq!(url(&proxy), "http://app.example.test/api");
        proxy.http_listen = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(url(&proxy), "http://app.example.test:8080/api");
        proxy.strategy = ProxyStrategy::HttpsOnly;
        proxy.https_listen = "127.0.0.1:8443".parse().unwrap();
        assert_eq!(url(&proxy), "https://app.example.test:8443/api");
    }

    #[test]
    fn durations_read_as_two_units() {
        assert_eq!(human_duration(9), "9s");
        assert_eq!(human_duration(302), "5m 2s");
        assert_eq!(human_duration(7500), "2h 5m");
        assert_eq!(human_duration(273_600), "3d 4h");
    }

    #[test]
    fn digests_are_shortened_after_the_algorithm() {
        assert_eq!(
            short_digest("sha256:0123456789abcdef"),
            "sha256:0123456789ab"
        );
    }
}
