//! The registry client: asks a registry for the manifest digest a tag points
//! to, without pulling. One `HEAD /v2/<repository>/manifests/<tag>` with the
//! Accept types of the OCI index, OCI manifest, Docker manifest list and
//! Docker v2 manifest, read `Docker-Content-Digest`; a GET only where a
//! registry gives no digest on HEAD (it counts as a pull on Docker Hub).
//!
//! Authentication as Docker does it: the `WWW-Authenticate` challenge, bearer
//! tokens from the realm (anonymous or with the user's credentials, cached
//! until they expire) and Basic. Credentials come from the Docker config
//! (`credentials`). TLS is always verified (rustls on ring, the system's
//! roots); only registries on loopback addresses are spoken to in plain HTTP,
//! as the Docker Engine treats them as insecure too.
//!
//! Everything a registry sends is treated as hostile: sizes are bounded,
//! digests checked, and no secret reaches a log or an error.

mod challenge;
pub mod credentials;
mod track;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode, Url};
use rustls_platform_verifier::BuilderVerifierExt;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tracing::{debug, info};

pub use challenge::Challenge;
pub use credentials::{Credential, CredentialError, DockerConfig};
pub use track::{newest_in, resolve};

use crate::net::{describe, is_loopback_host};
use crate::plan::{ImageRef, Sensitive, DEFAULT_TAG};

/// The manifest types asked for, most general first: asking for the index
/// makes a multi-arch tag answer with the index digest, which is what a pull
/// by tag records in the image's RepoDigests (like with like).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";
/// Longest a registry request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest token answer read.
const MAX_TOKEN_BYTES: usize = 1024 * 1024;
/// Largest manifest read (GET fallback only).
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest page of a tag list read.
const MAX_TAG_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Tags asked for per page of a tag list.
const TAG_PAGE_SIZE: usize = 1000;
/// Pages of a tag list followed at most (`Link: rel="next"`).
const MAX_TAG_PAGES: usize = 100;
/// Token lifetime when the realm does not say (the token protocol's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A token is renewed this long before it expires.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// How long Basic credentials read from the Docker config are reused.
const CREDENTIAL_CACHE_TTL: Duration = Duration::from_secs(300);
/// The OAuth client id sent with an identity token.
const CLIENT_ID: &str = "dispenser";
/// Sent as `User-Agent`.
const USER_AGENT: &str = concat!("dispenser/", env!("CARGO_PKG_VERSION"));

/// Finds the digest a tag points to. `RegistryClient` is the real one; the
/// watcher's tests hand in a scripted one.
#[async_trait]
pub trait DigestSource: Send + Sync + 'static {
    async fn digest(&self, image: &ImageRef) -> Result<RemoteDigest, RegistryError>;
    /// Every tag of the image's repository (all pages of the tag list).
    async fn tags(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError>;
}

/// What a registry answered for a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDigest {
    /// `sha256:...`, the digest of the manifest (or index) the tag points to.
    pub digest: String,
    /// The registry's `ratelimit-remaining` header, when it sends one.
    pub ratelimit_remaining: Option<String>,
    /// True when the registry gave no digest on HEAD and a GET was needed.
    pub fetched_with_get: bool,
}

/// Why a registry gave no digest. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {registry}: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error("registry {registry} limits the rate of requests (429){}", retry_hint(.retry_after))]
    RateLimited {
        registry: String,
        retry_after: Option<Duration>,
    },
    #[error("registry {registry} refused access to {repository}: {reason}")]
    Unauthorized {
        registry: String,
        repository: String,
        reason: String,
    },
    #[error("registry {registry} has no manifest for {repository}:{tag}")]
    NotFound {
        registry: String,
        repository: String,
        tag: String,
    },
    #[error("registry {registry} answered {status} to {what}")]
    Status {
        registry: String,
        status: u16,
        what: String,
    },
    #[error("registry {registry} answered without a valid digest")]
    NoDigest { registry: String },
    #[error("{image} is pinned by digest and is never polled")]
    Pinned { image: String },
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("cannot set up the registry client: {0}")]
    Setup(String),
}

/// The real registry client. Cheap to share in an `Arc`.
pub struct RegistryClient {
    http: reqwest::Client,
    credentials: Option<DockerConfig>,
    /// `Authorization` values by `registry/repository`, until they expire.
    auth: Mutex<HashMap<String, CachedAuth>>,
    /// Images whose registry gave no digest on HEAD, logged once each.
    get_fallback_logged: Mutex<std::collections::HashSet<String>>,
}

#[derive(Clone)]
struct CachedAuth {
    header: Sensitive,
    expires: Instant,
}

