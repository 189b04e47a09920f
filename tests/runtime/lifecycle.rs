//! The daemon's life: dependency order, restarts that touch nothing, reloads
//! that change only what changed, foreign containers, pidfile signals, and
//! a kill -9 in the middle of a reconcile.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::google_standin::{Answer, StandIn};
use crate::secrets::{google_sandbox, secret};
use crate::support::{docker, eventually, exists, inspect, text, wait_exit, Sandbox, EXIT_TIMEOUT};

const BUSYBOX: &str = "dispenser-test/busybox:latest";
const WEB: &str = "dispenser-test/web:v1";

/// (id, StartedAt) of a container.
fn identity(name: &str) -> (String, String) {
    let c = inspect(name);
    (
        c["Id"].as_str().unwrap().to_string(),
        c["State"]["StartedAt"].as_str().unwrap().to_string(),
    )
}

fn identities(sb: &Sandbox, names: &[&str]) -> BTreeMap<String, (String, String)> {
    names
        .iter()
        .map(|n| (n.to_string(), identity(&sb.name(n))))
        .collect()
}

#[test]
fn depends_on_orders_start_up_by_healthy_and_completed() {
    let mut sb = Sandbox::new();
    // A folder both db and migrate see: db's healthcheck marks it as its
    // last act, so the mark exists from just before db is first healthy.
    // (Docker keeps only the last 5 entries of `Health.Log`: the first
    // healthy check cannot be read from there once a few ran.)
    let shared = sb.path("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let mount = format!(
        "\n[[volume]]\nsource = \"{}\"\ntarget = \"/shared\"\n",
        shared.display()
    );
    sb.service(
        "db",
        BUSYBOX,
        &format!(
            "command = [\"sleep\", \"3600\"]\n\n[healthcheck]\ntest = [\"CMD\", \"sh\", \"-c\", \": > /shared/db-checked\"]\ninterval = \"1s\"\nretries = 3\n{mount}"
        ),
    );
    let db = sb.name("db");
    // Started before db's first check, migrate finds no mark and fails.
    sb.service(
        "migrate",
        BUSYBOX,
        &format!("command = [\"sh\", \"-c\", \"[ -f /shared/db-checked ] || exit 7; sleep 1; echo migrated\"]\nrestart = \"no\"\n{mount}\n[depends_on]\n\"{db}\" = \"healthy\"\n"),
    );
    let migrate = sb.name("migrate");
    sb.service(
        "app",
        WEB,
        &format!("[depends_on]\n\"{migrate}\" = \"completed\"\n"),
    );
    let daemon = sb.start();

    let db_state = &inspect(&db)["State"];
    let migrate_state = inspect(&migrate)["State"].clone();
    let app_state = inspect(&sb.name("app"))["State"].clone();
    assert_eq!(db_state["Health"]["Status"], "healthy");
    let checks = db_state["Health"]["Log"].as_array().expect("health log");
    let last = checks.last().expect("a health check ran");
    assert_eq!(last["ExitCode"], 0, "{last}");
    assert_eq!(
        migrate_state["ExitCode"], 0,
        "migrate ran before db was checked: {migrate_state}"
    );
    assert_eq!(app_state["Running"], true);
    // RFC 3339 timestamps of one clock compare as strings.
    let migrate_finished = migrate_state["FinishedAt"].as_str().unwrap();
    let app_started = app_state["StartedAt"].as_str().unwrap();
    assert!(
        migrate_finished <= app_started,
        "{migrate_finished} > {app_started}"
    );
    daemon.stop();
}

