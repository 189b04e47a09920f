//! A stop in each phase of a deploy: `SIGTERM` while the new image is being
//! pulled, while the new container waits in its health gate, and (in
//! deploys.rs) during its soak. Each time the daemon exits within 5 s, the
//! previous version is the one container left, the ledger says
//! `abandoned`, and the next start deploys the new version once, with no
//! failed request through the proxy.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{sleep, JoinHandle};
use std::time::Duration;

use crate::deploys::{deploys, free_port, report, routed, wait_logged, Images, Load};
use crate::faults::{slow_upstream, WGET_PROBE};
use crate::support::{eventually, exists, Daemon, Sandbox};
use crate::watching::{label, Auth, Registry};

/// How long a stop may take, containers aside (issue: prompt, safe stop).
const EXIT_BUDGET: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(60);
const ROUTE: &str =
    "[dispenser]\nwatch = true\n\n[proxy]\nhost = \"app.test\"\nservice_port = 8080\n";

/// Stops the daemon with SIGTERM in the middle of a deploy of `new` and
/// checks what the stop left: a prompt exit, no deploy begun after
/// stopping, `old` the one container of the service, the deploy recorded
/// as abandoned. Then `before_restart` runs, the daemon starts again with
/// `restart_settings` for `[deploy]`, and the restart must deploy `new`
/// once, with nothing failed under `load`.
pub(crate) fn stop_mid_deploy_then_resume(
    sb: &mut Sandbox,
    daemon: Daemon,
    load: Load,
    (old, new): (&str, &str),
    restart_settings: &str,
    before_restart: impl FnOnce(),
) {
    let web = sb.name("web");
    load.down();
    let (took, log) = daemon.terminate();
    assert!(took < EXIT_BUDGET, "exit took {took:?}:\n{log}");
    assert!(log.contains("deploy abandoned"), "{log}");
    let stopping_at = log.find("stopping").expect("stopping logged");
    assert!(
        !log[stopping_at..].contains("new image in the registry"),
        "a deploy started after stopping began:\n{log}"
    );
    // The unproven container is gone; the previous version is left.
    sb.assert_converged(&["web"]);
    assert_eq!(label(&web, "dispenser.image-digest"), old);
    let history = deploys(sb, &web);
    assert_eq!(
        history.last().map(|(t, o, _)| (t.as_str(), o.as_str())),
        Some(("new-digest", "abandoned")),
        "{history:?}"
    );
    sb.assert_ledger_sound();

    before_restart();
    // The next start deploys the abandoned version, once, through the gate.
    sb.deploy_settings(restart_settings);
    let daemon = sb.start();
    load.up();
    wait_logged(&daemon, "removed the previous container", 1);
    sb.assert_converged(&["web"]);
    assert_eq!(label(&web, "dispenser.image-digest"), new);
    let tally = load.finish();
    report("stop mid-deploy, then restart", &tally);
    assert_eq!(tally.non_2xx, 0, "{tally:?}");
    assert_eq!(tally.failed, 0, "{tally:?}");
    let log = daemon.stop();
    assert_eq!(
        log.matches("created the next container").count(),
        1,
        "{log}"
    );
}

#[test]
fn sigterm_during_a_health_gate_removes_the_next_container_and_the_restart_deploys_it() {
    let mut images = Images(Vec::new());
    let v1 = images.version("gate-v1");
    // Healthy only after its first probe, 4 s after it starts.
    let v2 = slow_upstream(&mut images, "gate-v2", "v2", 4, WGET_PROBE);
    let mut registry = Registry::start(Auth::None);
    images.0.push(format!("{}/web", registry.host()));
    let first = registry.push(&v1, "web", None);
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    let http = free_port();
    routed(&mut sb, http, "ready_timeout = \"30s\"\nsoak = \"0s\"\n");
    sb.service("web", &registry.image("web"), ROUTE);
    let daemon = sb.start();
    let load = Load::start(http, "app.test", &["gate-v1", "v2"]);
    load.wait_for("gate-v1", || daemon.log());

    let second = registry.push(&v2, "web", Some(&v2));
    let next = format!("{}-next", sb.name("web"));
    eventually(
        "the next container",
        WAIT,
        || exists(&next),
        || daemon.log(),
    );
    // Still in the gate: the old version serves and nothing has moved.
    assert!(!daemon.log().contains("traffic moved"), "{}", daemon.log());
    stop_mid_deploy_then_resume(
        &mut sb,
        daemon,
        load,
        (&first, &second),
        "ready_timeout = \"30s\"\nsoak = \"0s\"\n",
        || {},
    );
}

