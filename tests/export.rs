//! `dispenser export` through the real binary. The stack under
//! tests/export/stack exports to Kubernetes manifests that pass
//! `kubernetes-validate --strict` for 1.33 and 1.37 and hold no secret value;
//! every case under tests/export/invalid prints exactly its `expected.txt`
//! (stderr, then the exit code): its `args` file holds the target and flags.
//! `UPDATE_SNAPSHOTS=1` rewrites the snapshots (review them by eye).

#[path = "../actors/tests/acme/bind.rs"]
#[allow(dead_code)]
// reason: the Cloud DNS stand-in reads its zone with `dig_short`; no test here starts named
mod bind;
#[path = "common/fixtures.rs"]
mod fixtures;
#[path = "runtime/google_standin.rs"]
#[allow(dead_code)] // reason: the stand-in serves the runtime tests too; this file uses part of it
mod google_standin;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fixtures::{case_folders, files_under, repo, text};

/// The environment secret of the fixtures.
const ENVIRONMENT: &[(&str, &str)] = &[("EXPORT_API_TOKEN", "env-secret-value-3")];
/// Secret values, from the environment and the fixtures' files, that no
/// output and no message may hold.
const SECRET_VALUES: &[&str] = &["env-secret-value-3", "file-secret-value-7"];
/// Where `make deps` installs kubernetes-validate (a venv under target/).
const KUBERNETES_VALIDATE: &str = "target/ci-tools/kubernetes-validate/bin/kubernetes-validate";

fn dispenser(current_dir: &Path, args: &[&str]) -> Output {
    fixtures::dispenser(current_dir, args, ENVIRONMENT)
}

/// Exports `tree` for `target` into `out`.
fn export(tree: &Path, target: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "export",
        target,
        "-c",
        "dispenser.toml",
        "-o",
        out.to_str().expect("a UTF-8 temp path"),
    ];
    args.extend_from_slice(extra);
    dispenser(tree, &args)
}

/// Every file in `out`, with its text, by name.
fn written(out: &Path) -> Vec<(String, String)> {
    files_under(out)
        .into_iter()
        .map(|(path, content)| (path.to_string_lossy().into_owned(), content))
        .collect()
}

fn assert_no_secret_value(what: &str, texts: &[&str]) {
    for text in texts {
        for secret in SECRET_VALUES {
            assert!(
                !text.contains(secret),
                "{what} holds a secret value:\n{text}"
            );
        }
    }
}

/// The kubernetes-validate executable: `KUBERNETES_VALIDATE`, the venv .ci/run
/// makes, or one on PATH.
fn kubernetes_validate() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBERNETES_VALIDATE") {
        return PathBuf::from(path);
    }
    let venv = repo().join(KUBERNETES_VALIDATE);
    if venv.exists() {
        return venv;
    }
    let on_path = Command::new("kubernetes-validate")
        .arg("--version")
        .output();
    if on_path.is_ok_and(|output| output.status.success()) {
        return PathBuf::from("kubernetes-validate");
    }
    panic!(
        "kubernetes-validate is not installed: `make deps` installs it with \
         `python3 -m venv target/ci-tools/kubernetes-validate && \
         target/ci-tools/kubernetes-validate/bin/pip install kubernetes-validate`"
    );
}

