//! A secret used as a name, a path, a host or a key: every diagnostic that
//! prints such a value prints `<secret NAME>` instead, never the value (in
//! any case: hosts are lowercased), however the value got there.

use std::path::Path;

use super::secrets::LocalSecrets;
use super::*;

/// The value of the file secret `s`: a valid service, network and host name.
const SECRET: &str = "Zq9-Masked-Name";
const VARS: &str = "s = { source = \"file\", path = \"secret.txt\" }\n";

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// Loads a tree of `files` (with the secret and `dispenser.vars` unless
/// given) and returns its report, which must be an error or a warning.
fn report(files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let root = dir.path();
    write(root, "secret.txt", SECRET);
    write(root, "dispenser.vars", VARS);
    for (relative, text) in files {
        write(root, relative, text);
    }
    let diagnostics = match load(&root.join("dispenser.toml"), &LocalSecrets::new(root)) {
        Ok(loaded) => loaded.warnings,
        Err(diagnostics) => diagnostics,
    };
    assert!(!diagnostics.items.is_empty(), "no diagnostic for {files:?}");
    diagnostics.to_string()
}

/// The report holds `expected` (with the mask) and not the secret.
fn assert_masked(files: &[(&str, &str)], expected: &[&str]) {
    let text = report(files);
    assert!(
        !text.to_lowercase().contains(&SECRET.to_lowercase()),
        "the secret was printed:\n{text}"
    );
    for part in expected {
        assert!(text.contains(part), "{part:?} missing in:\n{text}");
    }
}

fn services(paths: &[&str]) -> String {
    paths
        .iter()
        .map(|path| format!("[[service]]\npath = \"{path}\"\n\n"))
        .collect()
}

fn service(name: &str, rest: &str) -> String {
    format!("[service]\nname = \"{name}\"\nimage = \"nginx\"\n{rest}")
}

#[test]
fn names_of_services_networks_and_dependencies() {
    let main = format!(
        "[[network]]\nname = \"${{ s }}\"\n\n[[network]]\nname = \"${{ s }}\"\n\n{}",
        services(&["a", "b", "c"])
    );
    let a = service(
        "${ s }",
        "\n[[port]]\nhost = 81\ncontainer = 80\n\n[[network]]\nname = \"x${ s }\"\n\n[depends_on]\n\"${ s }-db\" = \"started\"\n",
    );
    let b = service("${ s }", "");
    let c = service("c", "\n[[port]]\nhost = 81\ncontainer = 80\n");
    assert_masked(
        &[
            ("dispenser.toml", &main),
            ("a/service.toml", &a),
            ("b/service.toml", &b),
            ("c/service.toml", &c),
        ],
        &[
            "network `<secret s>` is declared twice",
            "network `x<secret s>` is not declared in dispenser.toml",
            "service name `<secret s>` is used twice",
            "help: `<secret s>` is also the name in",
            "host port 81 is already bound by service `<secret s>`",
            "service `<secret s>` depends on unknown service `<secret s>-db`",
        ],
    );
}

