//! Deploys that never drop a request: 32 keep-alive clients hammer the proxy
//! while new digests are pushed to a real registry, a reload changes the
//! env, a version fails its healthcheck and one crashes after 5 s; and a
//! host-port service is replaced stop-first while requests are held.
//! Every test prints the requests it made and how many failed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

use crate::faults::wait_answer;
use crate::support::{docker, text, Daemon, Sandbox};
use crate::watching::{Auth, Registry};

const UPSTREAM: &str = "dispenser-test/upstream:latest";
const BUSYBOX: &str = "dispenser-test/busybox:latest";
/// Clients of the load generator, each on its own keep-alive connection.
const CLIENTS: usize = 32;
/// Longest wait for a version to show up through the proxy.
const VERSION_TIMEOUT: Duration = Duration::from_secs(60);
const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// Images built for one test, tagged under `dispenser-test/`, and the
/// registry repositories the daemon pulled from by digest: removed in Drop.
pub(crate) struct Images(pub(crate) Vec<String>);

/// What the load generator saw.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) requests: u64,
    /// Connection errors, resets, timeouts: requests that got no answer.
    pub(crate) failed: u64,
    pub(crate) non_2xx: u64,
    /// Answers by body.
    pub(crate) bodies: BTreeMap<String, u64>,
    /// A client saw an older version after a newer one.
    pub(crate) backwards: u64,
    /// The longest a request waited for its answer.
    pub(crate) slowest: Duration,
    pub(crate) first_errors: Vec<String>,
    /// Requests sent or answered while the daemon was down (`Load::down`),
    /// counted here only (not in `requests`), whatever their outcome.
    pub(crate) during_outage: u64,
    /// Of those, the ones that failed or were not 2xx.
    pub(crate) failed_during_outage: u64,
}

/// 32 threads, each sending `GET /` on one keep-alive connection in a loop.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    threads: Vec<JoinHandle<()>>,
    /// Odd while the daemon (and so the proxy) is down.
    outage: Arc<AtomicU64>,
}

impl Images {
    /// Builds `dispenser-test/deploys-<pid>:<name>` from a Dockerfile body.
    /// The label makes the image this process's own: the same Dockerfile
    /// built by another test process (or worktree) on the same engine would
    /// otherwise share its id, and that process's cleanup would remove it.
    pub(crate) fn build(&mut self, name: &str, dockerfile: &str) -> String {
        let tag = format!("dispenser-test/deploys-{}:{name}", std::process::id());
        let context = tempfile::tempdir().unwrap();
        let dockerfile =
            format!("{dockerfile}\nLABEL dispenser-test=1 dispenser-test.image=\"{tag}\"\n");
        std::fs::write(context.path().join("Dockerfile"), dockerfile).unwrap();
        let out = Command::new("docker")
            .args(["build", "-q", "-t", &tag])
            .arg(context.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "docker build: {}", text(&out.stderr));
        self.0.push(tag.clone());
        tag
    }

    /// The upstream answering `version`.
    pub(crate) fn version(&mut self, version: &str) -> String {
        self.build(
            version,
            &format!("FROM {UPSTREAM}\nENV VERSION={version}\n"),
        )
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        for name in &self.0 {
            // A repository's images pulled by digest carry no tag: go by id.
            let ids = Command::new("docker")
                .args(["images", "-q", name])
                .output()
                .map(|out| text(&out.stdout))
                .unwrap_or_default();
            let _ = Command::new("docker").args(["rmi", "-f", name]).output();
            for id in ids.split_whitespace() {
                let _ = Command::new("docker").args(["rmi", "-f", id]).output();
            }
        }
    }
}

impl Load {
    /// Starts the clients against `host` on the proxy's port. `order` ranks
    /// the bodies expected to move forward; other bodies are counted only.
    pub(crate) fn start(port: u16, host: &str, order: &[&str]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let order: Arc<Vec<String>> = Arc::new(order.iter().map(|s| s.to_string()).collect());
        let outage = Arc::new(AtomicU64::new(0));
        let threads = (0..CLIENTS)
            .map(|_| {
                let stop = stop.clone();
                let tally = tally.clone();
                let order = order.clone();
                let host = host.to_string();
                let outage = outage.clone();
                std::thread::spawn(move || client(port, &host, &order, &stop, &tally, &outage))
            })
            .collect();
        Load {
            stop,
            tally,
            threads,
            outage,
        }
    }

