//! Fault tests: what Dispenser depends on goes away while the daemon runs or
//! before it starts. The Docker Engine is reached through a socket relay of
//! the test's own (`DockerRelay`, a unix socket in the sandbox forwarding to
//! /var/run/docker.sock), which the test cuts and restores; the daemon runs
//! with `DOCKER_HOST` pointing at the relay and checks Docker every second.

use std::io::{self, ErrorKind};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::acme::{https_get, Pebble};
use crate::google_standin::{Answer, StandIn};
use crate::proxy::{free_port, get, upstream_service, wait_until};
use crate::secrets::{google_sandbox, secret};
use crate::support::{docker, inspect, text, Daemon, Sandbox};
use crate::watching::{Auth, Registry};

/// The Docker Engine's own socket.
const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// The daemon's warning when an outage begins, and its line when it ends.
const UNREACHABLE: &str = "the Docker Engine is unreachable";
const REACHABLE_AGAIN: &str = "the Docker Engine is reachable again";
const REBUILT: &str = "state rebuilt from Docker after its outage";
const STARTUP_WAIT: &str = "waiting for it before starting anything";

/// How the relay treats a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward bytes both ways to the engine.
    Forward,
    /// Accept and close at once, as a dying engine would; counted.
    Refuse,
}

/// A unix socket that forwards to the Docker Engine until cut.
struct DockerRelay {
    path: PathBuf,
    shared: Arc<RelayState>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct RelayState {
    stop: AtomicBool,
    refusing: AtomicBool,
    /// Connections accepted in `Refuse` mode.
    refused: AtomicUsize,
    /// Both ends of every forwarded connection, to cut them.
    open: Mutex<Vec<UnixStream>>,
}

impl DockerRelay {
    /// Listens on `path` in `mode`.
    fn start(path: &Path, mode: Mode) -> DockerRelay {
        let mut relay = DockerRelay {
            path: path.to_path_buf(),
            shared: Arc::new(RelayState::default()),
            accept: None,
        };
        relay.listen(mode);
        relay
    }

    /// The `DOCKER_HOST` value that reaches the relay.
    fn docker_host(path: &Path) -> String {
        format!("unix://{}", path.display())
    }

    fn listen(&mut self, mode: Mode) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind the relay socket");
        listener.set_nonblocking(true).unwrap();
        self.shared.stop.store(false, Ordering::SeqCst);
        self.set_mode(mode);
        let shared = self.shared.clone();
        self.accept = Some(thread::spawn(move || accept_loop(listener, shared)));
    }

    fn set_mode(&self, mode: Mode) {
        self.shared
            .refusing
            .store(mode == Mode::Refuse, Ordering::SeqCst);
        if mode == Mode::Refuse {
            self.cut_open_connections();
        }
    }

    /// Docker goes away: open connections are cut and new ones closed at once.
    fn refuse(&self) {
        self.set_mode(Mode::Refuse);
    }

    /// Docker is back.
    fn forward(&self) {
        self.set_mode(Mode::Forward);
    }

    /// Connections refused so far (each is one attempt of the daemon).
    fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Stops listening and removes the socket file.
    fn close(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
        self.cut_open_connections();
        let _ = std::fs::remove_file(&self.path);
    }

