//! Faults: the daemon is killed with SIGKILL in the middle of a start-first
//! deploy, a stop-first deploy, a reload of several services and a cron run,
//! and must converge when it starts again: one container per service with
//! our labels, no `-next`/`-prev` leftover, the intended version answering
//! over HTTP, a sound ledger. And data in a bind-mounted folder and a named
//! volume survives a redeploy, a rollback, a restart and the removal of the
//! service.

use std::io::BufReader;
use std::net::TcpStream;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::deploys::{free_port, Images, Load};
use crate::support::{docker, eventually, exists, inspect, text, Sandbox};
use crate::watching::{Auth, Registry};

const UPSTREAM: &str = "dispenser-test/upstream:latest";
const BUSYBOX: &str = "dispenser-test/busybox:latest";
/// Longest wait for a state the test is polling for.
const WAIT: Duration = Duration::from_secs(40);

/// `GET /` with `Host: host` on 127.0.0.1:port: (status, body).
pub(crate) fn get(port: u16, host: &str) -> Result<(u16, String), String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|err| err.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut conn = BufReader::new(stream);
    crate::deploys::exchange(&mut conn, host).map(|(status, body, _)| (status, body))
}

/// Polls until `GET /` answers 200 with `body`.
pub(crate) fn wait_answer(port: u16, host: &str, body: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = get(port, host);
        if answer
            .as_ref()
            .is_ok_and(|(status, got)| *status == 200 && got == body)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host} never answered {body:?} (last: {answer:?}):\n{}",
            log()
        );
        sleep(Duration::from_millis(100));
    }
}

/// The image id a container runs.
fn image_of(container: &str) -> String {
    inspect(container)["Image"].as_str().unwrap().to_string()
}

/// The id of a local image.
fn image_id(image: &str) -> String {
    docker(&["image", "inspect", "-f", "{{.Id}}", image])
        .trim()
        .to_string()
}

/// Rows of the deploys table of one service: (trigger, outcome).
fn deploy_rows(sb: &Sandbox, service: &str) -> Vec<(String, String)> {
    crate::deploys::deploys(sb, service)
        .into_iter()
        .map(|(trigger, outcome, _)| (trigger, outcome))
        .collect()
}

/// The upstream answering `version` with a healthcheck whose first probe
/// comes `interval` after the start: ready only then (or never, when the
/// probe is `false`).
pub(crate) fn slow_upstream(
    images: &mut Images,
    name: &str,
    version: &str,
    interval: u32,
    probe: &str,
) -> String {
    images.build(
        name,
        &format!(
            "FROM {UPSTREAM} AS upstream\nFROM {BUSYBOX}\n\
             COPY --from=upstream /upstream /upstream\nENV VERSION={version} PORT=8080\n\
             HEALTHCHECK --interval={interval}s --timeout=20s --retries=1 CMD {probe}\n\
             CMD [\"/upstream\"]\n"
        ),
    )
}

pub(crate) const WGET_PROBE: &str =
    "[\"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:8080/\"]";

fn proxied(sb: &mut Sandbox, http: u16, deploy: &str) {
    sb.proxy_settings(&format!(
        "strategy = \"http-only\"\nhttp_listen = \"127.0.0.1:{http}\"\n"
    ));
    sb.deploy_settings(deploy);
}

fn route(host: &str) -> String {
    format!("\n[proxy]\nhost = \"{host}\"\nservice_port = 8080\n")
}

