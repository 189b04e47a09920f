//! The operator's surface against a running daemon: the admin socket and
//! its mode, `status` (table and JSON), `logs`, `deploy` errors, the metrics
//! endpoint parsed as Prometheus text, the status page parsed as HTML,
//! `dev -s` with pruning, completions and the man page.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::support::{docker, exists, text, wait_exit, webhook_receiver, Sandbox, EXIT_TIMEOUT};

const BUSYBOX: &str = "dispenser-test/busybox:latest";

/// A GET over the daemon's unix socket (curl speaks HTTP over it).
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

fn chatty_service(sb: &mut Sandbox, short: &str) {
    sb.service(
        short,
        BUSYBOX,
        "command = [\"sh\", \"-c\", \"echo hello-from-the-container; sleep 3600\"]\n",
    );
}

/// A chatty service that is healthy once it made `/tmp/ok`, which it does
/// at its start unless the host's `<sandbox>/shared/broken` exists: from
/// then on, every new container of it fails its healthcheck.
fn breakable_service(sb: &mut Sandbox, short: &str) {
    let shared = sb.path("shared");
    std::fs::create_dir_all(&shared).unwrap();
    sb.service(
        short,
        BUSYBOX,
        &format!(
            "command = [\"sh\", \"-c\", \"echo hello-from-the-container; [ -f /shared/broken ] || : > /tmp/ok; sleep 3600\"]\n\n\
             [healthcheck]\ntest = [\"CMD\", \"sh\", \"-c\", \"[ -f /tmp/ok ]\"]\ninterval = \"1s\"\nretries = 2\n\n\
             [[volume]]\nsource = \"{}\"\ntarget = \"/shared\"\n",
            shared.display()
        ),
    );
}

/// Makes every new container of a `breakable_service` fail its healthcheck.
fn break_service(sb: &Sandbox) {
    std::fs::write(sb.path("shared/broken"), "").unwrap();
}

#[test]
fn status_logs_metrics_and_page_through_the_admin_socket() {
    let mut sb = Sandbox::new();
    breakable_service(&mut sb, "app");
    let app = sb.name("app");
    let daemon = sb.start();

    // The socket: beside the config, owner and group only, the daemon's user.
    let meta = std::fs::metadata(sb.path("dispenser.sock")).expect("socket exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.uid(), nix_uid());

    let table = sb.cli(&["status"]);
    assert!(table.status.success(), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    assert!(table.starts_with("SERVICE"), "{table}");
    let row = table
        .lines()
        .find(|line| line.starts_with(&app))
        .unwrap_or_else(|| panic!("no row for {app}: {table}"));
    assert!(row.contains("running"), "{row}");
    assert!(row.contains(BUSYBOX), "{row}");

    let json = sb.cli(&["status", "--json"]);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(json["instance"], sb.id.as_str());
    let service = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == app.as_str())
        .expect("service in json");
    assert_eq!(service["state"], "running");
    assert!(service["uptime_seconds"].as_i64().is_some(), "{service}");

    // Logs: the container's output through the daemon.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = sb.cli(&["logs", &app, "--tail", "5"]);
        assert!(logs.status.success(), "{}", text(&logs.stderr));
        if text(&logs.stdout).contains("hello-from-the-container") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no output: {}",
            text(&logs.stdout)
        );
        sleep(Duration::from_millis(300));
    }
    let unknown = sb.cli(&["logs", "no-such-service"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("no service named"),
        "{}",
        text(&unknown.stderr)
    );

    // A deploy whose new container never becomes healthy fails, and says
    // why, with a failing exit code; the proven container keeps serving.
    let serving = docker(&["inspect", "-f", "{{.Id}}", &app]);
    break_service(&sb);
    let deploy = sb.cli(&["deploy", &app]);
    let (stdout, stderr) = (text(&deploy.stdout), text(&deploy.stderr));
    assert_eq!(deploy.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("the new version was rolled back")
            && stderr.contains("failed its healthcheck"),
        "the failure and its reason: {stderr}"
    );
    assert_eq!(docker(&["inspect", "-f", "{{.Id}}", &app]), serving);
    // ... and the status shows it as the last deploy.
    let json = sb.cli(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let last = &json["services"][0]["last_deploy"];
    assert_eq!(last["outcome"], "deploy_failed", "{json}");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|message| message.contains("failed its healthcheck")),
        "{json}"
    );

    // Metrics: valid text format with the deploy counted for the service.
    let metrics = get(&sb, "/metrics");
    let lines = metrics.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("prometheus text format");
    let deploys: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "dispenser_deploys_total")
        .collect();
    assert!(
        deploys
            .iter()
            .any(|s| s.labels.get("service") == Some(app.as_str())),
        "{metrics}"
    );
    assert!(scrape
        .docs
        .contains_key("dispenser_proxy_request_duration_seconds"));
    assert!(scrape.docs.contains_key("dispenser_cron_runs_total"));

    // The page: HTML with a row per service.
    let html = get(&sb, "/");
    let page = scraper::Html::parse_document(&html);
    let rows = scraper::Selector::parse("#services tr.service").unwrap();
    let names: Vec<String> = page
        .select(&rows)
        .filter_map(|row| row.value().attr("data-name").map(str::to_owned))
        .collect();
    assert_eq!(names, vec![app.clone()]);
    let state = scraper::Selector::parse("#services tr.service td.state").unwrap();
    let state: String = page.select(&state).next().unwrap().text().collect();
    assert_eq!(state, "running");

    daemon.stop();
    assert!(
        !sb.path("dispenser.sock").exists(),
        "the socket is removed at exit"
    );
    let after = sb.cli(&["status"]);
    assert!(!after.status.success());
    assert!(
        text(&after.stderr).contains("no daemon is running")
            && text(&after.stderr).contains("systemctl start dispenser"),
        "{}",
        text(&after.stderr)
    );
}