#[test]
fn restart_with_nothing_changed_keeps_every_container() {
    // Eight services, so adoption runs for many at once (bench/scale.sh
    // does the same with fifty and times it).
    const NAMES: [&str; 8] = ["web", "worker", "w2", "w3", "w4", "w5", "w6", "w7"];
    let mut sb = Sandbox::new();
    sb.service("web", WEB, "");
    sb.service("worker", BUSYBOX, "[env]\nMODE = \"batch\"\n");
    for (n, name) in NAMES.iter().enumerate().skip(2) {
        sb.service(name, BUSYBOX, &format!("[env]\nWORKER = \"{n}\"\n"));
    }
    let first = sb.start();
    let before = identities(&sb, &NAMES);
    let log = first.stop();
    assert!(log.contains("stopped"), "{log}");
    // Containers keep running when the daemon stops (the default).
    assert_eq!(inspect(&sb.name("web"))["State"]["Running"], true);

    let second = sb.start();
    assert_eq!(identities(&sb, &NAMES), before);
    let log = second.log();
    assert_eq!(log.matches("adopted").count(), NAMES.len(), "{log}");
    second.stop();
}

#[test]
fn reload_recreates_only_the_changed_service_and_removes_the_removed_one() {
    let mut sb = Sandbox::new();
    sb.service("web", WEB, "");
    sb.service("worker", BUSYBOX, "[env]\nMODE = \"batch\"\n");
    sb.service("extra", BUSYBOX, "");
    let daemon = sb.start();
    let before = identities(&sb, &["web", "worker"]);

    sb.service("worker", BUSYBOX, "[env]\nMODE = \"stream\"\n");
    sb.drop_service("extra");
    daemon.reload();

    let after = identities(&sb, &["web", "worker"]);
    assert_eq!(after["web"], before["web"], "web must not be touched");
    assert_ne!(
        after["worker"].0, before["worker"].0,
        "worker must be recreated"
    );
    let env = inspect(&sb.name("worker"))["Config"]["Env"].to_string();
    assert!(env.contains("MODE=stream"), "{env}");
    assert!(!exists(&sb.name("extra")), "extra must be removed");
    daemon.stop();
}

#[test]
fn broken_config_on_reload_changes_nothing() {
    let mut sb = Sandbox::new();
    sb.service("web", WEB, "");
    let daemon = sb.start();
    let before = identities(&sb, &["web"]);

    let good = std::fs::read_to_string(sb.path("web/service.toml")).unwrap();
    sb.write("web/service.toml", &format!("{good}\n[env\nBROKEN = 1\n"));
    daemon.reload();
    assert!(daemon.log().contains("reload refused"), "{}", daemon.log());
    assert_eq!(identities(&sb, &["web"]), before);

    // Fixing the file and reloading again works.
    sb.write(
        "web/service.toml",
        &format!("{good}\n[env]\nFIXED = \"1\"\n"),
    );
    daemon.reload();
    assert_ne!(identities(&sb, &["web"])["web"].0, before["web"].0);
    daemon.stop();
}

#[test]
fn unmanaged_container_with_a_colliding_name_is_left_alone() {
    let mut sb = Sandbox::new();
    let name = sb.name("web");
    docker(&["run", "-d", "--name", &name, BUSYBOX]);
    let foreign_id = identity(&name).0;
    sb.service("web", WEB, "");
    sb.service("other", BUSYBOX, "");
    let daemon = sb.start();

    assert_eq!(identity(&name).0, foreign_id);
    let labels = &inspect(&name)["Config"]["Labels"];
    assert!(labels.get("dispenser.managed").is_none(), "{labels}");
    let log = daemon.log();
    assert!(
        log.contains(&format!("a container named `{name}`")),
        "{log}"
    );
    // The other service still runs.
    assert_eq!(inspect(&sb.name("other"))["State"]["Running"], true);
    daemon.stop();
}