#[test]
fn kill_during_a_start_first_deploy_converges_on_the_declared_version() {
    let mut images = Images(Vec::new());
    let v1 = images.version("start-first-v1");
    let v2 = slow_upstream(&mut images, "start-first-v2", "v2", 3, WGET_PROBE);
    let mut sb = Sandbox::new();
    let http = free_port();
    proxied(&mut sb, http, "ready_timeout = \"30s\"\nsoak = \"0s\"\n");
    sb.service("web", &v1, &route("app.test"));
    let first = sb.start();
    wait_answer(http, "app.test", "start-first-v1", || first.log());
    let web = sb.name("web");
    let next = format!("{web}-next");
    let old_id = inspect(&web)["Id"].as_str().unwrap().to_string();

    // The file now names v2, which is ready 3 s after it starts: kill the
    // daemon while `-next` exists and the route still goes to v1.
    sb.service("web", &v2, &route("app.test"));
    sb.signal("HUP");
    eventually("the next container", WAIT, || exists(&next), || first.log());
    let log = first.log();
    assert!(!log.contains("traffic moved"), "{log}");
    first.kill9();
    assert_eq!(inspect(&web)["Id"], old_id.as_str());
    assert_eq!(inspect(&web)["State"]["Running"], true);

    let second = sb.start();
    wait_answer(http, "app.test", "v2", || second.log());
    sb.assert_converged(&["web"]);
    assert_eq!(image_of(&web), image_id(&v2));
    assert_eq!(inspect(&web)["State"]["Health"]["Status"], "healthy");
    // The restart deployed the declared version again, through the gate.
    let rows = deploy_rows(&sb, &web);
    assert_eq!(
        rows,
        [("reload".to_string(), "succeeded".to_string())],
        "{}",
        second.log()
    );
    sb.assert_ledger_sound();
    second.stop();
}

#[test]
fn kill_during_a_stop_first_deploy_puts_the_proven_version_back() {
    let mut images = Images(Vec::new());
    let v1 = images.version("stop-first-v1");
    // v2 never becomes healthy: its first probe (after 3 s) fails.
    let v2 = slow_upstream(&mut images, "stop-first-v2", "v2", 3, "[\"false\"]");
    let mut registry = Registry::start(Auth::None);
    images.0.push(format!("{}/web", registry.host()));
    registry.push(&v1, "web", None);
    let image = registry.image("web");
    let v1_id = image_id(&image);
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    sb.deploy_settings("ready_timeout = \"20s\"\nsoak = \"0s\"\n");
    let port = free_port();
    let body =
        format!("\n[[port]]\nhost = {port}\ncontainer = 8080\n\n[dispenser]\nwatch = true\n");
    sb.service("web", &image, &body);
    let first = sb.start();
    wait_answer(port, "web", "stop-first-v1", || first.log());
    let web = sb.name("web");
    let prev = format!("{web}-prev");

    // The watcher finds v2, moves the local tag to it and replaces the
    // container stop-first: kill the daemon while v2 waits to be ready.
    registry.push(&v2, "web", Some(&v1));
    eventually(
        "the previous container",
        WAIT,
        || exists(&prev),
        || first.log(),
    );
    eventually(
        "the new container",
        WAIT,
        || exists(&web) && image_of(&web) == image_id(&v2),
        || first.log(),
    );
    first.kill9();
    assert_eq!(image_of(&prev), v1_id);

    // The restart must not adopt the unproven v2: v1 is put back, v2 gets
    // the health gate again (and fails it), and the watcher quarantines it.
    let second = sb.start();
    eventually(
        "v2 rolled back twice",
        WAIT,
        || {
            deploy_rows(&sb, &web)
                .iter()
                .filter(|(_, outcome)| outcome == "rolled-back")
                .count()
                >= 2
        },
        || second.log(),
    );
    eventually(
        "v2 quarantined",
        WAIT,
        || second.log().contains("quarantined"),
        || second.log(),
    );
    wait_answer(port, "web", "stop-first-v1", || second.log());
    sb.assert_converged(&["web"]);
    assert_eq!(image_of(&web), v1_id);
    assert_eq!(inspect(&web)["State"]["Running"], true);
    // The local tag names what was proven, so another restart adopts v1.
    assert_eq!(image_id(&image), v1_id, "{}", second.log());
    sb.assert_ledger_sound();
    second.stop();
    // The quarantine outlives the restart: v1 is adopted and v2, still the
    // registry's latest, is not tried a third time.
    let rows = deploy_rows(&sb, &web).len();
    let third = sb.start();
    assert!(third.log().contains("adopted"), "{}", third.log());
    assert!(third.log().contains("stay quarantined"), "{}", third.log());
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(deploy_rows(&sb, &web).len(), rows, "{}", third.log());
    assert_eq!(image_of(&web), v1_id);
    third.stop();
}