#[test]
fn dev_runs_only_the_selected_services_without_their_dependencies() {
    let mut sb = Sandbox::new();
    sb.service("db", BUSYBOX, "");
    let db = sb.name("db");
    sb.service(
        "api",
        BUSYBOX,
        &format!("[depends_on]\n\"{db}\" = \"healthy\"\n"),
    );
    let api = sb.name("api");
    let dev_instance = format!("{}-dev", sb.id);
    let _cleanup = InstanceCleanup(dev_instance.clone());
    let log = sb.path("dev.log");
    let out = std::fs::File::create(&log).unwrap();
    // By folder: `api/`. The dependency on db would never be met (no
    // healthcheck); dev drops it, so api starts at once.
    let mut child = Command::new(env!("CARGO_BIN_EXE_dispenser"))
        .arg("-c")
        .arg(sb.config())
        .args(["dev", "-s", "api/"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn dispenser dev");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("dispenser is ready")
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "dev never got ready: {}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        sleep(Duration::from_millis(200));
    }
    let output = std::fs::read_to_string(&log).unwrap();
    assert!(
        output.contains(&format!("dispenser dev: running {api}")),
        "{output}"
    );
    let labels = docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"dispenser.instance\"}} {{.State.Running}}",
        &api,
    ]);
    assert_eq!(labels.trim(), format!("{dev_instance} true"));
    assert!(!exists(&db), "db was not selected and must not run");

    nix_kill(child.id(), "TERM");
    let status = wait_exit(
        &mut child,
        EXIT_TIMEOUT,
        "dispenser dev after SIGTERM",
        || std::fs::read_to_string(&log).unwrap_or_default(),
    );
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    // Dev stops what it started.
    let running = docker(&["inspect", "-f", "{{.State.Running}}", &api]);
    assert_eq!(running.trim(), "false");
}

#[test]
fn dev_refuses_an_unknown_service() {
    let mut sb = Sandbox::new();
    sb.service("db", BUSYBOX, "");
    let out = sb.cli(&["dev", "-s", "nope"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no service named or in folder `nope`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn completions_and_man_page_are_generated() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = sb.cli(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(
            script.contains("dispenser") && script.contains("status"),
            "{shell}"
        );
    }
    let man = sb.cli(&["man"]);
    assert!(man.status.success());
    let man = text(&man.stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH dispenser"),
        "{man}"
    );
    assert!(man.contains("rollback"));
}

/// Removes the development instance's containers at the end of a test.
pub(crate) struct InstanceCleanup(pub(crate) String);

impl Drop for InstanceCleanup {
    fn drop(&mut self) {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=dispenser.instance={}", self.0),
        ]);
        for id in ids.split_whitespace() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
    }
}

fn nix_uid() -> u32 {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    text(&out.stdout).trim().parse().expect("uid")
}

