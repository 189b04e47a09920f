//! `dispenser import compose` through the real binary: every tree under
//! tests/import/valid imports, prints its `expected.txt` on stderr (the notes),
//! and its output passes `dispenser --test`; every
//! case under tests/import/invalid prints exactly its `expected.txt` on
//! stderr (its optional `args` file holds extra flags, such as
//! `--allow-lossy`). `UPDATE_SNAPSHOTS=1` rewrites the snapshots (review them
//! by eye).

#[path = "common/fixtures.rs"]
mod fixtures;

use std::path::{Path, PathBuf};
use std::process::Output;

use fixtures::{case_folders, files_under, repo, text};

/// What the variables the fixtures read from the environment hold at `--test`.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("DB_PASSWORD", "env-password-value"),
    ("STRIPE_API_KEY", "env-stripe-key"),
    ("SESSION_SECRET", "env-session-secret"),
    ("ADMIN_PASSWORD", "env-admin-password"),
    ("LOG_LEVEL", "info"),
];
/// Secret values written in the fixtures' own files, which no output may hold.
const FIXTURE_SECRETS: &[&str] = &[
    "dotenv-password-value",
    "not-for-version-control",
    "not-a-real-password",
];

fn dispenser(current_dir: &Path, args: &[&str]) -> Output {
    fixtures::dispenser(current_dir, args, ENVIRONMENT)
}

/// Sub-folders of `tests/import/<kind>`, sorted.
fn cases(kind: &str) -> Vec<PathBuf> {
    case_folders(&Path::new("tests/import").join(kind))
        .into_iter()
        .map(|case| repo().join(case))
        .collect()
}

/// Imports `case/compose.yaml` into `out` with `extra` flags, from the case's folder.
fn import(case: &Path, out: &Path, extra: &[&str]) -> Output {
    let out = out.to_str().expect("a UTF-8 temp path");
    let mut args = vec!["import", "compose", "compose.yaml", "-o", out];
    args.extend_from_slice(extra);
    dispenser(case, &args)
}

/// The output loads through the same front-end as `dispenser --test`.
fn assert_passes_test(case: &Path, out: &Path) {
    let config = out.join("dispenser.toml");
    let output = dispenser(&repo(), &["--test", "-c", config.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}: the output does not pass --test:\n{}",
        case.display(),
        text(&output.stderr)
    );
    assert!(text(&output.stdout).contains("Dispenser config is ok."));
}

fn assert_no_fixture_secret(case: &Path, out: &Path, printed: &str) {
    for (path, content) in files_under(out) {
        for secret in FIXTURE_SECRETS {
            assert!(
                !content.contains(secret),
                "{}: {} holds a secret value:\n{content}",
                case.display(),
                path.display()
            );
        }
    }
    for secret in FIXTURE_SECRETS {
        assert!(
            !printed.contains(secret),
            "{}: printed a secret",
            case.display()
        );
    }
}

#[test]
fn every_valid_compose_file_imports_and_passes_test() {
    let trees = cases("valid");
    assert!(!trees.is_empty());
    for tree in trees {
        let out = tempfile::tempdir().unwrap();
        let output = import(&tree, out.path(), &[]);
        let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(output.status.success(), "{}: {printed}", tree.display());
        // The notes (secrets moved to the environment) are a snapshot too.
        let snapshot = tree.join("expected.txt");
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&snapshot, &output.stderr).unwrap();
        }
        let expected = std::fs::read_to_string(&snapshot)
            .unwrap_or_else(|_| panic!("{} has no expected.txt", tree.display()));
        assert_eq!(
            text(&output.stderr),
            expected,
            "{}: stderr differs",
            tree.display()
        );
        assert_no_fixture_secret(&tree, out.path(), &printed);
        assert_passes_test(&tree, out.path());
    }
}

#[test]
fn the_team_stack_maps_every_key() {
    let tree = repo().join("tests/import/valid/team-stack");
    let out = tempfile::tempdir().unwrap();
    assert!(import(&tree, out.path(), &[]).status.success());
    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap();
    let api = read("api/service.toml");
    // The anchor's defaults, the long depends_on, the env file and the secret.
    for expected in [
        "restart = \"unless-stopped\"",
        "stop_grace_period = \"20s\"",
        "\"db\" = \"healthy\"",
        "\"migrate\" = \"completed\"",
        "\"GREETING\" = \"hello world\"",
        "\"FEATURE_FLAGS\" = \"\"",
        "\"STRIPE_API_KEY\" = \"${ stripe_api_key }\"",
        "\"SESSION_SECRET\" = \"${ session_secret }\"",
    ] {
        assert!(api.contains(expected), "{expected} missing:\n{api}");
    }
    let web = read("web/service.toml");
    assert!(
        web.contains("host = ${ web_port }\ncontainer = 80"),
        "{web}"
    );
    assert!(web.contains("host = 8443\ncontainer = 443"), "{web}");
    let vars = read("dispenser.vars");
    assert!(vars.contains("db_password = { source = \"env\", name = \"DB_PASSWORD\" }"));
    assert!(
        vars.contains("api_tag = \"1.4.3\""),
        "the .env value wins: {vars}"
    );
    assert!(read("dispenser.toml").contains("name = \"backend\"\ninternal = true"));
    // `$$` is a literal `$`, kept from Dispenser's templating.
    assert!(read("db/service.toml").contains("pg_isready -U ${ \"${\" }POSTGRES_USER}"));
}

#[test]
fn every_invalid_case_matches_its_snapshot() {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let cases = cases("invalid");
    assert!(cases.len() >= 5);
    for case in cases {
        let args = std::fs::read_to_string(case.join("args")).unwrap_or_default();
        let extra: Vec<&str> = args.split_whitespace().collect();
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("out");
        let output = import(&case, &target, &extra);
        let stderr = text(&output.stderr);
        let snapshot = case.join("expected.txt");
        if update {
            std::fs::write(&snapshot, &stderr).unwrap();
        }
        let expected = std::fs::read_to_string(&snapshot)
            .unwrap_or_else(|_| panic!("{} has no expected.txt", case.display()));
        assert_eq!(stderr, expected, "{}: stderr differs", case.display());
        assert_no_fixture_secret(&case, out.path(), &stderr);
        if extra.contains(&"--allow-lossy") {
            assert!(output.status.success(), "{}: {stderr}", case.display());
            assert_passes_test(&case, &target);
        } else {
            assert_eq!(output.status.code(), Some(1), "{}", case.display());
            assert!(
                !target.exists(),
                "{}: a refused import wrote files",
                case.display()
            );
        }
    }
}

#[test]
fn an_existing_configuration_is_never_overwritten() {
    let tree = repo().join("tests/import/valid/team-stack");
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("dispenser.toml"), "# mine\n").unwrap();
    let output = import(&tree, out.path(), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("exists; import into an empty folder"));
    assert_eq!(
        std::fs::read_to_string(out.path().join("dispenser.toml")).unwrap(),
        "# mine\n"
    );
}

#[test]
fn an_existing_service_file_is_never_overwritten() {
    let tree = repo().join("tests/import/valid/team-stack");
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir(out.path().join("web")).unwrap();
    std::fs::write(out.path().join("web/service.toml"), "# mine\n").unwrap();
    let output = import(&tree, out.path(), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("web/service.toml` exists"));
    assert!(!out.path().join("dispenser.toml").exists());
}
