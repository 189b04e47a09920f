//! Switching an ixpantia/dispenser host over: containers named after their
//! services with no Dispenser labels, on upstream's network (its label
//! `managed-by=dispenser`). The daemon refuses the names until
//! `dispenser takeover` replaces them through the health gate, with the
//! daemon running (a proxied service under load drops no request) and
//! without it; a container of another instance is refused.

use std::process::Output;
use std::time::Duration;

use crate::deploys::{deploys, free_port, report, Load};
use crate::proxy::get;
use crate::support::{docker, eventually, exists, inspect, text, Sandbox};

const UPSTREAM: &str = "dispenser-test/upstream:latest";
const WEB: &str = "dispenser-test/web:v1";

/// What an upstream host leaves: `app` (proxied, answering `upstream`) and
/// `web` (no route), started with plain `docker run` on the network, and
/// the same two declared as services. Returns the old containers' ids.
fn upstream_host(sb: &mut Sandbox, http: u16) -> (String, String) {
    let network_id = sb.network_as_upstream();
    assert!(!network_id.is_empty());
    let net = sb.name("net");
    let app = docker(&[
        "run",
        "-d",
        "--name",
        &sb.name("app"),
        "--network",
        &net,
        "-e",
        "VERSION=upstream",
        UPSTREAM,
    ]);
    let web = docker(&[
        "run",
        "-d",
        "--name",
        &sb.name("web"),
        "--network",
        &net,
        WEB,
    ]);
    sb.proxy_settings(&format!(
        "strategy = \"http-only\"\nhttp_listen = \"127.0.0.1:{http}\"\n"
    ));
    sb.deploy_settings("ready_timeout = \"20s\"\nsoak = \"0s\"\n");
    sb.service(
        "app",
        UPSTREAM,
        "\n[env]\nVERSION = \"dispenser\"\n\n[proxy]\nhost = \"app.test\"\nservice_port = 8080\n",
    );
    sb.service("web", WEB, "");
    (app.trim().to_string(), web.trim().to_string())
}

/// The service's container is this instance's, runs, and is not `old`;
/// nothing else of the service (a `-takeover`, `-prev` or `-next`) is left.
fn assert_managed(sb: &Sandbox, short: &str, old: &str) {
    let name = sb.name(short);
    let container = inspect(&name);
    let labels = &container["Config"]["Labels"];
    assert_eq!(labels["dispenser.instance"], sb.id.as_str(), "{labels}");
    assert_eq!(labels["dispenser.managed"], "true", "{labels}");
    assert_eq!(container["State"]["Running"], true);
    assert_ne!(container["Id"], old);
    assert!(!exists(old), "the old container {old} is still there");
    for suffix in ["-takeover", "-prev", "-next"] {
        assert!(!exists(&format!("{name}{suffix}")), "{name}{suffix} left");
    }
}

