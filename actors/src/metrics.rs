//! `Metrics`: process-wide counters that the code paths bump with one call
//! and the admin listener renders in the Prometheus text format. Plain
//! atomics behind read-mostly maps: the proxy's hot path takes a read lock
//! and increments, never allocates once its route is known.
//!
//! Series (all prefixed `dispenser_`):
//! - `deploys_total{service,outcome}`: operator and watcher deploys, rollbacks.
//! - `registry_checks_total{outcome}`: digest checks by the registry watcher.
//! - `proxy_requests_total{route,status}` and `proxy_request_duration_seconds`
//!   (histogram, by route): requests the proxy forwarded.
//! - `cron_runs_total{service,outcome}`: scheduled runs as the ledger records them.
//! - `container_restarts_total{service}`: restarts by Docker's restart policy.
//! - `container_exits_total{service,reason}`: exits Dispenser did not ask
//!   for, `reason` `oom` (killed for lack of memory) or `exited`.
//! - `images_removed_total{service}` and `image_bytes_freed_total{service}`:
//!   old images the clean-up after a proven deploy removed, and their size.
//! - `certificate_expiry_timestamp_seconds{host}`: written by the renderer
//!   from the certificate map, not kept here.
//!
//! Beside the counters, each route keeps its last hour minute by minute
//! (`traffic::TrafficRing`) for the status page's charts.

pub mod traffic;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

// foldhash: the route names are the config's, and one lookup is per request.
use foldhash::HashMap;

/// Upper bounds of the proxy latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Status classes counted per route: 1xx to 5xx.
const STATUS_CLASSES: usize = 5;

/// Every counter of the process.
#[derive(Debug, Default)]
pub struct Metrics {
    deploys: Counters,
    registry_checks: Counters,
    cron_runs: Counters,
    container_restarts: Counters,
    container_exits: Counters,
    images_removed: Counters,
    image_bytes_freed: Counters,
    routes: RwLock<HashMap<Arc<str>, Arc<RouteStats>>>,
}

/// Counters keyed by their label values, in label-name order.
#[derive(Debug, Default)]
struct Counters(RwLock<BTreeMap<Vec<String>, Arc<AtomicU64>>>);

/// One route's requests: counts by status class and a latency histogram.
#[derive(Debug, Default)]
struct RouteStats {
    by_class: [AtomicU64; STATUS_CLASSES],
    /// One count per bucket of `LATENCY_BUCKETS` (not cumulative), plus +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of latencies in microseconds.
    sum_micros: AtomicU64,
    /// Requests and errors per minute over the last hour.
    traffic: traffic::TrafficRing,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    /// A deploy or rollback of `service` ended with `outcome` (`succeeded`,
    /// `failed`, `rolled_back`...).
    pub fn deploy(&self, service: &str, outcome: &str) {
        self.deploys.bump(&[service, outcome]);
    }

    /// A registry check ended with `outcome` (`ok` or `error`).
    pub fn registry_check(&self, outcome: &str) {
        self.registry_checks.bump(&[outcome]);
    }

    /// A scheduled run of `service` ended with `outcome`.
    pub fn cron_run(&self, service: &str, outcome: &str) {
        self.cron_runs.bump(&[service, outcome]);
    }

    /// Docker's restart policy restarted a container of `service` `count` times.
    pub fn container_restarts(&self, service: &str, count: u64) {
        self.container_restarts.add(&[service], count);
    }

    /// A container of `service` exited on its own (`reason`: `oom` or `exited`).
    pub fn container_exit(&self, service: &str, reason: &str) {
        self.container_exits.bump(&[service, reason]);
    }

    /// The clean-up after a deploy of `service` removed `images` images of
    /// `bytes` in all.
    pub fn images_removed(&self, service: &str, images: u64, bytes: u64) {
        self.images_removed.add(&[service], images);
        self.image_bytes_freed.add(&[service], bytes);
    }

    /// The proxy answered a request on `route` with `status` after `elapsed`.
    pub fn proxy_request(&self, route: &Arc<str>, status: u16, elapsed: Duration) {
        let stats = self.route(route);
        let class = usize::from(status / 100).clamp(1, STATUS_CLASSES) - 1;
        stats.by_class[class].fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        stats.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        stats.sum_micros.fetch_add(micros, Ordering::Relaxed);
        stats.traffic.record(status);
    }

    /// Each route's last hour, minute by minute up to `now` (minutes since
    /// the epoch, `traffic::current_minute()`), by route name.
    pub fn traffic(&self, now: u64) -> BTreeMap<String, Vec<traffic::MinuteCounts>> {
        read(&self.routes)
            .iter()
            .map(|(route, stats)| (route.to_string(), stats.traffic.last_hour(now)))
            .collect()
    }

