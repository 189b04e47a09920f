//! The harness of the runtime tests: a sandbox per test (unique names, a
//! temporary config tree, its own instance id and network) that cleans up
//! after itself even when the test fails, and a handle on the real daemon.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The prefix of every instance id, container, network and volume a test creates.
pub const PREFIX: &str = "dtest";
/// Longest wait for the daemon to be ready or to finish a reload (or for a
/// log line): ample for a sandbox of a few services on 2 cores shared by
/// parallel tests, and short enough that a daemon that hangs fails fast.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

static COUNTER: AtomicU32 = AtomicU32::new(0);
static IMAGES: OnceLock<()> = OnceLock::new();

/// A test's own corner of the host.
pub struct Sandbox {
    /// Unique per test: `dtest-<pid>-<n>`; the instance id and the name prefix.
    pub id: String,
    pub dir: tempfile::TempDir,
    subnet: String,
    services: Vec<String>,
    networks: Vec<String>,
    daemon_extra: String,
    /// Extra environment of every dispenser process the sandbox runs.
    env: Vec<(String, String)>,
    proxy: Option<String>,
    /// `delay` in dispenser.toml (seconds between registry polls).
    delay: u64,
    /// The body of the `[deploy]` table (default: no soak, so deploys in
    /// tests finish as soon as the new container is ready).
    deploy: String,
}

/// The daemon under test, started from the real binary.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
    config: PathBuf,
    pid_file: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        IMAGES.get_or_init(|| {
            sweep_stale();
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images/build.sh");
            let out = Command::new("sh")
                .arg(script)
                .output()
                .expect("run build.sh");
            assert!(out.status.success(), "test images: {}", text(&out.stderr));
        });
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let id = format!("{PREFIX}-{pid}-{n}");
        // Test processes run side by side (nextest runs one per test): the
        // default network is made here, on the first free subnet, and the
        // daemon uses it as it finds it.
        let subnet = reserve_network(&format!("{id}-net"), pid, n);
        Sandbox {
            id,
            dir: tempfile::tempdir().expect("temp dir"),
            subnet,
            services: Vec::new(),
            networks: Vec::new(),
            daemon_extra: String::new(),
            env: Vec::new(),
            proxy: None,
            delay: 60,
            deploy: "soak = \"0s\"".to_string(),
        }
    }

    /// The full name of a test's service, container or network.
    pub fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.id)
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn write(&self, relative: &str, content: &str) {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    /// Declares a network (by short name) in dispenser.toml.
    pub fn declare_network(&mut self, short: &str) {
        self.networks.push(short.to_string());
    }

    /// Sets an environment variable for every dispenser process started from now on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(existing, _)| existing != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Extra lines for the `[daemon]` table.
    pub fn daemon_settings(&mut self, lines: &str) {
        self.daemon_extra = lines.to_string();
    }

    /// The body of the `[proxy]` table of dispenser.toml (default: `enabled = false`).
    pub fn proxy_settings(&mut self, lines: &str) {
        self.proxy = Some(lines.to_string());
        self.write_main();
    }

    /// The body of the `[deploy]` table of dispenser.toml.
    pub fn deploy_settings(&mut self, lines: &str) {
        self.deploy = lines.to_string();
    }

    /// Sets `delay` (seconds between registry polls) in dispenser.toml.
    pub fn poll_delay(&mut self, seconds: u64) {
        self.delay = seconds;
    }

    /// Sets an environment variable for the daemons this sandbox starts.
    pub fn daemon_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Writes `<short>/service.toml` with `[service] name` set and `body` after it,
    /// and lists the service in dispenser.toml.
    pub fn service(&mut self, short: &str, image: &str, body: &str) {
        let content = format!(
            "[service]\nname = \"{}\"\nimage = \"{image}\"\n{body}\n",
            self.name(short)
        );
        self.write(&format!("{short}/service.toml"), &content);
        if !self.services.iter().any(|s| s == short) {
            self.services.push(short.to_string());
        }
        self.write_main();
    }

    /// Takes a service out of dispenser.toml (its folder stays).
    pub fn drop_service(&mut self, short: &str) {
        self.services.retain(|s| s != short);
        self.write_main();
    }

    /// Writes dispenser.toml from the services and networks declared so far.
    pub fn write_main(&self) {
        let mut text = format!(
            "delay = {}\n\n[deploy]\n{}\n\n[proxy]\n{}\n\n[daemon]\ninstance = \"{}\"\n{}\n\n[daemon.network]\nname = \"{}\"\nsubnet = \"{}\"\n",
            self.delay,
            self.deploy,
            self.proxy.as_deref().unwrap_or("enabled = false"),
            self.id,
            self.daemon_extra,
            self.name("net"),
            self.subnet
        );
        for network in &self.networks {
            text.push_str(&format!(
                "\n[[network]]\nname = \"{}\"\n",
                self.name(network)
            ));
        }
        for service in &self.services {
            text.push_str(&format!("\n[[service]]\npath = \"{service}\"\n"));
        }
        self.write("dispenser.toml", &text);
    }

    pub fn config(&self) -> PathBuf {
        self.path("dispenser.toml")
    }

    /// Makes the default network look like the one ixpantia/dispenser
    /// creates: made anew under the same name and subnet, with upstream's
    /// label `managed-by=dispenser` (and the tests' labels). Returns its id.
    pub fn network_as_upstream(&self) -> String {
        let name = self.name("net");
        docker(&["network", "rm", &name]);
        let pid = format!("dispenser-test.pid={}", std::process::id());
        let id = docker(&[
            "network",
            "create",
            "--driver",
            "bridge",
            "--subnet",
            &self.subnet,
            "--label",
            "managed-by=dispenser",
            "--label",
            "dispenser-test=1",
            "--label",
            &pid,
            &name,
        ]);
        id.trim().to_string()
    }

    pub fn pid_file(&self) -> PathBuf {
        self.path("dispenser.pid")
    }

    /// Starts the daemon and waits until it says it is ready.
    pub fn start(&self) -> Daemon {
        let daemon = self.spawn();
        daemon.wait_for("dispenser is ready", 1);
        daemon
    }

    /// Starts the daemon without waiting.
    pub fn spawn(&self) -> Daemon {
        let log = self.path(&format!(
            "daemon-{}.log",
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dispenser"))
            .arg("-c")
            .arg(self.config())
            .arg("-p")
            .arg(self.pid_file())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn dispenser");
        Daemon {
            child: Some(child),
            log,
            config: self.config(),
            pid_file: self.pid_file(),
        }
    }

    /// Runs `dispenser -c CONFIG -p PIDFILE ARGS...` to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().expect("run dispenser")
    }

    /// `dispenser -c CONFIG -p PIDFILE ARGS...` with the sandbox's
    /// environment, to spawn.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dispenser"));
        command
            .arg("-c")
            .arg(self.config())
            .arg("-p")
            .arg(self.pid_file())
            .args(args)
            .envs(self.env.iter().map(|(key, value)| (key, value)));
        command
    }

    /// Containers of this sandbox's instance: (name, id).
    pub fn managed_containers(&self) -> Vec<(String, String)> {
        let out = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=dispenser.instance={}", self.id),
            "--format",
            "{{.Names}} {{.ID}}",
        ]);
        let mut list: Vec<(String, String)> = out
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(name, id)| (name.to_string(), id.to_string()))
            .collect();
        list.sort();
        list
    }
}