#[test]
fn signals_go_through_the_pidfile() {
    let mut sb = Sandbox::new();
    sb.service("web", WEB, "");

    let out = sb.cli(&["-s", "reload"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no daemon is running"),
        "{}",
        text(&out.stderr)
    );

    let daemon = sb.start();
    // The daemon's user only: no other user can open it, so none can hold its lock.
    let mode = std::fs::metadata(sb.pid_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "pidfile mode {mode:o}");
    let second = sb.cli(&[]);
    assert!(!second.status.success());
    assert!(
        text(&second.stderr).contains("another dispenser"),
        "{}",
        text(&second.stderr)
    );
    daemon.reload();
    daemon.stop();
    assert!(!sb.pid_file().exists(), "pidfile removed at exit");
    let out = sb.cli(&["-s", "stop"]);
    assert!(!out.status.success());
}

/// `sleep 60`, a process that is not the daemon.
fn unrelated_process() -> Child {
    Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep")
}

/// Fails unless `process` is still alive a moment after `-s` was refused
/// (SIGHUP and SIGTERM end a `sleep`).
fn assert_alive(process: &mut Child) {
    sleep(Duration::from_millis(300));
    assert!(
        process.try_wait().unwrap().is_none(),
        "pid {} was signalled",
        process.id()
    );
}

/// True when some process holds a lock on `path` (a shared lock fails).
fn lock_held(path: &std::path::Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    Flock::lock(file, FlockArg::LockSharedNonblock).is_err()
}

/// A pidfile whose lock is held, but not by the process it names, or by a
/// process that is not dispenser: `-s reload|stop` signal nothing.
#[test]
fn signals_refuse_a_pidfile_that_names_another_process() {
    let mut sb = Sandbox::new();
    sb.service("web", WEB, "");

    // The lock held by this test, the pid of an unrelated process.
    let mut sleeper = unrelated_process();
    std::fs::write(sb.pid_file(), format!("{}\n", sleeper.id())).unwrap();
    let lock = Flock::lock(File::open(sb.pid_file()).unwrap(), FlockArg::LockExclusive).unwrap();
    for signal in ["reload", "stop"] {
        let out = sb.cli(&["-s", signal]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "-s {signal}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "names pid {}, which is not the dispenser daemon",
                sleeper.id()
            )) && stderr.contains("does not hold the pidfile's lock")
                && stderr.contains("nothing was signalled"),
            "-s {signal}: {stderr}"
        );
        assert_alive(&mut sleeper);
    }
    drop(lock);
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    // The named process holds the lock itself (`flock --no-fork` execs
    // sleep with the lock held), but it runs sleep, not dispenser.
    let mut holder = Command::new("flock")
        .args(["--no-fork", "--exclusive"])
        .arg(sb.pid_file())
        .args(["sleep", "60"])
        .spawn()
        .expect("spawn flock");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lock_held(&sb.pid_file()) {
        assert!(
            std::time::Instant::now() < deadline,
            "flock never took the lock"
        );
        sleep(Duration::from_millis(20));
    }
    std::fs::write(sb.pid_file(), format!("{}\n", holder.id())).unwrap();
    let out = sb.cli(&["-s", "reload"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("not the dispenser daemon") && stderr.contains("it runs "),
        "{stderr}"
    );
    assert_alive(&mut holder);
    let _ = holder.kill();
    let _ = holder.wait();
}