#[test]
fn kubernetes_manifests_of_the_stack_pass_kubernetes_validate_strict_for_1_33_and_1_37() {
    let tree = repo().join("tests/export/stack");
    let out = tempfile::tempdir().unwrap();
    let output = export(
        &tree,
        "kubernetes",
        out.path(),
        &["--allow-lossy", "--gateway", "public"],
    );
    let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{printed}");
    let files = written(out.path());
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "api.yaml",
            "cluster.yaml",
            "db.yaml",
            "report.yaml",
            "web.yaml"
        ]
    );
    let paths: Vec<PathBuf> = names.iter().map(|name| out.path().join(name)).collect();
    let validate = kubernetes_validate();
    for version in ["1.33.0", "1.37.0"] {
        let result = Command::new(&validate)
            .args(["--strict", "-k", version])
            .args(&paths)
            .output()
            .expect("kubernetes-validate runs");
        let report = format!("{}{}", text(&result.stdout), text(&result.stderr));
        assert!(result.status.success(), "{version}:\n{report}");
        // Every built-in kind was checked against the schema, not skipped.
        for resource in [
            "deployment/web",
            "service/web",
            "ingress/web",
            "configmap/web-conf-site-conf",
            "deployment/api",
            "cronjob/report",
            "persistentvolumeclaim/export-db-data",
            "networkpolicy/backend",
        ] {
            assert!(
                report.contains(&format!("passed for resource {resource} ")),
                "{version}: {resource} not validated:\n{report}"
            );
        }
    }
    let web = yaml_rust2::YamlLoader::load_from_str(
        &files.iter().find(|(name, _)| name == "web.yaml").unwrap().1,
    )
    .unwrap();
    let route = web
        .iter()
        .find(|doc| doc["kind"].as_str() == Some("HTTPRoute"))
        .expect("--gateway writes an HTTPRoute");
    assert_eq!(
        route["spec"]["parentRefs"][0]["name"].as_str(),
        Some("public")
    );
    assert_eq!(
        route["spec"]["hostnames"][0].as_str(),
        Some("app.example.test")
    );
    assert_eq!(
        route["spec"]["rules"][0]["backendRefs"][0]["port"].as_i64(),
        Some(80)
    );
    let texts: Vec<&str> = files.iter().map(|(_, text)| text.as_str()).collect();
    assert_no_secret_value("the manifests", &texts);
    assert_no_secret_value("the output", &[&printed]);
    // The worked example of docs/scaling-out.md stays valid too.
    let example = tempfile::tempdir().unwrap();
    let output = export(
        &repo().join("example"),
        "kubernetes",
        example.path(),
        &["--allow-lossy"],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let paths: Vec<PathBuf> = written(example.path())
        .iter()
        .map(|(name, _)| example.path().join(name))
        .collect();
    for version in ["1.33.0", "1.37.0"] {
        let result = Command::new(&validate)
            .args(["--strict", "-k", version])
            .args(&paths)
            .output()
            .expect("kubernetes-validate runs");
        assert!(
            result.status.success(),
            "example, {version}:\n{}{}",
            text(&result.stdout),
            text(&result.stderr)
        );
    }
}

