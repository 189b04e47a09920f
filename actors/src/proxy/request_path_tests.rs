//! The request path imports no actor: `server.rs`, `forward.rs`,
//! `upstream.rs`, `table.rs`, `guard.rs` and `maintenance.rs` name no actor module, no actor type and not
//! the actor framework, in a `use` or in a `crate::`/`super::` path. They
//! read the table and the certificate and challenge maps; actors write them.

use std::collections::BTreeSet;

/// The files a request goes through, with their text.
const REQUEST_PATH: [(&str, &str); 6] = [
    ("server.rs", include_str!("server.rs")),
    ("forward.rs", include_str!("forward.rs")),
    ("upstream.rs", include_str!("upstream.rs")),
    ("table.rs", include_str!("table.rs")),
    ("guard.rs", include_str!("guard.rs")),
    ("maintenance.rs", include_str!("maintenance.rs")),
];

/// Modules that hold actors (or talk to Docker), the actor types the request
/// path could reach through an allowed module, and the actor framework.
const ACTORS: [&str; 15] = [
    "supervisor",
    "service",
    "watcher",
    "cron",
    "ledger",
    "docker_events",
    "docker_watch",
    "engine",
    "registry",
    "router",
    "acme",
    "dev_ca",
    "control",
    "CertLoader",
    "actix",
];

/// The identifiers that `use` declarations and `crate::`/`super::` paths of
/// `source` name, comments left out.
fn named_in_paths(source: &str) -> BTreeSet<String> {
    let code: Vec<&str> = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect();
    let code = code.join("\n");
    let mut paths: Vec<&str> = Vec::new();
    for statement in code.split(';') {
        let starts = statement.match_indices("use ").map(|(at, _)| at);
        let declaration = starts
            .filter(|at| *at == 0 || statement[..*at].ends_with(char::is_whitespace))
            .last();
        if let Some(at) = declaration {
            paths.push(&statement[at + "use ".len()..]);
        }
    }
    for root in ["crate::", "super::"] {
        for (at, _) in code.match_indices(root) {
            let rest = &code[at..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            paths.push(&rest[..end]);
        }
    }
    paths
        .iter()
        .flat_map(|path| path.split(|c: char| !(c.is_alphanumeric() || c == '_')))
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

fn actors_named(source: &str) -> Vec<&'static str> {
    let named = named_in_paths(source);
    ACTORS
        .into_iter()
        .filter(|actor| named.contains(*actor))
        .collect()
}

#[test]
fn the_request_path_imports_no_actor() {
    for (file, source) in REQUEST_PATH {
        let found = actors_named(source);
        assert!(
            found.is_empty(),
            "proxy/{file} names {found:?}: the request path must not import an actor"
        );
    }
}

#[test]
fn the_scan_finds_actors_in_uses_groups_and_paths() {
    assert_eq!(
        actors_named("use crate::supervisor::Apply;"),
        vec!["supervisor"]
    );
    assert_eq!(
        actors_named("pub(crate) use super::{\n    router::EndpointChanged,\n    table,\n};"),
        vec!["router"]
    );
    assert_eq!(
        actors_named("use super::tls::{self, CertLoader};"),
        vec!["CertLoader"]
    );
    assert_eq!(actors_named("use actix::prelude::*;"), vec!["actix"]);
    assert_eq!(
        actors_named("fn f() { let _ = crate::service::STOP_GRACE; }"),
        vec!["service"]
    );
}

#[test]
fn the_scan_ignores_comments_and_allowed_modules() {
    let source = "// the router swaps the table\nuse super::table::SharedTable;\nuse actix_service::Service;\n/// see crate::supervisor\nfn f() {}\n";
    assert_eq!(actors_named(source), Vec::<&str>::new());
}
