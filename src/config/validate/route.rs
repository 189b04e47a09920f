//! The `[proxy]` table of service.toml: the service's route (its names,
//! path, port, health path), its rules (redirects, prefix, basic auth,
//! allow-list, error pages) and its TLS source. Pure: `cert_file` and `key_file`
//! are checked from what [`FileFacts`] holds of them.

use std::path::{Path, PathBuf};

use dispenser_actors::plan::{
    AllowList, BasicAuth, ErrorPages, HtpasswdError, HtpasswdUser, Route, RouteRules, TlsSource,
    ERROR_PAGE_FILES,
};
use dispenser_actors::proxy::tls::{MAX_PEM_FILE_BYTES, MAX_PEM_FILE_SIZE_TEXT};

use super::field::{challenge, resolve};
use crate::config::check::FileCheck;
use crate::config::file::RouteTable;
use crate::config::files::{FileFacts, FileKind};

/// What both keys of a certificate pair say when only one is set.
const SET_BOTH: &str = "set both `cert_file` and `key_file`, or neither for automatic certificates";

/// `[proxy]`: the route, its host lower-cased and its path without a
/// trailing `/`, and its rules (`rules`).
pub(super) fn route(
    check: &mut FileCheck<'_>,
    table: &RouteTable,
    folder: &Path,
    facts: &FileFacts,
) -> Option<Route> {
    let mut names = hosts(check, &table.host);
    let mut path = table.path.clone().unwrap_or_else(|| "/".to_string());
    if !path.starts_with('/') {
        check.error("proxy.path", "`path` must start with `/`", "relative path");
    }
    while path.len() > 1 && path.ends_with('/') {
        path.pop();
    }
    if table.service_port == 0 {
        check.error(
            "proxy.service_port",
            "`service_port` must not be 0",
            "zero port",
        );
    }
    if let Some(health) = &table.health_path {
        if !health.starts_with('/') {
            check.error(
                "proxy.health_path",
                "`health_path` must start with `/`",
                "relative path",
            );
        }
    }
    let tls = tls(check, table, folder, facts);
    let challenge = table
        .challenge
        .as_deref()
        .and_then(|word| challenge(check, "proxy.challenge", word));
    if challenge.is_some() && matches!(tls, TlsSource::Manual { .. }) {
        check.error(
            "proxy.challenge",
            "`challenge` applies to certificates from ACME, and this route names `cert_file` and `key_file`",
            "no ACME certificate here",
        );
    }
    let redirect_from = redirect_from(check, table.redirect_from.as_deref(), &names);
    let mut rules = RouteRules {
        aliases: Vec::new(),
        redirect_from,
        strip_prefix: table.strip_prefix.unwrap_or(false),
        basic_auth: table
            .basic_auth
            .as_deref()
            .and_then(|lines| basic_auth(check, lines)),
        allow: table.allow.as_deref().and_then(|list| allow(check, list)),
        error_pages: table
            .error_pages
            .as_deref()
            .map(|written| error_pages(check, written, folder, facts))
            .unwrap_or_default(),
    };
    // No valid name (reported): no route for the cross-service checks.
    if names.is_empty() {
        return None;
    }
    let host = names.remove(0);
    rules.aliases = names;
    Some(Route {
        host,
        path,
        service_port: table.service_port,
        health_path: table.health_path.clone(),
        tls,
        challenge,
        rules,
    })
}

/// Each name `[proxy]` writes in `host` and `redirect_from`, trimmed and
/// lower-cased as validation keeps it, with its key path.
pub(crate) fn route_name_paths(table: &RouteTable) -> Vec<(String, String)> {
    let normal = |name: &str| name.trim().to_ascii_lowercase();
    let mut names: Vec<(String, String)> = match &table.host {
        toml::Value::String(name) => vec![(normal(name), "proxy.host".to_string())],
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| {
                Some((normal(item.as_str()?), format!("proxy.host[{index}]")))
            })
            .collect(),
        _ => Vec::new(),
    };
    for (index, name) in table.redirect_from.iter().flatten().enumerate() {
        names.push((normal(name), format!("proxy.redirect_from[{index}]")));
    }
    names
}

