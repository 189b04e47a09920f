//! The bundled example end to end, as a user runs it: `make example` in the
//! background serves version 1 of the web page through the proxy (HTTP, and
//! HTTPS verified with the development CA), `make example-push` makes
//! Dispenser redeploy version 2 under a load of requests that all succeed
//! (and a second push version 3), and `make example-clean` leaves nothing of
//! the example behind. The example's ports are fixed (8088, 8443, the
//! registry on 5055), so this is the only test that uses them.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::deploys::{report, Load};
use crate::faults::get;
use crate::support::{docker, eventually, text, wait_exit, EXIT_TIMEOUT};

/// The proxy's ports and the registry's address in example/ (Makefile,
/// dispenser.vars).
const HTTP_PORT: u16 = 8088;
const HTTPS_PORT: u16 = 8443;
const REGISTRY_PORT: u16 = 5055;
const REGISTRY: &str = "127.0.0.1:5055";
/// The host name the web page is routed on (`site_host`).
const HOST: &str = "localhost";
/// `dispenser dev` runs instance `example` as `example-dev`.
const INSTANCE: &str = "example-dev";
/// Longest wait for the first page: images, registry, push, daemon start.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest wait for a pushed version to be served (2 s polls, a 1 s healthcheck).
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(45);

/// `make example`, running in its own process group; Drop stops it and runs
/// `make example-clean`, also when the test fails.
struct Example {
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Example {
    /// Cleans what an earlier run left, then starts `make example` with the
    /// test's debug binary (no release build).
    fn start() -> Example {
        let cleaned = make("example-clean");
        assert!(cleaned.status.success(), "{}", output_text(&cleaned));
        for port in [HTTP_PORT, HTTPS_PORT, REGISTRY_PORT] {
            assert!(
                TcpStream::connect(("127.0.0.1", port)).is_err(),
                "port {port} is in use by something else: the example needs it"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("make-example.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = make_command("example")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0)
            .spawn()
            .expect("run make example");
        Example {
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `make example` exits (after `make example-clean` stopped
    /// Dispenser).
    fn wait_exit(&mut self) {
        let mut child = self.child.take().expect("make example runs");
        wait_exit(&mut child, EXIT_TIMEOUT, "make example", || self.log());
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The group make leads (`process_group(0)`): make, its shell
            // and Dispenser.
            if let Ok(group) = i32::try_from(child.id()) {
                let _ = killpg(Pid::from_raw(group), Signal::SIGTERM);
            }
            let deadline = Instant::now() + EXIT_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = make("example-clean");
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `make TARGET DISPENSER=<the test's binary>` in the repository.
fn make_command(target: &str) -> Command {
    let mut command = Command::new("make");
    command
        .arg("-C")
        .arg(repo())
        .arg(target)
        .arg(format!("DISPENSER={}", env!("CARGO_BIN_EXE_dispenser")));
    command
}

fn make(target: &str) -> Output {
    make_command(target).output().expect("run make")
}

fn output_text(output: &Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

/// The version a page shows (`data-version="N"`).
fn version_of(page: &str) -> Option<u32> {
    let (_, rest) = page.split_once("data-version=\"")?;
    rest.split('"').next()?.parse().ok()
}

/// Polls `GET /` through the proxy until it serves `version`.
fn wait_version(example: &Example, version: u32, timeout: Duration) {
    eventually(
        &format!("version {version} through the proxy"),
        timeout,
        || {
            get(HTTP_PORT, HOST)
                .is_ok_and(|(status, page)| status == 200 && version_of(&page) == Some(version))
        },
        || example.log(),
    );
}

/// `curl` over HTTPS to 127.0.0.1 as `localhost`, trusting `ca` if given
/// (else the system's roots): the body, or curl's error.
fn https_get(path: &str, ca: Option<&Path>) -> Result<String, String> {
    let mut command = Command::new("curl");
    command.args(["-sS", "--fail", "--max-time", "10", "--resolve"]);
    command.arg(format!("{HOST}:{HTTPS_PORT}:127.0.0.1"));
    if let Some(ca) = ca {
        command.arg("--cacert").arg(ca);
    }
    let out = command
        .arg(format!("https://{HOST}:{HTTPS_PORT}{path}"))
        .output()
        .expect("run curl");
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// IDs docker lists for `args` (`ps -aq`, `network ls -q`, ...).
fn listed(args: &[&str]) -> Vec<String> {
    docker(args)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn example_serves_pushes_redeploys_under_load_over_https_and_cleans_up() {
    let mut example = Example::start();
    wait_version(&example, 1, START_TIMEOUT);
    let ca = repo().join("example/.dispenser/dev/dev-ca.crt");
    assert_eq!(
        https_get("/version.txt", Some(&ca)).map(|body| body.trim().to_string()),
        Ok("1".to_string()),
        "version 1 over HTTPS, verified with the dev CA:\n{}",
        example.log()
    );
    assert!(
        https_get("/version.txt", None).is_err(),
        "the certificate is the dev CA's, which the system does not trust"
    );

    let load = Load::start(HTTP_PORT, HOST, &[]);
    sleep(Duration::from_secs(1));
    let pushed = make("example-push");
    assert!(pushed.status.success(), "{}", output_text(&pushed));
    eventually(
        "version 2 in the load's answers",
        DEPLOY_TIMEOUT,
        || {
            load.tally()
                .bodies
                .keys()
                .any(|page| version_of(page) == Some(2))
        },
        || example.log(),
    );
    // Requests keep going after the switch, while the old container drains.
    sleep(Duration::from_secs(2));
    let tally = load.finish();
    report("example", &tally);
    assert_eq!(
        (tally.failed, tally.non_2xx),
        (0, 0),
        "every request during the push succeeds: {:?}\n{}",
        tally.first_errors,
        example.log()
    );
    assert!(tally.requests > 100, "the load ran: {tally:?}");
    let versions: Vec<Option<u32>> = tally.bodies.keys().map(|page| version_of(page)).collect();
    assert!(
        versions.contains(&Some(1)) && versions.contains(&Some(2)),
        "the load saw version 1, then 2: {versions:?}"
    );
    assert!(
        versions
            .iter()
            .all(|version| matches!(version, Some(1 | 2))),
        "only the two versions' pages: {:?}",
        tally.bodies.keys()
    );
    let page = https_get("/", Some(&ca)).expect("version 2 over HTTPS");
    assert_eq!(version_of(&page), Some(2), "{page}");
    assert!(page.contains("Colour: blue"), "version 2 is blue: {page}");
    // Each push is the next version.
    let pushed = make("example-push");
    assert!(pushed.status.success(), "{}", output_text(&pushed));
    wait_version(&example, 3, DEPLOY_TIMEOUT);

    let cleaned = make("example-clean");
    assert!(cleaned.status.success(), "{}", output_text(&cleaned));
    example.wait_exit();
    let label = format!("label=dispenser.instance={INSTANCE}");
    assert_eq!(
        listed(&["ps", "-aq", "--filter", &label]),
        Vec::<String>::new()
    );
    assert_eq!(
        listed(&["network", "ls", "-q", "--filter", &label]),
        Vec::<String>::new()
    );
    assert_eq!(
        listed(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "name=dispenser-example-db-data"
        ]),
        Vec::<String>::new()
    );
    assert_eq!(
        listed(&["images", "-q", &format!("{REGISTRY}/dispenser-example/web")]),
        Vec::<String>::new()
    );
    assert!(
        TcpStream::connect(REGISTRY).is_err(),
        "the registry is stopped"
    );
    for leftover in [
        "example/.state",
        "example/.dispenser",
        "example/dispenser-dev.pid",
    ] {
        assert!(!repo().join(leftover).exists(), "{leftover} is removed");
    }
}