#[test]
fn kubernetes_manifests_keep_dispensers_deploy_rules_and_reference_secrets() {
    let tree = repo().join("tests/export/stack");
    let out = tempfile::tempdir().unwrap();
    let output = export(&tree, "kubernetes", out.path(), &["--allow-lossy"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let read = |name: &str| {
        let text = std::fs::read_to_string(out.path().join(name)).unwrap();
        yaml_rust2::YamlLoader::load_from_str(&text).unwrap()
    };
    let web = read("web.yaml");
    let deployment = web
        .iter()
        .find(|doc| doc["kind"].as_str() == Some("Deployment"))
        .unwrap();
    let spec = &deployment["spec"];
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxSurge"].as_i64(),
        Some(1)
    );
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxUnavailable"].as_i64(),
        Some(0)
    );
    assert_eq!(spec["minReadySeconds"].as_i64(), Some(5), "the soak");
    let container = &spec["template"]["spec"]["containers"][0];
    assert!(
        container["livenessProbe"].is_badvalue(),
        "never a liveness probe"
    );
    let probe = &container["readinessProbe"];
    assert_eq!(probe["exec"]["command"][0].as_str(), Some("wget"));
    assert_eq!(probe["periodSeconds"].as_i64(), Some(5));
    assert_eq!(probe["failureThreshold"].as_i64(), Some(3));
    assert_eq!(
        deployment["metadata"]["annotations"]["keel.sh/policy"].as_str(),
        Some("force"),
        "watch = true becomes Keel's annotations"
    );
    assert!(
        spec["template"]["metadata"]["annotations"]["dispenser.io/config-hash"]
            .as_str()
            .is_some_and(|hash| hash.len() == 64),
        "the pod rolls when the ConfigMap's content changes"
    );
    let ingress = web
        .iter()
        .find(|doc| doc["kind"].as_str() == Some("Ingress"))
        .unwrap();
    assert_eq!(
        ingress["spec"]["rules"][0]["host"].as_str(),
        Some("app.example.test")
    );
    assert_eq!(
        ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"].as_str(),
        Some("dispenser-acme")
    );
    let api = read("api.yaml");
    let env = &api[0]["spec"]["template"]["spec"]["containers"][0]["env"];
    let token = env
        .as_vec()
        .unwrap()
        .iter()
        .find(|item| item["name"].as_str() == Some("API_TOKEN"))
        .unwrap();
    assert_eq!(
        token["valueFrom"]["secretKeyRef"]["name"].as_str(),
        Some("api-token")
    );
    assert!(token["value"].is_badvalue());
    let service = api
        .iter()
        .find(|doc| doc["kind"].as_str() == Some("Service"))
        .unwrap();
    // db:5432 in api's env gives db its Service; api:8000 in web's gives api its own.
    assert_eq!(service["spec"]["ports"][0]["port"].as_i64(), Some(8000));
    let db = read("db.yaml");
    assert!(db.iter().any(|doc| doc["kind"].as_str() == Some("Service")
        && doc["spec"]["ports"][0]["port"].as_i64() == Some(5432)));
    let report = read("report.yaml");
    let cron = &report[0]["spec"];
    assert_eq!(cron["schedule"].as_str(), Some("30 2 * * 1-5"));
    assert_eq!(cron["timeZone"].as_str(), Some("Europe/Zurich"));
    assert_eq!(cron["concurrencyPolicy"].as_str(), Some("Replace"));
    assert_eq!(
        cron["jobTemplate"]["spec"]["activeDeadlineSeconds"].as_i64(),
        Some(600)
    );
    // The summary says what to install and what is not done.
    let stdout = text(&output.stdout);
    for expected in [
        "cert-manager",
        "Keel",
        "kubectl create secret generic api-token",
        "not rolled back",
    ] {
        assert!(stdout.contains(expected), "{expected} not in:\n{stdout}");
    }
    // The lossy mapping is listed even when allowed.
    assert!(text(&output.stderr).contains("warning: `api` waits for `db` (healthy)"));
}

/// Sub-folders of `tests/export/invalid`, sorted.
fn invalid_cases() -> Vec<PathBuf> {
    case_folders(Path::new("tests/export/invalid"))
        .into_iter()
        .map(|case| repo().join(case))
        .collect()
}

#[test]
fn every_refusal_matches_its_snapshot_and_writes_nothing() {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let cases = invalid_cases();
    assert!(cases.len() >= 10, "{} cases", cases.len());
    for case in cases {
        let args = std::fs::read_to_string(case.join("args"))
            .unwrap_or_else(|_| panic!("{} has no args file", case.display()));
        let mut words = args.split_whitespace();
        let target = words.next().expect("args names the target");
        let extra: Vec<&str> = words.collect();
        let out = tempfile::tempdir().unwrap();
        let target_dir = out.path().join("out");
        let output = export(&case, target, &target_dir, &extra);
        let stderr = text(&output.stderr);
        let got = format!("{stderr}exit: {}\n", output.status.code().unwrap_or(-1));
        let snapshot = case.join("expected.txt");
        if update {
            std::fs::write(&snapshot, &got).unwrap();
        }
        let expected = std::fs::read_to_string(&snapshot)
            .unwrap_or_else(|_| panic!("{} has no expected.txt", case.display()));
        assert_eq!(got, expected, "{}: stderr differs", case.display());
        assert_no_secret_value(
            &case.display().to_string(),
            &[&stderr, &text(&output.stdout)],
        );
        if !output.status.success() {
            assert!(
                !target_dir.exists(),
                "{}: a refused export wrote files",
                case.display()
            );
        }
    }
}

/// The node label of a swarm a test created.
const SWARM_LABEL: &str = "dispenser.test.export";

