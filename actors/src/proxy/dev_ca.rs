//! The development CA: one local certificate authority kept in the state
//! folder (`dev-ca.crt`, and `dev-ca.key` readable by the owner only),
//! created once, that signs a certificate for every route host in `dev`
//! mode, so a developer trusts one root instead of one certificate per host.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use thiserror::Error;
use time::{Duration as TimeDuration, OffsetDateTime};

use crate::plan::Plan;
use crate::proxy::certs::{CertMap, CertSource, HostCert};
use crate::proxy::state_files::{
    ensure_private_dir, write_atomic, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE,
};

/// File name of the CA certificate in the state folder.
pub const DEV_CA_CERT_FILE: &str = "dev-ca.crt";
/// File name of the CA private key in the state folder.
pub const DEV_CA_KEY_FILE: &str = "dev-ca.key";
/// Common name of the development CA.
const CA_COMMON_NAME: &str = "Dispenser development CA";
/// How long the CA is valid.
const CA_VALIDITY_DAYS: i64 = 10 * 365;
/// How long a host certificate is valid (within what browsers accept).
const HOST_VALIDITY_DAYS: i64 = 365;
/// Certificates start a day early, so a clock a little behind accepts them.
const BACKDATE_DAYS: i64 = 1;

/// A problem with the development CA.
#[derive(Debug, Error)]
pub enum DevCaError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not usable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot make a certificate for {host}: {reason}")]
    Sign { host: String, reason: String },
}

/// The development CA, loaded or created.
pub struct DevCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl DevCa {
    /// The CA in `state_dir`, created there (key 0600) the first time.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, DevCaError> {
        let cert_path = state_dir.join(DEV_CA_CERT_FILE);
        let key_path = state_dir.join(DEV_CA_KEY_FILE);
        match (read_text(&cert_path)?, read_text(&key_path)?) {
            (Some(cert_pem), Some(key_pem)) => Self::load(&cert_path, cert_pem, &key_pem),
            _ => Self::create(state_dir, &cert_path, &key_path),
        }
    }

    /// Where the CA certificate is, for the developer to trust.
    pub fn cert_path(state_dir: &Path) -> PathBuf {
        state_dir.join(DEV_CA_CERT_FILE)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// A fresh key and certificate for `host` signed by this CA; the chain
    /// holds the host certificate then the CA.
    pub fn issue(&self, host: &str) -> Result<CertifiedKey, DevCaError> {
        let sign_error = |reason: String| DevCaError::Sign {
            host: host.to_string(),
            reason,
        };
        let mut params = CertificateParams::new(vec![host.to_string()])
            .map_err(|err| sign_error(err.to_string()))?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, host);
        params.distinguished_name = name;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - TimeDuration::days(BACKDATE_DAYS);
        params.not_after = now + TimeDuration::days(HOST_VALIDITY_DAYS);
        let key = KeyPair::generate().map_err(|err| sign_error(err.to_string()))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|err| sign_error(err.to_string()))?;
        let key_der = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|err| sign_error(err.to_string()))?;
        let provider = rustls::crypto::ring::default_provider();
        CertifiedKey::from_der(
            vec![cert.der().clone(), self.cert_der.clone()],
            key_der,
            &provider,
        )
        .map_err(|err| sign_error(err.to_string()))
    }

    /// Installs a certificate from this CA for every route host of `plan`,
    /// except hosts that have a manual certificate (file or already in the
    /// map). Returns the hosts filled.
    pub fn fill(&self, plan: &Plan, certs: &CertMap) -> Result<Vec<String>, DevCaError> {
        let mut filled = Vec::new();
        // A host with a manual certificate keeps it on all its routes.
        let manual_hosts = plan.manual_certificates();
        let routes = plan.services.values().filter_map(|s| s.route.as_ref());
        for host in routes.flat_map(|route| route.names().map(str::to_ascii_lowercase)) {
            let manual = manual_hosts.contains_key(&host)
                || matches!(certs.get(&host), Some(c) if c.source == CertSource::Manual);
            if manual || filled.contains(&host) {
                continue;
            }
            let key = self.issue(&host)?;
            certs.set(
                &host,
                HostCert {
                    key: Arc::new(key),
                    source: CertSource::SelfSigned,
                },
            );
            filled.push(host);
        }
        Ok(filled)
    }

    fn load(cert_path: &Path, cert_pem: String, key_pem: &str) -> Result<Self, DevCaError> {
        let corrupt = |reason: String| DevCaError::Corrupt {
            path: cert_path.to_path_buf(),
            reason,
        };
        let key = KeyPair::from_pem(key_pem).map_err(|_| corrupt("bad private key".to_string()))?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|err| corrupt(err.to_string()))?;
        let cert_der = pem_der(&cert_pem).map_err(corrupt)?;
        Ok(DevCa {
            cert_pem,
            cert_der,
            issuer,
        })
    }

    fn create(state_dir: &Path, cert_path: &Path, key_path: &Path) -> Result<Self, DevCaError> {
        let sign_error = |reason: String| DevCaError::Sign {
            host: CA_COMMON_NAME.to_string(),
            reason,
        };
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, CA_COMMON_NAME);
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - TimeDuration::days(BACKDATE_DAYS);
        params.not_after = now + TimeDuration::days(CA_VALIDITY_DAYS);
        let key = KeyPair::generate().map_err(|err| sign_error(err.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|err| sign_error(err.to_string()))?;
        ensure_private_dir(state_dir).map_err(|source| DevCaError::Io {
            action: "create",
            path: state_dir.to_path_buf(),
            source,
        })?;
        // The key first: a certificate on disk never lacks its key.
        write_atomic(key_path, key.serialize_pem().as_bytes(), PRIVATE_FILE_MODE).map_err(
            |source| DevCaError::Io {
                action: "write",
                path: key_path.to_path_buf(),
                source,
            },
        )?;
        let cert_pem = cert.pem();
        write_atomic(cert_path, cert_pem.as_bytes(), PUBLIC_FILE_MODE).map_err(|source| {
            DevCaError::Io {
                action: "write",
                path: cert_path.to_path_buf(),
                source,
            }
        })?;
        Ok(DevCa {
            cert_pem,
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }
}

fn read_text(path: &Path) -> Result<Option<String>, DevCaError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DevCaError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn pem_der(pem: &str) -> Result<CertificateDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|err| format!("bad certificate: {err}"))
}

#[cfg(test)]
#[path = "dev_ca_tests.rs"]
mod tests;