/// A token realm's answer.
#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl RegistryError {
    /// How long the registry asked to be left alone (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// True when the failure concerns the whole registry (down, rate
    /// limited, failing), not one image: every image there backs off.
    pub fn is_registry_wide(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::RateLimited { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// True when the registry itself answered (an unknown tag, a refusal, a
    /// rate limit): only an unreachable or failing registry is down.
    pub fn registry_answered(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } => false,
            RegistryError::Status { status, .. } => *status < 500,
            _ => true,
        }
    }
}

impl RegistryClient {
    /// A client that reads credentials from `credentials` (anonymous when `None`).
    pub fn new(credentials: Option<DockerConfig>) -> Result<RegistryClient, RegistryError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_platform_verifier())
            .map_err(|err| RegistryError::Setup(err.to_string()))?
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(USER_AGENT)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|err| RegistryError::Setup(describe(&err)))?;
        Ok(RegistryClient {
            http,
            credentials,
            auth: Mutex::new(HashMap::new()),
            get_fallback_logged: Mutex::new(Default::default()),
        })
    }

    /// Sends one manifest request with the cached authorization, if any.
    async fn manifest_request(
        &self,
        method: Method,
        image: &ImageRef,
        url: &Url,
    ) -> Result<Response, RegistryError> {
        let mut request = self
            .http
            .request(method, url.clone())
            .header(ACCEPT, MANIFEST_ACCEPT);
        if let Some(header) = self.cached_auth(&auth_key(image)) {
            request = request.header(AUTHORIZATION, header);
        }
        request
            .send()
            .await
            .map_err(|err| RegistryError::Unreachable {
                registry: image.registry.clone(),
                reason: describe(&err),
            })
    }

    /// Sends a manifest request, answering one authentication challenge.
    async fn manifest_with_auth(
        &self,
        method: Method,
        image: &ImageRef,
        url: &Url,
    ) -> Result<Response, RegistryError> {
        let response = self.manifest_request(method.clone(), image, url).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return check_status(image, response);
        }
        let challenge = response
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(Challenge::parse)
            .ok_or_else(|| unauthorized(image, "401 without a usable challenge"))?;
        self.forget_auth(&auth_key(image));
        self.authenticate(image, &challenge).await?;
        let retried = self.manifest_request(method, image, url).await?;
        if retried.status() == StatusCode::UNAUTHORIZED {
            self.forget_auth(&auth_key(image));
            return Err(unauthorized(
                image,
                "the registry refused the credentials (check the docker config)",
            ));
        }
        check_status(image, retried)
    }

    /// Answers a challenge and caches the resulting `Authorization`.
    async fn authenticate(
        &self,
        image: &ImageRef,
        challenge: &Challenge,
    ) -> Result<(), RegistryError> {
        let credential = match &self.credentials {
            Some(config) => config.lookup(&image.registry).await?,
            None => None,
        };
        let (header, lifetime) = match challenge {
            Challenge::Basic => match credential {
                Some(Credential::Basic { username, password }) => (
                    basic_header(&username, &password),
                    CREDENTIAL_CACHE_TTL,
                ),
                Some(Credential::IdentityToken(_)) => {
                    return Err(unauthorized(
                        image,
                        "the registry asks for Basic auth but the docker config holds an identity token",
                    ))
                }
                None => {
                    return Err(unauthorized(
                        image,
                        "the registry asks for credentials and the docker config has none",
                    ))
                }
            },
            Challenge::Bearer { realm, service, .. } => {
                let (token, lifetime) = self
                    .fetch_token(image, realm, service.as_deref(), credential)
                    .await?;
                (Sensitive::new(format!("Bearer {}", token.expose())), lifetime)
            }
        };
        let expires = Instant::now() + lifetime.saturating_sub(TOKEN_EXPIRY_MARGIN);
        if let Ok(mut cache) = self.auth.lock() {
            cache.insert(auth_key(image), CachedAuth { header, expires });
        }
        Ok(())
    }

    /// Gets a pull token for the image's repository from the realm.
    async fn fetch_token(
        &self,
        image: &ImageRef,
        realm: &str,
        service: Option<&str>,
        credential: Option<Credential>,
    ) -> Result<(Sensitive, Duration), RegistryError> {
        let mut url = Url::parse(realm)
            .map_err(|_| unauthorized(image, "the token realm is not a valid URL"))?;
        let loopback = url.host_str().is_some_and(is_loopback_host);
        if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
            return Err(unauthorized(
                image,
                "the token realm must use https (plain http only on loopback)",
            ));
        }
        let scope = format!("repository:{}:pull", image.repository);
        let mut params: Vec<(&str, &str)> = vec![("scope", &scope)];
        if let Some(service) = service {
            params.push(("service", service));
        }
        let request = match &credential {
            Some(Credential::IdentityToken(refresh)) => {
                params.extend([
                    ("grant_type", "refresh_token"),
                    ("client_id", CLIENT_ID),
                    ("refresh_token", refresh.expose()),
                ]);
                self.http
                    .post(url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form_body(&params))
            }
            Some(Credential::Basic { username, password }) => {
                url.query_pairs_mut().extend_pairs(&params);
                self.http.get(url).header(
                    AUTHORIZATION,
                    sensitive_value(&basic_header(username, password))?,
                )
            }
            None => {
                url.query_pairs_mut().extend_pairs(&params);
                self.http.get(url)
            }
        };
        let response = request
            .send()
            .await
            .map_err(|err| RegistryError::Unreachable {
                registry: image.registry.clone(),
                reason: format!("token realm: {}", describe(&err)),
            })?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(RegistryError::RateLimited {
                registry: image.registry.clone(),
                retry_after: retry_after(response.headers()),
            });
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(unauthorized(
                image,
                &format!("the token realm refused the credentials ({status})"),
            ));
        }
        if !status.is_success() {
            return Err(RegistryError::Status {
                registry: image.registry.clone(),
                status: status.as_u16(),
                what: "the token request".into(),
            });
        }
        let body = read_limited(response, MAX_TOKEN_BYTES)
            .await
            .map_err(|reason| RegistryError::Unreachable {
                registry: image.registry.clone(),
                reason: format!("token realm: {reason}"),
            })?;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            unauthorized(
                image,
                "the token realm answered something else than a token",
            )
        })?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|token| !token.is_empty() && HeaderValue::from_str(token).is_ok())
            .ok_or_else(|| unauthorized(image, "the token realm answered without a token"))?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME)
            .max(DEFAULT_TOKEN_LIFETIME);
        debug!(registry = %image.registry, repository = %image.repository, "registry token obtained");
        Ok((Sensitive::new(token), lifetime))
    }

    fn cached_auth(&self, key: &str) -> Option<HeaderValue> {
        let cache = self.auth.lock().ok()?;
        let cached = cache.get(key)?;
        if cached.expires <= Instant::now() {
            return None;
        }
        sensitive_value(&cached.header).ok()
    }

    fn forget_auth(&self, key: &str) {
        if let Ok(mut cache) = self.auth.lock() {
            cache.remove(key);
        }
    }

    /// Logs once per image that its registry needs a GET to tell the digest.
    fn log_get_fallback(&self, image: &ImageRef) {
        let first = self
            .get_fallback_logged
            .lock()
            .map(|mut logged| logged.insert(auth_key(image)))
            .unwrap_or(false);
        if first {
            info!(registry = %image.registry, image = %image, "the registry gives no digest on HEAD; reading the manifest with GET, which counts as a pull");
        }
    }
}