/// A single-node swarm on this engine for one test: `docker swarm init`
/// on 127.0.0.1, left (`--force`) in `Drop`, so a failing test leaves it too.
/// Swarm mode is global to the engine: the `swarm` test group runs these
/// tests one at a time (.config/nextest.toml).
struct Swarm {
    stack: String,
}

impl Swarm {
    fn init(stack: &str) -> Swarm {
        let mut state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        // A swarm an earlier run of this test left (killed before its Drop)
        // carries the test's node label: that one is left, no other.
        if state.trim() == "active" {
            let labels = Command::new("docker")
                .args([
                    "node",
                    "inspect",
                    "self",
                    "--format",
                    "{{json .Spec.Labels}}",
                ])
                .output()
                .map(|output| text(&output.stdout))
                .unwrap_or_default();
            if labels.contains(&format!("\"{SWARM_LABEL}\"")) {
                docker(&["swarm", "leave", "--force"]);
                state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
            }
        }
        assert_eq!(
            state.trim(),
            "inactive",
            "this engine is already in a swarm: the test does not touch a swarm it did not create"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        docker(&[
            "swarm",
            "init",
            "--advertise-addr",
            "127.0.0.1",
            "--listen-addr",
            &listen,
        ]);
        // The guard first: whatever fails from here on, Drop leaves the swarm.
        let swarm = Swarm {
            stack: stack.to_string(),
        };
        let node = docker(&["info", "--format", "{{.Swarm.NodeID}}"]);
        let label = format!("{SWARM_LABEL}=1");
        docker(&["node", "update", "--label-add", &label, node.trim()]);
        swarm
    }

    fn deploy(&self, stack_file: &Path) {
        docker(&[
            "stack",
            "deploy",
            "-c",
            stack_file.to_str().unwrap(),
            "--resolve-image",
            "never",
            &self.stack,
        ]);
    }

    fn service(&self, name: &str) -> String {
        format!("{}_{name}", self.stack)
    }

    /// Ids of the running containers of a service.
    fn containers(&self, name: &str) -> Vec<String> {
        let filter = format!("label=com.docker.swarm.service.name={}", self.service(name));
        docker(&["ps", "-q", "--filter", &filter])
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["stack", "rm", &self.stack])
            .output();
        let _ = Command::new("docker")
            .args(["swarm", "leave", "--force"])
            .output();
    }
}

/// Runs docker; panics with its stderr when it fails.
fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        output.status.success(),
        "docker {}: {}",
        args.join(" "),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Waits up to `seconds` for `ready` to give a value.
