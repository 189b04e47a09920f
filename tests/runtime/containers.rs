//! What the containers get: every field of the plan, networks and names.

use crate::support::{docker, inspect, Sandbox};

const BUSYBOX: &str = "dispenser-test/busybox:latest";
const WEB: &str = "dispenser-test/web:v1";

#[test]
fn three_services_on_a_custom_network_reach_each_other_by_name() {
    let mut sb = Sandbox::new();
    sb.declare_network("backend");
    let backend = sb.name("backend");
    let net = format!("[[network]]\nname = \"{backend}\"\n");
    sb.service("web", WEB, &net);
    sb.service("api", WEB, &net);
    sb.service("client", BUSYBOX, &net);
    let daemon = sb.start();

    for target in ["web", "api"] {
        let url = format!("http://{}/", sb.name(target));
        let body = docker(&["exec", &sb.name("client"), "wget", "-qO-", &url]);
        assert_eq!(body.trim(), "v1", "client -> {target}");
    }
    // The service name is also an alias on the default network.
    let aliases =
        &inspect(&sb.name("web"))["NetworkSettings"]["Networks"][sb.name("net")]["Aliases"];
    assert!(
        aliases
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == &sb.name("web")),
        "aliases: {aliases}"
    );
    daemon.stop();
}

#[test]
fn every_field_of_the_plan_reaches_the_container() {
    let mut sb = Sandbox::new();
    sb.declare_network("extra");
    sb.write("all/html/index.html", "hello\n");
    sb.write("all/app.conf", "setting = 1\n");
    let volume = sb.name("data");
    let extra = sb.name("extra");
    sb.service(
        "all",
        BUSYBOX,
        &format!(
            r#"command = ["sleep", "3600"]
entrypoint = ["/bin/env"]
working_dir = "/tmp"
user = "65534:65534"
hostname = "allhost"
memory = "64m"
cpus = "0.5"
restart = "unless-stopped"

[[port]]
host = 0
container = 80

[[volume]]
source = "./html"
target = "/www"
readonly = true

[[volume]]
source = "./app.conf"
target = "/etc/app.conf"

[[volume]]
source = "{volume}"
target = "/data"

[env]
GREETING = "hi there"
COUNT = 3

[[network]]
name = "{extra}"

[[extra_host]]
hostname = "db.internal"
ipv4 = "10.1.2.3"

[healthcheck]
test = ["CMD", "true"]
interval = "2s"
timeout = "1s"
retries = 2
start_period = "1s"
"#
        ),
    );
    // Host port 0 is refused by validation: use a free one instead.
    let port = free_port();
    let toml = std::fs::read_to_string(sb.path("all/service.toml")).unwrap();
    sb.write(
        "all/service.toml",
        &toml.replace("host = 0", &format!("host = {port}")),
    );
    let daemon = sb.start();

    let c = inspect(&sb.name("all"));
    let config = &c["Config"];
    let host = &c["HostConfig"];
    assert_eq!(config["Image"], BUSYBOX);
    assert_eq!(config["Cmd"], serde_json::json!(["sleep", "3600"]));
    assert_eq!(config["Entrypoint"], serde_json::json!(["/bin/env"]));
    assert_eq!(config["WorkingDir"], "/tmp");
    assert_eq!(config["User"], "65534:65534");
    assert_eq!(config["Hostname"], "allhost");
    assert_eq!(host["Memory"], 64 * 1024 * 1024);
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(host["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(
        host["PortBindings"]["80/tcp"][0]["HostPort"],
        port.to_string()
    );
    let env: Vec<String> = serde_json::from_value(config["Env"].clone()).unwrap();
    assert!(env.contains(&"GREETING=hi there".to_string()), "{env:?}");
    assert!(env.contains(&"COUNT=3".to_string()), "{env:?}");
    let extra_hosts = host["ExtraHosts"].to_string();
    assert!(
        extra_hosts.contains("db.internal:10.1.2.3"),
        "{extra_hosts}"
    );
    assert!(
        extra_hosts.contains("host.docker.internal:host-gateway"),
        "{extra_hosts}"
    );
    let health = &config["Healthcheck"];
    assert_eq!(health["Test"], serde_json::json!(["CMD", "true"]));
    assert_eq!(health["Interval"], 2_000_000_000u64);
    assert_eq!(health["Timeout"], 1_000_000_000u64);
    assert_eq!(health["Retries"], 2);
    assert_eq!(health["StartPeriod"], 1_000_000_000u64);

    let mounts = c["Mounts"].as_array().unwrap();
    let mount = |target: &str| {
        mounts
            .iter()
            .find(|m| m["Destination"] == target)
            .unwrap_or_else(|| panic!("no mount at {target}: {mounts:?}"))
            .clone()
    };
    let html = mount("/www");
    assert_eq!(html["Source"], sb.path("all/html").display().to_string());
    assert_eq!(html["RW"], false);
    assert_eq!(mount("/etc/app.conf")["RW"], true);
    let named = mount("/data");
    assert_eq!(named["Type"], "volume");
    assert_eq!(named["Name"], volume);

    let networks = &c["NetworkSettings"]["Networks"];
    assert!(networks.get(sb.name("net")).is_some(), "{networks}");
    assert!(networks.get(&extra).is_some(), "{networks}");

    let labels = &config["Labels"];
    assert_eq!(labels["dispenser.managed"], "true");
    assert_eq!(labels["dispenser.instance"], sb.id);
    assert_eq!(labels["dispenser.service"], sb.name("all"));
    assert_eq!(labels["dispenser.spec-hash"].as_str().unwrap().len(), 64);
    assert!(labels["dispenser.image-digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    daemon.stop();
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A shell that exits 0 on SIGINT and ignores SIGTERM, as some images do.
const TRAPS: &str = "command = [\"sh\", \"-c\", \"trap 'exit 0' INT; trap '' TERM; \
                     while true; do sleep 1; done\"]\n";

#[test]
fn stop_signal_and_stop_grace_period_reach_the_container_and_its_stop() {
    let mut sb = Sandbox::new();
    sb.daemon_settings("stop_on_shutdown = true");
    // Asked with SIGINT, it exits at once, cleanly.
    sb.service(
        "polite",
        BUSYBOX,
        &format!("{TRAPS}stop_signal = \"int\"\n"),
    );
    // SIGTERM is ignored: killed once the 1 s grace is over, not after 10 s.
    sb.service(
        "stubborn",
        BUSYBOX,
        &format!("{TRAPS}stop_grace_period = \"1s\"\n"),
    );
    let daemon = sb.start();
    let polite = inspect(&sb.name("polite"));
    assert_eq!(polite["Config"]["StopSignal"], "SIGINT");
    let stubborn = inspect(&sb.name("stubborn"));
    assert_eq!(stubborn["Config"]["StopTimeout"], 1);

    let began = std::time::Instant::now();
    daemon.stop();
    let took = began.elapsed();
    let state = |name: &str| inspect(&sb.name(name))["State"].clone();
    assert_eq!(state("polite")["Running"], false);
    assert_eq!(state("polite")["ExitCode"], 0, "stopped by its SIGINT trap");
    assert_eq!(state("stubborn")["Running"], false);
    assert_eq!(state("stubborn")["ExitCode"], 137, "killed after the grace");
    // Both stops run at once; the default grace alone would be 10 s.
    assert!(
        took < std::time::Duration::from_secs(8),
        "stop took {took:?}"
    );
}

#[test]
fn logs_are_rotated_by_default_and_a_service_may_choose_its_driver() {
    let mut sb = Sandbox::new();
    let chatty = "command = [\"sh\", \"-c\", \"echo hello-from-the-log; sleep 3600\"]\n";
    sb.service("plain", BUSYBOX, chatty);
    sb.service(
        "local",
        BUSYBOX,
        &format!("{chatty}\n[logging]\ndriver = \"local\"\n\n[logging.options]\nmax-size = \"1m\"\nmax-file = 2\n"),
    );
    let daemon = sb.start();
    let log_config = |short: &str| inspect(&sb.name(short))["HostConfig"]["LogConfig"].clone();
    assert_eq!(
        log_config("plain"),
        serde_json::json!({"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}})
    );
    assert_eq!(
        log_config("local"),
        serde_json::json!({"Type": "local", "Config": {"max-size": "1m", "max-file": "2"}})
    );
    // Both drivers keep what `docker logs` (and `dispenser logs`) read.
    for short in ["plain", "local"] {
        crate::support::eventually(
            "the container's first line in its log",
            std::time::Duration::from_secs(20),
            || docker(&["logs", &sb.name(short)]).contains("hello-from-the-log"),
            || daemon.log(),
        );
    }
    daemon.stop();
}
