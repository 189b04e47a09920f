//! Test harness for the engine tests: the local test images, unique names,
//! labels, and a guard that removes every Docker object a test made, even
//! when the test fails. Checks go through the `docker` CLI, not bollard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use dispenser_actors::engine::docker::DockerEngine;
use dispenser_actors::engine::{labels, CreateRequest, Engine};
use dispenser_actors::plan::{DefaultNetwork, ImageRef, Service};
use serde_json::Value;

/// Label on every object the tests create; the start-up sweep looks for it.
pub const TEST_LABEL: &str = "dispenser-test";
/// Label holding the pid of the test run that created the object.
pub const TEST_PID_LABEL: &str = "dispenser-test.pid";
/// An image that sleeps for an hour.
pub const BUSYBOX_IMAGE: &str = "dispenser-test/busybox:latest";
/// An image that serves "v1" over HTTP on port 80.
pub const WEB_IMAGE: &str = "dispenser-test/web:v1";

/// Docker objects one test made, removed when the guard drops.
#[derive(Default)]
pub struct Cleanup {
    containers: Mutex<Vec<String>>,
    networks: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
}

static NEXT_NAME: AtomicU32 = AtomicU32::new(0);
static PREPARED: OnceLock<()> = OnceLock::new();

impl Cleanup {
    pub fn container(&self, name: &str) {
        push(&self.containers, name);
    }

    pub fn network(&self, name: &str) {
        push(&self.networks, name);
    }

    /// Creates a labelled named volume and removes it at the end.
    pub fn volume(&self, name: &str) {
        docker(&[
            "volume",
            "create",
            "--label",
            &format!("{TEST_LABEL}=1"),
            "--label",
            &format!("{TEST_PID_LABEL}={}", std::process::id()),
            name,
        ]);
        push(&self.volumes, name);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in take(&self.containers) {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", &name])
                .output();
        }
        for name in take(&self.networks) {
            let _ = Command::new("docker")
                .args(["network", "rm", &name])
                .output();
        }
        for name in take(&self.volumes) {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", &name])
                .output();
        }
    }
}

/// Builds the test images and sweeps leftovers of dead runs, once per binary;
/// then connects an engine.
pub async fn engine() -> DockerEngine {
    PREPARED.get_or_init(|| {
        build_images();
        sweep_dead_runs();
    });
    DockerEngine::connect().await.expect("docker is reachable")
}

/// What most engine tests start from: the engine, a cleanup guard, a fresh
/// instance name, and that instance's default network, created.
pub struct World {
    pub engine: DockerEngine,
    pub cleanup: Cleanup,
    pub instance: String,
    pub default_network: DefaultNetwork,
}

pub async fn world() -> World {
    let engine = engine().await;
    let cleanup = Cleanup::default();
    let instance = unique_name();
    let default_network = default_network(&cleanup);
    engine
        .ensure_default_network(&default_network, &labels(&instance))
        .await
        .expect("default network");
    World {
        engine,
        cleanup,
        instance,
        default_network,
    }
}

/// A name no other test or run uses: `dtest-<pid>-<n>`.
pub fn unique_name() -> String {
    let n = NEXT_NAME.fetch_add(1, Ordering::SeqCst);
    format!("dtest-{}-{n}", std::process::id())
}

/// The labels every test object carries, plus Dispenser's own.
pub fn labels(instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TEST_LABEL.to_owned(), "1".to_owned()),
        (TEST_PID_LABEL.to_owned(), std::process::id().to_string()),
        (labels::MANAGED.to_owned(), "true".to_owned()),
        (labels::INSTANCE.to_owned(), instance.to_owned()),
    ])
}

/// A default network with its own /24 in 10.231.0.0/16 (never the
/// production 172.28.0.0/16), registered for removal. Other test processes
/// pick subnets too: a candidate is proved free by creating a network on it
/// and removing it again just before the engine under test creates its own.
pub fn default_network(cleanup: &Cleanup) -> DefaultNetwork {
    static NEXT_SUBNET: AtomicU32 = AtomicU32::new(0);
    let n = NEXT_SUBNET.fetch_add(1, Ordering::SeqCst);
    let name = unique_name();
    cleanup.network(&name);
    for attempt in 0..250u32 {
        let octet = (std::process::id()
            .wrapping_mul(7)
            .wrapping_add(n * 31)
            .wrapping_add(attempt))
            % 250
            + 1;
        let subnet = format!("10.231.{octet}.0/24");
        let probe = Command::new("docker")
            .args([
                "network", "create", "--driver", "bridge", "--subnet", &subnet,
            ])
            // The pid label too: a network without it counts as a dead
            // run's, and another test binary's sweep would remove it.
            .args(["--label", &format!("{TEST_LABEL}=1")])
            .args([
                "--label",
                &format!("{TEST_PID_LABEL}={}", std::process::id()),
            ])
            .arg(&name)
            .output()
            .expect("docker runs");
        if !probe.status.success() {
            continue;
        }
        docker(&["network", "rm", &name]);
        return DefaultNetwork {
            name,
            subnet,
            gateway: std::net::Ipv4Addr::new(10, 231, octet as u8, 1),
        };
    }
    panic!("no free /24 in 10.231.0.0/16 for a test network");
}