fn wait_for<T>(seconds: u64, what: &str, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn build_test_images() {
    let script = repo().join("tests/images/build.sh");
    let output = Command::new("sh")
        .arg(script)
        .output()
        .expect("build.sh runs");
    assert!(
        output.status.success(),
        "build.sh: {}",
        text(&output.stderr)
    );
}

fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

const SWARM_CONFIG: &str = "[daemon]\ninstance = \"swarm-export\"\n\n[deploy]\nsoak = \"4s\"\n\n[[service]]\npath = \"web\"\n\n[[service]]\npath = \"job\"\n";
const SWARM_JOB: &str = "[service]\nname = \"job\"\nimage = \"dispenser-test/web:v1\"\nrestart = \"no\"\ncommand = [\"/bin/sh\", \"-c\", \"echo job ran\"]\n\n[dispenser]\ncron = \"*/5 * * * *\"\ninitialize = \"on-trigger\"\n";

fn swarm_web(image: &str, check: &str) -> String {
    format!(
        "[service]\nname = \"web\"\nimage = \"{image}\"\nrestart = \"always\"\n\n[env]\nTOKEN = \"${{ token }}\"\n\n[healthcheck]\ntest = {check}\ninterval = \"1s\"\ntimeout = \"1s\"\nretries = 2\n"
    )
}

#[test]
fn swarm_stack_runs_updates_start_first_rolls_back_a_failing_healthcheck_and_reads_its_secret() {
    build_test_images();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let healthy = "[\"CMD\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1/\"]";
    write_tree(
        root,
        &[
            ("dispenser.toml", SWARM_CONFIG),
            (
                "dispenser.vars",
                "token = { source = \"file\", path = \"token.txt\" }\n",
            ),
            ("token.txt", "file-secret-value-7\n"),
            (
                "web/service.toml",
                &swarm_web("dispenser-test/web:v1", healthy),
            ),
            ("job/service.toml", SWARM_JOB),
        ],
    );
    let out = root.join("out");
    let exported = export(root, "swarm", &out, &[]);
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let stack_file = out.join("stack.yml");
    let stack_text = std::fs::read_to_string(&stack_file).unwrap();
    assert_no_secret_value("the stack file", &[&stack_text, &text(&exported.stdout)]);
    assert!(stack_text.contains("order: start-first"), "{stack_text}");

    let swarm = Swarm::init(&format!("dxexport{}", std::process::id()));
    swarm.deploy(&stack_file);
    let web = wait_for(90, "a healthy web task", || {
        let filter = format!(
            "label=com.docker.swarm.service.name={}",
            swarm.service("web")
        );
        let ids = docker(&[
            "ps",
            "-q",
            "--filter",
            &filter,
            "--filter",
            "health=healthy",
        ]);
        ids.split_whitespace().next().map(str::to_string)
    });
    // The secret is a file; the env names it.
    let secret = docker(&["exec", &web, "sh", "-c", "cat \"$TOKEN_FILE\""]);
    assert_eq!(secret.trim(), "file-secret-value-7");
    let page = docker(&["exec", &web, "wget", "-qO-", "http://127.0.0.1/"]);
    assert_eq!(page.trim(), "v1");
    // The job ran to completion once deployed; swarm-cronjob's labels schedule it.
    wait_for(60, "the job to complete", || {
        let states = docker(&[
            "service",
            "ps",
            &swarm.service("job"),
            "--format",
            "{{.CurrentState}}",
        ]);
        states.contains("Complete").then_some(())
    });
    let labels = docker(&[
        "service",
        "inspect",
        &swarm.service("job"),
        "--format",
        "{{json .Spec.Labels}}",
    ]);
    assert!(
        labels.contains("\"swarm.cronjob.schedule\":\"*/5 * * * *\""),
        "{labels}"
    );
    // swarm-cronjob starts a run by forcing an update of the job: a second run completes.
    docker(&[
        "service",
        "update",
        "--detach",
        "--force",
        &swarm.service("job"),
    ]);
    wait_for(60, "a second run of the job", || {
        let states = docker(&[
            "service",
            "ps",
            &swarm.service("job"),
            "--format",
            "{{.CurrentState}}",
        ]);
        (states.matches("Complete").count() >= 2).then_some(())
    });

    // v2: the new task runs beside the old one before the old one stops.
    write_tree(
        root,
        &[(
            "web/service.toml",
            &swarm_web("dispenser-test/web:v2", healthy),
        )],
    );
    assert!(export(root, "swarm", &out, &[]).status.success());
    swarm.deploy(&stack_file);
    let mut overlap = false;
    let updated = wait_for(120, "the update to v2", || {
        let running = swarm.containers("web");
        overlap |= running.len() >= 2;
        let state = docker(&[
            "service",
            "inspect",
            &swarm.service("web"),
            "--format",
            "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
        ]);
        (state.trim() == "completed" && running.len() == 1).then(|| running[0].clone())
    });
    assert!(
        overlap,
        "no moment with the old and the new task running: not start-first"
    );
    let page = docker(&["exec", &updated, "wget", "-qO-", "http://127.0.0.1/"]);
    assert_eq!(page.trim(), "v2");

    // A version whose healthcheck fails is rolled back: v2 keeps serving.
    write_tree(
        root,
        &[(
            "web/service.toml",
            &swarm_web("dispenser-test/web:v1", "[\"CMD\", \"false\"]"),
        )],
    );
    assert!(export(root, "swarm", &out, &[]).status.success());
    swarm.deploy(&stack_file);
    wait_for(180, "the rollback", || {
        let state = docker(&[
            "service",
            "inspect",
            &swarm.service("web"),
            "--format",
            "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
        ]);
        (state.trim() == "rollback_completed").then_some(())
    });
    let running = wait_for(60, "one web task after the rollback", || {
        let running = swarm.containers("web");
        (running.len() == 1).then(|| running[0].clone())
    });
    let page = docker(&["exec", &running, "wget", "-qO-", "http://127.0.0.1/"]);
    assert_eq!(
        page.trim(),
        "v2",
        "the rolled-back service serves the proven version"
    );
}

/// Compares every file in `out` with the golden files in `golden`
/// (`UPDATE_SNAPSHOTS=1` rewrites them).
fn assert_golden(out: &Path, golden: &Path) {
    let files = written(out);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        let _ = std::fs::remove_dir_all(golden);
        std::fs::create_dir_all(golden).unwrap();
        for (name, content) in &files {
            std::fs::write(golden.join(name), content).unwrap();
        }
    }
    let expected = written(golden);
    let names = |files: &[(String, String)]| {
        files
            .iter()
            .map(|(name, _)| name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&files),
        names(&expected),
        "{}: other files",
        golden.display()
    );
    for ((name, got), (_, want)) in files.iter().zip(&expected) {
        assert_eq!(got, want, "{name} differs from {}", golden.display());
    }
}