/// `host`: a name or a non-empty list of names, each a bare host name,
/// lower-cased, none twice.
fn hosts(check: &mut FileCheck<'_>, value: &toml::Value) -> Vec<String> {
    let written: Vec<(String, Option<&str>)> = match value {
        toml::Value::String(name) => vec![("proxy.host".to_string(), Some(name.as_str()))],
        toml::Value::Array(items) if items.is_empty() => {
            check
                .error("proxy.host", "`host` lists no name", "empty list")
                .help = Some("write one name, or a list of the names the route serves".into());
            return Vec::new();
        }
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| (format!("proxy.host[{index}]"), item.as_str()))
            .collect(),
        _ => {
            check
                .error(
                    "proxy.host",
                    "`host` must be a name or a list of names",
                    "not a string",
                )
                .help = Some("`host = \"app.example.com\"` or `host = [\"app.example.com\", \"app.example.net\"]`".into());
            return Vec::new();
        }
    };
    let mut names: Vec<String> = Vec::with_capacity(written.len());
    for (path, name) in written {
        let Some(name) = name else {
            check.error(
                &path,
                "every name in `host` must be a string",
                "not a string",
            );
            continue;
        };
        let Some(name) = host_name(check, &path, "host", name) else {
            continue;
        };
        if names.contains(&name) {
            check.error(
                &path,
                format!("the route names{} twice", check.shown(&path, &name)),
                "listed twice",
            );
            continue;
        }
        names.push(name);
    }
    names
}

/// One name of `key` at `path`, lower-cased, when it is a bare host name.
fn host_name(check: &mut FileCheck<'_>, path: &str, key: &str, name: &str) -> Option<String> {
    let name = name.trim().to_ascii_lowercase();
    // `host` may be a wildcard: `*.` and then a name (one label stands for `*`).
    let bare = match name.strip_prefix("*.") {
        Some(parent) if key == "host" => parent,
        _ => name.as_str(),
    };
    let ok = !bare.is_empty()
        && bare.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !ok {
        check
            .error(
                path,
                format!("`{key}` must hold bare host names"),
                "not a host name",
            )
            .help =
            Some("write only the name, without scheme, port or path: `app.example.com`".into());
        return None;
    }
    Some(name)
}

/// `redirect_from`: bare host names the route does not serve, none twice.
fn redirect_from(
    check: &mut FileCheck<'_>,
    written: Option<&[String]>,
    served: &[String],
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (index, name) in written.unwrap_or_default().iter().enumerate() {
        let path = format!("proxy.redirect_from[{index}]");
        let Some(name) = host_name(check, &path, "redirect_from", name) else {
            continue;
        };
        if served.contains(&name) {
            check
                .error(
                    &path,
                    format!(
                        "the route serves{} and redirects from it",
                        check.shown(&path, &name)
                    ),
                    "also in `host`",
                )
                .help =
                Some("a name is either served (`host`) or redirected (`redirect_from`)".into());
            continue;
        }
        if names.contains(&name) {
            check.error(
                &path,
                format!("`redirect_from` names{} twice", check.shown(&path, &name)),
                "listed twice",
            );
            continue;
        }
        names.push(name);
    }
    names
}

/// `basic_auth`: htpasswd lines with bcrypt hashes, one per user. A line
/// may come from a secret: no message quotes it.
fn basic_auth(check: &mut FileCheck<'_>, lines: &[String]) -> Option<BasicAuth> {
    if lines.is_empty() {
        check
            .error(
                "proxy.basic_auth",
                "`basic_auth` lists no user",
                "empty list",
            )
            .help =
            Some("add `user:hash` lines from `htpasswd -nB user`, or remove the key".into());
        return None;
    }
    let mut users: Vec<HtpasswdUser> = Vec::with_capacity(lines.len());
    let errors_before = check.error_count();
    for (index, line) in lines.iter().enumerate() {
        let path = format!("proxy.basic_auth[{index}]");
        match HtpasswdUser::parse(line) {
            Ok(user) if users.iter().any(|other| other.user == user.user) => {
                check.error(
                    &path,
                    format!(
                        "user{} has two lines in `basic_auth`",
                        check.shown(&path, &user.user)
                    ),
                    "second line",
                );
            }
            Ok(user) => users.push(user),
            Err(err) => {
                let help = match err {
                    HtpasswdError::NotBcrypt => {
                        "only bcrypt hashes are accepted (`$2y$...`): make the line with `htpasswd -nB user`"
                    }
                    HtpasswdError::NoColon | HtpasswdError::EmptyUser => {
                        "write `user:hash`, as `htpasswd -nB user` prints it"
                    }
                };
                check
                    .error(
                        &path,
                        format!("`basic_auth` line {} is refused: {err}", index + 1),
                        "not an htpasswd line",
                    )
                    .help = Some(help.into());
            }
        }
    }
    (check.error_count() == errors_before).then_some(BasicAuth { users })
}

/// `allow`: addresses and networks in CIDR notation, IPv4 or IPv6.
fn allow(check: &mut FileCheck<'_>, list: &[String]) -> Option<AllowList> {
    if list.is_empty() {
        check
            .error("proxy.allow", "`allow` lists no network", "empty list")
            .help =
            Some("an empty list would refuse everyone: list networks, or remove the key".into());
        return None;
    }
    let mut networks = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate() {
        let path = format!("proxy.allow[{index}]");
        match AllowList::parse_entry(entry) {
            Some(network) => networks.push(network),
            None => {
                check
                    .error(
                        &path,
                        format!(
                            "{} is not an IP address or network",
                            check.shown(&path, entry).trim_start()
                        ),
                        "not an address",
                    )
                    .help = Some("write an address or a network in CIDR notation: `10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`".into());
            }
        }
    }
    (networks.len() == list.len()).then_some(AllowList(networks))
}