#[test]
fn kill_during_a_reload_of_several_services_converges_on_the_new_files() {
    let mut sb = Sandbox::new();
    let http = free_port();
    proxied(&mut sb, http, "soak = \"0s\"\n");
    let shorts = ["a", "b", "c"];
    let body = |short: &str, version: &str| {
        format!(
            "\n[env]\nVERSION = \"{version}\"\n{}",
            route(&format!("{short}.test"))
        )
    };
    for short in shorts {
        sb.service(short, UPSTREAM, &body(short, "old"));
    }
    let first = sb.start();
    for short in shorts {
        wait_answer(http, &format!("{short}.test"), "old", || first.log());
    }
    // The new `b` and `c` are ready only 4 s after they start, so the kill
    // that follows `a`'s replacement lands while theirs are still going.
    let mut images = Images(Vec::new());
    let slow = slow_upstream(&mut images, "several-slow", "new", 4, WGET_PROBE);
    for short in shorts {
        let image = if short == "a" {
            UPSTREAM
        } else {
            slow.as_str()
        };
        sb.service(short, image, &body(short, "new"));
    }
    sb.signal("HUP");
    first.wait_for("removed the previous container", 1);
    first.kill9();
    // A start-first swap cut between its renames leaves no container under
    // the name: that service was not replaced either.
    sb.assert_killed_mid_reconcile(&shorts, |container| {
        container["Config"]["Env"]
            .to_string()
            .contains("VERSION=new")
    });

    let second = sb.start();
    for short in shorts {
        wait_answer(http, &format!("{short}.test"), "new", || second.log());
    }
    sb.assert_converged(&shorts);
    for short in shorts {
        assert_eq!(inspect(&sb.name(short))["State"]["Running"], true);
    }
    sb.assert_ledger_sound();
    second.stop();
}