impl Sandbox {
    /// Sends a signal (`HUP`, `KILL`, ...) to the daemon through its pidfile,
    /// without waiting for anything.
    pub fn signal(&self, signal: &str) {
        let pid = fs::read_to_string(self.pid_file()).expect("the pidfile");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), pid.trim()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// The daemon's ledger (`<state_dir>/ledger.sqlite3`), opened read-write.
    pub fn ledger(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path(".dispenser/ledger.sqlite3")).expect("open the ledger")
    }

    /// The ledger is sound: SQLite's `integrity_check` passes, and no deploy
    /// or run is left open (every row that ran has an end and an outcome).
    pub fn assert_ledger_sound(&self) {
        let ledger = self.ledger();
        let integrity: String = ledger
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(integrity, "ok", "ledger integrity");
        let open_deploys: i64 = ledger
            .query_row(
                "SELECT count(*) FROM deploys WHERE ended_at IS NULL OR ended_at = ''
                 OR outcome NOT IN ('succeeded', 'rolled-back', 'failed', 'abandoned', 'superseded')",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(open_deploys, 0, "deploys left open");
        let open_runs: i64 = ledger
            .query_row(
                "SELECT count(*) FROM runs WHERE outcome <> 'skipped' AND (ended_at IS NULL OR ended_at = '')",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(open_runs, 0, "runs left open");
    }

    /// Exactly one container per listed service carries this instance's
    /// labels, under the service's own name, and no container of the
    /// sandbox (labelled or not) is a deploy's leftover (`-next`, `-prev`).
    pub fn assert_converged(&self, shorts: &[&str]) {
        let mut expected: Vec<String> = shorts.iter().map(|short| self.name(short)).collect();
        expected.sort();
        let managed: Vec<String> = self
            .managed_containers()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(managed, expected, "one container per service");
        let all = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("name=^/{}-", self.id),
            "--format",
            "{{.Names}}",
        ]);
        for name in all.lines() {
            assert!(
                !name.ends_with("-next") && !name.ends_with("-prev"),
                "leftover container {name}"
            );
        }
    }
}

