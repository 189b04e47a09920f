//! The `[proxy]` table of service.toml: the service's route (host, path,
//! port, health path) and its TLS source. Pure: `cert_file` and `key_file`
//! are checked from what [`FileFacts`] holds of them.

use std::path::{Path, PathBuf};

use dispenser_actors::plan::{Route, TlsSource};
use dispenser_actors::proxy::tls::{MAX_PEM_FILE_BYTES, MAX_PEM_FILE_SIZE_TEXT};

use super::field::resolve;
use crate::config::check::FileCheck;
use crate::config::file::RouteTable;
use crate::config::files::{FileFacts, FileKind};

/// What both keys of a certificate pair say when only one is set.
const SET_BOTH: &str = "set both `cert_file` and `key_file`, or neither for automatic certificates";

/// `[proxy]`: the route, its host lower-cased and its path without a trailing `/`.
pub(super) fn route(
    check: &mut FileCheck<'_>,
    table: &RouteTable,
    folder: &Path,
    facts: &FileFacts,
) -> Option<Route> {
    let host = table.host.trim().to_ascii_lowercase();
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !host_ok {
        check
            .error(
                "proxy.host",
                "`host` must be a bare host name",
                "not a host name",
            )
            .help =
            Some("write only the name, without scheme, port or path: `app.example.com`".into());
    }
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
    Some(Route {
        host,
        path,
        service_port: table.service_port,
        health_path: table.health_path.clone(),
        tls,
    })
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
