//! The status page of a daemon that has deployed, rolled back and run a cron
//! job, rendered by the daemon and loaded in headless Chromium (the page
//! carries no script): the timeline, the chart elements and their labels are checked in the
//! DOM Chromium built, and a screenshot is saved under `target/`.

use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::support::{text, Sandbox};

const BUSYBOX: &str = "dispenser-test/busybox:latest";

/// A GET over the daemon's unix socket.
fn get(sb: &Sandbox, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", "--unix-socket"])
        .arg(sb.path("dispenser.sock"))
        .arg(format!("http://dispenser{path}"))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "GET {path}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Headless Chromium on a local file. `--dump-dom` prints nothing with
/// scripts disabled in Blink (nor does `--screenshot` save one), so the page
/// is loaded with them on and checked to carry no script at all.
fn chromium(args: &[&str], page: &std::path::Path) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1400,1000",
        ])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium (apt-get install chromium)")
}

#[test]
fn status_page_draws_deploys_rollbacks_runs_and_dependencies_in_chromium() {
    let mut sb = Sandbox::new();
    let shared = sb.path("shared");
    std::fs::create_dir_all(&shared).unwrap();
    sb.service(
        "app",
        BUSYBOX,
        &format!(
            "command = [\"sh\", \"-c\", \"[ -f /shared/broken ] || : > /tmp/ok; sleep 3600\"]\n\n\
             [healthcheck]\ntest = [\"CMD\", \"sh\", \"-c\", \"[ -f /tmp/ok ]\"]\ninterval = \"1s\"\nretries = 2\n\n\
             [[volume]]\nsource = \"{}\"\ntarget = \"/shared\"\n",
            shared.display()
        ),
    );
    sb.service(
        "job",
        BUSYBOX,
        "command = [\"sh\", \"-c\", \"sleep 1\"]\nrestart = \"no\"\n\n[dispenser]\ninitialize = \"on-trigger\"\ncron = \"*/3 * * * * *\"\n",
    );
    let app = sb.name("app");
    let job = sb.name("job");
    let daemon = sb.start();

    // A deploy that succeeds, then one whose new version fails its healthcheck.
    let deployed = sb.cli(&["deploy", &app]);
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));
    std::fs::write(sb.path("shared/broken"), "").unwrap();
    let failed = sb.cli(&["deploy", &app]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stderr));

    // A cron run that finished.
    let deadline = Instant::now() + Duration::from_secs(30);
    let html = loop {
        let html = get(&sb, "/");
        if html.contains("outcome-succeeded") {
            break html;
        }
        assert!(
            Instant::now() < deadline,
            "no finished run on the page: {html}"
        );
        sleep(Duration::from_millis(500));
    };
    daemon.stop();

    let page = sb.path("status.html");
    std::fs::write(&page, &html).unwrap();
    let dumped = chromium(&["--dump-dom"], &page);
    assert!(dumped.status.success(), "{}", text(&dumped.stderr));
    let dom = scraper::Html::parse_document(&text(&dumped.stdout));
    let select = |css: &str| {
        let selector = scraper::Selector::parse(css).unwrap();
        dom.select(&selector).collect::<Vec<_>>()
    };
    let title_of = |element: &scraper::ElementRef| {
        let title = scraper::Selector::parse("title").unwrap();
        element
            .select(&title)
            .next()
            .map(|title| title.text().collect::<String>())
            .unwrap_or_default()
    };

    assert!(select("script").is_empty(), "the page needs no script");

    // The timeline of app: a labelled SVG, bars for versions, a rolled-back mark.
    let row = format!("#deploys tr[data-name=\"{app}\"] svg.timeline");
    let timeline = select(&row);
    let dumped_text = text(&dumped.stdout);
    let start = dumped_text.find("id=\"deploys\"").unwrap_or(0);
    assert_eq!(
        timeline.len(),
        1,
        "one timeline for {app}: {}",
        &dumped_text[start..(start + 3000).min(dumped_text.len())]
    );
    let svg = timeline[0];
    assert_eq!(svg.value().attr("role"), Some("img"));
    let labelled_by = svg
        .value()
        .attr("aria-labelledby")
        .expect("aria-labelledby");
    let label = select(&format!("title#{labelled_by}"));
    let label: String = label[0].text().collect();
    assert!(
        label.contains(&format!("Deploys of {app} over the last 24 hours"))
            && label.contains("1 rolled back"),
        "{label}"
    );
    let bars = select(&format!("{row} rect.version"));
    assert!(!bars.is_empty(), "a bar per version");
    assert!(
        bars.iter()
            .any(|bar| title_of(bar).contains("deployed by an operator (manual)")),
        "{:?}",
        bars.iter().map(title_of).collect::<Vec<_>>()
    );
    let marks = select(&format!("{row} rect.mark.rolled-back"));
    assert_eq!(marks.len(), 1, "the rolled-back deploy is marked");
    assert!(
        title_of(&marks[0]).contains("rolled back at"),
        "{}",
        title_of(&marks[0])
    );
    assert!(
        title_of(&marks[0]).contains("failed its healthcheck"),
        "{}",
        title_of(&marks[0])
    );

    // The cron run: its duration and outcome.
    // (The newest may be a run skipped while the one before it still went
    // on, on a loaded machine: the every-3-seconds job sleeps 1 s.)
    let runs = select("#runs tr.run");
    let texts: Vec<String> = runs.iter().map(|run| run.text().collect()).collect();
    let succeeded = texts
        .iter()
        .position(|run| run.contains(&job) && run.contains("succeeded"))
        .unwrap_or_else(|| panic!("no succeeded run of {job}: {texts:?}"));
    let duration_cell = scraper::Selector::parse("td.duration").unwrap();
    let duration: String = runs[succeeded]
        .select(&duration_cell)
        .next()
        .expect("a duration cell")
        .text()
        .collect();
    assert!(duration.ends_with('s'), "a duration: {duration}");

    // The Docker Engine, reachable.
    let docker = select("#dependencies tr[data-name=\"Docker Engine\"] td.dependency-up");
    assert_eq!(docker.len(), 1, "Docker reachable on the page");

    // The traffic table (no proxy in this daemon) says so.
    assert_eq!(select("#traffic tr.traffic-row").len(), 0);

    // A screenshot, as an artefact under target/.
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let _ = std::fs::remove_file(&screenshot);
    let shot = chromium(&[&format!("--screenshot={}", screenshot.display())], &page);
    assert!(shot.status.success(), "{}", text(&shot.stderr));
    let size = std::fs::metadata(&screenshot)
        .expect("screenshot saved")
        .len();
    assert!(size > 10_000, "a real picture: {size} bytes");
}