    /// The daemon is about to go down: requests from now until `up` are
    /// counted apart (`Tally::during_outage`).
    pub(crate) fn down(&self) {
        let was = self.outage.fetch_add(1, Ordering::SeqCst);
        assert_eq!(was % 2, 0, "down twice");
    }

    /// The daemon is back (ready): requests count again.
    pub(crate) fn up(&self) {
        let was = self.outage.fetch_add(1, Ordering::SeqCst);
        assert_eq!(was % 2, 1, "up without down");
    }

    /// What the clients saw so far.
    pub(crate) fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap()
    }

    /// Waits until some client got `body`.
    pub(crate) fn wait_for(&self, body: &str, log: impl Fn() -> String) {
        let deadline = Instant::now() + VERSION_TIMEOUT;
        loop {
            if self.tally.lock().unwrap().bodies.contains_key(body) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{body:?} never answered:\n{}",
                log()
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// Stops the clients and returns what they saw.
    pub(crate) fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().unwrap();
        }
        Arc::try_unwrap(self.tally).unwrap().into_inner().unwrap()
    }
}

/// One client's loop.
fn client(
    port: u16,
    host: &str,
    order: &[String],
    stop: &AtomicBool,
    tally: &Mutex<Tally>,
    outage: &AtomicU64,
) {
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut rank = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let began = outage.load(Ordering::SeqCst);
        // A request counts apart when the daemon was down when it was sent,
        // or went down (or came back) before it was answered.
        let in_outage = |tally: &mut Tally, failed: bool| {
            let ended = outage.load(Ordering::SeqCst);
            if began % 2 == 1 || ended != began {
                tally.during_outage += 1;
                tally.failed_during_outage += u64::from(failed);
                return true;
            }
            false
        };
        if conn.is_none() {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    conn = Some(BufReader::new(stream));
                }
                Err(err) => {
                    if !in_outage(&mut tally.lock().unwrap(), true) {
                        note_failure(tally, format!("connect: {err}"));
                    }
                    sleep(Duration::from_millis(50));
                    continue;
                }
            }
        }
        let Some(stream) = conn.as_mut() else {
            continue;
        };
        let sent = Instant::now();
        match exchange(stream, host) {
            Ok((status, body, close)) => {
                let mut tally = tally.lock().unwrap();
                let ok = (200..300).contains(&status);
                if in_outage(&mut tally, !ok) {
                    if close {
                        conn = None;
                    }
                    continue;
                }
                tally.requests += 1;
                tally.slowest = tally.slowest.max(sent.elapsed());
                if !ok {
                    tally.non_2xx += 1;
                    if tally.first_errors.len() < 10 {
                        tally.first_errors.push(format!("{status}: {body}"));
                    }
                }
                if let Some(position) = order.iter().position(|known| *known == body) {
                    if position < rank {
                        tally.backwards += 1;
                    }
                    rank = rank.max(position);
                }
                *tally.bodies.entry(body).or_default() += 1;
                if close {
                    conn = None;
                }
            }
            Err(err) => {
                if !in_outage(&mut tally.lock().unwrap(), true) {
                    note_failure(tally, err);
                }
                conn = None;
            }
        }
    }
}

fn note_failure(tally: &Mutex<Tally>, error: String) {
    let mut tally = tally.lock().unwrap();
    tally.requests += 1;
    tally.failed += 1;
    if tally.first_errors.len() < 10 {
        tally.first_errors.push(error);
    }
}

