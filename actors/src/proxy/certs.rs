//! `CertMap`: the certificate for each host, read by the rustls resolver on
//! every handshake (by SNI) and replaced atomically at run time, so a new or
//! renewed certificate never needs a restart of the listeners.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;

/// Where a host's certificate came from; a better source replaces a worse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CertSource {
    /// Generated locally so HTTPS answers before a real certificate exists.
    SelfSigned,
    /// Issued by the ACME server.
    Acme,
    /// `cert_file` and `key_file` of the service.
    Manual,
}

/// One host's certificate and its origin.
#[derive(Debug, Clone)]
pub struct HostCert {
    pub key: Arc<CertifiedKey>,
    pub source: CertSource,
}

/// Host (lowercase, no port) to certificate. Cloning shares the same map.
#[derive(Debug, Clone, Default)]
pub struct CertMap(Arc<ArcSwap<HashMap<String, HostCert>>>);

impl CertMap {
    /// The certificate to present for `host` (SNI), if any.
    pub fn get(&self, host: &str) -> Option<HostCert> {
        self.0.load().get(&host.to_ascii_lowercase()).cloned()
    }

    /// Installs a certificate for `host`, replacing whatever was there.
    pub fn set(&self, host: &str, cert: HostCert) {
        let host = host.to_ascii_lowercase();
        self.0.rcu(|map| {
            let mut next = HashMap::clone(map);
            next.insert(host.clone(), cert.clone());
            next
        });
    }

    /// Removes the certificate of `host`.
    pub fn remove(&self, host: &str) {
        let host = host.to_ascii_lowercase();
        self.0.rcu(|map| {
            let mut next = HashMap::clone(map);
            next.remove(&host);
            next
        });
    }

    /// Hosts that have a certificate, with its source.
    pub fn hosts(&self) -> Vec<(String, CertSource)> {
        let mut hosts: Vec<_> = self
            .0
            .load()
            .iter()
            .map(|(host, cert)| (host.clone(), cert.source))
            .collect();
        hosts.sort();
        hosts
    }

    /// Hosts with their certificate's source and expiry (`notAfter`, Unix
    /// seconds; `None` when the leaf certificate cannot be parsed).
    pub fn expiries(&self) -> Vec<(String, CertSource, Option<i64>)> {
        let mut hosts: Vec<_> = self
            .0
            .load()
            .iter()
            .map(|(host, cert)| {
                let not_after = cert.key.cert.first().and_then(|leaf| {
                    x509_parser::parse_x509_certificate(leaf.as_ref())
                        .ok()
                        .map(|(_, parsed)| parsed.validity().not_after.timestamp())
                });
                (host.clone(), cert.source, not_after)
            })
            .collect();
        hosts.sort_by(|a, b| a.0.cmp(&b.0));
        hosts
    }
}
