//! Runs `dispenser --test` on every tree under tests/configs: each valid tree
//! must pass, each invalid case must fail with exactly its `expected.txt` on
//! stderr. `UPDATE_SNAPSHOTS=1` rewrites the snapshots (review them by eye).

#[path = "common/fixtures.rs"]
#[allow(dead_code)] // reason: the fixtures serve three test binaries; this one uses part of them
mod fixtures;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fixtures::{case_folders, repo};

/// Secret values the trees read from the environment; they must never be printed.
const DB_PASSWORD: &str = "hunter2-Very-Secret";
const ENV_SECRET: &str = "TopSecretValue42";
/// The content of tests/configs/valid/stack/secrets/api_token (and of
/// invalid/secret-proxy-route/secrets/host).
const FILE_SECRET: &str = "not-a-real-token";
/// A value that, substituted as raw text as the last `[env]`
/// value, added a writable bind mount of the host's root.
const INJECTION: &str = "x\"\n[[volume]]\nsource = \"/\"\ntarget = \"/host\"\n#";

/// Runs `dispenser --test -c <relative config>` from the repository root.
fn run_test(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dispenser"))
        .current_dir(repo())
        .args(["--test", "-c"])
        .arg(config)
        .env_remove("RUST_LOG")
        // Google secrets fail the same way everywhere and never leave the
        // host: no credentials, no gcloud file, a metadata server and an API
        // endpoint on a closed local port.
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env("HOME", "/nonexistent")
        .env("GCE_METADATA_HOST", "127.0.0.1:1")
        .env("DISPENSER_SECRETMANAGER_ENDPOINT", "http://127.0.0.1:1")
        .env("DISPENSER_TEST_DB_PASSWORD", DB_PASSWORD)
        .env("DISPENSER_TEST_SECRET", ENV_SECRET)
        .env("DISPENSER_TEST_INJECTION", INJECTION)
        .output()
        .expect("the dispenser binary runs")
}

/// Sub-folders of `tests/configs/<kind>`, relative to the repository root, sorted.
fn cases(kind: &str) -> Vec<PathBuf> {
    case_folders(&Path::new("tests/configs").join(kind))
}

/// No secret value in the output, in any case (a host name is lowercased).
fn assert_no_secret(case: &Path, output: &Output) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for secret in [DB_PASSWORD, ENV_SECRET, FILE_SECRET, INJECTION, "/host"] {
        assert!(
            !text.to_lowercase().contains(&secret.to_lowercase()),
            "{}: a secret value was printed:\n{text}",
            case.display()
        );
    }
}

#[test]
fn every_valid_tree_passes() {
    let trees = cases("valid");
    assert!(trees.len() >= 3, "expected several valid trees");
    for tree in trees {
        let output = run_test(&tree.join("dispenser.toml"));
        assert_eq!(
            output.status.code(),
            Some(0),
            "{} failed:\n{}",
            tree.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "Dispenser config is ok.\n"
        );
        assert_no_secret(&tree, &output);
        // Warnings are snapshotted like errors: a tree that warns has its
        // `expected.txt`, and one that does not has none.
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let snapshot = repo().join(&tree).join("expected.txt");
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            if stderr.is_empty() {
                let _ = std::fs::remove_file(&snapshot);
            } else {
                std::fs::write(&snapshot, &stderr).unwrap();
            }
            continue;
        }
        let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
        assert_eq!(
            expected,
            stderr,
            "{}: the warnings differ from its expected.txt",
            tree.display()
        );
    }
}

