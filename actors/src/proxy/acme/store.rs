//! The ACME manager's files under the state folder: the account credentials
//! in `acme/` (one file per directory URL, 0600, folder 0700) and each host's
//! certificate chain, key (0600) and a small record of the CA that issued it
//! in `certs/`. Loaded at start-up, so a restart does not re-issue.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::AccountCredentials;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::proxy::state_files::{
    ensure_private_dir, write_atomic, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE,
};

/// Folder (under the state folder) of the account credentials.
pub const ACCOUNT_DIR: &str = "acme";
/// Folder (under the state folder) of the issued certificates and keys.
pub const CERTS_DIR: &str = "certs";
/// The file name's first label for a wildcard certificate.
const WILDCARD_STEM: &str = "_wildcard";
/// Longest host name accepted as a file name (the DNS limit).
const MAX_HOST_LEN: usize = 253;

/// A problem with the files of the ACME manager.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not usable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("host {0:?} cannot name a certificate file")]
    BadHost(String),
}

/// A certificate with its key, checked and parsed, ready for the `CertMap`.
#[derive(Clone)]
pub struct IssuedCert {
    pub key: Arc<CertifiedKey>,
    /// The leaf's serial number, lowercase hex.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The ACME directory that issued it.
    pub directory_url: String,
}

/// The files of the ACME manager under one state folder.
#[derive(Debug, Clone)]
pub struct Store {
    state_dir: PathBuf,
}

/// What is recorded next to a certificate.
#[derive(Debug, Serialize, Deserialize)]
struct CertRecord {
    directory_url: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("serial", &self.serial)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("directory_url", &self.directory_url)
            .finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// Parses a PEM chain (leaf first) and its PEM private key, checking that
    /// they match. Never logs or returns key material.
    pub fn parse(chain_pem: &str, key_pem: &str, directory_url: &str) -> Result<Self, String> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| format!("bad certificate PEM: {err}"))?;
        let Some(leaf) = chain.first() else {
            return Err("no certificate in the chain".to_string());
        };
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|err| format!("bad certificate: {err}"))?;
        let validity = parsed.validity();
        let not_before = unix_time(validity.not_before.timestamp());
        let not_after = unix_time(validity.not_after.timestamp());
        if not_after <= not_before {
            return Err("the certificate's validity is empty".to_string());
        }
        let serial = hex::encode(parsed.tbs_certificate.raw_serial());
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|_| "bad private key PEM".to_string())?;
        let provider = rustls::crypto::ring::default_provider();
        let key = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|err| format!("certificate and key do not fit: {err}"))?;
        Ok(IssuedCert {
            key: Arc::new(key),
            serial,
            not_before,
            not_after,
            directory_url: directory_url.to_string(),
        })
    }

    /// The leaf certificate, DER.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.key.cert.first()
    }
}

impl Store {
    pub fn new(state_dir: &Path) -> Self {
        Store {
            state_dir: state_dir.to_path_buf(),
        }
    }

    /// The credentials file of the account on `directory_url`: one per
    /// directory, so moving from staging to production creates a new account.
    pub fn account_path(&self, directory_url: &str) -> PathBuf {
        let digest = Sha256::digest(directory_url.as_bytes());
        self.state_dir
            .join(ACCOUNT_DIR)
            .join(format!("account-{}.json", &hex::encode(digest)[..16]))
    }

