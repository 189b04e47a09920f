//! Tests of the chart geometry.

use super::*;

const NOW: i64 = 1_800_000_000;

fn deploy(trigger: &str, outcome: &str, ago_hours: i64, digest: &str) -> DeployHistoryReport {
    let ended_unix = NOW - ago_hours * 3600;
    DeployHistoryReport {
        service: "web".into(),
        trigger: trigger.into(),
        outcome: outcome.into(),
        ended_at: DateTime::<Utc>::from_timestamp(ended_unix, 0)
            .expect("time")
            .to_rfc3339(),
        ended_unix,
        digest: Some(digest.into()),
        quarantined: outcome == "rolled-back",
        reason: (outcome != "succeeded").then(|| "healthcheck failed".into()),
    }
}

#[test]
fn versions_are_bars_to_the_next_success_and_failures_are_marks() {
    let history = vec![
        // Before the window: the version serving when it opens.
        deploy("reload", "succeeded", 30, "sha256:aaaa"),
        deploy("new-digest", "succeeded", 12, "sha256:bbbb"),
        deploy("new-digest", "rolled-back", 6, "sha256:cccc"),
        deploy("manual", "failed", 3, "sha256:dddd"),
        deploy("rollback", "succeeded", 1, "sha256:aaaa"),
    ];
    let timeline = timelines(&["web", "idle"], &history, NOW);
    let web = &timeline[0];
    let bars: Vec<(&str, &str)> = web
        .bars
        .iter()
        .map(|bar| (bar.x.as_str(), bar.width.as_str()))
        .collect();
    // 0 to 12 h ago, 12 h to 1 h ago, the last hour.
    assert_eq!(
        bars,
        [("0.0", "500.0"), ("500.0", "458.3"), ("958.3", "41.7")]
    );
    assert_eq!(
        web.bars[0].colour, web.bars[2].colour,
        "a digest keeps its colour"
    );
    assert_ne!(web.bars[0].colour, web.bars[1].colour);
    assert_eq!(web.bars[2].class, "version rollback");
    assert!(web.bars[1]
        .title
        .contains("deployed by a push (new digest)"));
    assert!(web.bars[2].title.ends_with("serving now"));
    let marks: Vec<(&str, &str)> = web
        .marks
        .iter()
        .map(|mark| (mark.class, mark.x.as_str()))
        .collect();
    assert_eq!(marks, [("quarantined", "750.0"), ("failed", "875.0")]);
    assert!(web.marks[0]
        .title
        .contains("sha256:cccc rolled back and quarantined"));
    assert!(web.summary.contains("3 versions, 1 rolled back, 1 failed"));
    assert!(timeline[1].bars.is_empty());
    assert_ne!(timeline[0].id, timeline[1].id);
}

#[test]
fn traffic_stacks_errors_under_the_rest_scaled_to_the_busiest_minute() {
    let mut requests = vec![0; 60];
    let mut client_errors = vec![0; 60];
    let mut server_errors = vec![0; 60];
    requests[10] = 40;
    client_errors[10] = 10;
    server_errors[10] = 10;
    requests[59] = 20;
    let route = RouteTrafficReport {
        route: "web".into(),
        first_minute_unix: NOW - 59 * 60,
        requests,
        client_errors,
        server_errors,
    };
    let chart = &traffic(&[route])[0];
    assert_eq!(
        (
            chart.total,
            chart.peak,
            chart.client_errors,
            chart.server_errors
        ),
        (60, 40, 10, 10)
    );
    assert_eq!(
        chart.minutes.len(),
        2,
        "minutes without requests draw nothing"
    );
    let busy = &chart.minutes[0];
    assert_eq!(busy.x, "101.0");
    assert_eq!(
        (busy.server_y.as_str(), busy.server_height.as_str()),
        ("30.0", "10.0")
    );
    assert_eq!(
        (busy.client_y.as_str(), busy.client_height.as_str()),
        ("20.0", "10.0")
    );
    assert_eq!(
        (busy.ok_y.as_str(), busy.ok_height.as_str()),
        ("0.0", "20.0")
    );
    assert!(busy.title.ends_with("40 requests, 10 4xx, 10 5xx"));
    assert_eq!(chart.minutes[1].ok_height, "20.0");
    assert!(chart.summary.contains("60 in all, at most 40 a minute"));
}
