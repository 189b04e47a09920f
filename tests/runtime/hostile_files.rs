//! Hostile files arriving on reload: non-UTF-8 bytes, a 10 MB config, a
//! secret file that is missing, a symlinked service folder. Each reload is
//! refused with a clear error naming the file, and the running container is
//! untouched (same id, same start time); the good files then reload as a no-op.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::{inspect, Daemon, Sandbox};

const BUSYBOX: &str = "dispenser-test/busybox:latest";

/// (id, StartedAt) of the service's container.
fn identity(sb: &Sandbox) -> (String, String) {
    let container = inspect(&sb.name("app"));
    (
        container["Id"].as_str().unwrap_or_default().to_string(),
        container["State"]["StartedAt"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Reloads, expects a refusal whose log names `expected`, and checks that
/// nothing changed.
fn refused(daemon: &Daemon, sb: &Sandbox, before: &(String, String), expected: &[&str]) {
    let refusals = daemon.log().matches("reload refused").count();
    daemon.reload();
    let log = daemon.log();
    assert_eq!(
        log.matches("reload refused").count(),
        refusals + 1,
        "the reload must be refused:\n{log}"
    );
    for text in expected {
        assert!(log.contains(text), "expected {text:?} in the log:\n{log}");
    }
    assert_eq!(
        &identity(sb),
        before,
        "the running container must be untouched"
    );
}

#[test]
fn hostile_files_on_reload_change_nothing() {
    let mut sb = Sandbox::new();
    sb.write("secrets/token", "s3cr3t-token-value\n");
    sb.write(
        "dispenser.vars",
        "token = { source = \"file\", path = \"secrets/token\" }\n",
    );
    sb.service(
        "app",
        BUSYBOX,
        "command = \"sleep 3600\"\n\n[env]\nTOKEN = \"${ token }\"\n",
    );
    let main = std::fs::read(sb.config()).expect("dispenser.toml");
    let service = std::fs::read(sb.path("app/service.toml")).expect("service.toml");
    let vars = std::fs::read(sb.path("dispenser.vars")).expect("dispenser.vars");
    let daemon = sb.start();
    let before = identity(&sb);
    assert!(!before.0.is_empty(), "the container runs");

    // Non-UTF-8 bytes in service.toml: the file, line and column.
    let mut bad = service.clone();
    bad.extend_from_slice(b"# caf\xe9\n");
    std::fs::write(sb.path("app/service.toml"), &bad).expect("write");
    let lines = service.split(|b| *b == b'\n').count();
    refused(
        &daemon,
        &sb,
        &before,
        &[
            "the file is not valid UTF-8",
            &format!("app/service.toml:{lines}:6"),
        ],
    );
    std::fs::write(sb.path("app/service.toml"), &service).expect("write");

    // A 10 MB dispenser.toml: refused by size, quickly.
    let mut huge = main.clone();
    while huge.len() < 10 << 20 {
        huge.extend_from_slice(b"# padding padding padding padding padding padding padding\n");
    }
    std::fs::write(sb.config(), &huge).expect("write");
    refused(&daemon, &sb, &before, &["the file is larger than 1 MiB"]);
    std::fs::write(sb.config(), &main).expect("write");

    // A secret reference to a file that is missing.
    sb.write(
        "dispenser.vars",
        "token = { source = \"file\", path = \"secrets/gone\" }\n",
    );
    refused(
        &daemon,
        &sb,
        &before,
        &[
            "cannot read secret file `secrets/gone`",
            "dispenser.vars:1:9",
        ],
    );
    std::fs::write(sb.path("dispenser.vars"), &vars).expect("write");

    // The service folder replaced by a symbolic link to the same files.
    std::fs::rename(sb.path("app"), sb.path("real-app")).expect("rename");
    std::os::unix::fs::symlink(sb.path("real-app"), sb.path("app")).expect("symlink");
    refused(
        &daemon,
        &sb,
        &before,
        &["is a symbolic link to `", "symbolic link"],
    );
    std::fs::remove_file(sb.path("app")).expect("remove the link");
    std::fs::rename(sb.path("real-app"), sb.path("app")).expect("rename");

    // The good files again: the reload applies and restarts nothing.
    daemon.reload();
    let log = daemon.log();
    assert_eq!(
        log.matches("reload refused").count(),
        4,
        "the good files must load:\n{log}"
    );
    assert_eq!(
        identity(&sb),
        before,
        "an unchanged reload restarts nothing"
    );
    assert!(
        !log.contains("s3cr3t-token-value"),
        "a secret leaked:\n{log}"
    );
    let env: BTreeMap<String, String> = inspect(&sb.name("app"))["Config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| pair.as_str()?.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    assert_eq!(
        env.get("TOKEN").map(String::as_str),
        Some("s3cr3t-token-value")
    );
    daemon.stop();
}

/// A template that would loop for hours arrives on reload. The
/// reload is refused within seconds, naming the file and line; the next
/// reload (the good file again) is not blocked, and `-s stop` stops the
/// daemon at once. Before, the reload rendered for hours and every later
/// reload, and the stop, waited for it.
#[test]
fn a_runaway_template_on_reload_is_refused_quickly() {
    let mut sb = Sandbox::new();
    sb.service("app", BUSYBOX, "command = \"sleep 3600\"\n");
    let service = std::fs::read_to_string(sb.path("app/service.toml")).expect("service.toml");
    let daemon = sb.start();
    let before = identity(&sb);

    let looping = format!(
        "{service}\n[env]\n{{% for i in range(100000) %}}\n{{% for j in range(100000) %}}\nX = \"${{ j }}\"\n{{% endfor %}}\n{{% endfor %}}\n"
    );
    sb.write("app/service.toml", &looping);
    let started = Instant::now();
    refused(
        &daemon,
        &sb,
        &before,
        &["template too costly", "app/service.toml:"],
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "the refusal took {took:?}");

    // The good file: this reload is not blocked, and restarts nothing.
    sb.write("app/service.toml", &service);
    daemon.reload();
    assert_eq!(identity(&sb), before);
    assert!(daemon.log().contains("plan applied"), "{}", daemon.log());

    let started = Instant::now();
    daemon.stop();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "the stop took {took:?}");
}

/// On the real daemon: a secret from the environment and a
/// text of dispenser.vars, both holding TOML lines that add a bind mount of
/// `/` when substituted as text, are the values of their `[env]` keys in
/// the container, which gets no mount. `--test` passes and prints neither.
#[test]
fn values_holding_toml_lines_reach_the_container_as_data() {
    const INJECTION: &str = "x\"\n[[volume]]\nsource = \"/\"\ntarget = \"/host\"\n#";
    let mut sb = Sandbox::new();
    sb.set_env("DISPENSER_TEST_INJECTION", INJECTION);
    sb.write(
        "dispenser.vars",
        &format!(
            "from_env = {{ source = \"env\", name = \"DISPENSER_TEST_INJECTION\" }}\nfrom_vars = {}\n",
            toml_string(INJECTION)
        ),
    );
    sb.service(
        "app",
        BUSYBOX,
        "command = \"sleep 3600\"\n\n[env]\nFROM_VARS = \"${ from_vars }\"\nFROM_ENV = \"${ from_env }\"\n",
    );
    let out = sb.cli(&["--test"]);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(!printed.contains("/host"), "{printed}");

    let daemon = sb.start();
    let container = inspect(&sb.name("app"));
    let mounts = container["Mounts"].as_array().cloned().unwrap_or_default();
    assert!(
        mounts.iter().all(|mount| mount["Destination"] != "/host"),
        "a value added a mount: {mounts:?}"
    );
    let env: BTreeMap<String, String> = container["Config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| pair.as_str()?.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    assert_eq!(env.get("FROM_VARS").map(String::as_str), Some(INJECTION));
    assert_eq!(env.get("FROM_ENV").map(String::as_str), Some(INJECTION));
    let log = daemon.stop();
    assert!(!log.contains("/host"), "a value was printed:\n{log}");
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}