    fn cut_open_connections(&self) {
        let mut open = self.shared.open.lock().unwrap();
        for stream in open.drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for DockerRelay {
    fn drop(&mut self) {
        self.close();
    }
}

fn accept_loop(listener: UnixListener, shared: Arc<RelayState>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if shared.refusing.load(Ordering::SeqCst) {
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                if let Err(err) = relay(client, &shared) {
                    eprintln!("relay: {err}");
                }
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(err) => panic!("relay accept: {err}"),
        }
    }
}

/// Copies bytes both ways between `client` and a new connection to Docker.
fn relay(client: UnixStream, shared: &RelayState) -> io::Result<()> {
    client.set_nonblocking(false)?;
    let engine = UnixStream::connect(DOCKER_SOCKET)?;
    {
        let mut open = shared.open.lock().unwrap();
        open.push(client.try_clone()?);
        open.push(engine.try_clone()?);
    }
    for (mut from, mut to) in [(client.try_clone()?, engine.try_clone()?), (engine, client)] {
        thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }
    Ok(())
}

/// Polls `condition` every 100 ms for up to 30 s.
fn wait(what: &str, daemon: &Daemon, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            daemon.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Lines of the log at WARN or ERROR level.
fn problems(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains(" WARN ") || line.contains("ERROR"))
        .collect()
}

fn container_id(name: &str) -> String {
    inspect(name)["Id"].as_str().unwrap().to_string()
}

fn env_of(name: &str) -> Vec<String> {
    inspect(name)["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn docker_outage_leaves_services_alone_and_applies_a_reload_once_back() {
    let mut sb = Sandbox::new();
    let socket = sb.path("docker.sock");
    let relay = DockerRelay::start(&socket, Mode::Forward);
    sb.set_env("DOCKER_HOST", &DockerRelay::docker_host(&socket));
    sb.daemon_settings("docker_check_interval = 1");
    let http = free_port();
    sb.proxy_settings(&format!(
        "strategy = \"http-only\"\nhttp_listen = \"127.0.0.1:{http}\"\n"
    ));
    upstream_service(&mut sb, "web", "one", "host = \"web.test\"");
    upstream_service(&mut sb, "side", "one", "host = \"side.test\"");
    let daemon = sb.start();
    assert_eq!(wait_until(http, "web.test", "/", 200).body, "one\n");
    let (web, side) = (sb.name("web"), sb.name("side"));
    let (web_id, side_id) = (container_id(&web), container_id(&side));

    // Docker goes away. The daemon notices, warns once, and keeps polling.
    relay.refuse();
    daemon.wait_for(UNREACHABLE, 1);
    let attempts = relay.refused();
    wait("three more checks", &daemon, || {
        relay.refused() >= attempts + 3
    });
    // The proxy does not need Docker: both routes still answer.
    assert_eq!(get(http, "web.test", "/").body, "one\n");
    assert_eq!(get(http, "side.test", "/").body, "one\n");

    // A reload during the outage is kept, not half-applied.
    upstream_service(&mut sb, "side", "two", "host = \"side.test\"");
    daemon.reload();
    assert!(daemon.log().contains("plan deferred"), "{}", daemon.log());
    let attempts = relay.refused();
    wait("two more checks", &daemon, || {
        relay.refused() >= attempts + 2
    });
    assert_eq!(get(http, "side.test", "/").body, "one\n");
    assert_eq!(daemon.log().matches(UNREACHABLE).count(), 1);

    // Docker is back: one line says so, the kept plan is applied, and the
    // untouched service keeps its container.
    relay.forward();
    daemon.wait_for(REACHABLE_AGAIN, 1);
    daemon.wait_for(REBUILT, 1);
    assert_eq!(container_id(&web), web_id, "web was recreated");
    assert_ne!(
        container_id(&side),
        side_id,
        "the kept reload was not applied"
    );
    assert!(env_of(&side).contains(&"VERSION=two".to_string()));
    assert_eq!(wait_until(http, "side.test", "/", 200).body, "two\n");
    assert_eq!(get(http, "web.test", "/").body, "one\n");

    // A second outage is a second streak: one more warning, one more rebuild,
    // and nothing recreated when nothing changed.
    let side_id = container_id(&side);
    relay.refuse();
    daemon.wait_for(UNREACHABLE, 2);
    let attempts = relay.refused();
    wait("two more checks", &daemon, || {
        relay.refused() >= attempts + 2
    });
    relay.forward();
    daemon.wait_for(REBUILT, 2);
    assert_eq!(container_id(&web), web_id);
    assert_eq!(container_id(&side), side_id);
    assert_eq!(get(http, "web.test", "/").body, "one\n");

    let log = daemon.stop();
    // The only warnings: one per outage, and the deferred reload.
    let problems = problems(&log);
    assert_eq!(
        problems.len(),
        3,
        "unexpected warnings or errors:\n{}",
        problems.join("\n")
    );
    assert_eq!(log.matches(UNREACHABLE).count(), 2, "{log}");
    assert_eq!(log.matches(REACHABLE_AGAIN).count(), 2, "{log}");
}

#[test]
fn docker_unreachable_at_start_up_delays_ready_until_it_answers() {
    let mut sb = Sandbox::new();
    let socket = sb.path("docker.sock");
    sb.set_env("DOCKER_HOST", &DockerRelay::docker_host(&socket));
    sb.daemon_settings("docker_check_interval = 1");
    sb.service("app", "dispenser-test/web:v1", "");
    // No socket at all first, then one that closes every connection.
    let daemon = sb.spawn();
    daemon.wait_for(STARTUP_WAIT, 1);
    let mut relay = DockerRelay::start(&socket, Mode::Refuse);
    wait("two attempts", &daemon, || relay.refused() >= 2);
    let log = daemon.log();
    assert!(!log.contains("dispenser is ready"), "{log}");
    assert_eq!(log.matches(STARTUP_WAIT).count(), 1, "{log}");
    let app = sb.name("app");
    assert!(
        docker(&["ps", "-aq", "--filter", &format!("name=^/{app}$")])
            .trim()
            .is_empty(),
        "a container exists before Docker answered the daemon"
    );

    // The socket starts answering: the daemon reconciles, then says ready.
    relay.forward();
    daemon.wait_for("dispenser is ready", 1);
    assert_eq!(inspect(&app)["State"]["Running"], true);
    let log = daemon.stop();
    let ready = log.find("dispenser is ready").unwrap();
    let applied = log.find("plan applied").expect("plan applied");
    assert!(applied < ready, "ready before the first apply:\n{log}");
    assert_eq!(log.matches(STARTUP_WAIT).count(), 1, "{log}");
    relay.close();
}

#[test]
fn an_update_pushed_while_docker_is_away_is_deployed_once_it_is_back() {
    let mut registry = Registry::start(Auth::None);
    let v1 = registry.push("dispenser-test/web:v1", "web", None);
    let mut sb = Sandbox::new();
    let socket = sb.path("docker.sock");
    let relay = DockerRelay::start(&socket, Mode::Forward);
    sb.set_env("DOCKER_HOST", &DockerRelay::docker_host(&socket));
    sb.daemon_settings("docker_check_interval = 1");
    sb.poll_delay(1);
    sb.service("web", &registry.image("web"), "[dispenser]\nwatch = true\n");
    let daemon = sb.start();
    let web = sb.name("web");
    // `None` while a deploy has no container under the name (stop-first swap).
    let digest = || {
        let out = Command::new("docker")
            .args(["inspect", "--format"])
            .arg("{{index .Config.Labels \"dispenser.image-digest\"}}")
            .arg(&web)
            .output()
            .expect("docker inspect");
        out.status
            .success()
            .then(|| text(&out.stdout).trim().to_string())
    };
    assert_eq!(digest().as_deref(), Some(v1.as_str()));
    let web_id = container_id(&web);

    relay.refuse();
    daemon.wait_for(UNREACHABLE, 1);
    let v2 = registry.push(
        "dispenser-test/web:v2",
        "web",
        Some("dispenser-test/web:v1"),
    );
    // The watcher sees the new digest on several rounds while Docker is away.
    let heads = || {
        registry
            .log()
            .matches("\"HEAD /v2/web/manifests/latest")
            .count()
    };
    let seen = heads();
    wait("three registry rounds", &daemon, || heads() >= seen + 3);
    assert_eq!(container_id(&web), web_id);

    relay.forward();
    wait("the update", &daemon, || {
        digest().as_deref() == Some(v2.as_str())
    });
    assert_ne!(container_id(&web), web_id);
    let log = daemon.stop();
    assert_eq!(log.matches(UNREACHABLE).count(), 1, "{log}");
    assert!(!log.contains("deploy failed"), "{log}");
    assert!(!log.contains("deploy interrupted"), "{log}");
}

#[test]
fn the_secret_source_away_refuses_a_reload_and_keeps_the_service_serving() {
    const OLD: &str = "outage-Old-Secret-4b1e";
    const NEW: &str = "outage-New-Secret-93d0";
    let standin = StandIn::start();
    standin.set(&secret("db"), "latest", Answer::Value(OLD.into()));
    let mut sb = google_sandbox(&standin);
    sb.write(
        "dispenser.vars",
        &format!(
            "db = {{ source = \"google\", name = \"{}\" }}\n",
            secret("db")
        ),
    );
    let http = free_port();
    sb.proxy_settings(&format!(
        "strategy = \"http-only\"\nhttp_listen = \"127.0.0.1:{http}\"\n"
    ));
    // The upstream answers with its VERSION: here, the secret's value.
    upstream_service(&mut sb, "web", "${ db }", "host = \"web.test\"");
    let daemon = sb.start();
    assert_eq!(
        wait_until(http, "web.test", "/", 200).body,
        format!("{OLD}\n")
    );
    let web = sb.name("web");
    let web_id = container_id(&web);

    // Secret Manager is down (503 to every request), and the value rotates.
    standin.set(&secret("db"), "latest", Answer::Unavailable);
    let asked = standin.requests().len();
    daemon.reload();
    assert!(standin.requests().len() > asked, "the reload did not ask");
    let log = daemon.log();
    assert!(log.contains("reload refused"), "{log}");
    // One event (the rendered problem spans lines): variable, cause, file and line.
    let at = log
        .find("cannot resolve secret `db`")
        .unwrap_or_else(|| panic!("no error naming the variable:\n{log}"));
    let problem: String = log[at..].lines().take(4).collect::<Vec<_>>().join("\n");
    assert!(problem.contains("answered 503"), "{problem}");
    assert!(problem.contains("dispenser.vars:1:"), "{problem}");
    assert_eq!(container_id(&web), web_id);
    assert!(env_of(&web).contains(&format!("VERSION={OLD}")));
    assert_eq!(get(http, "web.test", "/").body, format!("{OLD}\n"));

    // Back, with a new value: the next reload applies it.
    standin.set(&secret("db"), "latest", Answer::Value(NEW.into()));
    daemon.reload();
    assert_ne!(container_id(&web), web_id);
    assert_eq!(
        wait_until(http, "web.test", "/", 200).body,
        format!("{NEW}\n")
    );
    let log = daemon.stop();
    assert_eq!(log.matches("reload refused").count(), 1, "{log}");
    for value in [OLD, NEW] {
        assert!(!log.contains(value), "the secret value was logged:\n{log}");
    }
}

#[test]
fn the_acme_ca_away_backs_off_serves_self_signed_and_issues_once_back() {
    let mut sb = Sandbox::new();
    let (http, https) = (free_port(), free_port());
    let mut pebble = Pebble::start(http);
    pebble.stop_ca();
    sb.proxy_settings(&format!(
        "strategy = \"https-only\"\nhttp_listen = \"127.0.0.1:{http}\"\n\
         https_listen = \"127.0.0.1:{https}\"\n\n\
         [certbot]\nemail = \"ops@example.com\"\ndirectory_url = \"{}\"\nca_bundle = \"{}\"\n\
         retry_after_failure = \"1s\"\n",
        pebble.directory_url,
        pebble.ca_bundle.display()
    ));
    upstream_service(&mut sb, "web", "one", "host = \"web.test\"");
    let daemon = sb.start();
    let web_id = container_id(&sb.name("web"));

    // The CA does not answer: one warning, then quieter retries with back-off
    // (1 s, 2 s, ...), and HTTPS is served with a self-signed certificate.
    daemon.wait_for("certificate request failed again", 2);
    let insecure = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "5", "--resolve"])
        .arg(format!("web.test:{https}:127.0.0.1"))
        .arg(format!("https://web.test:{https}/"))
        .output()
        .expect("curl");
    assert_eq!(
        text(&insecure.stdout),
        "one\n",
        "{}",
        text(&insecure.stderr)
    );
    let log = daemon.log();
    assert!(!log.contains("certificate issued"), "{log}");

    // The CA is back: the next attempt issues, and the proxy serves it.
    pebble.start_ca();
    daemon.wait_for("certificate issued", 1);
    let root = pebble.write_issuing_root();
    wait("the issued certificate", &daemon, || {
        https_get(https, "web.test", &root).as_deref() == Some("one\n")
    });
    assert_eq!(container_id(&sb.name("web")), web_id);
    let log = daemon.stop();
    assert_eq!(
        log.matches("certificate request failed; keeping the current certificate")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("certificate request succeeded again"), "{log}");
    // The retries doubled: 1 s, 2 s, 4 s... (each within its 10% jitter),
    // read from the log.
    let waits: Vec<u64> = log
        .lines()
        .filter(|line| line.contains("certificate request failed"))
        .filter_map(|line| line.split("retry_in_ms=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(waits.len() >= 3, "{waits:?}\n{log}");
    for (failure, wait) in waits.iter().enumerate() {
        let doubled = 1000u64 << failure;
        assert!(
            (doubled * 9 / 10..=doubled * 11 / 10).contains(wait),
            "retry {failure} waited {wait} ms, not {doubled} ms give or take 10%: {waits:?}"
        );
    }
}
