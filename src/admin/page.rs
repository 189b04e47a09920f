//! The status page: one handlebars template (`page.hbs`, compiled into the
//! binary), no JavaScript: the charts are inline SVG with `<title>` texts
//! (shown on hover) and `aria` labels, drawn from `charts.rs`. Handlebars
//! escapes every value as HTML.

use handlebars::Handlebars;
use serde::Serialize;

use super::charts::{self, Timeline, TrafficChart, MINUTE_WIDTH, TIMELINE_WIDTH, TRAFFIC_HEIGHT};
use super::report::{human_duration, RunReport, StatusReport, TIMELINE_HOURS};

/// Days left under which a certificate is shown as a warning, and as danger.
const CERTIFICATE_WARN_DAYS: i64 = 14;
const CERTIFICATE_DANGER_DAYS: i64 = 7;
/// Hours between two ticks of the timeline's axis.
const TICK_HOURS: i64 = 6;

/// The template, compiled into the binary.
const TEMPLATE: &str = include_str!("page.hbs");

/// The page's view of the report: values preformatted for people.
#[derive(Debug, Serialize)]
struct PageView<'a> {
    instance: &'a str,
    generated_at: &'a str,
    services: Vec<ServiceRow<'a>>,
    certificates: Vec<CertificateRow<'a>>,
    recent_runs: Vec<RunRow<'a>>,
    timelines: Vec<Timeline>,
    timeline_hours: i64,
    timeline_ticks: Vec<Tick>,
    traffic: Vec<TrafficChart>,
    dependencies: Vec<DependencyRow<'a>>,
    timeline_width: f64,
    traffic_width: f64,
    traffic_height: f64,
}

#[derive(Debug, Serialize)]
struct CertificateRow<'a> {
    host: &'a str,
    source: &'a str,
    expires: &'a str,
    /// `12 days`, `expired`, or `-` when unknown.
    days_left: String,
    /// `ok`, `warn`, `danger` or `unknown`, for the colour.
    class: &'static str,
}

#[derive(Debug, Serialize)]
struct RunRow<'a> {
    #[serde(flatten)]
    run: &'a RunReport,
    duration: String,
}

#[derive(Debug, Serialize)]
struct DependencyRow<'a> {
    name: &'a str,
    reachable: bool,
    since: &'a str,
    /// How long it has been so: `3h 2m`.
    for_how_long: String,
}

/// A line across the timelines, with its label.
#[derive(Debug, Serialize)]
struct Tick {
    x: String,
    /// The same place as a percentage of the width, for the HTML label.
    left: String,
    label: String,
}

#[derive(Debug, Serialize)]
struct ServiceRow<'a> {
    name: &'a str,
    state: String,
    /// The state's first word, for the CSS class.
    state_class: &'a str,
    image: &'a str,
    short_digest: &'a str,
    uptime: String,
    last_deploy: String,
    next_run: &'a str,
    routes: &'a [String],
    route_state: &'a str,
    certificate_expires: &'a str,
    /// Empty unless in maintenance: since when, and the message.
    maintenance: String,
}

