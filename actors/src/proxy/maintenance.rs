//! Maintenance mode: the services an operator took out of traffic
//! (`dispenser maintenance on SERVICE`), kept by the `ProxyRouter` and saved
//! in `<state_dir>/maintenance.json` (0600, written atomically), so it
//! survives a restart of the daemon. The routes of such a service answer
//! 503 with `Retry-After` and a page until it is turned off.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state_files::{write_atomic, PRIVATE_FILE_MODE};

/// The file under the state dir.
pub const MAINTENANCE_FILE: &str = "maintenance.json";
/// `Retry-After` of a maintenance answer, in seconds.
pub const MAINTENANCE_RETRY_AFTER: u32 = 300;
/// Longest message accepted.
pub const MAX_MESSAGE_CHARS: usize = 500;
/// Largest maintenance file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// One service in maintenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maintenance {
    /// What the page tells visitors, if the operator said.
    pub message: Option<String>,
    /// When it was turned on (RFC 3339, UTC).
    pub since: String,
}

/// Every service in maintenance, by name.
pub type MaintenanceMap = BTreeMap<String, Maintenance>;

/// Why the maintenance file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a maintenance file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Maintenance {
    /// Maintenance from now on, with `message`.
    pub fn now(message: Option<String>) -> Maintenance {
        Maintenance {
            message,
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// The built-in page: the message, HTML-escaped.
    pub fn page(&self) -> String {
        let message = self
            .message
            .as_deref()
            .unwrap_or("This service is down for maintenance. Please try again soon.");
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Down for maintenance</title></head>\n\
             <body><h1>Down for maintenance</h1>\n<p>{}</p></body></html>\n",
            escape_html(message)
        )
    }
}

/// The file's path under `state_dir`.
pub fn file_path(state_dir: &Path) -> PathBuf {
    state_dir.join(MAINTENANCE_FILE)
}

/// Reads the services in maintenance; no file is none.
pub fn load(state_dir: &Path) -> Result<MaintenanceMap, MaintenanceFileError> {
    let path = file_path(state_dir);
    let bytes = match crate::files::read_bounded(&path, MAX_FILE_BYTES) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Err(MaintenanceFileError::Corrupt {
                path,
                reason: "larger than 1 MiB".into(),
            })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(MaintenanceMap::new()),
        Err(source) => return Err(MaintenanceFileError::Read { path, source }),
    };
    serde_json::from_slice(&bytes).map_err(|err| MaintenanceFileError::Corrupt {
        path,
        reason: err.to_string(),
    })
}

/// Writes the services in maintenance, replacing the file atomically.
pub fn save(state_dir: &Path, services: &MaintenanceMap) -> Result<(), MaintenanceFileError> {
    let path = file_path(state_dir);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        let bytes = serde_json::to_vec_pretty(services).map_err(std::io::Error::other)?;
        write_atomic(&path, &bytes, PRIVATE_FILE_MODE)
    };
    write().map_err(|source| MaintenanceFileError::Write {
        path: path.clone(),
        source,
    })
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_file_round_trips_owner_only_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let mut services = MaintenanceMap::new();
        services.insert("web".into(), Maintenance::now(Some("back at 5".into())));
        save(dir.path(), &services).unwrap();
        assert_eq!(load(dir.path()).unwrap(), services);
        let mode = std::fs::metadata(file_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(file_path(dir.path()), b"{").unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(MaintenanceFileError::Corrupt { .. })
        ));
    }

    #[test]
    fn the_page_escapes_the_message() {
        let page = Maintenance::now(Some("<script>alert('x')</script> & more".into())).page();
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
        assert!(!page.contains("<script>"));
    }
}