fn nix_kill(pid: u32, signal: &str) {
    let out = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .output()
        .expect("kill");
    assert!(out.status.success());
}

#[test]
fn a_deploy_is_announced_to_the_webhook() {
    let mut sb = Sandbox::new();
    chatty_service(&mut sb, "app");
    let app = sb.name("app");
    let (port, calls) = webhook_receiver(Duration::from_secs(90));
    sb.write(
        "notify.hbs",
        "{\"text\": \"{{text}}\", \"event\": \"{{kind}}\", \"service\": \"{{service}}\"}",
    );
    let main = std::fs::read_to_string(sb.config()).unwrap();
    sb.write(
        "dispenser.toml",
        &format!(
            "{main}\n[notify]\nwebhook = \"http://127.0.0.1:{port}/hook\"\ntemplate = \"notify.hbs\"\n"
        ),
    );
    let daemon = sb.start();
    let deploy = sb.cli(&["deploy", &app]);
    assert!(
        deploy.status.success(),
        "deploy: {}{}",
        text(&deploy.stdout),
        text(&deploy.stderr)
    );
    crate::support::eventually(
        "the deploy reaches the webhook",
        Duration::from_secs(30),
        || !calls.lock().unwrap().is_empty(),
        || daemon.log(),
    );
    let (head, body) = calls.lock().unwrap()[0].clone();
    assert!(head.starts_with("POST /hook "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).expect("json body");
    assert_eq!(json["service"], app.as_str());
    assert_eq!(json["event"], "deployed", "{body}");
    assert!(json["text"].as_str().unwrap().contains(&app), "{body}");
    daemon.stop();
}

#[test]
fn proxied_requests_and_certificates_show_in_metrics_and_status() {
    let mut sb = Sandbox::new();
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (http, https) = (free_port(), free_port());
    sb.proxy_settings(&format!(
        "strategy = \"http-only\"\nhttp_listen = \"127.0.0.1:{http}\"\nhttps_listen = \"127.0.0.1:{https}\"\n"
    ));
    sb.service(
        "web",
        "dispenser-test/upstream:latest",
        "\n[env]\nVERSION = \"v1\"\n\n[proxy]\nhost = \"metrics.test\"\npath = \"/\"\nservice_port = 8080\n",
    );
    let web = sb.name("web");
    let admin = free_port();
    let main = std::fs::read_to_string(sb.config()).unwrap();
    sb.write(
        "dispenser.toml",
        &format!("{main}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n"),
    );
    let daemon = sb.start();

    // The loopback listener reads status; logs and actions stay on the socket.
    let code = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .output()
            .expect("curl");
        text(&out.stdout)
    };
    assert_eq!(code(&[&format!("http://127.0.0.1:{admin}/metrics")]), "200");
    assert_eq!(
        code(&[&format!("http://127.0.0.1:{admin}/v1/status")]),
        "200"
    );
    assert_eq!(
        code(&[
            "-X",
            "POST",
            &format!("http://127.0.0.1:{admin}/v1/services/{web}/deploy")
        ]),
        "403"
    );
    assert_eq!(
        code(&[&format!("http://127.0.0.1:{admin}/v1/logs/{web}")]),
        "403"
    );
    // DNS rebinding: a page of evil.example whose name resolves to 127.0.0.1
    // reaches the listener with its own name in Host, and is refused; the
    // loopback names are served. (The socket serves `Host: dispenser`.)
    for host in [
        "evil.example",
        &format!("evil.example:{admin}"),
        "127.0.0.1.nip.example",
    ] {
        assert_eq!(
            code(&[
                "-H",
                &format!("Host: {host}"),
                &format!("http://127.0.0.1:{admin}/v1/status")
            ]),
            "421",
            "Host: {host}"
        );
    }
    for host in [
        format!("127.0.0.1:{admin}"),
        format!("localhost:{admin}"),
        "[::1]".to_string(),
    ] {
        assert_eq!(
            code(&[
                "-H",
                &format!("Host: {host}"),
                &format!("http://127.0.0.1:{admin}/metrics")
            ]),
            "200",
            "Host: {host}"
        );
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut answered = 0;
    while answered < 3 {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Host: metrics.test",
            ])
            .arg(format!("http://127.0.0.1:{http}/"))
            .output()
            .expect("curl");
        if text(&out.stdout) == "200" {
            answered += 1;
        } else {
            assert!(
                Instant::now() < deadline,
                "the route never answered ({}): {}",
                text(&out.stdout),
                daemon.log()
            );
            sleep(Duration::from_millis(200));
        }
    }

    let metrics = get(&sb, "/metrics");
    let lines = metrics.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("prometheus text format");
    let value = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && labels
                        .iter()
                        .all(|(key, value)| s.labels.get(key) == Some(*value))
            })
            .map(|s| s.value.clone())
    };
    match value(
        "dispenser_proxy_requests_total",
        &[("route", &web), ("status", "2xx")],
    ) {
        Some(prometheus_parse::Value::Counter(count)) => assert!(count >= 3.0, "{metrics}"),
        other => panic!("no request counter for {web}: {other:?}\n{metrics}"),
    }
    match value(
        "dispenser_proxy_request_duration_seconds",
        &[("route", &web)],
    ) {
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            let total = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
            assert!(total >= 3.0, "{metrics}");
        }
        other => panic!("no latency histogram for {web}: {other:?}\n{metrics}"),
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    match value(
        "dispenser_certificate_expiry_timestamp_seconds",
        &[("host", "metrics.test")],
    ) {
        Some(prometheus_parse::Value::Gauge(expires)) => assert!(expires > now, "{metrics}"),
        other => panic!("no certificate expiry: {other:?}\n{metrics}"),
    }

    let json = sb.cli(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let service = &json["services"][0];
    // http-only: the URL that really serves, on the HTTP listener's port.
    assert_eq!(
        service["routes"][0],
        format!("http://metrics.test:{http}/").as_str()
    );
    assert_eq!(service["route_state"], "ready");
    assert!(service["certificate_expires"].is_string(), "{json}");
    daemon.stop();
}

