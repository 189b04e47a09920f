//! TLS for the HTTPS listener: the rustls server configuration, the resolver
//! that picks a certificate by SNI from the `CertMap`, and the `CertLoader`
//! actor that installs the certificates that do not come from ACME.
//!
//! `CertLoader` protocol:
//! - `PlanApplied(plan)` -> `()`: (re)reads `cert_file`/`key_file` of every
//!   host that has a route with `TlsSource::Manual` and installs them
//!   (`CertSource::Manual`): one certificate per host, covering all its
//!   routes (see `Plan::manual_certificates`); gives every other routed host
//!   that has no certificate a self-signed one (`CertSource::SelfSigned`), so
//!   HTTPS answers from the first second; drops the manual and self-signed
//!   certificates of hosts no longer routed. The files are read bounded
//!   (`MAX_PEM_FILE_BYTES`, regular files only).
//!
//! Self-signed certificates are valid for `SELF_SIGNED_VALIDITY` (backdated a
//! day for clocks that lag); every `SELF_SIGNED_CHECK` the loader replaces
//! those with less than `SELF_SIGNED_RENEW_BEFORE` left.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tracing::{error, info};

use super::certs::{CertMap, CertSource, HostCert};
use super::challenge::{Challenges, ACME_TLS_ALPN};
use crate::plan::{Plan, PlanApplied};

/// The name in the fallback certificate, served without SNI or for unknown hosts.
pub const FALLBACK_NAME: &str = "dispenser.invalid";
/// Lifetime of a host's self-signed certificate.
pub const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(90 * 86_400);
/// A self-signed certificate with less than this left is replaced.
pub const SELF_SIGNED_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);
/// How often the loader looks for self-signed certificates to replace.
pub const SELF_SIGNED_CHECK: Duration = Duration::from_secs(12 * 3600);
/// Lifetime of the fallback certificate, made once per process. It names no
/// real host and is never trusted; a long life keeps a long-running daemon
/// from serving an expired one.
const FALLBACK_VALIDITY: Duration = Duration::from_secs(3650 * 86_400);
/// Largest `cert_file` or `key_file` read: a PEM chain or key is a few KiB.
pub const MAX_PEM_FILE_BYTES: u64 = 1 << 20;
/// How [`MAX_PEM_FILE_BYTES`] is written in messages.
pub const MAX_PEM_FILE_SIZE_TEXT: &str = "1 MiB";

/// Why a certificate could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("the key in {key} does not match the certificate in {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot generate a self-signed certificate for {host}: {reason}")]
    SelfSigned { host: String, reason: String },
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// Picks the certificate for a handshake: the host's from the `CertMap` by
/// SNI, else the fallback (no SNI, an IP address, or an unknown host).
pub struct SniResolver {
    certs: CertMap,
    fallback: Arc<CertifiedKey>,
    /// TLS-ALPN-01 certificates, for handshakes that offer `acme-tls/1`.
    challenges: Challenges,
}

/// The actor that keeps manual and self-signed certificates in the `CertMap`.
pub struct CertLoader {
    certs: CertMap,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A CA validating TLS-ALPN-01 gets the host's pending validation
        // certificate; without one the handshake is refused, so nobody
        // negotiates `acme-tls/1` otherwise (RFC 8737 section 3).
        let validation = client_hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|protocol| protocol == ACME_TLS_ALPN));
        if validation {
            return client_hello
                .server_name()
                .and_then(|name| self.challenges.alpn_cert(name));
        }
        let found = client_hello
            .server_name()
            .and_then(|name| self.certs.for_server_name(name));
        Some(found.map_or_else(|| self.fallback.clone(), |cert| cert.key))
    }
}

impl CertLoader {
    pub fn new(certs: CertMap) -> Self {
        CertLoader { certs }
    }

    fn apply(&self, plan: &Plan) {
        let routed: BTreeSet<String> = plan
            .services
            .values()
            .filter_map(|service| service.route.as_ref())
            .flat_map(|route| route.names().map(str::to_ascii_lowercase))
            .collect();
        // One certificate per host: a manual one covers every route of its
        // host, those that name no files too.
        let manual = plan.manual_certificates();
        for host in &routed {
            let Some(files) = manual.get(host) else {
                self.ensure_self_signed(host, true);
                continue;
            };
            match load_manual(files.cert_file, files.key_file) {
                Ok(key) => {
                    self.certs.set(
                        host,
                        HostCert {
                            key: Arc::new(key),
                            source: CertSource::Manual,
                        },
                    );
                    info!(service = %files.service, host = %host, cert = %files.cert_file.display(), "certificate loaded");
                }
                Err(err) => {
                    error!(service = %files.service, host = %host, error = %err, "certificate not loaded; keeping the previous one");
                    self.ensure_self_signed(host, false);
                }
            }
        }
        for (host, source) in self.certs.hosts() {
            let ours = matches!(source, CertSource::Manual | CertSource::SelfSigned);
            if ours && !routed.contains(&host) {
                self.certs.remove(&host);
                info!(host = %host, "certificate dropped: host no longer routed");
            }
        }
    }

    /// Installs a self-signed certificate for `host` unless it has one;
    /// `replace_manual` also replaces a manual one (the route stopped naming files).
    fn ensure_self_signed(&self, host: &str, replace_manual: bool) {
        let current = self.certs.get(host).map(|cert| cert.source);
        let needed = match current {
            None => true,
            Some(CertSource::Manual) => replace_manual,
            Some(_) => false,
        };
        if !needed {
            return;
        }
        match self_signed(host) {
            Ok(key) => {
                self.certs.set(
                    host,
                    HostCert {
                        key: Arc::new(key),
                        source: CertSource::SelfSigned,
                    },
                );
                info!(host = %host, "self-signed certificate installed");
            }
            Err(err) => error!(host = %host, error = %err, "no certificate for host"),
        }
    }
}

