//! Secrets in variables: Google Secret Manager (through a local stand-in of
//! its token endpoint and REST API), the daemon's environment and files.
//! Values reach the containers that use them and appear in no output.

use std::net::TcpListener;
use std::time::Duration;

use crate::google_standin::{Answer, StandIn, CLIENT_EMAIL};
use crate::support::{docker, inspect, text, webhook_receiver, Sandbox};

const BUSYBOX: &str = "dispenser-test/busybox:latest";
const PROJECT: &str = "dtest-project";
const LATEST_VALUE: &str = "g00gle-Latest-Value-7f3a";
const V2_VALUE: &str = "g00gle-Version2-Value-91bc";
const ROTATED_VALUE: &str = "g00gle-Rotated-Value-c0de";
const ENV_VALUE: &str = "env-Source-Value-5d21";
const FILE_VALUE: &str = "file-Source-Value-e8a4";

pub(crate) fn secret(name: &str) -> String {
    format!("projects/{PROJECT}/secrets/{name}")
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A sandbox whose dispenser talks to `standin` only: a service-account
/// key file of the test, an empty HOME (no gcloud file) and a metadata
/// server that does not answer (never the real one).
pub(crate) fn google_sandbox(standin: &StandIn) -> Sandbox {
    let mut sb = Sandbox::new();
    let key = sb.path("sa-key.json");
    standin.write_service_account(&key);
    std::fs::create_dir_all(sb.path("home")).unwrap();
    sb.set_env("GOOGLE_APPLICATION_CREDENTIALS", key.to_str().unwrap());
    sb.set_env("HOME", sb.path("home").to_str().unwrap());
    sb.set_env("GCE_METADATA_HOST", &format!("127.0.0.1:{}", closed_port()));
    sb.set_env("DISPENSER_SECRETMANAGER_ENDPOINT", &standin.url());
    sb
}

/// `docker exec NAME env`.
fn container_env(name: &str) -> String {
    docker(&["exec", name, "env"])
}

fn assert_never_printed(output: &str, values: &[&str]) {
    for value in values {
        assert!(
            !output.contains(value),
            "the secret value {value:?} was printed:\n{output}"
        );
    }
}

/// Runs `--test` and returns (exit code, stdout + stderr).
fn run_check(sb: &Sandbox) -> (Option<i32>, String) {
    let out = sb.cli(&["--test"]);
    (
        out.status.code(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

#[test]
fn secrets_from_google_env_and_file_reach_the_container_rotate_on_reload_and_are_never_printed() {
    let standin = StandIn::start();
    standin.set(&secret("db"), "latest", Answer::Value(LATEST_VALUE.into()));
    standin.set(&secret("db"), "2", Answer::Value(V2_VALUE.into()));
    let mut sb = google_sandbox(&standin);
    sb.set_env("DTEST_ENV_SECRET", ENV_VALUE);
    sb.write("secrets/token", &format!("{FILE_VALUE}\n"));
    sb.write(
        "dispenser.vars",
        &format!(
            "db = {{ source = \"google\", name = \"{}\" }}\ndb_v2 = {{ source = \"google\", name = \"{}\", version = \"2\" }}\nfrom_env = {{ source = \"env\", name = \"DTEST_ENV_SECRET\" }}\nfrom_file = {{ source = \"file\", path = \"secrets/token\" }}\n",
            secret("db"),
            secret("db")
        ),
    );
    sb.service(
        "app",
        BUSYBOX,
        "command = [\"sleep\", \"3600\"]\n\n[env]\nDB = \"${ db }\"\nDB_V2 = \"${ db_v2 }\"\nFROM_ENV = \"${ from_env }\"\nFROM_FILE = \"${ from_file }\"\n",
    );
    let all_values = [LATEST_VALUE, V2_VALUE, ROTATED_VALUE, ENV_VALUE, FILE_VALUE];

    // --test fetches every secret (the stand-in sees both versions) and prints none.
    let (code, check_output) = run_check(&sb);
    assert_eq!(code, Some(0), "{check_output}");
    assert_never_printed(&check_output, &all_values);
    let requests = standin.requests();
    let latest = format!("GET /v1/{}/versions/latest:access", secret("db"));
    let v2 = format!("GET /v1/{}/versions/2:access", secret("db"));
    let mut seen = requests.clone();
    seen.sort();
    let mut expected = vec![latest.clone(), v2.clone()];
    expected.sort();
    assert_eq!(seen, expected);

    let daemon = sb.start();
    let app = sb.name("app");
    let env = container_env(&app);
    for line in [
        format!("DB={LATEST_VALUE}"),
        format!("DB_V2={V2_VALUE}"),
        format!("FROM_ENV={ENV_VALUE}"),
        format!("FROM_FILE={FILE_VALUE}"),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing in:\n{env}");
    }
    let first_id = inspect(&app)["Id"].as_str().unwrap().to_string();

    // Rotation: a reload fetches again; the new value changes the spec hash,
    // so the container is redeployed with it.
    standin.set(&secret("db"), "latest", Answer::Value(ROTATED_VALUE.into()));
    daemon.reload();
    let env = container_env(&app);
    assert!(
        env.lines().any(|l| l == format!("DB={ROTATED_VALUE}")),
        "rotated value missing in:\n{env}"
    );
    let second_id = inspect(&app)["Id"].as_str().unwrap().to_string();
    assert_ne!(first_id, second_id, "the container was not redeployed");
    assert_eq!(
        standin
            .requests()
            .iter()
            .filter(|request| **request == latest)
            .count(),
        3,
        "--test, start-up and reload each fetch once"
    );

    // A reload with nothing rotated leaves the container alone.
    daemon.reload();
    assert_eq!(inspect(&app)["Id"].as_str().unwrap(), second_id);

    let log = daemon.stop();
    assert!(log.contains("plan applied"), "{log}");
    assert_never_printed(&log, &all_values);
}

#[test]
fn google_errors_name_the_variable_its_line_the_secret_and_the_cause() {
    let standin = StandIn::start();
    standin.set(
        &secret("good"),
        "latest",
        Answer::Value(LATEST_VALUE.into()),
    );
    standin.set(&secret("denied"), "latest", Answer::PermissionDenied);
    standin.set(&secret("off"), "latest", Answer::ApiDisabled);
    standin.set(
        &secret("blob"),
        "latest",
        Answer::Value(vec![0xff, 0xfe, 0x00, 0x80]),
    );
    let mut sb = google_sandbox(&standin);
    sb.write(
        "dispenser.vars",
        &format!(
            "good = {{ source = \"google\", name = \"{}\" }}\nmissing = {{ source = \"google\", name = \"{}\", version = \"7\" }}\ndenied = {{ source = \"google\", name = \"{}\" }}\noff = {{ source = \"google\", name = \"{}\" }}\nblob = {{ source = \"google\", name = \"{}\" }}\n",
            secret("good"),
            secret("missing"),
            secret("denied"),
            secret("off"),
            secret("blob"),
        ),
    );
    sb.service("app", BUSYBOX, "[env]\nGOOD = \"${ good }\"\n");
    let (code, output) = run_check(&sb);
    assert_eq!(code, Some(1), "{output}");
    assert_never_printed(&output, &[LATEST_VALUE]);
    let expectations = [
        ("missing", 2, "`7`", "not found"),
        ("denied", 3, "`latest`", "permission denied"),
        (
            "off",
            4,
            "`latest`",
            "Secret Manager API is not enabled in project `dtest-project`",
        ),
        ("blob", 5, "`latest`", "the payload is binary (not UTF-8)"),
    ];
    for (variable, line, version, cause) in expectations {
        let block = output
            .split("\n\n")
            .find(|block| block.contains(&format!("cannot resolve secret `{variable}`")))
            .unwrap_or_else(|| panic!("no error for `{variable}`:\n{output}"));
        assert!(
            block.contains(&format!("dispenser.vars:{line}:")),
            "{block}"
        );
        assert!(
            block.contains(&format!(
                "google secret `{}` (version {version})",
                secret(variable)
            )),
            "{block}"
        );
        assert!(block.contains(cause), "{block}");
    }
    assert!(
        output.contains(&format!(
            "grant service account `{CLIENT_EMAIL}` the role `roles/secretmanager.secretAccessor`"
        )),
        "{output}"
    );
    assert!(
        output.contains(
            "gcloud services enable secretmanager.googleapis.com --project dtest-project"
        ),
        "{output}"
    );
    assert!(output.contains("4 errors found."), "{output}");
}

#[test]
fn unreachable_api_and_missing_credentials_are_explained() {
    let standin = StandIn::start();
    let mut sb = google_sandbox(&standin);
    sb.write(
        "dispenser.vars",
        &format!(
            "db = {{ source = \"google\", name = \"{}\" }}\n",
            secret("db")
        ),
    );
    sb.service("app", BUSYBOX, "[env]\nDB = \"${ db }\"\n");

    let closed = format!("http://127.0.0.1:{}", closed_port());
    sb.set_env("DISPENSER_SECRETMANAGER_ENDPOINT", &closed);
    let (code, output) = run_check(&sb);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains(&format!("network unreachable: cannot connect to {closed}")),
        "{output}"
    );
    assert!(output.contains("dispenser.vars:1:"), "{output}");

    // No key file, no gcloud file, no metadata server.
    sb.set_env("DISPENSER_SECRETMANAGER_ENDPOINT", &standin.url());
    sb.set_env("GOOGLE_APPLICATION_CREDENTIALS", "");
    let (code, output) = run_check(&sb);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("cannot use the google credentials"),
        "{output}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dispenser"))
        .args(["--test", "-c"])
        .arg(sb.config())
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env("HOME", sb.path("home"))
        .env("GCE_METADATA_HOST", format!("127.0.0.1:{}", closed_port()))
        .env("DISPENSER_SECRETMANAGER_ENDPOINT", standin.url())
        .output()
        .unwrap();
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert!(output.contains("no google credentials found"), "{output}");
    assert!(
        output.contains("GOOGLE_APPLICATION_CREDENTIALS is not set"),
        "{output}"
    );
    assert!(
        output.contains("gcloud auth application-default login"),
        "{output}"
    );
    assert!(standin.requests().is_empty(), "{:?}", standin.requests());
}

#[test]
fn secrets_are_fetched_concurrently_once_each_with_one_retry() {
    let standin = StandIn::start();
    standin.set_delay(Duration::from_millis(400));
    for name in ["a", "b", "c"] {
        standin.set(
            &secret(name),
            "latest",
            Answer::Value(format!("value-{name}").into_bytes()),
        );
    }
    standin.set(
        &secret("flaky"),
        "latest",
        Answer::FailOnceThen(b"value-flaky".to_vec()),
    );
    let mut sb = google_sandbox(&standin);
    sb.write(
        "dispenser.vars",
        &format!(
            "a = {{ source = \"google\", name = \"{a}\" }}\nb = {{ source = \"google\", name = \"{b}\" }}\nc = {{ source = \"google\", name = \"{c}\" }}\nflaky = {{ source = \"google\", name = \"{flaky}\" }}\n",
            a = secret("a"),
            b = secret("b"),
            c = secret("c"),
            flaky = secret("flaky"),
        ),
    );
    // Overlay files are a second batch (they are rendered with the base
    // variables first), so `b` is fetched once more for it.
    sb.write(
        "extra.dispenser.vars",
        &format!(
            "b_again = {{ source = \"google\", name = \"{}\" }}\n",
            secret("b")
        ),
    );
    sb.service(
        "app",
        BUSYBOX,
        "[env]\nA = \"${ a }\"\nFLAKY = \"${ flaky }\"\n",
    );
    let (code, output) = run_check(&sb);
    assert_eq!(code, Some(0), "{output}");
    assert!(
        standin.max_in_flight() >= 3,
        "max in flight: {}",
        standin.max_in_flight()
    );
    let requests = standin.requests();
    let count = |name: &str| {
        let line = format!("GET /v1/{}/versions/latest:access", secret(name));
        requests.iter().filter(|request| **request == line).count()
    };
    assert_eq!(count("a"), 1, "{requests:?}");
    assert_eq!(count("c"), 1, "{requests:?}");
    assert_eq!(count("flaky"), 2, "one retry after the 503: {requests:?}");
    assert_eq!(
        count("b"),
        2,
        "base file and overlay are two batches: {requests:?}"
    );
}

#[test]
fn gcloud_user_credentials_get_a_token_from_the_token_endpoint() {
    let standin = StandIn::start();
    standin.set(&secret("db"), "latest", Answer::Value(LATEST_VALUE.into()));
    let mut sb = google_sandbox(&standin);
    let gcloud = sb.path("home/.config/gcloud");
    std::fs::create_dir_all(&gcloud).unwrap();
    standin.write_authorized_user(&gcloud.join("application_default_credentials.json"));
    sb.write(
        "dispenser.vars",
        &format!(
            "db = {{ source = \"google\", name = \"{}\" }}\n",
            secret("db")
        ),
    );
    sb.service("app", BUSYBOX, "[env]\nDB = \"${ db }\"\n");
    // Without GOOGLE_APPLICATION_CREDENTIALS, ADC finds gcloud's file in HOME.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dispenser"))
        .args(["--test", "-c"])
        .arg(sb.config())
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env("HOME", sb.path("home"))
        .env("GCE_METADATA_HOST", format!("127.0.0.1:{}", closed_port()))
        .env("DISPENSER_SECRETMANAGER_ENDPOINT", standin.url())
        .output()
        .unwrap();
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{output}");
    assert_never_printed(&output, &[LATEST_VALUE]);
    assert_eq!(standin.token_grants(), vec!["refresh_token".to_string()]);
    assert_eq!(standin.requests().len(), 1);
}

/// `RUST_LOG=debug` (or `trace`) turns on Dispenser's own debug lines, not
/// the libraries': bollard's debug lines carry the create body and the
/// inspect answers, with every env value. The secret reaches the container
/// and never the daemon's log.
#[test]
fn debug_and_trace_logs_never_print_a_secret() {
    for level in ["debug", "trace"] {
        let mut sb = Sandbox::new();
        sb.set_env("RUST_LOG", level);
        sb.set_env("DTEST_ENV_SECRET", ENV_VALUE);
        sb.write(
            "dispenser.vars",
            "from_env = { source = \"env\", name = \"DTEST_ENV_SECRET\" }\n",
        );
        sb.service(
            "app",
            BUSYBOX,
            "command = [\"sleep\", \"3600\"]\n\n[env]\nFROM_ENV = \"${ from_env }\"\n",
        );
        let daemon = sb.start();
        let app = sb.name("app");
        let env = container_env(&app);
        assert!(
            env.lines().any(|l| l == format!("FROM_ENV={ENV_VALUE}")),
            "the secret did not reach the container:\n{env}"
        );
        // A status read makes the daemon inspect the container once more.
        let status = sb.cli(&["status", "--json"]);
        assert!(status.status.success(), "{}", text(&status.stderr));
        let log = daemon.stop();
        // Debug was on: Dispenser's own engine said so at debug level.
        assert!(
            log.lines().any(|line| line.contains("DEBUG")
                && line.contains("dispenser_actors::engine")
                && line.contains("container created")),
            "RUST_LOG={level}: no debug line of dispenser's own:\n{log}"
        );
        assert_never_printed(&log, &[ENV_VALUE]);
    }
}

/// A secret used as a name (a network, a dependency): the reload is refused,
/// and the daemon's ERROR log names the variable (`<secret net>`), never its
/// value, in any case.
#[test]
fn a_reload_refused_for_a_secret_used_as_a_name_never_logs_the_value() {
    const NET_VALUE: &str = "g00gle-Net-Name-4b1d";
    const DEP_VALUE: &str = "env-Dependency-Name-77ac";
    let standin = StandIn::start();
    standin.set(&secret("net"), "latest", Answer::Value(NET_VALUE.into()));
    let mut sb = google_sandbox(&standin);
    sb.set_env("DTEST_DEP_SECRET", DEP_VALUE);
    sb.write(
        "dispenser.vars",
        &format!(
            "net = {{ source = \"google\", name = \"{}\" }}\ndep = {{ source = \"env\", name = \"DTEST_DEP_SECRET\" }}\n",
            secret("net")
        ),
    );
    let body = "command = [\"sleep\", \"3600\"]\n";
    sb.service("app", BUSYBOX, body);
    let daemon = sb.start();
    let first_id = inspect(&sb.name("app"))["Id"].as_str().unwrap().to_string();

    // An undeclared network and an unknown dependency, both named by secrets.
    sb.service(
        "app",
        BUSYBOX,
        &format!("{body}\n[[network]]\nname = \"${{ net }}\"\n\n[depends_on]\n\"${{ dep }}\" = \"started\"\n"),
    );
    let (code, check_output) = run_check(&sb);
    assert_eq!(code, Some(1), "{check_output}");
    daemon.reload();
    let log = daemon.log();
    assert!(log.contains("reload refused"), "{log}");
    assert!(
        log.contains("network `<secret net>` is not declared in dispenser.toml"),
        "{log}"
    );
    assert!(
        log.contains("depends on unknown service `<secret dep>`"),
        "{log}"
    );
    assert!(check_output.contains("`<secret net>`"), "{check_output}");
    for output in [&log, &check_output] {
        let lowercase = output.to_lowercase();
        for value in [NET_VALUE, DEP_VALUE] {
            assert!(
                !lowercase.contains(&value.to_lowercase()),
                "the secret value {value:?} was printed:\n{output}"
            );
        }
    }
    // Nothing changed.
    assert_eq!(inspect(&sb.name("app"))["Id"].as_str().unwrap(), first_id);
    daemon.stop();
}

/// A GET over the daemon's admin socket.
fn admin_get(sb: &Sandbox, path: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", "--unix-socket"])
        .arg(sb.path("dispenser.sock"))
        .arg(format!("http://dispenser{path}"))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "GET {path}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn no_secret_reaches_status_the_page_metrics_webhooks_or_the_log() {
    const HOOK_TOKEN: &str = "env-Hook-Token-3e9f";
    let (port, calls) = webhook_receiver(Duration::from_secs(90));
    let mut sb = Sandbox::new();
    sb.set_env("DTEST_ENV_SECRET", ENV_VALUE);
    sb.set_env("DTEST_HOOK_TOKEN", HOOK_TOKEN);
    sb.write("secrets/token", &format!("{FILE_VALUE}\n"));
    sb.write(
        "dispenser.vars",
        "from_env = { source = \"env\", name = \"DTEST_ENV_SECRET\" }\n\
         from_file = { source = \"file\", path = \"secrets/token\" }\n\
         hook_token = { source = \"env\", name = \"DTEST_HOOK_TOKEN\" }\n",
    );
    let env = "[env]\nFROM_ENV = \"${ from_env }\"\nFROM_FILE = \"${ from_file }\"\n";
    sb.service(
        "app",
        BUSYBOX,
        &format!("command = [\"sleep\", \"3600\"]\n\n{env}"),
    );
    // A job that fails on schedule: its failure is announced to the webhook.
    sb.service(
        "job",
        BUSYBOX,
        &format!(
            "command = [\"sh\", \"-c\", \"echo failing; exit 3\"]\nrestart = \"no\"\n\n\
             [dispenser]\ninitialize = \"on-trigger\"\ncron = \"*/2 * * * * *\"\n\n{env}"
        ),
    );
    let main = std::fs::read_to_string(sb.config()).unwrap();
    sb.write(
        "dispenser.toml",
        &format!(
            "{main}\n[notify]\nwebhook = \"http://127.0.0.1:{port}/hook/${{ hook_token }}\"\n"
        ),
    );
    let daemon = sb.start();
    let (app, job) = (sb.name("app"), sb.name("job"));
    // The values did reach the containers: the searches below are for
    // something that exists.
    let env = container_env(&app);
    assert!(
        env.lines().any(|l| l == format!("FROM_ENV={ENV_VALUE}"))
            && env.lines().any(|l| l == format!("FROM_FILE={FILE_VALUE}")),
        "{env}"
    );
    crate::support::eventually(
        "the job's failure reaches the webhook",
        Duration::from_secs(30),
        || {
            calls
                .lock()
                .unwrap()
                .iter()
                .any(|(_, body)| body.contains(&job))
        },
        || daemon.log(),
    );
    let values = [ENV_VALUE, FILE_VALUE, HOOK_TOKEN];
    let (head, body) = calls
        .lock()
        .unwrap()
        .iter()
        .find(|(_, body)| body.contains(&job))
        .cloned()
        .unwrap();
    // The token was used where it belongs, the URL, and nowhere else.
    assert!(
        head.starts_with(&format!("POST /hook/{HOOK_TOKEN} ")),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(json["event"], "cron_run_failed", "{body}");
    assert_never_printed(&body, &values);

    let table = sb.cli(&["status"]);
    assert!(table.status.success(), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    assert!(table.contains(&app) && table.contains(&job), "{table}");
    assert_never_printed(&table, &values);
    let json = sb.cli(&["status", "--json"]);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let json = text(&json.stdout);
    assert!(json.contains(&app), "{json}");
    assert_never_printed(&json, &values);

    let page = admin_get(&sb, "/");
    assert!(page.contains(&app), "{page}");
    assert_never_printed(&page, &values);
    let metrics = admin_get(&sb, "/metrics");
    assert!(metrics.contains(&job), "{metrics}");
    assert_never_printed(&metrics, &values);

    let log = daemon.stop();
    assert!(log.contains("run failed"), "{log}");
    assert_never_printed(&log, &values);
}