fn stdout_lines(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

#[test]
fn takeover_through_the_running_daemon_drops_no_request() {
    let mut sb = Sandbox::new();
    let http = free_port();
    let (old_app, old_web) = upstream_host(&mut sb, http);
    let network = inspect(&sb.name("net"))["Id"].clone();
    let daemon = sb.start();
    // Without the command the names are refused, and the containers kept.
    let log = daemon.log();
    for short in ["app", "web"] {
        let name = sb.name(short);
        assert!(
            log.contains(&format!("a container named `{name}`")),
            "{log}"
        );
    }
    assert_eq!(inspect(&sb.name("app"))["Id"], old_app.as_str());
    assert_eq!(inspect(&sb.name("web"))["Id"], old_web.as_str());

    // The route serves the container still to be taken over.
    let load = Load::start(http, "app.test", &["upstream", "dispenser"]);
    load.wait_for("upstream", || daemon.log());
    let out = sb.cli(&["takeover"]);
    let printed = stdout_lines(&out);
    assert!(out.status.success(), "{printed}\n{}", daemon.log());
    let progress = text(&out.stderr);
    for short in ["app", "web"] {
        assert!(
            printed.contains(&format!("{}: took over container", sb.name(short))),
            "{printed}"
        );
        // The daemon's health gate, drawn as plain lines off a terminal.
        assert!(
            progress.contains(&format!("{} is ready", sb.name(short))),
            "{progress}"
        );
    }
    load.wait_for("dispenser", || daemon.log());
    std::thread::sleep(Duration::from_millis(500));
    let tally = load.finish();
    report("takeover under load", &tally);
    assert_eq!(tally.failed, 0, "{tally:?}");
    assert_eq!(tally.non_2xx, 0, "{tally:?}");
    assert_eq!(tally.backwards, 0, "{tally:?}");

    assert_managed(&sb, "app", &old_app);
    assert_managed(&sb, "web", &old_web);
    // Start-first for the routed service, stop-first for the other.
    let log = daemon.log();
    assert!(log.contains("traffic moved to the new container"), "{log}");
    for short in ["app", "web"] {
        let history = deploys(&sb, &sb.name(short));
        let rows: Vec<(&str, &str)> = history
            .iter()
            .map(|(trigger, outcome, _)| (trigger.as_str(), outcome.as_str()))
            .collect();
        assert_eq!(rows, [("takeover", "succeeded")], "{history:?}");
    }
    // Upstream's network was used as it was.
    let now = inspect(&sb.name("net"));
    assert_eq!(now["Id"], network);
    assert_eq!(now["Labels"]["managed-by"], "dispenser");
    // A second takeover has nothing to do.
    let again = sb.cli(&["takeover", &sb.name("app")]);
    assert!(again.status.success(), "{}", stdout_lines(&again));
    assert!(
        text(&again.stdout).contains("already managed"),
        "{}",
        stdout_lines(&again)
    );
    sb.assert_converged(&["app", "web"]);
    daemon.stop();
}

#[test]
fn takeover_without_a_daemon_runs_in_process_and_the_daemon_then_adopts() {
    let mut sb = Sandbox::new();
    let http = free_port();
    let (old_app, old_web) = upstream_host(&mut sb, http);
    let out = sb.cli(&["takeover"]);
    let printed = stdout_lines(&out);
    assert!(out.status.success(), "{printed}");
    let progress = text(&out.stderr);
    for short in ["app", "web"] {
        assert!(
            printed.contains(&format!("{}: took over container", sb.name(short))),
            "{printed}"
        );
        // This process's own health gate, drawn as plain lines.
        assert!(
            progress.contains(&format!("{} is ready", sb.name(short))),
            "{progress}"
        );
    }
    assert_managed(&sb, "app", &old_app);
    assert_managed(&sb, "web", &old_web);
    let rows = deploys(&sb, &sb.name("app"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        ("takeover", "succeeded")
    );

    // The daemon adopts what the command left, and the route serves it.
    let ids = (
        inspect(&sb.name("app"))["Id"].clone(),
        inspect(&sb.name("web"))["Id"].clone(),
    );
    let daemon = sb.start();
    let log = daemon.log();
    assert!(
        !log.contains("was not created by this dispenser instance"),
        "{log}"
    );
    eventually(
        "the route serves the managed container",
        Duration::from_secs(20),
        || get(http, "app.test", "/").body.trim() == "dispenser",
        || daemon.log(),
    );
    assert_eq!(inspect(&sb.name("app"))["Id"], ids.0);
    assert_eq!(inspect(&sb.name("web"))["Id"], ids.1);
    daemon.stop();
}

#[test]
fn a_container_of_another_instance_is_refused() {
    let mut sb = Sandbox::new();
    let name = sb.name("web");
    let other = format!("{}-other", sb.id);
    let id = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "dispenser.managed=true",
        "--label",
        &format!("dispenser.instance={other}"),
        "--label",
        &format!("dispenser.service={name}"),
        WEB,
    ]);
    sb.service("web", WEB, "");
    let out = sb.cli(&["takeover", &name]);
    let printed = stdout_lines(&out);
    assert!(!out.status.success(), "{printed}");
    assert!(
        printed.contains(&format!("a container named `{name}`"))
            && printed.contains("was not created by this dispenser instance"),
        "{printed}"
    );
    let container = inspect(&name);
    assert_eq!(container["Id"], id.trim());
    assert_eq!(container["State"]["Running"], true);
    assert_eq!(
        container["Config"]["Labels"]["dispenser.instance"],
        other.as_str()
    );
    // An unknown service is named.
    let unknown = sb.cli(&["takeover", "nope"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("no service named `nope`"),
        "{}",
        stdout_lines(&unknown)
    );
}
