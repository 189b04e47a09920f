//! Continuous deployment against a real registry (Debian's `docker-registry`
//! on 127.0.0.1): a watched service starts on the registry's current
//! digest (and on the local image, with a warning, when the registry is
//! away), an update pushed under the same tag is deployed, idle
//! rounds cost one HEAD per image and nothing else, credentials come from a
//! Docker config with a credential helper (for the polls and the engine's
//! pull), a registry outage is one warning however many checks fail (the
//! port closes each connection and counts the retries) and updates resume, an image that cannot start is not retried every poll,
//! and bearer tokens from a challenge's realm are fetched once and reused.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::proxy::{connect, read_reply, Reply};
use crate::support::{docker, eventually, inspect, text, Sandbox};

const V1: &str = "dispenser-test/web:v1";
const V2: &str = "dispenser-test/web:v2";
const BROKEN: &str = "dispenser-test/broken:latest";
/// Longest wait for a deploy after a push.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(45);

/// How the test registry authenticates.
pub(crate) enum Auth<'a> {
    None,
    /// Basic auth for one user and password.
    Htpasswd(&'a str, &'a str),
    /// `silly` mode: every request without `Authorization` gets a Bearer
    /// challenge for this realm; any token is accepted.
    Silly(&'a str),
}

/// A `docker-registry` on a free 127.0.0.1 port with its own storage and log.
pub(crate) struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// Local tags pushed through it, removed in Drop.
    tags: Vec<String>,
    /// `docker --config` folder holding the login for pushes (auth registries).
    client_config: Option<PathBuf>,
}

impl Registry {
    /// Starts a registry.
    pub(crate) fn start(mode: Auth) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut auth = String::new();
        let mut htpasswd = None;
        if let Auth::Silly(realm) = mode {
            auth = format!("auth:\n  silly:\n    realm: {realm}\n    service: dtest\n");
        }
        if let Auth::Htpasswd(user, password) = mode {
            htpasswd = Some((user, password));
            let file = dir.path().join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbc", file.to_str().unwrap(), user, password])
                .output()
                .expect("htpasswd (apache2-utils)");
            assert!(out.status.success(), "htpasswd: {}", text(&out.stderr));
            auth = format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                file.display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().join("data").display()
        );
        fs::write(dir.path().join("config.yml"), config).unwrap();
        let mut registry = Registry {
            dir,
            port,
            child: None,
            tags: Vec::new(),
            client_config: None,
        };
        registry.resume();
        if let Some((user, password)) = htpasswd {
            let client = registry.dir.path().join("client");
            fs::create_dir_all(&client).unwrap();
            let out = Command::new("docker")
                .arg("--config")
                .arg(&client)
                .args(["login", "-u", user, "--password-stdin", &registry.host()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    use std::io::Write;
                    child.stdin.take().unwrap().write_all(password.as_bytes())?;
                    child.wait_with_output()
                })
                .unwrap();
            assert!(out.status.success(), "docker login: {}", text(&out.stderr));
            registry.client_config = Some(client);
        }
        registry
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn image(&self, repository: &str) -> String {
        format!("{}/{repository}:latest", self.host())
    }