impl Sandbox {
    /// Fails unless the kill that just landed cut a reconcile short: of the
    /// listed services, each of which that reconcile gives a new version, at
    /// least one is not on it yet (`replaced` judges a container's `docker
    /// inspect`; a service without a container under its name is not
    /// replaced). A kill that came after the reconcile ended tests nothing.
    pub fn assert_killed_mid_reconcile(&self, shorts: &[&str], replaced: impl Fn(&Value) -> bool) {
        let done: Vec<&str> = shorts
            .iter()
            .copied()
            .filter(|short| {
                let name = self.name(short);
                exists(&name) && replaced(&inspect(&name))
            })
            .collect();
        assert!(
            done.len() < shorts.len(),
            "the kill came too late to test anything: {done:?} were all replaced already"
        );
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        remove_instance(&self.id);
    }
}

impl Daemon {
    /// Waits until `needle` appears at least `count` times in the log.
    pub fn wait_for(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let log = self.log();
            if log.matches(needle).count() >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count}x {needle:?}; log:\n{log}"
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// Everything the daemon printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `-s reload` through the pidfile and waits until the reload ended
    /// (applied or refused).
    pub fn reload(&self) {
        let before = self.reloads_done();
        let out = Command::new(env!("CARGO_BIN_EXE_dispenser"))
            .arg("-c")
            .arg(&self.config)
            .arg("-p")
            .arg(&self.pid_file)
            .args(["-s", "reload"])
            .output()
            .unwrap();
        assert!(out.status.success(), "-s reload: {}", text(&out.stderr));
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.reloads_done() <= before {
            assert!(
                Instant::now() < deadline,
                "reload never finished:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(100));
        }
    }

    fn reloads_done(&self) -> usize {
        let log = self.log();
        log.lines()
            .filter(|line| {
                ((line.contains("plan applied") || line.contains("plan deferred"))
                    && line.contains("reload"))
                    || line.contains("reload refused")
            })
            .count()
    }

    /// Sends `-s stop` through the pidfile and waits for the process to exit.
    pub fn stop(mut self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_dispenser"))
            .arg("-c")
            .arg(&self.config)
            .arg("-p")
            .arg(&self.pid_file)
            .args(["-s", "stop"])
            .output()
            .unwrap();
        assert!(out.status.success(), "-s stop: {}", text(&out.stderr));
        let mut child = self.child.take().unwrap();
        // `-s stop` returned once the pidfile was released: the exit follows.
        let status = wait_exit(&mut child, EXIT_TIMEOUT, "the stopped daemon", || {
            self.log()
        });
        assert!(
            status.success(),
            "daemon exited with {status}:\n{}",
            self.log()
        );
        self.log()
    }

    /// SIGTERM, as systemd stops the daemon; waits (at most `EXIT_TIMEOUT`)
    /// for the exit. Returns how long the exit took, after its success is
    /// checked, and the log.
    pub fn terminate(mut self) -> (Duration, String) {
        let mut child = self.child.take().unwrap();
        let sent = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM {}", child.id());
        let status = wait_exit(&mut child, EXIT_TIMEOUT, "the daemon after SIGTERM", || {
            self.log()
        });
        let took = sent.elapsed();
        assert!(
            status.success(),
            "daemon exited with {status}:\n{}",
            self.log()
        );
        (took, self.log())
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Longest wait for a process that was told to exit (SIGTERM, `-s stop`).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits for `child` to exit, at most `timeout`; past it, kills it and
/// panics naming `what`, with `log()` below. Never a bare `wait()`: a process
/// that ignores its signal must fail the test, not hang it.
pub fn wait_exit(
    child: &mut Child,
    timeout: Duration,
    what: &str,
    log: impl Fn() -> String,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{what} (pid {}) did not exit within {timeout:?}; killed it. Log:\n{}",
                    child.id(),
                    log()
                );
            }
            Err(err) => panic!("waiting for {what} (pid {}): {err}", child.id()),
        }
    }
}

/// Runs the docker CLI and returns its stdout; panics on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Polls `check` every 50 ms until it holds; after `timeout` fails naming
/// `what`, with `log()` (the daemon's log, or nothing) below it.
pub fn eventually(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out: {what}\n{}", log());
        sleep(Duration::from_millis(50));
    }
}