#[test]
fn a_dependency_cycle_and_a_suggestion() {
    let a = service("${ s }", "\n[depends_on]\nb = \"started\"\n");
    // `Zq9-Masked-Nam` is one letter off a secret name: no "did you mean".
    let b = service(
        "b",
        "\n[depends_on]\n\"${ s }\" = \"started\"\nZq9-Masked-Nam = \"started\"\n",
    );
    let text = report(&[
        ("dispenser.toml", &services(&["a", "b"])),
        ("a/service.toml", &a),
        ("b/service.toml", &b),
    ]);
    assert!(
        text.contains("dependency cycle: <secret s> -> b -> <secret s>"),
        "{text}"
    );
    assert!(!text.contains("did you mean"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

#[test]
fn service_paths_and_the_files_under_them() {
    let main = services(&["${ s }", "${ s }-app"]);
    let app = service("app", "memory = \"lots\"\n");
    assert_masked(
        &[
            ("dispenser.toml", &main),
            (&format!("{SECRET}-app/service.toml"), &app),
        ],
        &[
            "no service.toml in `<secret s>`",
            "/<secret s>/service.toml or fix the path",
            "/<secret s>-app/service.toml:4:10",
        ],
    );
}

#[test]
fn a_service_path_through_a_link() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let root = dir.path();
    write(root, "secret.txt", SECRET);
    write(root, "dispenser.vars", VARS);
    write(root, "dispenser.toml", &services(&["${ s }"]));
    write(root, "real/service.toml", &service("real", ""));
    std::os::unix::fs::symlink(root.join("real"), root.join(SECRET)).expect("symlink");
    let text = load(&root.join("dispenser.toml"), &LocalSecrets::new(root))
        .expect_err("refused")
        .to_string();
    assert!(text.contains("/<secret s>` is a symbolic link"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

#[test]
fn proxy_hosts_paths_and_certificate_files() {
    let route = "\n[proxy]\nhost = \"${ s }.test\"\npath = \"/${ s }\"\nservice_port = 80\n";
    let green = format!("{route}cert_file = \"${{ s }}.pem\"\nkey_file = \"${{ s }}.key\"\n");
    assert_masked(
        &[
            ("dispenser.toml", &services(&["blue", "green"])),
            ("blue/service.toml", &service("blue", route)),
            ("green/service.toml", &service("green", &green)),
        ],
        &[
            "proxy host `<secret s>.test` with path `/<secret s>` is already claimed by service `blue`",
            "file `<secret s>.pem` does not exist",
            "file `<secret s>.key` does not exist",
        ],
    );
}

#[test]
fn two_certificates_on_a_secret_host() {
    let route = |path: &str, cert: &str| {
        format!("\n[proxy]\nhost = \"${{ s }}.test\"\npath = \"{path}\"\nservice_port = 80\ncert_file = \"{cert}\"\nkey_file = \"k.pem\"\n")
    };
    assert_masked(
        &[
            ("dispenser.toml", &services(&["one", "two"])),
            (
                "one/service.toml",
                &service("one", &route("/", "${ s }.pem")),
            ),
            ("one/k.pem", "x"),
            (&format!("one/{SECRET}.pem"), "x"),
            ("two/service.toml", &service("two", &route("/d", "b.pem"))),
            ("two/k.pem", "x"),
            ("two/b.pem", "x"),
        ],
        &[
            "proxy host `<secret s>.test` is given two certificates",
            "/one/<secret s>.pem` at ",
            "/one/service.toml:9:13",
            "every route of `<secret s>.test`",
        ],
    );
}

#[test]
fn words_zones_keys_and_volume_sources() {
    let main = format!("[daemon]\ntimezone = \"${{ s }}\"\n\n{}", services(&["a"]));
    let a = service(
        "a",
        "restart = \"${ s }\"\n\n[[volume]]\nsource = \"${ s }/data\"\ntarget = \"/data\"\n\n[env]\n\"${ s }\" = [1]\n\n[[extra_host]]\nhostname = \"h\"\nipv4 = \"${ s }\"\n\n[depends_on]\nb = \"${ s }\"\n",
    );
    assert_masked(
        &[("dispenser.toml", &main), ("a/service.toml", &a)],
        &[
            "unknown time zone `<secret s>`",
            "unknown restart policy `<secret s>`",
            "`<secret s>/data` is read as a path relative to the service folder",
            "write `./<secret s>/data` to say so",
            "env `<secret s>` must be a string",
            "invalid address `<secret s>`",
            "unknown dependency condition `<secret s>`",
        ],
    );
}

#[test]
fn reasons_that_would_quote_the_value() {
    let a = service(
        "a",
        "\n[dispenser]\ncron = \"${ s } * * * *\"\n\n[healthcheck]\ntest = \"true\"\ninterval = \"5${ s }\"\n",
    );
    let b = "[service]\nname = \"b\"\nimage = \"${ s }\"\n";
    assert_masked(
        &[
            ("dispenser.toml", &services(&["a", "b"])),
            ("a/service.toml", &a),
            ("b/service.toml", b),
        ],
        &[
            "invalid cron expression: the expression does not parse",
            "invalid duration: expected a duration such as",
            "invalid image reference: the value does not parse",
        ],
    );
}

/// However the value reaches the name: through a filter, an overlay
/// variable, a `{% set %}`, or written literally where another file takes
/// it from the secret (the duplicate would tell the value).
#[test]
fn transformed_derived_and_literal_copies_are_masked() {
    let a = service("${ s | lower }-a", "");
    let b = service("${ derived }", "");
    // Transformed out of reach of the value check, in a line of its own.
    let c =
        "{% set n = s | replace(\"-\", \"\") %}\n[service]\nname = \"${ n }\"\nimage = \"nginx\"\n";
    let d = service(&SECRET.to_lowercase(), "");
    let e = service("${ s | lower }", "");
    let text = report(&[
        (
            "dispenser.toml",
            &services(&["a", "a2", "b", "b2", "c", "c2", "d", "e"]),
        ),
        ("x.dispenser.vars", "derived = \"${ s }-b\"\n"),
        ("a/service.toml", &a),
        ("a2/service.toml", &a),
        ("b/service.toml", &b),
        ("b2/service.toml", &b),
        ("c/service.toml", c),
        ("c2/service.toml", c),
        ("d/service.toml", &d),
        ("e/service.toml", &e),
    ]);
    for value in [
        SECRET.to_lowercase(),
        SECRET.replace('-', "").to_lowercase(),
    ] {
        assert!(!text.to_lowercase().contains(&value), "{text}");
    }
    for part in [
        "service name `<secret s>-a` is used twice",
        "service name `<secret derived>` is used twice",
        "service name `<template value>` is used twice",
        "service name `<secret s>` is used twice",
    ] {
        assert!(text.contains(part), "{part:?} missing in:\n{text}");
    }
}

/// Values of plain variables are not secrets: they are shown.
#[test]
fn plain_variables_are_shown() {
    let text = report(&[
        ("dispenser.vars", "app = \"shop\"\n"),
        ("dispenser.toml", &services(&["a", "b"])),
        ("a/service.toml", &service("${ app }", "")),
        ("b/service.toml", &service("${ app }", "")),
    ]);
    assert!(text.contains("service name `shop` is used twice"), "{text}");
}