/// `docker inspect` of one object, as JSON.
pub fn inspect(kind: &str, name: &str) -> Value {
    let output = docker(&[kind, "inspect", name]);
    let mut all: Vec<Value> = serde_json::from_str(&output).expect("inspect prints JSON");
    assert_eq!(all.len(), 1, "one {kind} named {name}");
    all.remove(0)
}

/// Runs `docker` and returns its stdout; panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs");
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `docker` and returns whether it succeeded and its stdout.
pub fn try_docker(args: &[&str]) -> (bool, String) {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn build_images() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/images/build.sh");
    let output = Command::new("sh")
        .arg(PathBuf::from(&script))
        .output()
        .expect("build.sh runs");
    assert!(
        output.status.success(),
        "build.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Removes test objects whose run is over (its pid is gone), never those of
/// a run still going, so parallel test binaries leave each other alone.
fn sweep_dead_runs() {
    let filter = format!("label={TEST_LABEL}=1");
    let pid = format!("{{{{.Label \"{TEST_PID_LABEL}\"}}}}");
    let container_format = format!("{{{{.Names}}}} {pid}");
    let format = format!("{{{{.Name}}}} {pid}");
    let containers = docker(&[
        "ps",
        "-a",
        "--filter",
        &filter,
        "--format",
        &container_format,
    ]);
    for name in dead(&containers) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &name])
            .output();
    }
    let networks = docker(&["network", "ls", "--filter", &filter, "--format", &format]);
    for name in dead(&networks) {
        let _ = Command::new("docker")
            .args(["network", "rm", &name])
            .output();
    }
    let volumes = docker(&["volume", "ls", "--filter", &filter, "--format", &format]);
    for name in dead(&volumes) {
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &name])
            .output();
    }
}

/// Names from `name pid` lines whose pid is no longer a running process.
/// An object without a pid is left alone: it may be another test binary's
/// (the runtime tests' images carry the test label, and so do the
/// containers made from them).
fn dead(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, pid)| {
            let pid = pid.trim();
            !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists()
        })
        .map(|(name, _)| name.to_owned())
        .collect()
}

fn push(list: &Mutex<Vec<String>>, name: &str) {
    if let Ok(mut names) = list.lock() {
        names.push(name.to_owned());
    }
}

fn take(list: &Mutex<Vec<String>>) -> Vec<String> {
    list.lock()
        .map(|mut names| std::mem::take(&mut *names))
        .unwrap_or_default()
}

/// An image reference built by hand (the tests do not depend on the parser).
pub fn image_ref(registry: &str, repository: &str, tag: &str) -> ImageRef {
    let original = if registry == "docker.io" {
        format!("{repository}:{tag}")
    } else {
        format!("{registry}/{repository}:{tag}")
    };
    ImageRef {
        original,
        registry: registry.to_owned(),
        repository: repository.to_owned(),
        tag: Some(tag.to_owned()),
        digest: None,
    }
}

/// A service with only an image and a command set (the plan's sample
/// service, in the temp folder).
pub fn service(name: &str, image: &str, command: &[&str]) -> Service {
    let mut service = dispenser_actors::plan::sample::service(name, image);
    service.folder = std::env::temp_dir();
    service.container.command =
        (!command.is_empty()).then(|| command.iter().map(|part| (*part).to_owned()).collect());
    service.spec_hash = "test".to_owned();
    service
}

/// Creates a container for `service` under a unique name, registered for removal.
pub async fn create(
    engine: &DockerEngine,
    cleanup: &Cleanup,
    service: &Service,
    network: &DefaultNetwork,
    instance: &str,
) -> (String, String) {
    let name = unique_name();
    cleanup.container(&name);
    let request = CreateRequest {
        name: &name,
        service,
        image: &service.container.image,
        default_network: network,
        labels: labels(instance),
    };
    let id = engine.create(&request).await.expect("container created");
    (name, id)
}