#[test]
fn logs_follow_streams_new_output() {
    let mut sb = Sandbox::new();
    sb.service(
        "ticker",
        BUSYBOX,
        "command = [\"sh\", \"-c\", \"i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.3; done\"]\n",
    );
    let ticker = sb.name("ticker");
    let daemon = sb.start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dispenser"))
        .arg("-c")
        .arg(sb.config())
        .args(["logs", &ticker, "-f", "--tail", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn logs -f");
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // One line of history, then lines written after the command started.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        match received.recv_timeout(Duration::from_secs(15)) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("logs -f stopped streaming after {seen:?}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let numbers: Vec<u32> = seen
        .iter()
        .map(|line| line.trim_start_matches("tick-").parse().expect("tick line"))
        .collect();
    assert!(
        numbers.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{seen:?}"
    );
    daemon.stop();
}

/// Runs `dispenser <args>` on the sandbox's config and pidfile, after
/// `prefix` (a wrapper such as `timeout`), on a pty from `script`: how it
/// exited and everything it wrote to the terminal.
fn on_a_pty(
    sb: &Sandbox,
    prefix: &str,
    args: &str,
    log: impl Fn() -> String,
) -> (std::process::ExitStatus, String) {
    let tty = sb.path("pty.txt");
    let command = format!(
        "{prefix} {} -c {} -p {} {args}",
        env!("CARGO_BIN_EXE_dispenser"),
        sb.config().display(),
        sb.pid_file().display()
    );
    let mut script = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&tty).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .expect("run script");
    let status = wait_exit(&mut script, EXIT_TIMEOUT, "script", log);
    (status, std::fs::read_to_string(&tty).unwrap())
}

/// Waits until `file` holds `count` matches of `needle`; returns its text.
fn wait_in_file(file: &std::path::Path, needle: &str, count: usize, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = std::fs::read_to_string(file).unwrap_or_default();
        if out.matches(needle).count() >= count {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: fewer than {count} of {needle:?} in:\n{out}"
        );
        sleep(Duration::from_millis(100));
    }
}