/// `docker inspect` of one object, as JSON.
pub fn inspect(name: &str) -> Value {
    let out = docker(&["inspect", name]);
    let list: Value = serde_json::from_str(&out).expect("inspect JSON");
    list[0].clone()
}

/// True when a container of that name exists.
pub fn exists(name: &str) -> bool {
    Command::new("docker")
        .args(["inspect", "--type", "container", name])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Webhook calls received on 127.0.0.1: (request head, body) each.
pub type WebhookCalls = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A webhook receiver of the test's own: answers every request 204 and
/// keeps it, for `lifetime` at most (then its thread ends). A call counts
/// once its whole body (by `Content-Length`) has arrived.
pub fn webhook_receiver(lifetime: Duration) -> (u16, WebhookCalls) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let calls: WebhookCalls = Default::default();
    let kept = calls.clone();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + lifetime;
        while std::time::Instant::now() < deadline {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                request.extend_from_slice(&buf[..n]);
                let seen = text(&request);
                if let Some((head, body)) = seen.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .and_then(|value| value.trim().parse::<usize>().ok())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n");
                        kept.lock()
                            .unwrap()
                            .push((head.to_string(), body.to_string()));
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
        }
    });
    (port, calls)
}

/// Removes every container and network of an instance.
fn remove_instance(instance: &str) {
    let quiet = |args: &[&str]| {
        let _ = Command::new("docker").args(args).output();
    };
    let ids = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("name=^/{instance}-")])
        .output()
        .map(|out| text(&out.stdout))
        .unwrap_or_default();
    let labelled = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=dispenser.instance={instance}"),
        ])
        .output()
        .map(|out| text(&out.stdout))
        .unwrap_or_default();
    let all: Vec<&str> = ids.lines().chain(labelled.lines()).collect();
    if !all.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(all);
        quiet(&args);
    }
    let networks = Command::new("docker")
        .args([
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name={instance}-"),
        ])
        .output()
        .map(|out| text(&out.stdout))
        .unwrap_or_default();
    for network in networks.lines() {
        quiet(&["network", "rm", network]);
    }
    let volumes = Command::new("docker")
        .args([
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={instance}-"),
        ])
        .output()
        .map(|out| text(&out.stdout))
        .unwrap_or_default();
    for volume in volumes.lines() {
        quiet(&["volume", "rm", "-f", volume]);
    }
}

/// Creates the sandbox's default network on a subnet no other network uses,
/// and returns that subnet.
fn reserve_network(name: &str, pid: u32, n: u32) -> String {
    for attempt in 0..500u32 {
        let seed = pid
            .wrapping_mul(31)
            .wrapping_add(n.wrapping_mul(17))
            .wrapping_add(attempt);
        let subnet = format!("10.{}.{}.0/24", 200 + seed % 50, (seed / 50) % 250);
        let created = Command::new("docker")
            .args([
                "network", "create", "--driver", "bridge", "--subnet", &subnet,
            ])
            .args(["--label", "dispenser-test=1", name])
            // The pid label: the actors tests' sweep removes a labelled
            // object only once the process its pid names is gone.
            .args(["--label", &format!("dispenser-test.pid={pid}")])
            .output()
            .map(|out| out.status.success())
            .unwrap_or(false);
        if created {
            return subnet;
        }
    }
    panic!("no free subnet for the test network {name}");
}

/// Removes what earlier test runs (dead processes) left behind.
fn sweep_stale() {
    let networks = Command::new("docker")
        .args([
            "network",
            "ls",
            "--filter",
            "label=dispenser-test=1",
            "--format",
            "{{.Name}}",
        ])
        .output()
        .map(|out| text(&out.stdout))
        .unwrap_or_default();
    for network in networks.lines() {
        let mut parts = network.split('-');
        if let (Some(PREFIX), Some(pid)) = (parts.next(), parts.next()) {
            if !Path::new("/proc").join(pid).exists() {
                let _ = Command::new("docker")
                    .args(["network", "rm", network])
                    .output();
            }
        }
    }
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=dispenser.managed=true",
            "--format",
            "{{.Label \"dispenser.instance\"}}",
        ])
        .output()
        .map(|out| text(&out.stdout))
        .unwrap_or_default();
    let mut instances: Vec<&str> = out.lines().collect();
    instances.sort();
    instances.dedup();
    for instance in instances {
        let mut parts = instance.split('-');
        let (Some(PREFIX), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let alive = Path::new("/proc").join(pid).exists();
        if !alive {
            remove_instance(instance);
        }
    }
}
