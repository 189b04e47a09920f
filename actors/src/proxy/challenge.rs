//! `Challenges`: ACME HTTP-01 tokens and their key authorizations, and
//! TLS-ALPN-01 certificates by host, held in memory. The port-80 listener
//! answers `/.well-known/acme-challenge/<token>` from here by exact match
//! only; nothing is ever read from disk by path. The HTTPS listener answers
//! a handshake for `acme-tls/1` with a host's pending certificate (RFC 8737).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::sign::CertifiedKey;

/// The ALPN protocol of TLS-ALPN-01 validation handshakes (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix of HTTP-01 challenge requests.
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";
/// Longest token accepted (real tokens are 43 characters).
const MAX_TOKEN_LEN: usize = 128;

/// Pending challenges, shared between the ACME manager (writer) and the
/// listeners (readers). Cloning shares the same maps.
#[derive(Clone, Default)]
pub struct Challenges {
    /// HTTP-01: token -> key authorization.
    http: Arc<RwLock<HashMap<String, String>>>,
    /// TLS-ALPN-01: lower-case host -> its validation certificate.
    alpn: Arc<RwLock<HashMap<String, Arc<CertifiedKey>>>>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenges").finish_non_exhaustive()
    }
}

impl Challenges {
    /// Publishes the answer to `token` until `remove`.
    pub fn insert(&self, token: &str, key_authorization: &str) {
        let mut map = self.http.write().unwrap_or_else(|p| p.into_inner());
        map.insert(token.to_string(), key_authorization.to_string());
    }

    /// Withdraws a token once its challenge is done.
    pub fn remove(&self, token: &str) {
        let mut map = self.http.write().unwrap_or_else(|p| p.into_inner());
        map.remove(token);
    }

    /// Answers `acme-tls/1` handshakes for `host` with `cert` until
    /// `remove_alpn`.
    pub fn insert_alpn(&self, host: &str, cert: Arc<CertifiedKey>) {
        let mut map = self.alpn.write().unwrap_or_else(|p| p.into_inner());
        map.insert(host.to_ascii_lowercase(), cert);
    }

    /// Withdraws a host's TLS-ALPN-01 certificate once its challenge is done.
    pub fn remove_alpn(&self, host: &str) {
        let mut map = self.alpn.write().unwrap_or_else(|p| p.into_inner());
        map.remove(&host.to_ascii_lowercase());
    }

    /// The pending TLS-ALPN-01 certificate of `host` (the handshake's SNI).
    pub fn alpn_cert(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let map = self.alpn.read().unwrap_or_else(|p| p.into_inner());
        map.get(&host.to_ascii_lowercase()).cloned()
    }

    /// The key authorization for a request path, when the path is exactly the
    /// challenge prefix followed by an issued token. Anything else, including
    /// `..`, slashes, encoded characters or unknown tokens, is `None` (404).
    pub fn answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(CHALLENGE_PREFIX)?;
        if token.is_empty() || token.len() > MAX_TOKEN_LEN || !token.bytes().all(is_base64url) {
            return None;
        }
        let map = self.http.read().unwrap_or_else(|p| p.into_inner());
        map.get(token).cloned()
    }
}

fn is_base64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_issued_token_is_answered() {
        let challenges = Challenges::default();
        challenges.insert("tok-EN_1", "tok-EN_1.thumb");
        let path = format!("{CHALLENGE_PREFIX}tok-EN_1");
        assert_eq!(challenges.answer(&path).as_deref(), Some("tok-EN_1.thumb"));
        for hostile in [
            format!("{CHALLENGE_PREFIX}../../etc/passwd"),
            format!("{CHALLENGE_PREFIX}/etc/passwd"),
            format!("{CHALLENGE_PREFIX}tok-EN_1/"),
            format!("{CHALLENGE_PREFIX}tok-EN_"),
            format!("{CHALLENGE_PREFIX}%2e%2e"),
            CHALLENGE_PREFIX.to_string(),
            "/tok-EN_1".to_string(),
        ] {
            assert_eq!(challenges.answer(&hostile), None, "{hostile}");
        }
        challenges.remove("tok-EN_1");
        assert_eq!(challenges.answer(&path), None);
    }
}