    /// The text format (version 0.0.4) of every series kept here.
    pub fn render(&self, out: &mut String) {
        self.deploys.render(
            out,
            "dispenser_deploys_total",
            "Deploys and rollbacks by service and outcome.",
            &["service", "outcome"],
        );
        self.registry_checks.render(
            out,
            "dispenser_registry_checks_total",
            "Registry digest checks by outcome.",
            &["outcome"],
        );
        self.cron_runs.render(
            out,
            "dispenser_cron_runs_total",
            "Scheduled runs by service and outcome.",
            &["service", "outcome"],
        );
        self.container_restarts.render(
            out,
            "dispenser_container_restarts_total",
            "Restarts of service containers by Docker's restart policy.",
            &["service"],
        );
        self.container_exits.render(
            out,
            "dispenser_container_exits_total",
            "Exits of service containers that Dispenser did not ask for, by reason (oom, exited).",
            &["service", "reason"],
        );
        self.images_removed.render(
            out,
            "dispenser_images_removed_total",
            "Old images of a service removed after a proven deploy.",
            &["service"],
        );
        self.image_bytes_freed.render(
            out,
            "dispenser_image_bytes_freed_total",
            "Bytes of the old images removed after a proven deploy.",
            &["service"],
        );
        self.render_routes(out);
    }

    fn route(&self, route: &Arc<str>) -> Arc<RouteStats> {
        if let Some(stats) = read(&self.routes).get(route) {
            return stats.clone();
        }
        let mut routes = self
            .routes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        routes.entry(route.clone()).or_default().clone()
    }

    fn render_routes(&self, out: &mut String) {
        let routes: BTreeMap<Arc<str>, Arc<RouteStats>> = read(&self.routes)
            .iter()
            .map(|(route, stats)| (route.clone(), stats.clone()))
            .collect();
        header(
            out,
            "dispenser_proxy_requests_total",
            "Requests forwarded by the proxy, by route and status class.",
            "counter",
        );
        for (route, stats) in &routes {
            for (index, count) in stats.by_class.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "dispenser_proxy_requests_total{{route=\"{}\",status=\"{}xx\"}} {count}",
                        escape(route),
                        index + 1
                    );
                }
            }
        }
        header(
            out,
            "dispenser_proxy_request_duration_seconds",
            "Time to the response head of forwarded requests, by route.",
            "histogram",
        );
        let name = "dispenser_proxy_request_duration_seconds";
        for (route, stats) in &routes {
            let route = escape(route);
            let mut cumulative = 0;
            for (index, bound) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += stats.buckets[index].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += stats.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {cumulative}"
            );
            let sum = stats.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {cumulative}");
        }
    }
}

impl Counters {
    fn bump(&self, labels: &[&str]) {
        self.add(labels, 1);
    }

    fn add(&self, labels: &[&str], count: u64) {
        let key: Vec<String> = labels.iter().map(|label| label.to_string()).collect();
        if let Some(counter) = read(&self.0).get(&key) {
            counter.fetch_add(count, Ordering::Relaxed);
            return;
        }
        let mut map = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(key)
            .or_default()
            .fetch_add(count, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str, label_names: &[&str]) {
        header(out, name, help, "counter");
        for (values, count) in read(&self.0).iter() {
            let labels: Vec<String> = label_names
                .iter()
                .zip(values)
                .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
                .collect();
            let _ = writeln!(
                out,
                "{name}{{{}}} {}",
                labels.join(","),
                count.load(Ordering::Relaxed)
            );
        }
    }
}

/// `# HELP` and `# TYPE` lines of a metric family.
pub fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histogram_render_as_text_format() {
        let metrics = Metrics::default();
        metrics.deploy("api", "succeeded");
        metrics.deploy("api", "succeeded");
        metrics.registry_check("error");
        let route: Arc<str> = Arc::from("api");
        metrics.proxy_request(&route, 200, Duration::from_millis(3));
        metrics.proxy_request(&route, 502, Duration::from_secs(20));
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("dispenser_deploys_total{service=\"api\",outcome=\"succeeded\"} 2"));
        assert!(out.contains("dispenser_registry_checks_total{outcome=\"error\"} 1"));
        assert!(out.contains("dispenser_proxy_requests_total{route=\"api\",status=\"2xx\"} 1"));
        assert!(out.contains("dispenser_proxy_requests_total{route=\"api\",status=\"5xx\"} 1"));
        assert!(out.contains(
            "dispenser_proxy_request_duration_seconds_bucket{route=\"api\",le=\"0.005\"} 1"
        ));
        assert!(out.contains(
            "dispenser_proxy_request_duration_seconds_bucket{route=\"api\",le=\"+Inf\"} 2"
        ));
        assert!(out.contains("dispenser_proxy_request_duration_seconds_count{route=\"api\"} 2"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