/// One row of the `runs` table: (started_at, outcome, exit_code).
fn runs(sb: &Sandbox, service: &str) -> Vec<(String, String, Option<i64>)> {
    let ledger = sb.ledger();
    let mut statement = ledger
        .prepare("SELECT started_at, outcome, exit_code FROM runs WHERE service = ?1 ORDER BY id")
        .unwrap();
    statement
        .query_map([service], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn kill_during_a_cron_run_adopts_the_run_and_the_schedule_goes_on() {
    let mut sb = Sandbox::new();
    // Every 6 s, a run of 9 s: a tick during a run is skipped, so the run
    // is still going however late (up to 9 s, on a loaded machine) this test
    // sees it start. With runs shorter than the period, a late look could
    // land on the next tick's replacement of the container.
    sb.service(
        "job",
        BUSYBOX,
        "command = [\"sh\", \"-c\", \"echo run; trap 'exit 143' TERM; sleep 9 & wait\"]\n\
         restart = \"no\"\n\n[dispenser]\ninitialize = \"on-trigger\"\ncron = \"*/6 * * * * *\"\n",
    );
    let first = sb.start();
    first.wait_for("scheduled run started", 1);
    first.kill9();
    let job = sb.name("job");
    let killed = inspect(&job);
    assert_eq!(
        killed["State"]["Running"], true,
        "the run outlives the daemon"
    );
    let killed_id = killed["Id"].as_str().unwrap().to_string();
    let killed_start = killed["State"]["StartedAt"].as_str().unwrap().to_string();
    assert!(runs(&sb, &job).is_empty());

    let second = sb.start();
    // The adopted run is awaited and recorded; a later tick runs again. (A
    // tick due while a run still goes is recorded as skipped: on a loaded
    // machine a start can take seconds.)
    let deadline = Instant::now() + WAIT;
    let (found, ran) = loop {
        let found = runs(&sb, &job);
        let ran: Vec<(String, String, Option<i64>)> = found
            .iter()
            .filter(|(_, outcome, _)| outcome != "skipped")
            .cloned()
            .collect();
        if ran.len() >= 2 {
            break (found, ran);
        }
        assert!(Instant::now() < deadline, "{found:?}\n{}", second.log());
        sleep(Duration::from_millis(200));
    };
    let outcomes: Vec<(&str, Option<i64>)> = ran
        .iter()
        .map(|(_, outcome, code)| (outcome.as_str(), *code))
        .collect();
    assert_eq!(
        outcomes[..2],
        [("succeeded", Some(0)), ("succeeded", Some(0))],
        "{found:?}\n{}",
        second.log()
    );
    // The first run is the one the kill interrupted (its start is Docker's),
    // the second a later tick: no tick ran twice.
    assert_eq!(&ran[0].0[..19], &killed_start[..19], "{found:?}");
    assert!(ran[1].0[..19] > ran[0].0[..19], "{found:?}");
    assert!(second.log().contains("adopted a run"), "{}", second.log());
    // The interrupted run's container is gone (replaced by the next run).
    sb.assert_converged(&["job"]);
    assert_ne!(inspect(&job)["Id"], killed_id.as_str());
    sb.assert_ledger_sound();
    second.stop();
}

/// `sh -c script` inside a running container; its output.
fn exec(container: &str, script: &str) -> String {
    docker(&["exec", container, "sh", "-c", script])
}

/// Appends `line` to the bind-mounted and the volume file, and checks that
/// both now hold `expected`.
fn write_and_check(container: &str, line: &str, expected: &str) {
    exec(
        container,
        &format!("echo {line} >> /bind/log && echo {line} >> /vol/log"),
    );
    assert_eq!(exec(container, "cat /bind/log"), expected, "bind mount");
    assert_eq!(exec(container, "cat /vol/log"), expected, "named volume");
}

#[test]
fn volumes_keep_their_data_across_redeploy_rollback_restart_and_removal() {
    let mut images = Images(Vec::new());
    let v1 = images.build("volumes-v1", &format!("FROM {BUSYBOX}\nENV VERSION=1\n"));
    let v2 = images.build("volumes-v2", &format!("FROM {BUSYBOX}\nENV VERSION=2\n"));
    let mut registry = Registry::start(Auth::None);
    images.0.push(format!("{}/store", registry.host()));
    registry.push(&v1, "store", None);
    let image = registry.image("store");
    let v1_id = image_id(&v1);
    let mut sb = Sandbox::new();
    let volume = sb.name("vol");
    sb.service(
        "store",
        &image,
        &format!(
            "\n[[volume]]\nsource = \"./data\"\ntarget = \"/bind\"\n\n\
             [[volume]]\nsource = \"{volume}\"\ntarget = \"/vol\"\n"
        ),
    );
    let store = sb.name("store");
    let daemon = sb.start();
    write_and_check(&store, "one", "one\n");

    // Dispenser created the volume, and labelled it as its own.
    let labels = inspect_volume(&volume);
    assert_eq!(labels["dispenser.managed"], "true", "{labels}");
    assert_eq!(labels["dispenser.instance"], sb.id.as_str(), "{labels}");

    // A new version, deployed by the operator.
    registry.push(&v2, "store", None);
    let out = sb.cli(&["deploy", &store]);
    assert!(
        out.status.success(),
        "deploy: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(image_of(&store), image_id(&v2));
    write_and_check(&store, "two", "one\ntwo\n");

    // Back to the previous version.
    let out = sb.cli(&["rollback", &store]);
    assert!(
        out.status.success(),
        "rollback: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(image_of(&store), v1_id);
    write_and_check(&store, "three", "one\ntwo\nthree\n");

    // A crash and a restart of Dispenser.
    daemon.kill9();
    let daemon = sb.start();
    write_and_check(&store, "four", "one\ntwo\nthree\nfour\n");
    assert_eq!(
        std::fs::read_to_string(sb.path("store/data/log")).unwrap(),
        "one\ntwo\nthree\nfour\n"
    );

    // Removing the service removes its container, never its data.
    sb.drop_service("store");
    daemon.reload();
    assert!(!exists(&store));
    let reader = sb.name("reader");
    let kept = docker(&[
        "run",
        "--rm",
        "--name",
        &reader,
        "--label",
        "dispenser-test=1",
        "--label",
        &format!("dispenser-test.pid={}", std::process::id()),
        "-v",
        &format!("{volume}:/vol:ro"),
        BUSYBOX,
        "cat",
        "/vol/log",
    ]);
    assert_eq!(kept, "one\ntwo\nthree\nfour\n");
    assert_eq!(
        std::fs::read_to_string(sb.path("store/data/log")).unwrap(),
        "one\ntwo\nthree\nfour\n"
    );
    sb.assert_ledger_sound();
    daemon.stop();
}

/// The labels of a volume.
fn inspect_volume(name: &str) -> serde_json::Value {
    let out = docker(&["volume", "inspect", name]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    list[0]["Labels"].clone()
}

/// `SOAK_SECONDS` (default 60): how long the soak runs.
fn soak_seconds() -> u64 {
    std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(60)
}

/// The long run behind `make soak`: for `SOAK_SECONDS`, 32 keep-alive
/// clients go through the proxy while new digests are pushed (each one
/// deployed start-first by the watcher), reloads change the service's env,
/// a cron job runs every 2 s, and every third deploy is cut by a SIGKILL of
/// the daemon, which is started again at once. Asserted: no request fails
/// or gets a non-2xx answer except those sent or answered while the daemon
/// was down (from the kill until the new daemon is ready); every deploy in
/// the ledger succeeded; the last version serves; one container per
/// service, no leftover; the cron job ran after the last restart and no
/// tick ran twice; the ledger is sound.
#[test]
#[ignore = "long: run by `make soak` (SOAK_SECONDS)"]
fn soak_deploys_reloads_cron_and_kills_under_load() {
    let duration = Duration::from_secs(soak_seconds());
    let mut images = Images(Vec::new());
    let versions = [images.version("soak-a"), images.version("soak-b")];
    let mut registry = Registry::start(Auth::None);
    images.0.push(format!("{}/web", registry.host()));
    // Both versions go up once; each round then moves `latest` in the
    // registry alone, as a push from elsewhere would.
    let tags = ["a", "b"];
    for (version, tag) in versions.iter().zip(tags) {
        registry.push_tagged(version, "web", tag);
    }
    registry.retag("web", tags[0], "latest");
    let image = registry.image("web");
    let mut sb = Sandbox::new();
    sb.poll_delay(1);
    let http = free_port();
    proxied(
        &mut sb,
        http,
        "ready_timeout = \"20s\"\ndrain_timeout = \"5s\"\nsoak = \"0s\"\n",
    );
    let web_body = |round: usize| {
        format!(
            "\n[dispenser]\nwatch = true\n\n[env]\nROUND = \"{round}\"\n{}",
            route("app.test")
        )
    };
    sb.service("web", &image, &web_body(0));
    sb.service(
        "job",
        BUSYBOX,
        "command = [\"sh\", \"-c\", \"echo tick\"]\nrestart = \"no\"\n\n\
         [dispenser]\ninitialize = \"on-trigger\"\ncron = \"*/2 * * * * *\"\n",
    );
    let mut daemon = sb.start();
    let load = Load::start(http, "app.test", &[]);
    load.wait_for("soak-a", || daemon.log());

    let began = Instant::now();
    let (mut rounds, mut kills, mut reloads) = (0usize, 0usize, 0usize);
    let mut serving = 0usize;
    let mut restarted = now();
    while began.elapsed() < duration {
        rounds += 1;
        let next = 1 - serving;
        let body = format!("soak-{}", tags[next]);
        let before = answered(&load, &body);
        let created = daemon.log().matches("created the next container").count();
        registry.retag("web", tags[next], "latest");
        if rounds % 3 == 0 {
            // Cut this deploy: kill the daemon once the next container exists.
            daemon.wait_for("created the next container", created + 1);
            load.down();
            daemon.kill9();
            kills += 1;
            daemon = sb.start();
            load.up();
            restarted = now();
        }
        wait_served(&load, &body, before, || daemon.log());
        serving = next;
        if rounds % 2 == 0 {
            sb.service("web", &image, &web_body(rounds));
            daemon.reload();
            reloads += 1;
        }
    }
    sleep(Duration::from_millis(500));
    let tally = load.finish();
    crate::deploys::report("soak", &tally);
    println!(
        "soak: {:?}, {rounds} new digests, {reloads} reloads, {kills} kills; {} requests while the daemon was down ({} failed)",
        began.elapsed(),
        tally.during_outage,
        tally.failed_during_outage
    );
    assert_eq!(tally.failed, 0, "{tally:?}");
    assert_eq!(tally.non_2xx, 0, "{tally:?}");
    assert!(tally.requests > 1000, "{tally:?}");

    // The schedule goes on after the last restart: a run starts after it.
    let job = sb.name("job");
    eventually(
        "a cron run after the last restart",
        WAIT,
        || {
            runs(&sb, &job)
                .iter()
                .any(|(started, outcome, _)| outcome != "skipped" && *started > restarted)
        },
        || daemon.log(),
    );
    // Stopped first: a run replaces the job's container every 2 s.
    daemon.stop();
    sb.assert_converged(&["web", "job"]);
    let web = sb.name("web");
    assert_eq!(image_of(&web), image_id(&versions[serving]));
    let rows = deploy_rows(&sb, &web);
    assert!(
        rows.iter().all(|(_, outcome)| outcome == "succeeded"),
        "{rows:?}"
    );
    // At least the deploys no kill cut, and the reloads.
    assert!(rows.len() >= rounds - kills + reloads, "{rows:?}");
    // Runs that ran (a tick due while the previous run still went, or while
    // the mailbox was busy with a deploy, is skipped and recorded so).
    let runs = runs(&sb, &job);
    let ran: Vec<&(String, String, Option<i64>)> = runs
        .iter()
        .filter(|(_, outcome, _)| outcome != "skipped")
        .collect();
    assert!(
        ran.iter().all(|(_, outcome, _)| outcome == "succeeded"),
        "{runs:?}"
    );
    let mut ticks: Vec<&str> = ran.iter().map(|(started, _, _)| &started[..19]).collect();
    ticks.sort();
    ticks.dedup();
    assert_eq!(ticks.len(), ran.len(), "a tick ran twice: {runs:?}");
    sb.assert_ledger_sound();
}

/// The time now as the ledger writes it (RFC 3339, UTC, milliseconds).
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How many answers carried `body` so far.
fn answered(load: &Load, body: &str) -> u64 {
    load.tally().bodies.get(body).copied().unwrap_or(0)
}

/// Waits until the clients get `body` more often than `before` times.
fn wait_served(load: &Load, body: &str, before: u64, log: impl Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    while answered(load, body) <= before {
        if Instant::now() >= deadline {
            // The tally last: a long log is cut in the middle, not at its end.
            panic!(
                "{body:?} never served:\n{}\nclients: {:?}",
                log(),
                *load.tally()
            );
        }
        sleep(Duration::from_millis(50));
    }
}
