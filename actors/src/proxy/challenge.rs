//! `Challenges`: ACME HTTP-01 tokens and their key authorizations, held in
//! memory. The port-80 listener answers `/.well-known/acme-challenge/<token>`
//! from here by exact match only; nothing is ever read from disk by path.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The path prefix of HTTP-01 challenge requests.
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";
/// Longest token accepted (real tokens are 43 characters).
const MAX_TOKEN_LEN: usize = 128;

/// Pending HTTP-01 challenges, shared between the ACME manager (writer) and
/// the HTTP listener (reader). Cloning shares the same map.
#[derive(Debug, Clone, Default)]
pub struct Challenges(Arc<RwLock<HashMap<String, String>>>);

impl Challenges {
    /// Publishes the answer to `token` until `remove`.
    pub fn insert(&self, token: &str, key_authorization: &str) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.insert(token.to_string(), key_authorization.to_string());
    }

    /// Withdraws a token once its challenge is done.
    pub fn remove(&self, token: &str) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.remove(token);
    }

    /// The key authorization for a request path, when the path is exactly the
    /// challenge prefix followed by an issued token. Anything else, including
    /// `..`, slashes, encoded characters or unknown tokens, is `None` (404).
    pub fn answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(CHALLENGE_PREFIX)?;
        if token.is_empty() || token.len() > MAX_TOKEN_LEN || !token.bytes().all(is_base64url) {
            return None;
        }
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
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