#[test]
fn sigterm_during_a_pull_exits_at_once_and_the_restart_deploys_the_new_version() {
    let mut images = Images(Vec::new());
    let v1 = images.version("pull-v1");
    let v2 = images.version("pull-v2");
    let mut registry = Registry::start(Auth::None);
    // Dispenser and Docker reach the registry through a relay that can hold
    // downloads: the pull of v2 hangs until the test lets it go.
    let relay = Relay::start(registry.port());
    images.0.push(format!("{}/web", registry.host()));
    images.0.push(format!("{}/web", relay.host()));
    let first = registry.push(&v1, "web", None);
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    let http = free_port();
    routed(&mut sb, http, "ready_timeout = \"20s\"\nsoak = \"0s\"\n");
    sb.service("web", &format!("{}/web:latest", relay.host()), ROUTE);
    let daemon = sb.start();
    let load = Load::start(http, "app.test", &["pull-v1", "pull-v2"]);
    load.wait_for("pull-v1", || daemon.log());

    relay.hold_downloads(true);
    let second = registry.push(&v2, "web", Some(&v2));
    eventually(
        "a download held by the relay",
        WAIT,
        || relay.held() > 0,
        || daemon.log(),
    );
    assert!(
        daemon.log().contains("pulling new image"),
        "{}",
        daemon.log()
    );
    stop_mid_deploy_then_resume(
        &mut sb,
        daemon,
        load,
        (&first, &second),
        "ready_timeout = \"20s\"\nsoak = \"0s\"\n",
        || relay.hold_downloads(false),
    );
}

/// A TCP relay on 127.0.0.1 in front of the test's registry. While `hold`
/// is on, a connection whose request is a download (`GET` of a manifest or
/// a blob) is not forwarded until it is turned off again.
struct Relay {
    port: u16,
    hold: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (on_hold, counted, stopped) = (hold.clone(), held.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (hold, held, stop) =
                            (on_hold.clone(), counted.clone(), stopped.clone());
                        std::thread::spawn(move || relay(client, upstream, &hold, &held, &stop));
                    }
                    Err(_) => sleep(Duration::from_millis(10)),
                }
            }
        });
        Relay {
            port,
            hold,
            held,
            stop,
            thread: Some(thread),
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn hold_downloads(&self, on: bool) {
        self.hold.store(on, Ordering::SeqCst);
    }

    /// Downloads held so far.
    fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.hold.store(false, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies one connection both ways; a download request waits while the
/// relay holds downloads.
fn relay(
    client: TcpStream,
    upstream: u16,
    hold: &AtomicBool,
    held: &AtomicUsize,
    stop: &AtomicBool,
) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let (Ok(mut from_client), Ok(mut to_client)) = (client.try_clone(), client.try_clone()) else {
        return;
    };
    let (Ok(mut from_server), Ok(mut to_server)) = (server.try_clone(), server.try_clone()) else {
        return;
    };
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Write);
    });
    let _ = from_client.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buffer = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        let read = match from_client.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        let chunk = &buffer[..read];
        let request = String::from_utf8_lossy(&chunk[..read.min(512)]);
        // Docker's pull GETs the manifest (and blobs it lacks); the
        // watcher only sends HEAD requests, which pass.
        let download = request.starts_with("GET /v2/")
            && (request.contains("/manifests/") || request.contains("/blobs/"));
        if download && hold.load(Ordering::SeqCst) {
            held.fetch_add(1, Ordering::SeqCst);
            while hold.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
                sleep(Duration::from_millis(20));
            }
        }
        if to_server.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = to_server.shutdown(Shutdown::Write);
    let _ = back.join();
}