#[test]
fn nomad_jobs_match_their_golden_files_and_read_back_as_written() {
    for (tree, golden) in [
        ("tests/export/stack", "tests/export/golden/nomad-stack"),
        ("example", "tests/export/golden/nomad-example"),
    ] {
        let out = tempfile::tempdir().unwrap();
        let output = export(&repo().join(tree), "nomad", out.path(), &["--allow-lossy"]);
        assert!(output.status.success(), "{tree}: {}", text(&output.stderr));
        assert_golden(out.path(), &repo().join(golden));
        for (name, content) in written(out.path()) {
            // The round trip: what parses formats to the same text, so the
            // file holds exactly the structure that was built.
            let body = hcl::parse(&content).unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(hcl::format::to_string(&body).unwrap(), content, "{name}");
            assert_no_secret_value(&name, &[&content]);
        }
    }
    let out = tempfile::tempdir().unwrap();
    let tree = repo().join("tests/export/stack");
    assert!(export(&tree, "nomad", out.path(), &["--allow-lossy"])
        .status
        .success());
    let read = |name: &str| -> serde_json::Value {
        hcl::from_str(&std::fs::read_to_string(out.path().join(name)).unwrap()).unwrap()
    };
    let web = read("web.nomad.hcl");
    let task = &web["job"]["web"]["group"]["web"]["task"]["web"];
    assert_eq!(
        task["config"]["image"],
        serde_json::json!("registry.example.test/web:1")
    );
    assert_eq!(
        task["env"]["PATTERN"],
        serde_json::json!("${HOME}"),
        "a literal stays literal"
    );
    let update = &web["job"]["web"]["group"]["web"]["update"];
    assert_eq!(update["canary"], serde_json::json!(1));
    assert_eq!(update["auto_revert"], serde_json::json!(true));
    assert_eq!(
        update["min_healthy_time"],
        serde_json::json!("5s"),
        "the soak"
    );
    let report = read("report.nomad.hcl");
    let periodic = &report["job"]["report"]["periodic"];
    assert_eq!(periodic["crons"][0], serde_json::json!("30 2 * * 1-5"));
    assert_eq!(periodic["time_zone"], serde_json::json!("Europe/Zurich"));
    let api = read("api.nomad.hcl");
    let template = &api["job"]["api"]["group"]["api"]["task"]["api"]["template"];
    let data = template["data"].as_str().unwrap();
    assert!(data.contains("API_TOKEN={{ .api_token }}"), "{data}");
}