impl CertLoader {
    /// Replaces the self-signed certificates that expire within
    /// `SELF_SIGNED_RENEW_BEFORE` of `now` (Unix seconds).
    fn renew_self_signed(&self, now: i64) {
        let renew_before = SELF_SIGNED_RENEW_BEFORE.as_secs() as i64;
        for (host, source, not_after) in self.certs.expiries() {
            let due = not_after.is_none_or(|not_after| not_after - now < renew_before);
            if source != CertSource::SelfSigned || !due {
                continue;
            }
            match self_signed(&host) {
                Ok(key) => {
                    self.certs.set(
                        &host,
                        HostCert {
                            key: Arc::new(key),
                            source: CertSource::SelfSigned,
                        },
                    );
                    info!(host = %host, "self-signed certificate renewed");
                }
                Err(err) => {
                    error!(host = %host, error = %err, "cannot renew the self-signed certificate")
                }
            }
        }
    }
}

impl Actor for CertLoader {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(SELF_SIGNED_CHECK, |loader, _| {
            loader.renew_self_signed(time::OffsetDateTime::now_utc().unix_timestamp());
        });
    }
}

impl Handler<PlanApplied> for CertLoader {
    type Result = ();

    fn handle(&mut self, msg: PlanApplied, _ctx: &mut Self::Context) -> Self::Result {
        self.apply(&msg.0);
    }
}

/// The rustls configuration of the HTTPS listener: TLS 1.2 and 1.3, ALPN h2
/// and http/1.1, certificates by SNI from `certs`; and `acme-tls/1` for
/// the pending TLS-ALPN-01 challenges in `challenges`.
pub fn server_config(certs: CertMap, challenges: Challenges) -> Result<ServerConfig, TlsError> {
    let fallback = Arc::new(self_signed_for(FALLBACK_NAME, FALLBACK_VALIDITY)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| TlsError::Config(err.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver {
            certs,
            fallback,
            challenges,
        }));
    // The server's order wins: a client offering h2 never gets acme-tls/1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    Ok(config)
}

/// A fresh self-signed certificate (ECDSA P-256) for `host`, valid for
/// `SELF_SIGNED_VALIDITY`.
pub fn self_signed(host: &str) -> Result<CertifiedKey, TlsError> {
    self_signed_for(host, SELF_SIGNED_VALIDITY)
}

/// A fresh self-signed certificate for `host`, valid from a day ago for `validity`.
fn self_signed_for(host: &str, validity: Duration) -> Result<CertifiedKey, TlsError> {
    sign_for(host, |params| {
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + validity;
    })
}

/// The TLS-ALPN-01 validation certificate of `host` (RFC 8737 section 3):
/// self-signed, for that one name, with the critical `acmeIdentifier`
/// extension holding `digest`, the SHA-256 of the key authorization.
pub fn alpn_validation(host: &str, digest: &[u8]) -> Result<CertifiedKey, TlsError> {
    sign_for(host, |params| {
        params
            .custom_extensions
            .push(rcgen::CustomExtension::new_acme_identifier(digest));
    })
}

/// A certificate for `host` alone, with `adjust`'s changes to its
/// parameters, self-signed with a fresh ECDSA P-256 key.
fn sign_for(
    host: &str,
    adjust: impl FnOnce(&mut rcgen::CertificateParams),
) -> Result<CertifiedKey, TlsError> {
    let fail = |reason: String| TlsError::SelfSigned {
        host: host.to_string(),
        reason,
    };
    let mut params =
        rcgen::CertificateParams::new(vec![host.to_string()]).map_err(|e| fail(e.to_string()))?;
    adjust(&mut params);
    let signing_key = rcgen::KeyPair::generate().map_err(|e| fail(e.to_string()))?;
    let cert = params
        .self_signed(&signing_key)
        .map_err(|e| fail(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing_key.serialize_der()));
    // Not `CertifiedKey::from_der`: its check that key and certificate
    // match parses the certificate with webpki, which refuses the critical
    // extension of a validation certificate (they match by construction).
    let signer = ring_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| fail(e.to_string()))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}

/// Reads a PEM certificate chain and its private key, and checks they match.
/// Each file must be a regular file (a link is followed to its target) of at
/// most [`MAX_PEM_FILE_BYTES`].
pub fn load_manual(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        let failed = |reason: String| TlsError::Read {
            path: path.to_path_buf(),
            reason,
        };
        crate::files::read_bounded(path, MAX_PEM_FILE_BYTES)
            .map_err(|err| failed(err.to_string()))?
            .ok_or_else(|| failed(format!("the file is larger than {MAX_PEM_FILE_SIZE_TEXT}")))
    };
    let cert_pem = read(cert_file)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate {
            path: cert_file.to_path_buf(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_file.to_path_buf(),
        });
    }
    let key_pem = read(key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| TlsError::BadKey {
        path: key_file.to_path_buf(),
        reason: err.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, &ring_provider()).map_err(|err| TlsError::Mismatch {
        cert: cert_file.to_path_buf(),
        key: key_file.to_path_buf(),
        reason: err.to_string(),
    })
}

fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(test)]
#[path = "tls/tests.rs"]
mod tests;