/// A pidfile that is a symbolic link is refused: the daemon does not start
/// (it would truncate the link's target), and `-s` does not follow it.
#[test]
fn a_symlinked_pidfile_is_refused() {
    let mut sb = Sandbox::new();
    sb.service("web", WEB, "");
    let target = sb.path("elsewhere");
    std::fs::write(&target, "precious\n").unwrap();
    std::os::unix::fs::symlink(&target, sb.pid_file()).unwrap();

    let log_path = sb.path("refused.log");
    let log = File::create(&log_path).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_dispenser"))
        .arg("-c")
        .arg(sb.config())
        .arg("-p")
        .arg(sb.pid_file())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn dispenser");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let status = wait_exit(
        &mut daemon,
        EXIT_TIMEOUT,
        "a daemon with a symlinked pidfile",
        read_log,
    );
    let output = read_log();
    assert!(!status.success(), "{output}");
    assert!(output.contains("is a symbolic link"), "{output}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    assert!(!exists(&sb.name("web")), "the daemon deployed anyway");

    let out = sb.cli(&["-s", "reload"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is a symbolic link"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn stop_on_shutdown_stops_the_containers() {
    let mut sb = Sandbox::new();
    sb.daemon_settings("stop_on_shutdown = true");
    sb.service("web", WEB, "");
    let daemon = sb.start();
    daemon.stop();
    assert_eq!(inspect(&sb.name("web"))["State"]["Running"], false);
}

#[test]
fn kill_nine_during_a_reconcile_then_restart_converges() {
    let mut sb = Sandbox::new();
    let shorts = ["s1", "s2", "s3", "s4", "s5", "s6"];
    for short in shorts {
        sb.service(short, WEB, "");
    }
    let first = sb.start();
    // Change every service, then kill the daemon while it recreates them.
    for short in shorts {
        sb.service(short, WEB, "[env]\nVERSION = \"2\"\n");
    }
    let log_before = first.log().matches("created").count();
    nix_kill(&sb, "HUP");
    first.wait_for("created", log_before + 1);
    first.kill9();
    // The kill landed while the reconcile still had services to recreate.
    sb.assert_killed_mid_reconcile(&shorts, |container| {
        container["Config"]["Env"].to_string().contains("VERSION=2")
    });

    let second = sb.start();
    let containers = sb.managed_containers();
    let names: Vec<&str> = containers.iter().map(|(n, _)| n.as_str()).collect();
    let expected: Vec<String> = shorts.iter().map(|s| sb.name(s)).collect();
    assert_eq!(names, expected, "exactly one container per service");
    for short in shorts {
        let c = inspect(&sb.name(short));
        assert_eq!(c["State"]["Running"], true, "{short}");
        assert!(
            c["Config"]["Env"].to_string().contains("VERSION=2"),
            "{short}"
        );
    }
    second.stop();
}

/// A reload whose load is slow (here a secret the Secret
/// Manager takes a minute to answer) blocks neither a stop nor the signals:
/// `-s stop` returns at once, a second SIGHUP is kept for after the load.
/// Before, the daemon awaited the load before reading the next signal, and
/// a stop waited for it.
#[test]
fn a_stop_during_a_slow_reload_is_handled_at_once() {
    let standin = StandIn::start();
    standin.set(
        &secret("slow"),
        "latest",
        Answer::Value(b"slow-Value-2c7e".to_vec()),
    );
    let mut sb = google_sandbox(&standin);
    sb.service("app", BUSYBOX, "command = [\"sleep\", \"3600\"]\n");
    let daemon = sb.start();
    let before = identity(&sb.name("app"));

    standin.set_delay(Duration::from_secs(60));
    sb.write(
        "dispenser.vars",
        &format!(
            "slow = {{ source = \"google\", name = \"{}\" }}\n",
            secret("slow")
        ),
    );
    sb.service(
        "app",
        BUSYBOX,
        "command = [\"sleep\", \"3600\"]\n\n[env]\nSLOW = \"${ slow }\"\n",
    );
    sb.signal("HUP");
    // The load now waits on the network.
    eventually(
        "the reload asks for the secret",
        Duration::from_secs(30),
        || !standin.requests().is_empty(),
        || daemon.log(),
    );
    // A second reload, asked for meanwhile: the daemon reads it at once
    // (before the fix it read no signal until the load ended).
    sb.signal("HUP");
    eventually(
        "the daemon reads a SIGHUP while a load runs",
        Duration::from_secs(10),
        || daemon.log().contains("it follows this one"),
        || daemon.log(),
    );

    let started = Instant::now();
    let log = daemon.stop();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the stop took {took:?}:\n{log}"
    );
    assert!(log.contains("that reload is abandoned"), "{log}");
    assert!(!log.contains("reload refused"), "{log}");
    assert_eq!(identity(&sb.name("app")), before, "nothing was applied");
}

/// Sends a signal to the daemon by pid (like `-s reload`, without waiting).
fn nix_kill(sb: &Sandbox, signal: &str) {
    let pid = std::fs::read_to_string(sb.pid_file()).unwrap();
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), pid.trim()])
        .status()
        .unwrap();
    assert!(status.success());
}