#[test]
fn swarm_stack_file_passes_docker_stack_config_and_keeps_literal_dollars() {
    let out = tempfile::tempdir().unwrap();
    let tree = repo().join("tests/export/stack");
    let output = export(&tree, "swarm", out.path(), &["--allow-lossy"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stack = out.path().join("stack.yml");
    let resolved = docker(&["stack", "config", "-c", stack.to_str().unwrap()]);
    assert!(resolved.contains("PATTERN: ${HOME}"), "{resolved}");
    assert!(
        resolved.contains("API_TOKEN_FILE: /run/secrets/api_token"),
        "{resolved}"
    );
    assert!(resolved.contains("endpoint_mode: dnsrr"), "{resolved}");
    assert!(resolved.contains("internal: true"), "{resolved}");
    let content = std::fs::read_to_string(&stack).unwrap();
    assert_no_secret_value("the stack file", &[&content, &resolved]);
}

#[test]
fn google_secrets_become_external_secrets_or_copy_commands_and_are_never_written() {
    let standin = google_standin::StandIn::start();
    let name = "projects/dtest-project/secrets/db-password";
    standin.set(
        name,
        "3",
        google_standin::Answer::Value(b"google-secret-value-5".to_vec()),
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let key = root.join("sa-key.json");
    standin.write_service_account(&key);
    std::fs::create_dir_all(root.join("home")).unwrap();
    write_tree(
        root,
        &[
            ("dispenser.toml", "[[service]]\npath = \"app\"\n"),
            ("dispenser.vars", &format!("db_password = {{ source = \"google\", name = \"{name}\", version = \"3\" }}\n")),
            ("app/service.toml", "[service]\nname = \"app\"\nimage = \"busybox:1\"\nrestart = \"always\"\n\n[env]\nDB_PASSWORD = \"${ db_password }\"\n"),
        ],
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = |target: &str, out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_dispenser"))
            .current_dir(root)
            .args([
                "export",
                target,
                "-c",
                "dispenser.toml",
                "-o",
                out.to_str().unwrap(),
            ])
            .env_remove("RUST_LOG")
            .env("GOOGLE_APPLICATION_CREDENTIALS", &key)
            .env("HOME", root.join("home"))
            .env("GCE_METADATA_HOST", format!("127.0.0.1:{closed}"))
            .env("DISPENSER_SECRETMANAGER_ENDPOINT", standin.url())
            .output()
            .unwrap()
    };
    // Swarm and Nomad have no external-secrets: the summary says how to copy it.
    for target in ["swarm", "nomad"] {
        let out = root.join(target);
        let output = run(target, &out);
        let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(output.status.success(), "{target}: {printed}");
        assert!(
            printed.contains(
                "gcloud secrets versions access 3 --secret=db-password --project=dtest-project"
            ),
            "{target}: {printed}"
        );
        let all: String = written(&out).into_iter().map(|(_, text)| text).collect();
        assert!(
            !all.contains("google-secret-value-5") && !printed.contains("google-secret-value-5")
        );
    }
    let out = root.join("out");
    let output = run("kubernetes", &out);
    let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{printed}");
    // The load fetched the secret, as --test does: the export proves access.
    assert!(
        standin
            .requests()
            .iter()
            .any(|request| request.contains("db-password")),
        "{:?}",
        standin.requests()
    );
    let files = written(&out);
    let all: String = files.iter().map(|(_, text)| text.as_str()).collect();
    assert!(!all.contains("google-secret-value-5") && !printed.contains("google-secret-value-5"));
    let cluster = yaml_rust2::YamlLoader::load_from_str(
        &std::fs::read_to_string(out.join("cluster.yaml")).unwrap(),
    )
    .unwrap();
    let store = cluster
        .iter()
        .find(|doc| doc["kind"].as_str() == Some("ClusterSecretStore"))
        .unwrap();
    assert_eq!(
        store["spec"]["provider"]["gcpsm"]["projectID"].as_str(),
        Some("dtest-project")
    );
    let external = cluster
        .iter()
        .find(|doc| doc["kind"].as_str() == Some("ExternalSecret"))
        .unwrap();
    assert_eq!(
        external["spec"]["target"]["name"].as_str(),
        Some("db-password")
    );
    assert_eq!(
        external["spec"]["secretStoreRef"]["name"].as_str(),
        store["metadata"]["name"].as_str()
    );
    let remote = &external["spec"]["data"][0]["remoteRef"];
    assert_eq!(remote["key"].as_str(), Some("db-password"));
    assert_eq!(remote["version"].as_str(), Some("3"));
    let app = yaml_rust2::YamlLoader::load_from_str(
        &std::fs::read_to_string(out.join("app.yaml")).unwrap(),
    )
    .unwrap();
    let env = &app[0]["spec"]["template"]["spec"]["containers"][0]["env"][0];
    assert_eq!(
        env["valueFrom"]["secretKeyRef"]["name"].as_str(),
        Some("db-password")
    );
    assert!(text(&output.stdout).contains("external-secrets"));
    let paths: Vec<PathBuf> = files.iter().map(|(name, _)| out.join(name)).collect();
    let result = Command::new(kubernetes_validate())
        .args(["--strict", "-k", "1.37.0"])
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}{}",
        text(&result.stdout),
        text(&result.stderr)
    );
}

/// `[certbot.dns]` becomes a DNS-01 solver of the same provider on the
/// ClusterIssuer, for the DNS-01 names (the HTTP-01 route keeps the default
/// solver), its credential a Secret to create, never its value; a wildcard
/// host gets a Secret of its own and, for Nomad, Traefik's `HostRegexp`.
#[test]
fn dns_01_exports_as_a_cert_manager_solver_and_a_traefik_host_regexp() {
    let tree = repo().join("tests/configs/valid/dns-01");
    let tsig = "TopSecretValue42";
    let environment = [("DISPENSER_TEST_SECRET", tsig)];
    let out = tempfile::tempdir().unwrap();
    let output = fixtures::dispenser(
        &tree,
        &[
            "export",
            "kubernetes",
            "-c",
            "dispenser.toml",
            "-o",
            out.path().to_str().unwrap(),
            "--allow-lossy",
        ],
        &environment,
    );
    let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("dispenser-acme-dns"), "{printed}");
    let cluster = std::fs::read_to_string(out.path().join("cluster.yaml")).unwrap();
    let documents = yaml_rust2::YamlLoader::load_from_str(&cluster).unwrap();
    let issuer = documents
        .iter()
        .find(|doc| doc["kind"].as_str() == Some("ClusterIssuer"))
        .expect("a ClusterIssuer");
    let solvers = issuer["spec"]["acme"]["solvers"].as_vec().expect("solvers");
    assert_eq!(solvers.len(), 2, "{cluster}");
    assert!(!solvers[0]["http01"].is_badvalue(), "{cluster}");
    let rfc2136 = &solvers[1]["dns01"]["rfc2136"];
    assert_eq!(rfc2136["nameserver"].as_str(), Some("ns1.example.com:53"));
    assert_eq!(rfc2136["tsigKeyName"].as_str(), Some("dispenser-key"));
    assert_eq!(rfc2136["tsigAlgorithm"].as_str(), Some("HMACSHA512"));
    assert_eq!(
        rfc2136["tsigSecretSecretRef"]["name"].as_str(),
        Some("dispenser-acme-dns")
    );
    assert_eq!(
        solvers[1]["selector"]["dnsNames"][0].as_str(),
        Some("*.shop.example.com"),
        "{cluster}"
    );
    let shop = std::fs::read_to_string(out.path().join("shop.yaml")).unwrap();
    assert!(shop.contains("wildcard-shop-example-com-tls"), "{shop}");
    for (name, content) in written(out.path()) {
        assert!(!content.contains(tsig), "{name} holds the tsig secret");
    }
    assert!(!printed.contains(tsig), "{printed}");

    let nomad = tempfile::tempdir().unwrap();
    let output = fixtures::dispenser(
        &tree,
        &[
            "export",
            "nomad",
            "-c",
            "dispenser.toml",
            "-o",
            nomad.path().to_str().unwrap(),
            "--allow-lossy",
        ],
        &environment,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let job = written(nomad.path())
        .into_iter()
        .find(|(name, _)| name.contains("shop"))
        .expect("the shop job")
        .1;
    assert!(
        job.contains(r"HostRegexp(`^[a-z0-9-]+\\.shop\\.example\\.com$`)"),
        "{job}"
    );
}