#[test]
fn status_watch_refreshes_plain_off_a_terminal_in_place_on_one_and_stops_on_a_signal() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let mut sb = Sandbox::new();
    breakable_service(&mut sb, "app");
    let app = sb.name("app");
    // No daemon yet: the first refresh's error ends the watch at once.
    let refused = sb.cli(&["status", "--watch"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("no daemon is running"),
        "{}",
        text(&refused.stderr)
    );
    let daemon = sb.start();

    let spawn = |args: &[&str], out: &std::path::Path| {
        sb.cli_command(args)
            .stdout(Stdio::from(std::fs::File::create(out).unwrap()))
            .stderr(Stdio::null())
            .spawn()
            .expect("run dispenser")
    };

    // Off a terminal: the table again after a blank line; no escape codes.
    let plain = sb.path("watch-plain.txt");
    let mut watch = spawn(&["status", "--watch", "--interval", "1"], &plain);
    let out = wait_in_file(&plain, "SERVICE", 2, "plain refreshes");
    assert!(out.starts_with("SERVICE"), "{out}");
    assert!(out.contains("\n\nSERVICE"), "{out}");
    assert!(out.matches(app.as_str()).count() >= 2, "{out}");
    assert!(
        !out.contains('\x1b'),
        "escape codes off a terminal: {out:?}"
    );
    kill(Pid::from_raw(watch.id() as i32), Signal::SIGTERM).unwrap();
    let status = wait_exit(&mut watch, EXIT_TIMEOUT, "status --watch", || daemon.log());
    assert!(status.success(), "{status}");

    // With --json: one document per line; Ctrl-C ends it.
    let json = sb.path("watch-json.txt");
    let mut watch = spawn(&["status", "--watch", "--json", "--interval", "1"], &json);
    let out = wait_in_file(&json, "\n", 2, "json refreshes");
    for line in out.lines() {
        let report: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(report["instance"], sb.id.as_str(), "{line}");
    }
    kill(Pid::from_raw(watch.id() as i32), Signal::SIGINT).unwrap();
    let status = wait_exit(&mut watch, EXIT_TIMEOUT, "status --watch --json", || {
        daemon.log()
    });
    assert!(status.success(), "{status}");

    // On a terminal (a pty from `script`): redrawn in place.
    let (status, out) = on_a_pty(
        &sb,
        "timeout --preserve-status -s INT 4",
        "status --watch --interval 1",
        || daemon.log(),
    );
    assert!(status.success(), "{status}: {out:?}");
    assert!(out.matches("\x1b[H\x1b[2J").count() >= 2, "{out:?}");
    assert!(out.contains("every 1s"), "{out:?}");
    assert!(out.contains(app.as_str()), "{out:?}");
    daemon.stop();
}

/// `dispenser deploy` shows the pull of the new digest and the health
/// gate: plain lines when stderr is not a terminal, bars (redrawn with
/// escape codes) on a pty from `script`.
#[test]
fn deploy_shows_the_pull_and_the_health_gate_plainly_off_a_terminal_and_as_bars_on_one() {
    use crate::deploys::Images;
    use crate::watching::{Auth, Registry};
    let mut images = Images(Vec::new());
    let upstream = crate::proxy::UPSTREAM;
    let v2 = images.build("progress-v2", &format!("FROM {upstream}\nENV VERSION=v2\n"));
    let v3 = images.build("progress-v3", &format!("FROM {upstream}\nENV VERSION=v3\n"));
    let mut registry = Registry::start(Auth::None);
    let repository = format!("progress-{}", std::process::id());
    registry.push(upstream, &repository, None);
    let image = registry.image(&repository);
    let mut sb = Sandbox::new();
    sb.deploy_settings("ready_timeout = \"20s\"\n");
    sb.service("app", &image, "[env]\nPORT = \"8080\"\n");
    let app = sb.name("app");
    let daemon = sb.start();

    // Off a terminal: lines.
    registry.push(&v2, &repository, None);
    let out = sb.cli(&["deploy", &app]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}\n{}", daemon.log());
    assert!(err.contains(&format!("pulled {image}")), "{err}");
    assert!(
        err.contains(&format!("waiting for {app} to be ready: 0s of 20s")),
        "{err}"
    );
    assert!(err.contains(&format!("{app} is ready")), "{err}");
    assert!(
        !err.contains('\x1b'),
        "no escape codes off a terminal: {err:?}"
    );

    // On a terminal: bars.
    registry.push(&v3, &repository, None);
    let (status, out) = on_a_pty(&sb, "", &format!("deploy {app}"), || daemon.log());
    assert!(status.success(), "{status}: {out:?}");
    assert!(out.contains(&format!("{app} is ready")), "{out:?}");
    assert!(
        out.contains("\x1b["),
        "bars are drawn on a terminal: {out:?}"
    );
    assert!(
        !out.contains("0s of 20s\r\n"),
        "no plain waiting lines on a terminal: {out:?}"
    );
    daemon.stop();
}