#[async_trait]
impl DigestSource for RegistryClient {
    async fn digest(&self, image: &ImageRef) -> Result<RemoteDigest, RegistryError> {
        if image.digest.is_some() {
            return Err(RegistryError::Pinned {
                image: image.to_string(),
            });
        }
        let tag = image.tag.as_deref().unwrap_or(DEFAULT_TAG);
        let url = manifest_url(image, tag)?;
        let head = self.manifest_with_auth(Method::HEAD, image, &url).await?;
        let ratelimit_remaining = header_text(head.headers(), "ratelimit-remaining");
        if let Some(digest) = content_digest(head.headers()) {
            return Ok(RemoteDigest {
                digest,
                ratelimit_remaining,
                fetched_with_get: false,
            });
        }
        self.log_get_fallback(image);
        let get = self.manifest_with_auth(Method::GET, image, &url).await?;
        let ratelimit_remaining = header_text(get.headers(), "ratelimit-remaining");
        let from_header = content_digest(get.headers());
        let body = read_limited(get, MAX_MANIFEST_BYTES)
            .await
            .map_err(|reason| RegistryError::Unreachable {
                registry: image.registry.clone(),
                reason,
            })?;
        let digest = match from_header {
            Some(digest) => digest,
            None if body.is_empty() => {
                return Err(RegistryError::NoDigest {
                    registry: image.registry.clone(),
                })
            }
            None => format!("sha256:{}", hex::encode(Sha256::digest(&body))),
        };
        Ok(RemoteDigest {
            digest,
            ratelimit_remaining,
            fetched_with_get: true,
        })
    }

