//! The status page's charts as data for the template: each service's deploy
//! timeline and each route's traffic, in SVG user units. Pure: the report in,
//! shapes with their `<title>` texts out; the template only draws them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::report::{short_digest, DeployHistoryReport, RouteTrafficReport, TIMELINE_HOURS};

/// Width of a timeline, in SVG units (the SVG scales to the page).
pub const TIMELINE_WIDTH: f64 = 1000.0;
/// Width of one minute of a traffic chart, and the chart's height.
pub const MINUTE_WIDTH: f64 = 10.0;
pub const TRAFFIC_HEIGHT: f64 = 40.0;
/// Colours of successive versions; a digest keeps its colour.
const VERSION_COLOURS: [&str; 6] = [
    "#4c78a8", "#54a24b", "#b279a2", "#9d755d", "#72b7b2", "#eeca3b",
];

/// One service's last `TIMELINE_HOURS`.
#[derive(Debug, Serialize)]
pub struct Timeline {
    pub service: String,
    /// Unique in the page, for `aria-labelledby`.
    pub id: String,
    /// What the chart shows, in words (its `<title>`).
    pub summary: String,
    pub bars: Vec<Bar>,
    pub marks: Vec<Mark>,
}

/// A version that served, from its deploy to the next (or now).
#[derive(Debug, Serialize)]
pub struct Bar {
    pub x: String,
    pub width: String,
    pub colour: &'static str,
    /// `version`, or `version rollback` when an operator's rollback put it back.
    pub class: &'static str,
    pub title: String,
}

/// A deploy that did not leave a new version serving.
#[derive(Debug, Serialize)]
pub struct Mark {
    pub x: String,
    /// `rolled-back`, `quarantined` or `failed`.
    pub class: &'static str,
    pub title: String,
}

/// One route's last hour.
#[derive(Debug, Serialize)]
pub struct TrafficChart {
    pub route: String,
    pub id: String,
    pub summary: String,
    pub total: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    /// The busiest minute's requests.
    pub peak: u64,
    pub minutes: Vec<MinuteBar>,
}

/// One minute with requests: stacked from the bottom, 5xx, 4xx, the rest.
#[derive(Debug, Serialize)]
pub struct MinuteBar {
    pub x: String,
    pub width: String,
    pub ok_y: String,
    pub ok_height: String,
    pub client_y: String,
    pub client_height: String,
    pub server_y: String,
    pub server_height: String,
    pub title: String,
}

/// The timeline of each of `services` from their deploys (oldest first).
pub fn timelines(services: &[&str], history: &[DeployHistoryReport], now: i64) -> Vec<Timeline> {
    let start = now - TIMELINE_HOURS * 3600;
    let span = (now - start) as f64;
    let x_of = |at: i64| (at.clamp(start, now) - start) as f64 / span * TIMELINE_WIDTH;
    let mut colours: Vec<Option<String>> = Vec::new();
    services
        .iter()
        .enumerate()
        .map(|(index, service)| {
            let deploys: Vec<&DeployHistoryReport> = history
                .iter()
                .filter(|deploy| deploy.service == *service)
                .collect();
            let succeeded: Vec<&&DeployHistoryReport> = deploys
                .iter()
                .filter(|deploy| deploy.outcome == "succeeded")
                .collect();
            let mut bars = Vec::new();
            for (position, deploy) in succeeded.iter().enumerate() {
                let until = succeeded.get(position + 1).map_or(now, |next| next.ended_unix);
                if until < start {
                    continue;
                }
                let (x, end) = (x_of(deploy.ended_unix), x_of(until));
                let version = version_name(deploy.digest.as_deref());
                let until_text = match succeeded.get(position + 1) {
                    Some(next) => format!("until {}", next.ended_at),
                    None => "serving now".to_owned(),
                };
                bars.push(Bar {
                    x: units(x),
                    width: units((end - x).max(4.0)),
                    colour: colour_of(&mut colours, deploy.digest.as_deref()),
                    class: if deploy.trigger == "rollback" {
                        "version rollback"
                    } else {
                        "version"
                    },
                    title: format!(
                        "{version} deployed by {} at {}, {until_text}",
                        trigger_words(&deploy.trigger),
                        deploy.ended_at
                    ),
                });
            }
            let marks: Vec<Mark> = deploys
                .iter()
                .filter(|deploy| deploy.ended_unix >= start)
                .filter_map(|deploy| {
                    let class = match deploy.outcome.as_str() {
                        "rolled-back" if deploy.quarantined => "quarantined",
                        "rolled-back" => "rolled-back",
                        "failed" => "failed",
                        _ => return None,
                    };
                    let what = match class {
                        "quarantined" => "rolled back and quarantined",
                        "rolled-back" => "rolled back",
                        _ => "failed",
                    };
                    let reason = deploy
                        .reason
                        .as_deref()
                        .map(|reason| format!(": {reason}"))
                        .unwrap_or_default();
                    Some(Mark {
                        x: units(x_of(deploy.ended_unix)),
                        class,
                        title: format!(
                            "{} {what} at {} (deploy by {}){reason}",
                            version_name(deploy.digest.as_deref()),
                            deploy.ended_at,
                            trigger_words(&deploy.trigger)
                        ),
                    })
                })
                .collect();
            let rolled_back = marks.iter().filter(|mark| mark.class != "failed").count();
            let failed = marks.len() - rolled_back;
            let summary = format!(
                "Deploys of {service} over the last {TIMELINE_HOURS} hours: {} version{}, {rolled_back} rolled back, {failed} failed",
                bars.len(),
                if bars.len() == 1 { "" } else { "s" }
            );
            Timeline {
                service: service.to_string(),
                id: format!("timeline-{index}"),
                summary,
                bars,
                marks,
            }
        })
        .collect()
}