/// `error_pages`: a folder holding `502.html`, `503.html` and `504.html`,
/// at least one of them, each a readable UTF-8 file.
fn error_pages(
    check: &mut FileCheck<'_>,
    written: &str,
    folder: &Path,
    facts: &FileFacts,
) -> ErrorPages {
    let path = "proxy.error_pages";
    let pages_folder = resolve(folder, written);
    let shown = check.shown(path, written);
    let mut pages = ErrorPages::default();
    let problem = match &facts.get(&pages_folder).kind {
        FileKind::Folder => None,
        FileKind::Missing => Some(format!("folder{shown} does not exist")),
        FileKind::Unreadable(error) => Some(format!("cannot read folder{shown}: {error}")),
        FileKind::File { .. } | FileKind::Special => Some(format!("{shown} is not a folder")),
    };
    if let Some(message) = problem {
        check.error(path, message.trim_start(), "not a folder").help = Some(
            "name a folder, relative to the service folder, holding 502.html, 503.html or 504.html"
                .into(),
        );
        return pages;
    }
    let mut found = 0;
    for (name, status) in ERROR_PAGE_FILES {
        let fact = facts.get(&pages_folder.join(name));
        if fact.kind == FileKind::Missing {
            continue;
        }
        found += 1;
        match fact.text() {
            Ok(page) => pages.set(status, page),
            Err(error) => {
                check.error(
                    path,
                    format!("cannot read `{name}` in{shown}: {error}"),
                    "unreadable page",
                );
            }
        }
    }
    if found == 0 {
        check.error(
            path,
            format!("folder{shown} holds none of 502.html, 503.html and 504.html"),
            "no page",
        );
    }
    pages
}

/// `cert_file` and `key_file`: both (a manual certificate) or neither
/// (an automatic one).
fn tls(
    check: &mut FileCheck<'_>,
    table: &RouteTable,
    folder: &Path,
    facts: &FileFacts,
) -> TlsSource {
    match (&table.cert_file, &table.key_file) {
        (None, None) => TlsSource::Automatic,
        (Some(_), None) => {
            check
                .error(
                    "proxy.cert_file",
                    "`cert_file` is set without `key_file`",
                    "no key_file",
                )
                .help = Some(SET_BOTH.into());
            TlsSource::Automatic
        }
        (None, Some(_)) => {
            check
                .error(
                    "proxy.key_file",
                    "`key_file` is set without `cert_file`",
                    "no cert_file",
                )
                .help = Some(SET_BOTH.into());
            TlsSource::Automatic
        }
        (Some(cert), Some(key)) => {
            let cert_file = pem_file(check, "proxy.cert_file", cert, folder, facts);
            let key_file = pem_file(check, "proxy.key_file", key, folder, facts);
            TlsSource::Manual {
                cert_file,
                key_file,
            }
        }
    }
}

/// A `cert_file` or `key_file`: it must exist and, as the proxy reads it,
/// be a regular file (a link is followed to its target) of at most
/// [`MAX_PEM_FILE_BYTES`]. Only its metadata matters here.
fn pem_file(
    check: &mut FileCheck<'_>,
    path: &str,
    value: &str,
    folder: &Path,
    facts: &FileFacts,
) -> PathBuf {
    let full = resolve(folder, value);
    let shown = check.shown(path, value);
    let problem = match &facts.get(&full).kind {
        FileKind::Missing => Some((
            format!("file{shown} does not exist"),
            "no such file",
            "the path is relative to the service folder".to_string(),
        )),
        FileKind::Unreadable(error) => Some((
            format!("cannot read file{shown}: {error}"),
            "unreadable",
            "the path is relative to the service folder".to_string(),
        )),
        FileKind::Folder | FileKind::Special => Some((
            format!("file{shown} is not a regular file"),
            "not a regular file",
            "name a PEM file; a symbolic link is followed, to a regular file only".to_string(),
        )),
        FileKind::File { size } if *size > MAX_PEM_FILE_BYTES => Some((
            format!("file{shown} is larger than {MAX_PEM_FILE_SIZE_TEXT}"),
            "too large",
            "a PEM certificate chain or key is a few KiB: check what was written there".to_string(),
        )),
        FileKind::File { .. } => None,
    };
    if let Some((message, label, help)) = problem {
        check.error(path, message, label).help = Some(help);
    }
    full
}