    /// The stored credentials for `directory_url`, if an account was created.
    pub fn load_account(
        &self,
        directory_url: &str,
    ) -> Result<Option<AccountCredentials>, StoreError> {
        let path = self.account_path(directory_url);
        let Some(bytes) = read_optional(&path)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| StoreError::Corrupt {
                path,
                reason: format!("bad credentials json at line {}", err.line()),
            })
    }

    /// Stores new account credentials (0600, folder 0700).
    pub fn save_account(
        &self,
        directory_url: &str,
        credentials: &AccountCredentials,
    ) -> Result<(), StoreError> {
        let path = self.account_path(directory_url);
        let dir = self.state_dir.join(ACCOUNT_DIR);
        ensure_private_dir(&dir).map_err(|source| io_error("create", &dir, source))?;
        let json = serde_json::to_vec_pretty(credentials).map_err(|err| StoreError::Corrupt {
            path: path.clone(),
            reason: format!("cannot encode credentials: {err}"),
        })?;
        write_atomic(&path, &json, PRIVATE_FILE_MODE)
            .map_err(|source| io_error("write", &path, source))
    }

    /// Sets aside the credentials of an account the CA no longer knows
    /// (renamed with a `.unknown` suffix), so the next attempt creates one.
    pub fn forget_account(&self, directory_url: &str) -> Result<(), StoreError> {
        let path = self.account_path(directory_url);
        let mut aside = path.clone().into_os_string();
        aside.push(".unknown");
        match fs::rename(&path, &aside) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(io_error("rename", &path, source)),
        }
    }

    /// The stored certificate of `host`, if there is one.
    pub fn load_cert(&self, host: &str) -> Result<Option<IssuedCert>, StoreError> {
        let [chain_path, key_path, record_path] = self.cert_paths(host)?;
        let Some(chain) = read_optional(&chain_path)? else {
            return Ok(None);
        };
        let Some(key) = read_optional(&key_path)? else {
            return Ok(None);
        };
        let directory_url = match read_optional(&record_path)? {
            Some(bytes) => {
                serde_json::from_slice::<CertRecord>(&bytes)
                    .map_err(|_| StoreError::Corrupt {
                        path: record_path.clone(),
                        reason: "bad json".to_string(),
                    })?
                    .directory_url
            }
            None => String::new(),
        };
        let text = |bytes: Vec<u8>, path: &Path| {
            String::from_utf8(bytes).map_err(|_| StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: "not PEM text".to_string(),
            })
        };
        let chain = text(chain, &chain_path)?;
        let key = text(key, &key_path)?;
        IssuedCert::parse(&chain, &key, &directory_url)
            .map(Some)
            .map_err(|reason| StoreError::Corrupt {
                path: chain_path,
                reason,
            })
    }

    /// Checks and stores a newly issued certificate: key 0600, chain 0644.
    pub fn save_cert(
        &self,
        host: &str,
        chain_pem: &str,
        key_pem: &str,
        directory_url: &str,
    ) -> Result<IssuedCert, StoreError> {
        let [chain_path, key_path, record_path] = self.cert_paths(host)?;
        let issued = IssuedCert::parse(chain_pem, key_pem, directory_url).map_err(|reason| {
            StoreError::Corrupt {
                path: chain_path.clone(),
                reason,
            }
        })?;
        let dir = self.state_dir.join(CERTS_DIR);
        ensure_private_dir(&dir).map_err(|source| io_error("create", &dir, source))?;
        let record = serde_json::to_vec(&CertRecord {
            directory_url: directory_url.to_string(),
        })
        .map_err(|err| StoreError::Corrupt {
            path: record_path.clone(),
            reason: err.to_string(),
        })?;
        // The key first: a chain on disk never points at a missing key.
        write_atomic(&key_path, key_pem.as_bytes(), PRIVATE_FILE_MODE)
            .map_err(|source| io_error("write", &key_path, source))?;
        write_atomic(&chain_path, chain_pem.as_bytes(), PUBLIC_FILE_MODE)
            .map_err(|source| io_error("write", &chain_path, source))?;
        write_atomic(&record_path, &record, PUBLIC_FILE_MODE)
            .map_err(|source| io_error("write", &record_path, source))?;
        Ok(issued)
    }

    /// `<host>.crt`, `<host>.key` and `<host>.json` under `certs/`; a
    /// wildcard `*.example.com` is stored as `_wildcard.example.com` (no
    /// host name has an underscore, so it names no other host's files).
    fn cert_paths(&self, host: &str) -> Result<[PathBuf; 3], StoreError> {
        let stem = match host.strip_prefix("*.") {
            Some(parent) if is_file_safe_host(parent) => format!("{WILDCARD_STEM}.{parent}"),
            _ if is_file_safe_host(host) => host.to_string(),
            _ => return Err(StoreError::BadHost(host.to_string())),
        };
        let dir = self.state_dir.join(CERTS_DIR);
        Ok(["crt", "key", "json"].map(|ext| dir.join(format!("{stem}.{ext}"))))
    }
}

/// A lowercase DNS name that is safe as a file name: letters, digits, `-`
/// and `.`, not starting with a dot.
fn is_file_safe_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && !host.starts_with('.')
        && !host.contains("..")
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io_error("read", path, source)),
    }
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn unix_time(seconds: i64) -> SystemTime {
    match u64::try_from(seconds) {
        Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn self_signed(host: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![host.to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_saved_certificate_loads_back_with_owner_only_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let (chain, key) = self_signed("app.example.test");
        let saved = store
            .save_cert("app.example.test", &chain, &key, "https://ca.test/dir")
            .unwrap();
        let loaded = store.load_cert("app.example.test").unwrap().unwrap();
        assert_eq!(saved.serial, loaded.serial);
        assert_eq!(loaded.directory_url, "https://ca.test/dir");
        assert!(loaded.not_after > loaded.not_before);
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path().join("certs/app.example.test.key")), 0o600);
        assert_eq!(mode(dir.path().join("certs")), 0o700);
        assert!(store.load_cert("other.example.test").unwrap().is_none());
    }

    #[test]
    fn a_key_that_does_not_fit_the_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let (chain, _) = self_signed("a.example.test");
        let (_, other_key) = self_signed("a.example.test");
        let err = store
            .save_cert("a.example.test", &chain, &other_key, "x")
            .unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
        assert!(!dir.path().join("certs/a.example.test.crt").exists());
    }

    #[test]
    fn hostile_host_names_name_no_file() {
        let store = Store::new(Path::new("/nonexistent"));
        for host in [
            "../etc/passwd",
            "a/b",
            ".hidden",
            "",
            "A.example",
            "a..b",
            "*.",
            "*.*.example",
            "a.*.example",
            "*./etc",
        ] {
            assert!(
                matches!(store.load_cert(host), Err(StoreError::BadHost(_))),
                "{host}"
            );
        }
    }

    #[test]
    fn a_wildcard_is_stored_under_a_name_no_host_can_have() {
        let store = Store::new(Path::new("/state"));
        let [crt, key, record] = store.cert_paths("*.example.test").expect("paths");
        assert_eq!(crt, Path::new("/state/certs/_wildcard.example.test.crt"));
        assert_eq!(key, Path::new("/state/certs/_wildcard.example.test.key"));
        assert_eq!(
            record,
            Path::new("/state/certs/_wildcard.example.test.json")
        );
    }

    #[test]
    fn accounts_are_kept_per_directory() {
        let store = Store::new(Path::new("/state"));
        let staging = store.account_path("https://staging.test/dir");
        let production = store.account_path("https://production.test/dir");
        assert_ne!(staging, production);
        assert!(staging.starts_with("/state/acme"));
    }
}