/// Each route's chart, scaled to its own busiest minute.
pub fn traffic(routes: &[RouteTrafficReport]) -> Vec<TrafficChart> {
    routes
        .iter()
        .enumerate()
        .map(|(index, route)| {
            let peak = route.requests.iter().copied().max().unwrap_or(0);
            let scale = |count: u64| match peak {
                0 => 0.0,
                peak => count as f64 / peak as f64 * TRAFFIC_HEIGHT,
            };
            let minutes = route
                .requests
                .iter()
                .enumerate()
                .filter(|(_, requests)| **requests > 0)
                .map(|(minute, requests)| {
                    let client = route.client_errors.get(minute).copied().unwrap_or(0);
                    let server = route.server_errors.get(minute).copied().unwrap_or(0);
                    let ok = requests.saturating_sub(client + server);
                    let server_height = scale(server);
                    let client_height = scale(client);
                    let ok_height = scale(ok);
                    let server_y = TRAFFIC_HEIGHT - server_height;
                    let client_y = server_y - client_height;
                    let at = route.first_minute_unix + minute as i64 * 60;
                    MinuteBar {
                        x: units(minute as f64 * MINUTE_WIDTH + 1.0),
                        width: units(MINUTE_WIDTH - 2.0),
                        ok_y: units(client_y - ok_height),
                        ok_height: units(ok_height),
                        client_y: units(client_y),
                        client_height: units(client_height),
                        server_y: units(server_y),
                        server_height: units(server_height),
                        title: format!(
                            "{} UTC: {requests} request{}, {client} 4xx, {server} 5xx",
                            clock(at),
                            if *requests == 1 { "" } else { "s" }
                        ),
                    }
                })
                .collect();
            let total: u64 = route.requests.iter().sum();
            let client_errors: u64 = route.client_errors.iter().sum();
            let server_errors: u64 = route.server_errors.iter().sum();
            TrafficChart {
                summary: format!(
                    "Requests per minute to {} over the last hour: {total} in all, at most {peak} a minute, {client_errors} 4xx, {server_errors} 5xx",
                    route.route
                ),
                route: route.route.clone(),
                id: format!("traffic-{index}"),
                total,
                client_errors,
                server_errors,
                peak,
                minutes,
            }
        })
        .collect()
}

/// How a trigger reads in a title.
fn trigger_words(trigger: &str) -> String {
    match trigger {
        "new-digest" => "a push (new digest)".to_owned(),
        "reload" => "a reload".to_owned(),
        "cron" => "its schedule (cron)".to_owned(),
        "manual" => "an operator (manual)".to_owned(),
        "rollback" => "an operator's rollback".to_owned(),
        "takeover" => "a takeover".to_owned(),
        other => other.to_owned(),
    }
}

fn version_name(digest: Option<&str>) -> String {
    digest.map_or_else(|| "the local image".to_owned(), short_digest)
}

/// The colour of a digest: the next unused one the first time it is seen.
fn colour_of(colours: &mut Vec<Option<String>>, digest: Option<&str>) -> &'static str {
    let key = digest.map(str::to_owned);
    let index = match colours.iter().position(|seen| *seen == key) {
        Some(index) => index,
        None => {
            colours.push(key);
            colours.len() - 1
        }
    };
    VERSION_COLOURS[index % VERSION_COLOURS.len()]
}

/// `HH:MM` of a time in seconds since the epoch.
fn clock(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0)
        .map_or_else(String::new, |at| at.format("%H:%M").to_string())
}

fn units(value: f64) -> String {
    format!("{value:.1}")
}

#[cfg(test)]
#[path = "charts_tests.rs"]
mod tests;
