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

    /// The certificate for a handshake's server name: the name's own, else
    /// the wildcard one label above it (`*.example.com` for
    /// `a.example.com`, not for `a.b.example.com`; RFC 6125 section 6.4.3).
    pub fn for_server_name(&self, name: &str) -> Option<HostCert> {
        let map = self.0.load();
        let name = name.to_ascii_lowercase();
        if let Some(cert) = map.get(&name) {
            return Some(cert.clone());
        }
        let (label, parent) = name.split_once('.')?;
        if label.is_empty() || parent.is_empty() {
            return None;
        }
        map.get(&format!("*.{parent}")).cloned()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(name: &str) -> HostCert {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("der");
        let provider = rustls::crypto::ring::default_provider();
        let key = CertifiedKey::from_der(vec![cert.der().clone()], der, &provider).expect("key");
        HostCert {
            key: Arc::new(key),
            source: CertSource::Acme,
        }
    }

    #[test]
    fn a_server_name_gets_its_own_certificate_else_the_wildcard_one_label_up() {
        let certs = CertMap::default();
        let wildcard = cert_for("*.example.com");
        let exact = cert_for("api.example.com");
        certs.set("*.example.com", wildcard.clone());
        certs.set("api.example.com", exact.clone());
        let served = |name: &str| certs.for_server_name(name).map(|cert| cert.key);
        assert!(Arc::ptr_eq(
            &served("A.example.com").unwrap(),
            &wildcard.key
        ));
        assert!(Arc::ptr_eq(&served("api.example.com").unwrap(), &exact.key));
        for name in [
            "example.com",
            "a.b.example.com",
            ".example.com",
            "other.test",
        ] {
            assert!(served(name).is_none(), "{name}");
        }
    }
}