#[test]
fn every_invalid_case_matches_its_snapshot() {
    let update = std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|value| value == "1");
    let cases = cases("invalid");
    assert!(cases.len() >= 18, "expected at least 18 invalid cases");
    let mut mismatches = Vec::new();
    for case in cases {
        let output = run_test(&case.join("dispenser.toml"));
        assert_eq!(
            output.status.code(),
            Some(1),
            "{} must fail",
            case.display()
        );
        assert!(
            output.stdout.is_empty(),
            "{}: nothing on stdout",
            case.display()
        );
        assert_no_secret(&case, &output);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let snapshot = repo().join(&case).join("expected.txt");
        if update {
            std::fs::write(&snapshot, &stderr).expect("the snapshot is writable");
            continue;
        }
        let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
        if expected != stderr {
            mismatches.push(format!(
                "--- {}\n--- expected:\n{expected}--- actual:\n{stderr}",
                case.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} snapshot(s) differ (UPDATE_SNAPSHOTS=1 rewrites them):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn a_secret_on_an_error_line_is_never_printed() {
    let case = Path::new("tests/configs/invalid/secret-on-error-line");
    let output = run_test(&case.join("dispenser.toml"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The error is reported on the line that uses the secret, showing the
    // source expression, not the value.
    assert!(stderr.contains("memory = \"${limit}\""), "{stderr}");
    assert_no_secret(case, &output);
}

/// A secret used as a name, a path, a host or a key, in every diagnostic
/// that prints such a value: each prints `<secret VARIABLE>` instead, as many
/// times as the case has such diagnostics, and never the value.
#[test]
fn a_secret_used_as_a_name_is_masked_in_every_diagnostic() {
    let cases = [
        // Two networks declared twice, duplicate service name and its help,
        // a port bound by a service named by it, an unknown dependency (named
        // by it and by a key holding it), an undeclared network, a restart
        // policy and a dependency condition.
        ("secret-as-name", "<secret name>", 9),
        // A time zone, an env key, two volume sources (messages and help);
        // a cron field, a duration unit and an image are not quoted.
        ("secret-in-values", "<secret name>", 6),
        ("secret-in-cycle", "<secret name>", 2),
        // A missing folder (message and help), a symbolic link, and the
        // error and file name of a service file in a folder it names.
        ("secret-service-path", "<secret name>", 4),
        // A duplicate route's host and path; a missing certificate file.
        ("secret-proxy-route", "<secret host>", 3),
    ];
    for (case, mask, at_least) in cases {
        let case = Path::new("tests/configs/invalid").join(case);
        let output = run_test(&case.join("dispenser.toml"));
        assert_eq!(
            output.status.code(),
            Some(1),
            "{} must fail",
            case.display()
        );
        assert_no_secret(&case, &output);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let count = stderr.matches(mask).count();
        assert!(
            count >= at_least,
            "{}: {count} masks, expected at least {at_least}:\n{stderr}",
            case.display()
        );
    }
}

#[test]
fn a_missing_config_file_is_reported() {
    let output = run_test(Path::new("tests/configs/nowhere/dispenser.toml"));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: file not found\n  --> tests/configs/nowhere/dispenser.toml\nhelp: create tests/configs/nowhere/dispenser.toml or fix the path\n\n1 error found.\n"
    );
}

/// The injection, from an env secret and from dispenser.vars,
/// used as `[env]` values: `--test` passes, and the plan holds the text as
/// the values of those two keys and no volume (before the fix, raw
/// substitution gave the service a bind mount of `/` at `/host`).
#[test]
fn a_value_holding_toml_lines_is_data() {
    let tree = Path::new("tests/configs/valid/injected-values");
    let output = run_test(&tree.join("dispenser.toml"));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_no_secret(tree, &output);

    // The plan, through the same loader (the env secret as a file secret:
    // the test process's environment is shared).
    let dir = tempfile::tempdir().expect("a temporary folder");
    let root = dir.path();
    std::fs::create_dir_all(root.join("app")).expect("mkdir");
    for file in ["dispenser.toml", "app/service.toml"] {
        std::fs::copy(repo().join(tree).join(file), root.join(file)).expect("copy");
    }
    let vars = std::fs::read_to_string(repo().join(tree).join("dispenser.vars"))
        .expect("dispenser.vars")
        .replace(
            "{ source = \"env\", name = \"DISPENSER_TEST_INJECTION\" }",
            "{ source = \"file\", path = \"injection.txt\" }",
        );
    std::fs::write(root.join("dispenser.vars"), vars).expect("write");
    std::fs::write(root.join("injection.txt"), INJECTION).expect("write");
    let loaded = dispenser::config::load(
        &root.join("dispenser.toml"),
        &dispenser::config::LocalSecrets::new(root),
    )
    .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    let app = &loaded.plan.services["app"];
    assert!(
        app.container.volumes.is_empty(),
        "a value added a volume: {:?}",
        app.container.volumes
    );
    let env: Vec<(&str, &str)> = app
        .container
        .env
        .iter()
        .map(|(key, value)| (key.as_str(), value.expose()))
        .collect();
    assert_eq!(env, [("FROM_ENV", INJECTION), ("FROM_VARS", INJECTION)]);
}

/// Two nested loops of 100,000 turns stop at the budget, in
/// well under a second, with the error at the file and line.
#[test]
fn a_runaway_template_is_stopped_quickly() {
    let case = Path::new("tests/configs/invalid/template-too-costly");
    let started = std::time::Instant::now();
    let output = run_test(&case.join("dispenser.toml"));
    let elapsed = started.elapsed();
    assert_eq!(output.status.code(), Some(1));
    assert!(elapsed < std::time::Duration::from_secs(10), "{elapsed:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error: template too costly"), "{stderr}");
    assert!(
        stderr.contains("template-too-costly/app/service.toml:"),
        "{stderr}"
    );
}