/// Renders the report as the HTML page.
pub fn render(report: &StatusReport) -> Result<String, handlebars::RenderError> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    let now = report.generated_unix;
    let names: Vec<&str> = report
        .services
        .iter()
        .map(|service| service.name.as_str())
        .collect();
    let view = PageView {
        instance: &report.instance,
        generated_at: &report.generated_at,
        services: report
            .services
            .iter()
            .map(|service| ServiceRow {
                name: &service.name,
                state: service.state_text(),
                state_class: service.state.split([' ', ':', '(']).next().unwrap_or(""),
                image: &service.image,
                short_digest: service.short_digest.as_deref().unwrap_or("-"),
                uptime: service.uptime().unwrap_or_else(|| "-".into()),
                last_deploy: service.last_deploy_text().unwrap_or_else(|| "-".into()),
                next_run: service.next_run.as_deref().unwrap_or("-"),
                routes: &service.routes,
                route_state: service.route_state.as_deref().unwrap_or(""),
                certificate_expires: service.certificate_expires.as_deref().unwrap_or("-"),
                maintenance: service
                    .maintenance
                    .as_ref()
                    .map(|entry| match &entry.message {
                        Some(message) => format!("since {}: {message}", entry.since),
                        None => format!("since {}", entry.since),
                    })
                    .unwrap_or_default(),
            })
            .collect(),
        certificates: report
            .certificates
            .iter()
            .map(|certificate| {
                let days = certificate
                    .expires_unix
                    .map(|expires| (expires - now).div_euclid(86_400));
                let (days_left, class) = match days {
                    None => ("-".to_owned(), "unknown"),
                    Some(days) if days < 0 => ("expired".to_owned(), "danger"),
                    Some(days) => (
                        format!("{days} day{}", if days == 1 { "" } else { "s" }),
                        match days {
                            days if days < CERTIFICATE_DANGER_DAYS => "danger",
                            days if days < CERTIFICATE_WARN_DAYS => "warn",
                            _ => "ok",
                        },
                    ),
                };
                CertificateRow {
                    host: &certificate.host,
                    source: &certificate.source,
                    expires: certificate.expires.as_deref().unwrap_or("-"),
                    days_left,
                    class,
                }
            })
            .collect(),
        recent_runs: report
            .recent_runs
            .iter()
            .map(|run| RunRow {
                run,
                duration: run
                    .duration_seconds
                    .map_or_else(|| "-".to_owned(), human_duration),
            })
            .collect(),
        timelines: charts::timelines(&names, &report.deploy_history, now),
        timeline_hours: TIMELINE_HOURS,
        timeline_ticks: (0..=TIMELINE_HOURS / TICK_HOURS)
            .map(|tick| {
                let hours_ago = TIMELINE_HOURS - tick * TICK_HOURS;
                let fraction = (tick * TICK_HOURS) as f64 / TIMELINE_HOURS as f64;
                Tick {
                    x: format!("{:.1}", TIMELINE_WIDTH * fraction),
                    left: format!("{:.1}", 100.0 * fraction),
                    label: match hours_ago {
                        0 => "now".to_owned(),
                        hours => format!("-{hours}h"),
                    },
                }
            })
            .collect(),
        traffic: charts::traffic(&report.traffic),
        dependencies: report
            .dependencies
            .iter()
            .map(|dependency| DependencyRow {
                name: &dependency.name,
                reachable: dependency.reachable,
                since: &dependency.since,
                for_how_long: human_duration((now - dependency.since_unix).max(0)),
            })
            .collect(),
        timeline_width: TIMELINE_WIDTH,
        traffic_width: MINUTE_WIDTH * 60.0,
        traffic_height: TRAFFIC_HEIGHT,
    };
    registry.render_template(TEMPLATE, &view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::report::ServiceReport;

    #[test]
    fn values_are_escaped_and_services_listed() {
        let report = StatusReport {
            instance: "prod".into(),
            generated_at: "2026-01-01T00:00:00Z".into(),
            services: vec![ServiceReport {
                name: "api<script>".into(),
                state: "running".into(),
                image: "nginx:latest".into(),
                digest: None,
                short_digest: None,
                container: None,
                started_at: None,
                uptime_seconds: Some(75),
                next_run: None,
                routes: vec!["https://example.test/".into()],
                route_state: Some("ready".into()),
                certificate_expires: None,
                last_deploy: None,
                restarts: 0,
                crash_loop: false,
                maintenance: None,
            }],
            certificates: Vec::new(),
            recent_runs: Vec::new(),
            generated_unix: 1_767_225_600,
            deploy_history: Vec::new(),
            traffic: Vec::new(),
            dependencies: Vec::new(),
        };
        let html = render(&report).expect("renders");
        assert!(html.contains("api&lt;script&gt;"));
        assert!(!html.contains("api<script>"));
        assert!(html.contains("1m 15s"));
        assert!(html.contains("No runs recorded."));
    }

    #[test]
    fn fifty_services_get_labelled_charts_with_unique_ids() {
        use crate::admin::report::{CertificateReport, RouteTrafficReport};
        let now = 1_767_225_600;
        let service = |index: usize| ServiceReport {
            name: format!("service-{index:02}"),
            state: "running".into(),
            image: "web:latest".into(),
            digest: None,
            short_digest: None,
            container: None,
            started_at: None,
            uptime_seconds: None,
            next_run: None,
            routes: Vec::new(),
            route_state: None,
            certificate_expires: None,
            last_deploy: None,
            restarts: 0,
            crash_loop: false,
            maintenance: None,
        };
        let report = StatusReport {
            instance: "scale".into(),
            generated_at: "2026-01-01T00:00:00Z".into(),
            services: (0..50).map(service).collect(),
            certificates: vec![CertificateReport {
                host: "soon.example.test".into(),
                source: "acme".into(),
                expires: None,
                expires_unix: Some(now + 3 * 86_400 + 60),
            }],
            recent_runs: Vec::new(),
            generated_unix: now,
            deploy_history: Vec::new(),
            traffic: (0..50)
                .map(|index| RouteTrafficReport {
                    route: format!("service-{index:02}"),
                    first_minute_unix: now - 59 * 60,
                    requests: vec![3; 60],
                    client_errors: vec![1; 60],
                    server_errors: vec![0; 60],
                })
                .collect(),
            dependencies: Vec::new(),
        };
        let html = render(&report).expect("renders");
        let page = scraper::Html::parse_document(&html);
        let select = |css: &str| {
            let selector = scraper::Selector::parse(css).unwrap();
            page.select(&selector).collect::<Vec<_>>()
        };
        for kind in ["svg.timeline", "svg.traffic"] {
            let charts = select(kind);
            assert_eq!(charts.len(), 50, "{kind}");
            let mut ids: Vec<&str> = charts.iter().filter_map(|svg| svg.value().id()).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), 50, "unique ids of {kind}");
            for svg in charts {
                let label = svg.value().attr("aria-labelledby").expect("labelled");
                assert_eq!(select(&format!("title#{label}")).len(), 1, "{label}");
            }
        }
        assert_eq!(select("svg.traffic g.minute").len(), 50 * 60);
        let days: Vec<_> = select("td.days-left.certificate-danger");
        assert_eq!(days[0].text().collect::<String>(), "3 days");
    }
}
