//! The status page: one handlebars template (`page.hbs`, compiled into the
//! binary), no JavaScript. Handlebars escapes every value as HTML.

use handlebars::Handlebars;
use serde::Serialize;

use super::report::{CertificateReport, RunReport, StatusReport};

/// The template, compiled into the binary.
const TEMPLATE: &str = include_str!("page.hbs");

/// The page's view of the report: values preformatted for people.
#[derive(Debug, Serialize)]
struct PageView<'a> {
    instance: &'a str,
    generated_at: &'a str,
    services: Vec<ServiceRow<'a>>,
    certificates: &'a [CertificateReport],
    recent_runs: &'a [RunReport],
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
        certificates: &report.certificates,
        recent_runs: &report.recent_runs,
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
        };
        let html = render(&report).expect("renders");
        assert!(html.contains("api&lt;script&gt;"));
        assert!(!html.contains("api<script>"));
        assert!(html.contains("1m 15s"));
        assert!(html.contains("No runs recorded."));
    }
}