    async fn tags(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError> {
        let mut url = registry_url(image, &format!("tags/list?n={TAG_PAGE_SIZE}"))?;
        let mut tags = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let page = self.manifest_with_auth(Method::GET, image, &url).await?;
            let next = next_page(page.headers(), &url);
            let body = read_limited(page, MAX_TAG_PAGE_BYTES)
                .await
                .map_err(|reason| RegistryError::Unreachable {
                    registry: image.registry.clone(),
                    reason,
                })?;
            let page: TagPage =
                serde_json::from_slice(&body).map_err(|_| RegistryError::Status {
                    registry: image.registry.clone(),
                    status: 200,
                    what: format!("the tag list of {image} (not a tag list)"),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => url = next,
                None => return Ok(tags),
            }
        }
        debug!(image = %image, pages = MAX_TAG_PAGES, "tag list cut at its page limit");
        Ok(tags)
    }
}

/// `<scheme>://<host>/v2/<repository>/manifests/<tag>`.
fn manifest_url(image: &ImageRef, tag: &str) -> Result<Url, RegistryError> {
    registry_url(image, &format!("manifests/{tag}"))
}

/// `<scheme>://<host>/v2/<repository>/<rest>`: plain HTTP for a loopback
/// registry only.
fn registry_url(image: &ImageRef, rest: &str) -> Result<Url, RegistryError> {
    let host = image.registry_host();
    let scheme = if is_loopback_host(host_without_port(host)) {
        "http"
    } else {
        "https"
    };
    Url::parse(&format!("{scheme}://{host}/v2/{}/{rest}", image.repository))
        .map_err(|err| RegistryError::Setup(format!("bad registry url for {image}: {err}")))
}

/// One page of a tag list.
#[derive(Deserialize)]
struct TagPage {
    tags: Option<Vec<String>>,
}

/// The next page of a tag list, from `Link: <...>; rel="next"` (RFC 5988),
/// resolved against `current`. A link to another host or scheme is refused:
/// the registry's credentials are never sent elsewhere.
fn next_page(headers: &HeaderMap, current: &Url) -> Option<Url> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    let target = link.split(',').find_map(|entry| {
        let (target, params) = entry.trim().split_once(';')?;
        let next = params
            .split(';')
            .any(|param| matches!(param.trim(), "rel=\"next\"" | "rel=next"));
        next.then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
    })?;
    let url = current.join(target).ok()?;
    (url.origin() == current.origin()).then_some(url)
}

/// Turns a manifest answer's status into an error where it is one.
fn check_status(image: &ImageRef, response: Response) -> Result<Response, RegistryError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    Err(match status {
        StatusCode::TOO_MANY_REQUESTS => RegistryError::RateLimited {
            registry: image.registry.clone(),
            retry_after: retry_after(response.headers()),
        },
        StatusCode::NOT_FOUND => RegistryError::NotFound {
            registry: image.registry.clone(),
            repository: image.repository.clone(),
            tag: image.tag.clone().unwrap_or_else(|| DEFAULT_TAG.into()),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            unauthorized(image, &format!("the registry answered {status}"))
        }
        _ => RegistryError::Status {
            registry: image.registry.clone(),
            status: status.as_u16(),
            what: format!("the manifest request for {image}"),
        },
    })
}

fn unauthorized(image: &ImageRef, reason: &str) -> RegistryError {
    RegistryError::Unauthorized {
        registry: image.registry.clone(),
        repository: image.repository.clone(),
        reason: reason.to_string(),
    }
}

fn auth_key(image: &ImageRef) -> String {
    format!("{}/{}", image.registry, image.repository)
}

fn basic_header(username: &str, password: &Sensitive) -> Sensitive {
    let pair = format!("{username}:{}", password.expose());
    Sensitive::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

/// A header value marked sensitive (never printed by the HTTP stack).
fn sensitive_value(value: &Sensitive) -> Result<HeaderValue, RegistryError> {
    let mut header = HeaderValue::from_str(value.expose())
        .map_err(|_| RegistryError::Setup("credentials hold characters a header cannot".into()))?;
    header.set_sensitive(true);
    Ok(header)
}

/// `application/x-www-form-urlencoded` body of `params`.
fn form_body(params: &[(&str, &str)]) -> String {
    let mut url = Url::parse("http://form.invalid/").expect("a constant URL parses");
    url.query_pairs_mut().extend_pairs(params);
    url.query().unwrap_or_default().to_string()
}

/// `Docker-Content-Digest`, when present and well formed.
fn content_digest(headers: &HeaderMap) -> Option<String> {
    let value = header_text(headers, "docker-content-digest")?;
    is_digest(&value).then_some(value)
}

/// True for `sha256:` + 64 lowercase hex digits (or sha512 with 128).
pub fn is_digest(text: &str) -> bool {
    let Some((algorithm, hex)) = text.split_once(':') else {
        return false;
    };
    let length = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == length
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A header as text, when it is printable and short.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty() && value.len() <= 256).then(|| value.to_string())
}

/// `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Reads a body, refusing one larger than `limit`.
async fn read_limited(mut response: Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|err| describe(&err))? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn host_without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!(", retry after {}s", wait.as_secs()),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