/// One `GET /` on a kept-alive connection: status, trimmed body, and whether
/// the server closes the connection.
pub(crate) fn exchange(
    conn: &mut BufReader<TcpStream>,
    host: &str,
) -> Result<(u16, String, bool), String> {
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    conn.get_mut()
        .write_all(request.as_bytes())
        .map_err(|err| format!("write: {err}"))?;
    let mut line = String::new();
    let read = conn
        .read_line(&mut line)
        .map_err(|err| format!("read: {err}"))?;
    if read == 0 {
        return Err("connection closed before an answer".into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut length = 0usize;
    let mut close = false;
    loop {
        line.clear();
        conn.read_line(&mut line)
            .map_err(|err| format!("read: {err}"))?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').unwrap_or((trimmed, ""));
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().map_err(|_| "bad length".to_string())?;
        }
        if name.eq_ignore_ascii_case("connection") && value.trim().eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body)
        .map_err(|err| format!("body: {err}"))?;
    Ok((status, text(&body).trim().to_string(), close))
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn report(test: &str, tally: &Tally) {
    println!(
        "{test}: {} requests, {} failed, {} non-2xx, {} backwards, slowest {:?}; answers {:?}; first errors {:?}",
        tally.requests,
        tally.failed,
        tally.non_2xx,
        tally.backwards,
        tally.slowest,
        tally.bodies,
        tally.first_errors
    );
}

/// Rows of the deploys table: (trigger, outcome, reason).
pub(crate) fn deploys(sb: &Sandbox, service: &str) -> Vec<(String, String, Option<String>)> {
    let ledger = rusqlite::Connection::open(sb.path(".dispenser/ledger.sqlite3")).unwrap();
    let mut statement = ledger
        .prepare("SELECT trigger, outcome, reason FROM deploys WHERE service = ?1 ORDER BY id")
        .unwrap();
    statement
        .query_map([service], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

pub(crate) fn routed(sb: &mut Sandbox, http: u16, deploy: &str) {
    sb.proxy_settings(&format!(
        "strategy = \"http-only\"\nhttp_listen = \"127.0.0.1:{http}\"\n"
    ));
    sb.deploy_settings(deploy);
}

pub(crate) fn wait_logged(daemon: &Daemon, needle: &str, count: usize) {
    daemon.wait_for(needle, count);
}

#[test]
fn redeploys_under_load_drop_nothing_and_bad_versions_roll_back() {
    let mut images = Images(Vec::new());
    let versions: Vec<String> = (1..=6).map(|n| images.version(&format!("v{n}"))).collect();
    let unhealthy = images.build(
        "unhealthy",
        &format!(
            "FROM {UPSTREAM}\nENV VERSION=unhealthy\n\
             HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD [\"/upstream\"]\n"
        ),
    );
    let crashing = images.build(
        "crashing",
        &format!(
            "FROM {UPSTREAM} AS upstream\nFROM {BUSYBOX}\n\
             COPY --from=upstream /upstream /upstream\nENV VERSION=crashing PORT=8080\n\
             CMD [\"/bin/sh\", \"-c\", \"/upstream & sleep 5; exit 1\"]\n"
        ),
    );
    let mut registry = Registry::start(Auth::None);
    images.0.push(format!("{}/web", registry.host()));
    registry.push(&versions[0], "web", None);
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    let http = free_port();
    routed(
        &mut sb,
        http,
        "ready_timeout = \"20s\"\ndrain_timeout = \"5s\"\nsoak = \"8s\"\n",
    );
    let route = "[dispenser]\nwatch = true\n\n[proxy]\nhost = \"app.test\"\nservice_port = 8080\n";
    let image = registry.image("web");
    sb.service("web", &image, route);
    let daemon = sb.start();
    let order = ["v1", "v2", "v3", "v4", "v5", "v6", "v7"];
    let load = Load::start(http, "app.test", &order);
    load.wait_for("v1", || daemon.log());

    // Five redeploys in a row, each a new digest in the registry.
    for (n, version) in versions.iter().enumerate().skip(1) {
        registry.push(version, "web", Some(version));
        load.wait_for(&format!("v{}", n + 1), || daemon.log());
        wait_logged(&daemon, "removed the previous container", n);
    }

    // A version that fails its healthcheck never takes traffic. The push
    // leaves the local tag on it: the daemon moves the tag back after the
    // rollback. (Putting it back from the test raced with the daemon's own
    // pull and tag on a loaded machine, so the daemon could deploy v6 again
    // instead of the bad version.)
    registry.push(&unhealthy, "web", None);
    wait_logged(&daemon, "new version rolled back", 1);
    // One that crashes 5 s after it started takes traffic, then gives it back.
    registry.push(&crashing, "web", None);
    wait_logged(&daemon, "new version rolled back", 2);
    load.wait_for("crashing", || daemon.log());
    // Quarantined: three more polls see the same digest, nothing is tried.
    let created = daemon.log().matches("created the next container").count();
    sleep(Duration::from_secs(4));
    let log = daemon.log();
    assert_eq!(
        log.matches("created the next container").count(),
        created,
        "{log}"
    );
    assert_eq!(log.matches("new version rolled back").count(), 2, "{log}");

    // An env change through a reload goes through the same swap (from v6's
    // image: the local tag was moved back after each rollback).
    sb.service(
        "web",
        &image,
        &format!("{route}\n[env]\nVERSION = \"v7\"\n"),
    );
    daemon.reload();
    load.wait_for("v7", || daemon.log());
    sleep(Duration::from_millis(500));
    let tally = load.finish();
    report("redeploys", &tally);
    assert_eq!(tally.failed, 0, "{tally:?}");
    assert_eq!(tally.non_2xx, 0, "{tally:?}");
    assert_eq!(tally.backwards, 0, "{tally:?}");
    assert!(!tally.bodies.contains_key("unhealthy"), "{tally:?}");
    assert!(tally.requests > 1000, "{tally:?}");

    let history = deploys(&sb, &sb.name("web"));
    let outcomes: Vec<(&str, &str)> = history
        .iter()
        .map(|(trigger, outcome, _)| (trigger.as_str(), outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("new-digest", "succeeded"),
            ("new-digest", "succeeded"),
            ("new-digest", "succeeded"),
            ("new-digest", "succeeded"),
            ("new-digest", "succeeded"),
            ("new-digest", "rolled-back"),
            ("new-digest", "rolled-back"),
            ("reload", "succeeded"),
        ],
        "{history:?}"
    );
    let reason = |index: usize| history[index].2.clone().unwrap_or_default();
    assert!(reason(5).contains("healthcheck"), "{history:?}");
    assert!(reason(6).contains("soak"), "{history:?}");
    let containers = sb.managed_containers();
    assert_eq!(containers.len(), 1, "{containers:?}");
    daemon.stop();
}

#[test]
fn a_push_during_a_soak_supersedes_it_and_a_bad_newest_rolls_back_to_the_last_proven() {
    let mut images = Images(Vec::new());
    let versions: Vec<String> = (1..=2).map(|n| images.version(&format!("v{n}"))).collect();
    let unhealthy = images.build(
        "unhealthy",
        &format!(
            "FROM {UPSTREAM}\nENV VERSION=unhealthy\n\
             HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD [\"/upstream\"]\n"
        ),
    );
    let mut registry = Registry::start(Auth::None);
    images.0.push(format!("{}/web", registry.host()));
    let v1 = registry.push(&versions[0], "web", None);
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    let http = free_port();
    let soak = Duration::from_secs(120);
    routed(
        &mut sb,
        http,
        &format!("ready_timeout = \"20s\"\nsoak = \"{}s\"\n", soak.as_secs()),
    );
    let route = "[dispenser]\nwatch = true\n\n[proxy]\nhost = \"app.test\"\nservice_port = 8080\n";
    sb.service("web", &registry.image("web"), route);
    let daemon = sb.start();
    let load = Load::start(http, "app.test", &["v1", "v2"]);
    load.wait_for("v1", || daemon.log());

    registry.push(&versions[1], "web", Some(&versions[1]));
    load.wait_for("v2", || daemon.log());
    wait_logged(&daemon, "traffic moved to the new container", 1);
    // v2 soaks; a newer push does not wait for that soak to end.
    let pushed = Instant::now();
    registry.push(&unhealthy, "web", None);
    wait_logged(&daemon, "new version rolled back", 1);
    let took = pushed.elapsed();
    assert!(
        took < soak / 2,
        "the newer digest waited {took:?}:\n{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(log.contains("a newer digest came during the soak"), "{log}");
    // The unproven v2 is not where the rollback goes: v1, the last proven.
    sleep(Duration::from_millis(500));
    let web = sb.name("web");
    let label = docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"dispenser.image-digest\"}}",
        &web,
    ]);
    assert_eq!(label.trim(), v1, "{log}");
    sb.assert_converged(&["web"]);
    let tally = load.finish();
    report("push during a soak", &tally);
    assert_eq!(tally.failed, 0, "{tally:?}");
    assert_eq!(tally.non_2xx, 0, "{tally:?}");
    assert!(!tally.bodies.contains_key("unhealthy"), "{tally:?}");
    let history = deploys(&sb, &web);
    let outcomes: Vec<(&str, &str)> = history
        .iter()
        .map(|(trigger, outcome, _)| (trigger.as_str(), outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [("new-digest", "superseded"), ("new-digest", "rolled-back")],
        "{history:?}"
    );
    sb.assert_ledger_sound();
    daemon.stop();
}

#[test]
fn sigterm_during_a_soak_exits_at_once_and_the_restart_deploys_the_new_version() {
    let mut images = Images(Vec::new());
    let versions: Vec<String> = (1..=2).map(|n| images.version(&format!("v{n}"))).collect();
    let mut registry = Registry::start(Auth::None);
    images.0.push(format!("{}/web", registry.host()));
    let v1 = registry.push(&versions[0], "web", None);
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    let http = free_port();
    // A soak far longer than systemd's stop timeout.
    routed(&mut sb, http, "ready_timeout = \"20s\"\nsoak = \"300s\"\n");
    let route = "[dispenser]\nwatch = true\n\n[proxy]\nhost = \"app.test\"\nservice_port = 8080\n";
    sb.service("web", &registry.image("web"), route);
    let daemon = sb.start();
    let load = Load::start(http, "app.test", &["v1", "v2"]);
    load.wait_for("v1", || daemon.log());

    let v2 = registry.push(&versions[1], "web", Some(&versions[1]));
    load.wait_for("v2", || daemon.log());
    wait_logged(&daemon, "traffic moved to the new container", 1);
    crate::stopping::stop_mid_deploy_then_resume(
        &mut sb,
        daemon,
        load,
        (&v1, &v2),
        "ready_timeout = \"20s\"\nsoak = \"1s\"\n",
        || {},
    );
}

#[test]
fn a_host_port_service_is_replaced_stop_first_while_requests_are_held() {
    let mut sb = Sandbox::new();
    let http = free_port();
    let host_port = free_port();
    routed(&mut sb, http, "soak = \"0s\"\n");
    let body = |version: &str| {
        format!(
            "\n[[port]]\nhost = {host_port}\ncontainer = 8080\n\n[env]\nVERSION = \"{version}\"\n\n\
             [proxy]\nhost = \"ports.test\"\nservice_port = 8080\n"
        )
    };
    sb.service("web", UPSTREAM, &body("a"));
    let daemon = sb.start();
    let load = Load::start(http, "ports.test", &["a", "b"]);
    load.wait_for("a", || daemon.log());
    sleep(Duration::from_millis(500));
    sb.service("web", UPSTREAM, &body("b"));
    daemon.reload();
    load.wait_for("b", || daemon.log());
    sleep(Duration::from_millis(500));
    let tally = load.finish();
    report("host port", &tally);
    let log = daemon.log();
    assert!(log.contains("stopped the previous container"), "{log}");
    // Requests arrived while no container ran: they were held, not refused.
    assert!(tally.slowest > Duration::from_millis(300), "{tally:?}");
    assert_eq!(tally.failed, 0, "{tally:?}");
    assert_eq!(tally.non_2xx, 0, "{tally:?}");
    assert_eq!(tally.backwards, 0, "{tally:?}");
    // The new container answers on the host port too, past the proxy.
    let direct = crate::proxy::get(host_port, "ports.test", "/");
    assert_eq!(direct.status, 200, "{direct:?}");
    assert_eq!(direct.body, "b\n", "{direct:?}");
    daemon.stop();
}

#[test]
fn an_image_built_on_the_host_is_deployed_and_rolled_back_by_the_operator() {
    let mut images = Images(Vec::new());
    let v1 = images.version("local-v1");
    let v2 = images.version("local-v2");
    // The service's tag, moved by hand as someone building on the host would.
    let tag = format!("dispenser-test/deploys-{}:app", std::process::id());
    docker(&["tag", &v1, &tag]);
    images.0.push(tag.clone());
    let mut sb = Sandbox::new();
    let port = free_port();
    sb.service(
        "app",
        &tag,
        &format!("\n[[port]]\nhost = {port}\ncontainer = 8080\n"),
    );
    let daemon = sb.start();
    let app = sb.name("app");
    wait_answer(port, "app", "local-v1", || daemon.log());

    docker(&["tag", &v2, &tag]);
    let out = sb.cli(&["deploy", &app]);
    assert!(out.status.success(), "deploy: {}", text(&out.stderr));
    wait_answer(port, "app", "local-v2", || daemon.log());

    // The previous version is known by its image id only (no registry).
    let out = sb.cli(&["rollback", &app]);
    assert!(
        out.status.success(),
        "rollback: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    wait_answer(port, "app", "local-v1", || daemon.log());
    let v1_id = docker(&["image", "inspect", "-f", "{{.Id}}", &v1]);
    let tagged = docker(&["image", "inspect", "-f", "{{.Id}}", &tag]);
    assert_eq!(tagged, v1_id, "the tag names the version rolled back to");
    let outcomes: Vec<(String, String)> = deploys(&sb, &app)
        .into_iter()
        .map(|(trigger, outcome, _)| (trigger, outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("manual".to_string(), "succeeded".to_string()),
            ("rollback".to_string(), "succeeded".to_string())
        ]
    );
    daemon.stop();
}

/// The new version's server dies inside a container that keeps running,
/// so Docker reports nothing and the soak sees nothing yet: the route's
/// previous container, still up through the soak, answers every request
/// the new one refuses, at once instead of a 502.
#[test]
fn requests_the_soaking_version_refuses_are_answered_by_the_previous_one() {
    let mut images = Images(Vec::new());
    // New code soaks: each version is an image of its own.
    let mut build = |version: &str| {
        images.build(
            &format!("quits-{version}"),
            &format!(
                "FROM {UPSTREAM} AS upstream\nFROM {BUSYBOX}\n\
                 COPY --from=upstream /upstream /upstream\nENV PORT=8080 VERSION={version}\n\
                 CMD [\"/bin/sh\", \"-c\", \"/upstream & while true; do sleep 1; done\"]\n"
            ),
        )
    };
    let (v1, v2) = (build("v1"), build("v2"));
    // The service's tag, moved by hand; `dispenser deploy` is new code.
    let tag = format!("dispenser-test/deploys-{}:quits", std::process::id());
    docker(&["tag", &v1, &tag]);
    images.0.push(tag.clone());
    let mut sb = Sandbox::new();
    let http = free_port();
    routed(&mut sb, http, "ready_timeout = \"20s\"\nsoak = \"5m\"\n");
    let route = "[proxy]\nhost = \"app.test\"\nservice_port = 8080\n";
    sb.service("web", &tag, route);
    let daemon = sb.start();
    wait_answer(http, "app.test", "v1", || daemon.log());

    docker(&["tag", &v2, &tag]);
    let out = sb.cli(&["deploy", &sb.name("web")]);
    assert!(out.status.success(), "deploy: {}", text(&out.stderr));
    wait_answer(http, "app.test", "v2", || daemon.log());
    let next = format!("{}-next", sb.name("web"));
    docker(&["exec", &next, "sh", "-c", "kill $(pidof upstream)"]);

    // Nothing changed the route: each request goes to the new container
    // first, is refused, and is replayed on the previous one.
    for n in 0..20 {
        let answer = crate::faults::get(http, "app.test");
        assert_eq!(
            answer,
            Ok((200, "v1".to_string())),
            "request {n}:\n{}",
            daemon.log()
        );
    }
    assert!(
        docker(&["inspect", "-f", "{{.State.Running}}", &next]).contains("true"),
        "the new container still runs, so the soak saw nothing"
    );
    daemon.stop();
}
