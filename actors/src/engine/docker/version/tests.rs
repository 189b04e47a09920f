//! Tests of API version negotiation, against a stand-in daemon on 127.0.0.1
//! that answers `/v<version>/version` as a Docker Engine of a given range would.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

use super::*;

/// The API versions a stand-in daemon accepts, and the paths it was asked.
#[derive(Clone)]
struct StandIn {
    minimum: (usize, usize),
    maximum: (usize, usize),
    paths: Arc<Mutex<Vec<String>>>,
}

impl StandIn {
    fn new(minimum: (usize, usize), maximum: (usize, usize)) -> Self {
        Self {
            minimum,
            maximum,
            paths: Arc::default(),
        }
    }

    fn last_path(&self) -> Option<String> {
        self.paths.lock().expect("paths").last().cloned()
    }

    /// Answers one request as moby's version middleware does (no version in
    /// the path means the daemon's maximum).
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S) {
        let mut request = Vec::new();
        let mut buffer = [0_u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        let text = String::from_utf8_lossy(&request);
        let path = text
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        self.paths.lock().expect("paths").push(path.clone());
        let asked: Option<(usize, usize)> = path
            .strip_prefix("/v")
            .and_then(|path| path.split_once('/'))
            .and_then(|(version, _)| version.split_once('.'))
            .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)));
        let (minimum, maximum) = (self.minimum, self.maximum);
        let (status, body) = match asked {
            Some(version) if version > maximum => (
                "400 Bad Request",
                format!(
                    r#"{{"message":"client version {}.{} is too new. Maximum supported API version is {}.{}"}}"#,
                    version.0, version.1, maximum.0, maximum.1
                ),
            ),
            Some(version) if version < minimum => (
                "400 Bad Request",
                format!(
                    r#"{{"message":"client version {}.{} is too old. Minimum supported API version is {}.{}"}}"#,
                    version.0, version.1, minimum.0, minimum.1
                ),
            ),
            _ => (
                "200 OK",
                format!(
                    r#"{{"ApiVersion":"{}.{}","MinAPIVersion":"{}.{}"}}"#,
                    maximum.0, maximum.1, minimum.0, minimum.1
                ),
            ),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
    }
}

/// A stand-in daemon on 127.0.0.1; returns its `tcp://` address.
async fn stand_in_daemon(minimum: (usize, usize), maximum: (usize, usize)) -> (String, StandIn) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let daemon = StandIn::new(minimum, maximum);
    let serving = daemon.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            serving.serve(stream).await;
        }
    });
    (format!("tcp://{address}"), daemon)
}

/// Negotiates with a stand-in daemon; returns the version and the path of
/// the last request, which must carry that version.
async fn negotiated(minimum: (usize, usize), maximum: (usize, usize)) -> String {
    let (host, paths) = stand_in_daemon(minimum, maximum).await;
    let version = negotiate(Some(&host), 5)
        .await
        .expect("negotiated")
        .client_version()
        .to_string();
    assert_eq!(
        paths.last_path(),
        Some(format!("/v{version}/version")),
        "requests are pinned"
    );
    version
}

#[tokio::test]
async fn speaks_1_41_to_a_debian_12_daemon() {
    assert_eq!(negotiated((1, 12), (1, 41)).await, "1.41");
}

#[tokio::test]
async fn speaks_the_maximum_of_a_daemon_between_1_44_and_its_own() {
    assert_eq!(negotiated((1, 24), (1, 47)).await, "1.47");
}

#[tokio::test]
async fn speaks_its_own_version_to_a_current_daemon_that_refuses_old_clients() {
    let own = API_DEFAULT_VERSION.to_string();
    assert_eq!(negotiated((1, 44), (1, 53)).await, own);
    assert_eq!(negotiated((1, 44), (1, 60)).await, own);
}

#[tokio::test]
async fn pins_the_version_over_a_unix_socket_too() {
    let folder = tempfile::tempdir().expect("temp dir");
    let socket = folder.path().join("docker.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let daemon = StandIn::new((1, 12), (1, 41));
    let serving = daemon.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            serving.serve(stream).await;
        }
    });
    let host = format!("unix://{}", socket.display());
    let docker = negotiate(Some(&host), 5).await.expect("negotiated");
    assert_eq!(docker.client_version().to_string(), "1.41");
    assert_eq!(daemon.last_path().as_deref(), Some("/v1.41/version"));
}

#[tokio::test]
async fn a_daemon_with_no_common_version_is_an_error() {
    let (host, _) = stand_in_daemon((1, 90), (1, 99)).await;
    match negotiate(Some(&host), 5).await {
        Err(EngineError::Unreachable(reason)) => assert!(reason.contains("too old"), "{reason}"),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_closed_port_or_missing_socket_is_unreachable() {
    for host in ["tcp://127.0.0.1:1", "unix:///nonexistent/docker.sock"] {
        assert!(
            matches!(
                negotiate(Some(host), 5).await,
                Err(EngineError::Unreachable(_))
            ),
            "{host}"
        );
    }
}

#[tokio::test]
async fn an_unknown_scheme_is_refused() {
    assert!(matches!(
        negotiate(Some("ftp://example.invalid"), 5).await,
        Err(EngineError::Unreachable(_))
    ));
}

#[test]
fn reads_the_maximum_from_a_too_new_refusal() {
    let message = "client version 1.53 is too new. Maximum supported API version is 1.41";
    let version = maximum_version(message).expect("a version");
    assert_eq!((version.major_version, version.minor_version), (1, 41));
}

#[test]
fn ignores_a_trailing_period() {
    let version = maximum_version("... Maximum supported API version is 1.47.").expect("a version");
    assert_eq!((version.major_version, version.minor_version), (1, 47));
}

#[test]
fn other_refusals_name_no_version() {
    assert!(maximum_version("client version 1.24 is too old").is_none());
    assert!(maximum_version("Maximum supported API version is x").is_none());
}
