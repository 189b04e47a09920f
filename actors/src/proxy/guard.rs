//! A route's rules as the request path applies them: compiled once per
//! table from the plan's `RouteRules` and the service's maintenance, and
//! shared by the route's entries. A plain route has none (`Entry::guard`
//! is `None`), so it costs the request path one `Option` test.
//!
//! Order of the checks, for a guarded route: a `redirect_from` name
//! redirects; then the allow-list (403), maintenance (503), basic auth
//! (401); then the request is forwarded, its prefix stripped when asked.
//!
//! Basic auth: bcrypt runs on tokio's blocking pool, a few at a time
//! (`BCRYPT_SLOTS`), never on a worker's event loop; a success is kept for
//! `AUTH_CACHE_TTL` in the worker's `AuthCache` under the SHA-256 of the
//! route's users and the `Authorization` value, so a client pays bcrypt
//! once, not per request. `bcrypt::verify` compares in constant time; user
//! names are compared with `subtle`, and an unknown user still costs one
//! bcrypt.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http02::header::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tracing::debug;

use super::headers::Headers;
use super::maintenance::Maintenance;
use crate::plan::{AllowList, Route, ERROR_PAGE_FILES};

/// What the request path does for one table entry beyond a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteGuard {
    /// A `redirect_from` name: every request gets a 308 to this host.
    pub redirect_to: Option<Arc<str>>,
    pub allow: Option<AllowList>,
    /// The page and message of a service in maintenance.
    pub maintenance: Option<Bytes>,
    pub basic_auth: Option<Credentials>,
    /// The route's path, removed from the request's before forwarding.
    pub strip_prefix: Option<Box<str>>,
    /// Pages for the proxy's own 502, 503 and 504, as given.
    pub error_pages: [Option<Bytes>; 3],
}

/// A route's users, ready to check.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    users: Arc<[(Box<str>, Box<str>)]>,
    /// SHA-256 of every user and hash: the cache key's first part, so a
    /// reload that changes a password forgets the successes of the old one.
    fingerprint: [u8; 32],
    /// `WWW-Authenticate`'s value.
    pub challenge: HeaderValue,
}

/// Recent successful `Authorization` values, per worker thread.
#[derive(Debug, Default)]
pub struct AuthCache(RefCell<HashMap<[u8; 32], Instant>>);

/// A success of basic auth is trusted again for this long without bcrypt.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);
/// Successes kept per worker, at most (past it, expired ones are dropped,
/// then all).
const AUTH_CACHE_ENTRIES: usize = 4096;
/// Longest `Authorization` value looked at; a longer one is refused.
const MAX_AUTHORIZATION_BYTES: usize = 4096;
/// bcrypt checks running at once in the whole process: wrong passwords
/// sent in a loop use at most this many blocking threads.
static BCRYPT_SLOTS: Semaphore = Semaphore::const_new(2);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl RouteGuard {
    /// The guard of a route's `host` and aliases: `None` for a plain route
    /// of a service not in maintenance.
    pub fn for_route(route: &Route, maintenance: Option<&Maintenance>) -> Option<RouteGuard> {
        let rules = &route.rules;
        let plain = rules.allow.is_none()
            && rules.basic_auth.is_none()
            && !rules.strip_prefix
            && rules.error_pages == Default::default();
        if plain && maintenance.is_none() {
            return None;
        }
        let error_pages = ERROR_PAGE_FILES.map(|(_, status)| {
            rules
                .error_pages
                .for_status(status)
                .map(|page| Bytes::from(page.to_owned()))
        });
        let maintenance = maintenance.map(|maintenance| match &error_pages[1] {
            Some(page) => page.clone(),
            None => Bytes::from(maintenance.page()),
        });
        Some(RouteGuard {
            redirect_to: None,
            allow: rules.allow.clone(),
            maintenance,
            basic_auth: rules
                .basic_auth
                .as_ref()
                .map(|auth| Credentials::new(&route.host, auth)),
            strip_prefix: (rules.strip_prefix && route.path != "/")
                .then(|| route.path.trim_end_matches('/').into()),
            error_pages,
        })
    }

    /// The guard of a `redirect_from` name: a redirect to `host`, nothing else.
    pub fn redirect(host: &str) -> RouteGuard {
        RouteGuard {
            redirect_to: Some(Arc::from(host)),
            allow: None,
            maintenance: None,
            basic_auth: None,
            strip_prefix: None,
            error_pages: [None, None, None],
        }
    }

    /// The page for the proxy's own answer `status` (502, 503 or 504).
    pub fn error_page(&self, status: u16) -> Option<&Bytes> {
        let index = ERROR_PAGE_FILES
            .iter()
            .position(|(_, page_status)| *page_status == status)?;
        self.error_pages[index].as_ref()
    }
}