    /// (Re)starts the registry process on the same port and storage.
    fn resume(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            sleep(Duration::from_millis(50));
        }
    }

    /// Stops the registry process (its storage stays).
    fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Pushes local image `source` as `<registry>/<repository>:latest`, then
    /// points the local tag back at `keep_local` (when given), so only the
    /// registry holds the pushed image under that name. Returns its digest.
    pub(crate) fn push(
        &mut self,
        source: &str,
        repository: &str,
        keep_local: Option<&str>,
    ) -> String {
        let target = self.image(repository);
        self.push_to(source, target, keep_local)
    }

    /// Pushes local image `source` as `<registry>/<repository>:<tag>`.
    pub(crate) fn push_tagged(&mut self, source: &str, repository: &str, tag: &str) -> String {
        let target = format!("{}/{repository}:{tag}", self.host());
        self.push_to(source, target, None)
    }

    /// Points `<repository>:<to>` at the manifest `<repository>:<from>`
    /// names, through the registry's API alone: like a push from another
    /// machine, it changes no tag on this host (a local `docker tag` would
    /// race the daemon's own tagging of what it pulls). Returns the digest.
    /// Only for a registry without auth.
    pub(crate) fn retag(&self, repository: &str, from: &str, to: &str) -> String {
        assert!(
            self.client_config.is_none(),
            "retag speaks to open registries only"
        );
        let path = |tag: &str| format!("/v2/{repository}/manifests/{tag}");
        let accept = "application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.oci.image.manifest.v1+json";
        let manifest = self.call("GET", &path(from), &format!("Accept: {accept}"), "");
        assert_eq!(manifest.status, 200, "GET manifest {from}: {manifest:?}");
        let media_type = manifest.header("content-type").expect("a media type");
        let put = self.call(
            "PUT",
            &path(to),
            &format!("Content-Type: {media_type}"),
            &manifest.body,
        );
        assert_eq!(put.status, 201, "PUT manifest {to}: {put:?}");
        put.header("docker-content-digest")
            .expect("the manifest's digest")
            .to_string()
    }

    /// One HTTP/1.1 exchange with the registry on 127.0.0.1 (`header`: one
    /// header line without its line end).
    fn call(&self, method: &str, path: &str, header: &str, body: &str) -> Reply {
        let mut conn = connect(self.port);
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Length: {}\r\n{header}\r\n\r\n{body}",
            self.host(),
            body.len()
        );
        conn.get_mut().write_all(request.as_bytes()).unwrap();
        read_reply(&mut conn)
    }

    fn push_to(&mut self, source: &str, target: String, keep_local: Option<&str>) -> String {
        docker(&["tag", source, &target]);
        self.tags.push(target.clone());
        let mut push = Command::new("docker");
        if let Some(config) = &self.client_config {
            push.arg("--config").arg(config);
        }
        let out = push.args(["push", &target]).output().unwrap();
        assert!(out.status.success(), "docker push: {}", text(&out.stderr));
        let pushed = text(&out.stdout);
        let digest = pushed
            .split_whitespace()
            .find(|word| word.starts_with("sha256:"))
            .unwrap_or_else(|| panic!("no digest in push output: {pushed}"))
            .to_string();
        if let Some(local) = keep_local {
            docker(&["tag", local, &target]);
        }
        digest
    }

    pub(crate) fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Access-log lines whose request line starts with `request` (for
    /// example `HEAD /v2/web/manifests/`).
    fn count(&self, request: &str) -> usize {
        let needle = format!("\"{request}");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.pause();
        for tag in &self.tags {
            let _ = Command::new("docker").args(["rmi", tag]).output();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the service's httpd serves, read from inside its container.
fn served(container: &str) -> String {
    let out = Command::new("docker")
        .args(["exec", container, "wget", "-qO-", "http://127.0.0.1/"])
        .output()
        .unwrap();
    text(&out.stdout).trim().to_string()
}

/// Waits until the container serves `page`.
fn wait_served(container: &str, page: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + DEPLOY_TIMEOUT;
    while served(container) != page {
        assert!(
            Instant::now() < deadline,
            "{container} never served {page:?}; log:\n{}",
            log()
        );
        sleep(Duration::from_millis(250));
    }
}

pub(crate) fn label(container: &str, key: &str) -> String {
    inspect(container)["Config"]["Labels"][key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

const WATCH: &str = "[dispenser]\nwatch = true\n";

/// Waits for `count` more HEADs of `repository:latest` (each one watcher
/// round), at most `DEPLOY_TIMEOUT`.
/// A label of the container, or `None` while no container has the name (a
/// stop-first deploy renames the old one before it creates the new one).
fn label_if_any(container: &str, key: &str) -> Option<String> {
    let out = Command::new("docker")
        .args([
            "inspect",
            "-f",
            &format!("{{{{index .Config.Labels \"{key}\"}}}}"),
            container,
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| text(&out.stdout).trim().to_string())
}

fn wait_heads(registry: &Registry, repository: &str, count: usize, log: impl Fn() -> String) {
    let request = format!("HEAD /v2/{repository}/manifests/latest");
    let target = registry.count(&request) + count;
    let deadline = Instant::now() + DEPLOY_TIMEOUT;
    while registry.count(&request) < target {
        assert!(
            Instant::now() < deadline,
            "fewer than {count} watcher rounds: {}\n{}",
            registry.log(),
            log()
        );
        sleep(Duration::from_millis(50));
    }
}

/// How long the next `rounds` watcher rounds take, counted from a HEAD:
/// with `delay = 1` about a second each, half that if two loops polled.
fn time_rounds(registry: &Registry, repository: &str, rounds: usize) -> Duration {
    wait_heads(registry, repository, 1, String::new);
    let started = Instant::now();
    wait_heads(registry, repository, rounds, String::new);
    started.elapsed()
}

#[test]
fn a_pushed_update_is_deployed_and_idle_rounds_are_one_head_each() {
    let mut registry = Registry::start(Auth::None);
    let v1 = registry.push(V1, "web", None);
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    let image = registry.image("web");
    sb.service("web", &image, WATCH);
    let web = sb.name("web");
    let daemon = sb.start();
    assert_eq!(served(&web), "v1");
    assert_eq!(label(&web, "dispenser.image-digest"), v1);
    // Created from exactly the labelled digest, not from the movable tag.
    let host = registry.host();
    let pinned = |digest: &str| format!("{host}/web@{digest}");
    assert_eq!(inspect(&web)["Config"]["Image"], pinned(&v1));

    // Idle: every round is one HEAD for the image, no manifest GET, no blob.
    wait_heads(&registry, "web", 1, || daemon.log());
    let gets_before = registry.count("GET /v2/web/manifests/");
    // One HEAD per round: three rounds take three delays (1 s each).
    let took = time_rounds(&registry, "web", 3);
    assert!(
        took >= Duration::from_millis(2500),
        "3 HEADs in {took:?}: more than one per round"
    );
    assert_eq!(registry.count("GET /v2/web/manifests/"), gets_before);
    assert_eq!(registry.count("GET /v2/web/blobs/"), 0);

    // v2 under the same tag; locally the tag still names v1.
    let v2 = registry.push(V2, "web", Some(V1));
    assert_ne!(v1, v2);
    wait_served(&web, "v2", || daemon.log());
    assert_eq!(label(&web, "dispenser.image-digest"), v2);
    assert_eq!(inspect(&web)["Config"]["Image"], pinned(&v2));
    let log = daemon.log();
    assert!(log.contains("new image in the registry"), "{log}");
    assert!(
        log.contains(&format!("{}/web@{v2}", registry.host())),
        "{log}"
    );
    // Pulled by digest, never by tag (the engine HEADs or GETs the manifest
    // by digest, depending on what its content store already holds).
    let registry_log = registry.log();
    assert!(
        registry_log.contains(&format!("/v2/web/manifests/{v2} HTTP/1.1")),
        "{registry_log}"
    );
    assert_eq!(registry.count("GET /v2/web/manifests/latest"), 0);
    daemon.stop();
}

#[test]
fn a_watched_service_starts_on_the_registry_digest_and_is_deployed_once() {
    let mut registry = Registry::start(Auth::None);
    registry.push(V1, "web", None);
    // The registry has moved on to v2; this host's tag still names v1.
    let v2 = registry.push(V2, "web", Some(V1));
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    sb.service("web", &registry.image("web"), WATCH);
    let web = sb.name("web");
    let daemon = sb.start();
    // Ready on the current version: created from it, not from the old tag.
    assert_eq!(served(&web), "v2", "{}", daemon.log());
    assert_eq!(label(&web, "dispenser.image-digest"), v2);
    let id = inspect(&web)["Id"].clone();
    // Two watcher rounds later the container is still the first one: no
    // second deploy was due.
    let heads = || registry.count("HEAD /v2/web/manifests/latest");
    let before = heads();
    let deadline = Instant::now() + Duration::from_secs(20);
    while heads() < before + 2 {
        assert!(
            Instant::now() < deadline,
            "no watcher rounds: {}",
            registry.log()
        );
        sleep(Duration::from_millis(100));
    }
    let log = daemon.log();
    assert!(!log.contains("new image in the registry"), "{log}");
    assert_eq!(
        log.matches("pulling it before the first start").count(),
        1,
        "{log}"
    );
    assert_eq!(inspect(&web)["Id"], id);
    daemon.stop();
}

#[test]
fn an_unreachable_registry_at_start_up_starts_the_local_image_with_a_warning() {
    let mut registry = Registry::start(Auth::None);
    registry.push(V1, "web", None);
    registry.push(V2, "web", Some(V1));
    registry.pause();
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    sb.service("web", &registry.image("web"), WATCH);
    let web = sb.name("web");
    let daemon = sb.start();
    assert_eq!(served(&web), "v1");
    let log = daemon.log();
    assert!(
        log.contains(
            "cannot ask the registry for the current digest; starting from the image on this host"
        ),
        "{log}"
    );
    // Once the registry answers, the watcher deploys what it has.
    registry.resume();
    wait_served(&web, "v2", || daemon.log());
    daemon.stop();
}

#[test]
fn registry_outage_is_one_warning_and_updates_resume() {
    let mut registry = Registry::start(Auth::None);
    registry.push(V1, "web", None);
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    sb.service("web", &registry.image("web"), WATCH);
    let web = sb.name("web");
    let daemon = sb.start();
    let id_before = inspect(&web)["Id"].clone();

    registry.pause();
    // The port answers meanwhile by closing each connection at once, and
    // counts them: the daemon's retries, waited for instead of slept.
    let refuser = Refuser::bind(registry.port);
    daemon.wait_for("registry check failed", 1);
    let retries = refuser.count();
    eventually(
        "two more failed checks after the warning",
        DEPLOY_TIMEOUT,
        || refuser.count() >= retries + 2,
        || daemon.log(),
    );
    drop(refuser);
    let log = daemon.log();
    assert_eq!(
        log.matches("registry check failed; backing off").count(),
        1,
        "{log}"
    );
    assert_eq!(inspect(&web)["State"]["Running"], true);
    assert_eq!(inspect(&web)["Id"], id_before);

    registry.resume();
    registry.push(V2, "web", Some(V1));
    wait_served(&web, "v2", || daemon.log());
    daemon.wait_for("registry check works again", 1);
    daemon.stop();
}

#[test]
fn an_image_that_cannot_start_is_not_retried_every_poll() {
    let mut registry = Registry::start(Auth::None);
    registry.push(V1, "app", None);
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    sb.service("app", &registry.image("app"), WATCH);
    let daemon = sb.start();

    // The new container cannot start: rolled back and quarantined, so
    // later polls that see the same digest try nothing (docs/deploys.md).
    registry.push(BROKEN, "app", Some(V1));
    daemon.wait_for("new version rolled back", 1);
    // The watcher keeps polling, and sees the same digest each round.
    wait_heads(&registry, "app", 4, || daemon.log());
    let log = daemon.log();
    assert_eq!(log.matches("new version rolled back").count(), 1, "{log}");
    assert!(
        log.contains("does-not-exist"),
        "the reason is logged: {log}"
    );
    daemon.stop();
}

#[test]
fn credentials_come_from_a_docker_config_credential_helper() {
    let mut registry = Registry::start(Auth::Htpasswd("ci", "p4ss:word"));
    registry.push(V1, "web", None);
    let helpers = tempfile::tempdir().unwrap();
    let helper = helpers.path().join("docker-credential-dtest");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread -r key\n[ \"$key\" = '{}' ] || {{ echo 'credentials not found'; exit 1; }}\necho \"$key\" >> {}/asked\nprintf '{{\"Username\":\"ci\",\"Secret\":\"p4ss:word\"}}'\n",
            registry.host(),
            helpers.path().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let docker_config = helpers.path().join("docker");
    fs::create_dir_all(&docker_config).unwrap();
    fs::write(
        docker_config.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"dtest"}}}}"#, registry.host()),
    )
    .unwrap();

    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    sb.daemon_env("DOCKER_CONFIG", docker_config.to_str().unwrap());
    let path = format!(
        "{}:{}",
        helpers.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    sb.daemon_env("PATH", &path);
    sb.service("web", &registry.image("web"), WATCH);
    let web = sb.name("web");
    let daemon = sb.start();

    let v2 = registry.push(V2, "web", Some(V1));
    // The engine's pull of the new digest gets the same credentials.
    wait_served(&web, "v2", || daemon.log());
    assert_eq!(label(&web, "dispenser.image-digest"), v2);
    let log = daemon.log();
    assert!(log.contains("new image in the registry"), "{log}");
    assert!(!log.contains("p4ss"), "a secret reached the log: {log}");
    let asked = fs::read_to_string(helpers.path().join("asked")).unwrap_or_default();
    assert!(asked.contains(&registry.host()), "helper never asked");
    // Authenticated HEADs answered 200 with the right digest.
    let ok_heads = registry
        .log()
        .lines()
        .filter(|l| l.contains("\"HEAD /v2/web/manifests/latest") && l.contains("\" 200 "))
        .count();
    assert!(ok_heads >= 1, "{}", registry.log());
    daemon.stop();
}

#[test]
fn a_deployed_update_is_adopted_after_a_restart_and_reloads_keep_one_loop() {
    let mut registry = Registry::start(Auth::None);
    registry.push(V1, "web", None);
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    sb.service("web", &registry.image("web"), WATCH);
    let web = sb.name("web");
    let daemon = sb.start();
    // v2 reaches `latest` through the registry's API alone, as a push from
    // another machine would: no local tag moves but the daemon's own.
    registry.push_tagged(V2, "web", "v2");
    let v2 = registry.retag("web", "v2", "latest");
    wait_served(&web, "v2", || daemon.log());
    // Stopped once the deploy has ended (a stop abandons a deploy's gate).
    daemon.wait_for(&format!("digest={v2}"), 1);
    daemon.wait_for("deployed", 1);
    daemon.stop();

    // The deploy moved the local tag to what it deployed: a restart adopts it.
    let id = inspect(&web)["Id"].clone();
    let daemon = sb.start();
    // Two rounds of the new daemon's watcher saw the deployed digest.
    wait_heads(&registry, "web", 2, || daemon.log());
    assert_eq!(inspect(&web)["Id"], id, "{}", daemon.log());
    assert_eq!(label(&web, "dispenser.image-digest"), v2);
    assert!(!daemon.log().contains("new image in the registry"));

    // Reloads do not add polling loops: still about one HEAD a second.
    for _ in 0..3 {
        daemon.reload();
    }
    let took = time_rounds(&registry, "web", 3);
    assert!(
        took >= Duration::from_millis(2500),
        "3 HEADs in {took:?} after reloads: more than one loop polls"
    );
    daemon.stop();
}

/// A listener on a stopped registry's port that closes every connection at
/// once and counts them (the watcher's attempts).
struct Refuser {
    accepted: Arc<Mutex<usize>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Refuser {
    fn bind(port: u16) -> Refuser {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the registry's port");
        listener.set_nonblocking(true).unwrap();
        let accepted = Arc::new(Mutex::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (count, stopped) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        drop(stream);
                        *count.lock().unwrap() += 1;
                    }
                    Err(_) => sleep(Duration::from_millis(20)),
                }
            }
        });
        Refuser {
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        *self.accepted.lock().unwrap()
    }
}

impl Drop for Refuser {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A token service of the test's own: answers every request with a token
/// valid for five minutes and records the user agent of each.
struct TokenService {
    port: u16,
    agents: Arc<Mutex<Vec<String>>>,
}

impl TokenService {
    fn start() -> TokenService {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let agents = Arc::new(Mutex::new(Vec::new()));
        let seen = agents.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = text(&head);
                let agent = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("User-Agent: ")
                            .or(l.strip_prefix("user-agent: "))
                    })
                    .unwrap_or_default()
                    .to_string();
                seen.lock().unwrap().push(agent);
                let body = r#"{"token":"any-token","expires_in":300}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        TokenService { port, agents }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// Token requests Dispenser made (the engine and the CLI make their own).
    fn asked_by_dispenser(&self) -> usize {
        let agents = self.agents.lock().unwrap();
        agents
            .iter()
            .filter(|a| a.starts_with("dispenser/"))
            .count()
    }
}

#[test]
fn bearer_challenge_tokens_are_fetched_once_and_reused() {
    let tokens = TokenService::start();
    let realm = tokens.realm();
    let mut registry = Registry::start(Auth::Silly(&realm));
    registry.push(V1, "web", None);
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    sb.service("web", &registry.image("web"), WATCH);
    let web = sb.name("web");
    let daemon = sb.start();

    let v2 = registry.push(V2, "web", Some(V1));
    wait_served(&web, "v2", || daemon.log());
    assert_eq!(label(&web, "dispenser.image-digest"), v2);
    // Several rounds, one token: it is cached until it expires.
    let heads = || registry.count("HEAD /v2/web/manifests/latest");
    let before = heads();
    let deadline = Instant::now() + DEPLOY_TIMEOUT;
    while heads() < before + 3 {
        assert!(
            Instant::now() < deadline,
            "polling stopped: {}",
            daemon.log()
        );
        sleep(Duration::from_millis(200));
    }
    assert_eq!(tokens.asked_by_dispenser(), 1, "{}", daemon.log());
    daemon.stop();
}

#[test]
fn old_images_are_removed_after_a_proven_deploy_and_the_rollback_target_stays() {
    let mut images = crate::deploys::Images(Vec::new());
    let mut registry = Registry::start(Auth::None);
    images.0.push(format!("{}/web", registry.host()));
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    sb.daemon_settings("keep_images = 2\n");
    sb.deploy_settings("soak = \"0s\"\n");
    sb.service("web", &registry.image("web"), WATCH);
    let web = sb.name("web");
    let host = registry.host();
    // Each version's image is known to this host by its registry digest
    // only, as on a server that pulls what CI pushed.
    let mut pushed = Vec::new();
    let mut daemon = None;
    for n in 1..=4 {
        let build = images.version(&format!("prune-v{n}"));
        let id = docker(&["image", "inspect", "-f", "{{.Id}}", &build])
            .trim()
            .to_string();
        let digest = registry.push(&build, "web", None);
        docker(&["rmi", &build]);
        pushed.push((digest.clone(), id));
        let daemon = daemon.get_or_insert_with(|| sb.start());
        eventually(
            "the pushed version serves",
            DEPLOY_TIMEOUT,
            || label_if_any(&web, "dispenser.image-digest").as_deref() == Some(digest.as_str()),
            || daemon.log(),
        );
    }
    let daemon = daemon.unwrap();
    let present = |reference: &str| {
        Command::new("docker")
            .args(["image", "inspect", reference])
            .output()
            .unwrap()
            .status
            .success()
    };
    eventually(
        "the second version's image removed",
        DEPLOY_TIMEOUT,
        || !present(&format!("{host}/web@{}", pushed[1].0)),
        || daemon.log(),
    );
    // v1 and v2 are gone, the images with them; v4 serves and v3, the
    // version a rollback goes back to, stays.
    for (digest, id) in &pushed[..2] {
        assert!(!present(&format!("{host}/web@{digest}")), "{digest} kept");
        assert!(!present(id), "image {id} kept");
    }
    for (digest, _) in &pushed[2..] {
        assert!(present(&format!("{host}/web@{digest}")), "{digest} removed");
    }
    let log = daemon.stop();
    assert!(log.contains("removed old images"), "{log}");
    assert!(log.contains("freed_bytes="), "{log}");
}

#[test]
fn a_tracked_range_follows_the_newest_tag_in_it_and_never_a_higher_major() {
    let mut images = crate::deploys::Images(Vec::new());
    let mut registry = Registry::start(Auth::None);
    images.0.push(format!("{}/web", registry.host()));
    let mut push = |tag: &str| {
        let build = images.version(&format!("track-{tag}"));
        registry.push_tagged(&build, "web", tag)
    };
    let _first = push("1.2.0");
    let newest = push("1.2.5");
    let major = push("2.0.0");
    push("latest");
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    sb.deploy_settings("soak = \"0s\"\n");
    let image = format!("{}/web:1.2.0", registry.host());
    sb.service("web", &image, "[dispenser]\ntrack = \"^1.2\"\n");
    let web = sb.name("web");
    let daemon = sb.start();
    // The first start is already on the newest tag in the range.
    eventually(
        "the service runs 1.2.5",
        DEPLOY_TIMEOUT,
        || label_if_any(&web, "dispenser.image-digest").as_deref() == Some(newest.as_str()),
        || daemon.log(),
    );
    // A new minor inside the range is deployed; 2.0.0 never is.
    let minor = {
        let build = images.version("track-1.3.0");
        registry.push_tagged(&build, "web", "1.3.0")
    };
    eventually(
        "the service runs 1.3.0",
        DEPLOY_TIMEOUT,
        || label_if_any(&web, "dispenser.image-digest").as_deref() == Some(minor.as_str()),
        || daemon.log(),
    );
    eventually(
        "the deploy of 1.3.0 recorded",
        DEPLOY_TIMEOUT,
        || {
            crate::deploys::deploys(&sb, &web)
                .iter()
                .any(|(trigger, outcome, _)| trigger == "new-digest" && outcome == "succeeded")
        },
        || daemon.log(),
    );
    let log = daemon.stop();
    assert!(!log.contains(&major), "2.0.0 was looked at:\n{log}");
    let rows = crate::deploys::deploys(&sb, &web);
    let ledger = sb.ledger();
    let (tag, digest): (Option<String>, Option<String>) = ledger
        .query_row(
            "SELECT tag, new_digest FROM deploys WHERE service = ?1 AND outcome = 'succeeded' ORDER BY id DESC LIMIT 1",
            [&web],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap_or_else(|err| panic!("{err}: {rows:?}\n{log}"));
    assert_eq!(tag.as_deref(), Some("1.3.0"));
    assert_eq!(digest.as_deref(), Some(minor.as_str()));
}
