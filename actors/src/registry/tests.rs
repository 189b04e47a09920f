//! Tests of the registry client against a small stand-in registry on
//! 127.0.0.1: the bearer challenge flow (anonymous, Basic credentials,
//! identity token), Basic auth, the GET fallback, 429 and `Retry-After`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

/// An answer: status, headers, body.
struct Answer(u16, Vec<(&'static str, String)>, String);

type Route = dyn Fn(&Seen, u16) -> Answer + Send + Sync;

/// A one-thread HTTP/1.1 server answering each connection's one request.
struct StandIn {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl StandIn {
    async fn start(route: impl Fn(&Seen, u16) -> Answer + Send + Sync + 'static) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let route: Arc<Route> = Arc::new(route);
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let route = route.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    while let Some(request) = read_request(&mut socket).await {
                        log.lock().unwrap().push(request.clone());
                        let Answer(status, headers, body) = route(&request, port);
                        let mut text = format!("HTTP/1.1 {status} X\r\n");
                        for (name, value) in headers {
                            text.push_str(&format!("{name}: {value}\r\n"));
                        }
                        let length = if request.method == "HEAD" {
                            0
                        } else {
                            body.len()
                        };
                        if request.method == "HEAD" {
                            text.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
                        } else {
                            text.push_str(&format!("content-length: {length}\r\n\r\n{body}"));
                        }
                        if socket.write_all(text.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        StandIn { port, seen }
    }

    fn image(&self) -> ImageRef {
        ImageRef::parse(&format!("127.0.0.1:{}/team/app:v1", self.port)).unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// `METHOD path` of every request, query left off.
    fn lines(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| format!("{} {}", s.method, s.path.split('?').next().unwrap()))
            .collect()
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 4096];
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Some(Seen {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn docker_config(json: &str) -> (tempfile::TempDir, DockerConfig) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, json).unwrap();
    (dir, DockerConfig::at(path))
}

fn auths(port: u16, user: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!(r#"{{"auths":{{"127.0.0.1:{port}":{{"auth":"{auth}"}}}}}}"#)
}

/// A registry behind a token realm on the same server: the manifest wants
/// `Bearer good-token`; the realm gives it to `check(request)` callers.
fn token_registry(
    check: impl Fn(&Seen) -> bool + Send + Sync + 'static,
) -> impl Fn(&Seen, u16) -> Answer + Send + Sync + 'static {
    move |request, port| {
        if request.path.starts_with("/token") {
            if !check(request) {
                return Answer(401, vec![], String::new());
            }
            return Answer(
                200,
                vec![("content-type", "application/json".into())],
                r#"{"token":"good-token","expires_in":300}"#.into(),
            );
        }
        if request.headers.get("authorization").map(String::as_str) == Some("Bearer good-token") {
            return Answer(
                200,
                vec![("docker-content-digest", DIGEST.into())],
                "{}".into(),
            );
        }
        Answer(
            401,
            vec![(
                "www-authenticate",
                format!(
                    r#"Bearer realm="http://127.0.0.1:{port}/token",service="stand-in",scope="repository:team/app:pull""#
                ),
            )],
            String::new(),
        )
    }
}

#[tokio::test]
async fn anonymous_bearer_flow_and_the_token_is_cached() {
    let registry = StandIn::start(token_registry(|request| {
        !request.headers.contains_key("authorization")
            && request
                .path
                .contains("scope=repository%3Ateam%2Fapp%3Apull")
            && request.path.contains("service=stand-in")
    }))
    .await;
    let client = RegistryClient::new(None).unwrap();
    let first = client.digest(&registry.image()).await.unwrap();
    assert_eq!(first.digest, DIGEST);
    assert!(!first.fetched_with_get);
    let second = client.digest(&registry.image()).await.unwrap();
    assert_eq!(second.digest, DIGEST);
    assert_eq!(
        registry.lines(),
        vec![
            "HEAD /v2/team/app/manifests/v1",
            "GET /token",
            "HEAD /v2/team/app/manifests/v1",
            "HEAD /v2/team/app/manifests/v1",
        ]
    );
    let accept = &registry.seen()[0].headers["accept"];
    for media_type in [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ] {
        assert!(accept.contains(media_type), "{accept}");
    }
}

#[tokio::test]
async fn bearer_flow_sends_docker_config_credentials_to_the_realm() {
    let expected = basic("ci", "pa:ss");
    let registry = StandIn::start(token_registry(move |request| {
        request.headers.get("authorization") == Some(&expected)
    }))
    .await;
    let (_dir, config) = docker_config(&auths(registry.port, "ci", "pa:ss"));
    let client = RegistryClient::new(Some(config)).unwrap();
    assert_eq!(
        client.digest(&registry.image()).await.unwrap().digest,
        DIGEST
    );

    let (_dir, wrong) = docker_config(&auths(registry.port, "ci", "wrong"));
    let client = RegistryClient::new(Some(wrong)).unwrap();
    let err = client.digest(&registry.image()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(!err.to_string().contains("wrong"), "{err}");
}

#[tokio::test]
async fn identity_token_is_exchanged_with_a_post() {
    let registry = StandIn::start(token_registry(|request| {
        request.method == "POST"
            && request.body.contains("grant_type=refresh_token")
            && request.body.contains("refresh_token=refresh-me")
            && request.body.contains("client_id=dispenser")
    }))
    .await;
    let json = format!(
        r#"{{"auths":{{"127.0.0.1:{}":{{"identitytoken":"refresh-me"}}}}}}"#,
        registry.port
    );
    let (_dir, config) = docker_config(&json);
    let client = RegistryClient::new(Some(config)).unwrap();
    assert_eq!(
        client.digest(&registry.image()).await.unwrap().digest,
        DIGEST
    );
}

#[tokio::test]
async fn basic_challenge_uses_the_docker_config() {
    let expected = basic("alice", "s3cret");
    let registry = StandIn::start(move |request, _| {
        if request.headers.get("authorization") == Some(&expected) {
            Answer(
                200,
                vec![("docker-content-digest", DIGEST.into())],
                String::new(),
            )
        } else {
            Answer(
                401,
                vec![("www-authenticate", r#"Basic realm="r""#.into())],
                String::new(),
            )
        }
    })
    .await;
    let anonymous = RegistryClient::new(None).unwrap();
    let err = anonymous.digest(&registry.image()).await.unwrap_err();
    assert!(err.to_string().contains("has none"), "{err}");

    let (_dir, config) = docker_config(&auths(registry.port, "alice", "s3cret"));
    let client = RegistryClient::new(Some(config)).unwrap();
    assert_eq!(
        client.digest(&registry.image()).await.unwrap().digest,
        DIGEST
    );
    client.digest(&registry.image()).await.unwrap();
    // The second round reuses the header: no new 401.
    let last_two: Vec<String> = registry.lines().into_iter().rev().take(2).collect();
    assert_eq!(last_two, vec!["HEAD /v2/team/app/manifests/v1"; 2]);
    assert_eq!(registry.seen().len(), 4);
}

#[tokio::test]
async fn get_fallback_when_head_has_no_digest() {
    let manifest = r#"{"schemaVersion":2}"#;
    let registry = StandIn::start(move |_, _| {
        Answer(
            200,
            vec![("ratelimit-remaining", "99;w=21600".into())],
            manifest.into(),
        )
    })
    .await;
    let client = RegistryClient::new(None).unwrap();
    let found = client.digest(&registry.image()).await.unwrap();
    let expected = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(manifest.as_bytes()))
    );
    assert_eq!(found.digest, expected);
    assert!(found.fetched_with_get);
    assert_eq!(found.ratelimit_remaining.as_deref(), Some("99;w=21600"));
    assert_eq!(
        registry.lines(),
        vec![
            "HEAD /v2/team/app/manifests/v1",
            "GET /v2/team/app/manifests/v1"
        ]
    );
}

#[tokio::test]
async fn rate_limits_not_found_and_bad_digests() {
    let registry = StandIn::start(|request, _| {
        if request.path.contains("/missing/") {
            return Answer(404, vec![], String::new());
        }
        if request.path.contains("/bad/") {
            return Answer(
                200,
                vec![("docker-content-digest", "sha256:../../etc".into())],
                String::new(),
            );
        }
        Answer(429, vec![("retry-after", "7".into())], String::new())
    })
    .await;
    let client = RegistryClient::new(None).unwrap();
    let err = client.digest(&registry.image()).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.is_registry_wide());
    let missing = ImageRef::parse(&format!("127.0.0.1:{}/missing/x", registry.port)).unwrap();
    let err = client.digest(&missing).await.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    assert!(!err.is_registry_wide());
    let bad = ImageRef::parse(&format!("127.0.0.1:{}/bad/x", registry.port)).unwrap();
    let err = client.digest(&bad).await.unwrap_err();
    assert!(matches!(err, RegistryError::NoDigest { .. }), "{err}");
}

#[tokio::test]
async fn unreachable_registry_and_pinned_images() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = RegistryClient::new(None).unwrap();
    let image = ImageRef::parse(&format!("127.0.0.1:{port}/app")).unwrap();
    let err = client.digest(&image).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err}");
    let pinned = ImageRef::parse(&format!("app@{DIGEST}")).unwrap();
    assert!(matches!(
        client.digest(&pinned).await,
        Err(RegistryError::Pinned { .. })
    ));
}

#[test]
fn urls_use_https_except_on_loopback() {
    let url = |text: &str| {
        let image = ImageRef::parse(text).unwrap();
        manifest_url(&image, image.tag.as_deref().unwrap())
            .unwrap()
            .to_string()
    };
    assert_eq!(
        url("nginx"),
        "https://registry-1.docker.io/v2/library/nginx/manifests/latest"
    );
    assert_eq!(
        url("ghcr.io/org/app:1"),
        "https://ghcr.io/v2/org/app/manifests/1"
    );
    assert_eq!(
        url("127.0.0.1:5000/app:2"),
        "http://127.0.0.1:5000/v2/app/manifests/2"
    );
    assert_eq!(
        url("localhost:5000/app"),
        "http://localhost:5000/v2/app/manifests/latest"
    );
}

#[test]
fn retry_after_as_a_date() {
    let mut headers = HeaderMap::new();
    let later = SystemTime::now() + Duration::from_secs(120);
    headers.insert(
        RETRY_AFTER,
        HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
    );
    let wait = retry_after(&headers).unwrap();
    assert!(
        wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );
}

#[tokio::test]
async fn the_tag_list_follows_its_pages_behind_a_token_and_never_to_another_host() {
    let registry = StandIn::start(|request: &Seen, port| {
        if request.path.starts_with("/token") {
            return Answer(200, vec![], r#"{"token":"good-token"}"#.into());
        }
        if request.headers.get("authorization").map(String::as_str) != Some("Bearer good-token") {
            return Answer(
                401,
                vec![(
                    "www-authenticate",
                    format!(r#"Bearer realm="http://127.0.0.1:{port}/token",service="stand-in""#),
                )],
                String::new(),
            );
        }
        if request.path == "/v2/team/app/manifests/1.3.0" {
            return Answer(
                200,
                vec![("docker-content-digest", DIGEST.into())],
                String::new(),
            );
        }
        let (tags, link) = if request.path.contains("last=1.2.0") {
            (
                r#"["1.3.0","2.0.0"]"#,
                // A hostile next page elsewhere: never followed.
                Some(
                    "<http://127.0.0.2:9/v2/team/app/tags/list?last=2.0.0>; rel=\"next\""
                        .to_string(),
                ),
            )
        } else {
            (
                r#"["1.1.0","1.2.0"]"#,
                Some("</v2/team/app/tags/list?n=2&last=1.2.0>; rel=\"next\"".to_string()),
            )
        };
        Answer(
            200,
            link.map(|link| ("link", link)).into_iter().collect(),
            format!(r#"{{"name":"team/app","tags":{tags}}}"#),
        )
    })
    .await;
    let client = RegistryClient::new(None).unwrap();
    let tags = client.tags(&registry.image()).await.unwrap();
    assert_eq!(tags, ["1.1.0", "1.2.0", "1.3.0", "2.0.0"]);
    assert_eq!(
        registry.lines(),
        [
            "GET /v2/team/app/tags/list",
            "GET /token",
            "GET /v2/team/app/tags/list",
            "GET /v2/team/app/tags/list",
        ]
    );
    // And the newest in `^1.2` resolves to that tag's digest.
    let (remote, tag) = resolve(&client, &registry.image(), Some("^1.2"))
        .await
        .unwrap();
    assert_eq!(tag.as_deref(), Some("1.3.0"));
    assert_eq!(remote.digest, DIGEST.to_string());
}