impl Credentials {
    fn new(host: &str, auth: &crate::plan::BasicAuth) -> Credentials {
        let mut fingerprint = Sha256::new();
        let users: Vec<(Box<str>, Box<str>)> = auth
            .users
            .iter()
            .map(|user| {
                fingerprint.update(user.user.as_bytes());
                fingerprint.update([0]);
                fingerprint.update(user.hash.expose().as_bytes());
                fingerprint.update([0]);
                (user.user.as_str().into(), user.hash.expose().into())
            })
            .collect();
        // The host is a validated DNS name: no quote or control character.
        let challenge = HeaderValue::try_from(format!("Basic realm=\"{host}\", charset=\"UTF-8\""))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"restricted\""));
        Credentials {
            users: users.into(),
            fingerprint: fingerprint.finalize().into(),
            challenge,
        }
    }

    /// True when `headers` carry the `Authorization: Basic` of one of the
    /// users, from the cache or checked with bcrypt.
    pub async fn admit(&self, headers: &impl Headers, cache: &AuthCache) -> bool {
        let Some(value) = headers.values(http02::header::AUTHORIZATION).next() else {
            return false;
        };
        let value = value.as_bytes();
        if value.len() > MAX_AUTHORIZATION_BYTES {
            return false;
        }
        let key: [u8; 32] = Sha256::new()
            .chain_update(self.fingerprint)
            .chain_update(value)
            .finalize()
            .into();
        if cache.fresh(&key) {
            return true;
        }
        let Some((user, password)) = basic_credentials(value) else {
            return false;
        };
        // Every name is compared, so the time taken does not say which
        // matched; an unknown user is checked against the first hash and
        // refused whatever bcrypt says, so it costs what a known one does.
        let mut found: Option<usize> = None;
        for (index, (name, _)) in self.users.iter().enumerate() {
            let same: bool = name.as_bytes().ct_eq(user.as_bytes()).into();
            if same && found.is_none() {
                found = Some(index);
            }
        }
        let Some(first) = self.users.first() else {
            return false;
        };
        let hash = found.map_or_else(|| first.1.clone(), |index| self.users[index].1.clone());
        let Ok(_slot) = BCRYPT_SLOTS.acquire().await else {
            return false;
        };
        let verified =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        let admitted = verified && found.is_some();
        if admitted {
            cache.remember(key);
        } else {
            debug!("basic auth refused");
        }
        admitted
    }
}

impl AuthCache {
    fn fresh(&self, key: &[u8; 32]) -> bool {
        let cache = self.0.borrow();
        cache.get(key).is_some_and(|until| Instant::now() < *until)
    }

    fn remember(&self, key: [u8; 32]) {
        let mut cache = self.0.borrow_mut();
        let now = Instant::now();
        if cache.len() >= AUTH_CACHE_ENTRIES {
            cache.retain(|_, until| now < *until);
            if cache.len() >= AUTH_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, now + AUTH_CACHE_TTL);
    }
}

/// The user and password of an `Authorization: Basic` value (the scheme
/// in any case; the password may hold `:`).
fn basic_credentials(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The client's address as an allow-list sees it: the connection's peer,
/// or, when forwarded headers are trusted, the last address the proxy in
/// front added to `X-Forwarded-For` (the one it saw connect; those before
/// it are the client's word), else `X-Real-IP`.
pub fn client_ip(headers: &impl Headers, peer: IpAddr, trust_forwarded_headers: bool) -> IpAddr {
    if !trust_forwarded_headers {
        return peer;
    }
    let forwarded = headers
        .values(HeaderName::from_static("x-forwarded-for"))
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|list| list.rsplit(',').next())
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    forwarded
        .or_else(|| {
            headers
                .values(HeaderName::from_static("x-real-ip"))
                .next()
                .and_then(|value| value.to_str().ok())
                .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
        })
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http02::header::HeaderMap;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn basic_credentials_are_decoded_with_colons_in_the_password() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:pa:ss");
        assert_eq!(
            basic_credentials(format!("basic {encoded}").as_bytes()),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials(b"Bearer abc"), None);
        assert_eq!(basic_credentials(b"Basic !!!"), None);
    }

    #[test]
    fn the_client_ip_comes_from_forwarded_headers_only_when_trusted() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let sent = headers(&[
            ("x-forwarded-for", "10.0.0.1, 192.0.2.9"),
            ("x-real-ip", "10.0.0.2"),
        ]);
        assert_eq!(client_ip(&sent, peer, false), peer);
        assert_eq!(
            client_ip(&sent, peer, true),
            "192.0.2.9".parse::<IpAddr>().unwrap(),
            "the address the proxy in front saw, not the client's claim"
        );
        let real = headers(&[("x-real-ip", "10.0.0.2")]);
        assert_eq!(
            client_ip(&real, peer, true),
            "10.0.0.2".parse::<IpAddr>().unwrap()
        );
        let junk = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(client_ip(&junk, peer, true), peer);
    }

    #[tokio::test]
    async fn a_success_is_cached_and_a_wrong_password_is_not() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let auth = crate::plan::BasicAuth {
            users: vec![crate::plan::HtpasswdUser::parse(&format!("alice:{hash}")).unwrap()],
        };
        let credentials = Credentials::new("app.test", &auth);
        let cache = AuthCache::default();
        let basic = |pair: &str| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            headers(&[("authorization", &format!("Basic {encoded}"))])
        };
        assert!(!credentials.admit(&HeaderMap::new(), &cache).await);
        assert!(!credentials.admit(&basic("alice:wrong"), &cache).await);
        assert!(!credentials.admit(&basic("bob:secret"), &cache).await);
        assert!(cache.0.borrow().is_empty(), "failures are not cached");
        assert!(credentials.admit(&basic("alice:secret"), &cache).await);
        assert_eq!(cache.0.borrow().len(), 1);
        assert!(credentials.admit(&basic("alice:secret"), &cache).await);
        assert_eq!(
            cache.0.borrow().len(),
            1,
            "the second one came from the cache"
        );

        // Other users (a reload that changed the hash) do not share the cache.
        let other_hash = bcrypt::hash("other", 4).unwrap();
        let other = Credentials::new(
            "app.test",
            &crate::plan::BasicAuth {
                users: vec![
                    crate::plan::HtpasswdUser::parse(&format!("alice:{other_hash}")).unwrap(),
                ],
            },
        );
        assert!(!other.admit(&basic("alice:secret"), &cache).await);
    }
}
