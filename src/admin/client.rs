//! The CLI's side of the admin API: one HTTP/1.1 request over the unix
//! socket, with errors that say what to do.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use super::report::StatusReport;

/// Why the CLI could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no daemon is running for {config}: start it with `systemctl start dispenser` \
         (or run `dispenser` in that folder)"
    )]
    NotRunning { config: String },
    #[error(
        "permission denied on {socket}: run as the daemon's user or add yourself to the \
         socket's group (e.g. `sudo usermod -aG dispenser $USER`, then log in again)"
    )]
    PermissionDenied { socket: String },
    #[error("cannot reach the daemon at {socket}: {reason}")]
    Io { socket: String, reason: String },
    #[error("{message}")]
    Refused { status: StatusCode, message: String },
    #[error("the daemon's answer cannot be read: {0}")]
    Decode(String),
    /// Something on this side failed (signals could not be set up).
    #[error("{0}")]
    Local(String),
}

/// Longest progress line read from the daemon.
const MAX_PROGRESS_LINE: usize = 64 * 1024;

/// A progress view drawing in the background; `finish` ends it.
pub struct ProgressWatch {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressWatch {
    /// Stops drawing and clears what is still drawn.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// A connection target: the socket beside a config file.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    config: PathBuf,
}

impl Client {
    /// The client for the daemon that runs `config`.
    pub fn for_config(config: &Path) -> Client {
        Client {
            socket: super::socket_path(config),
            config: config.to_path_buf(),
        }
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        let body = self.request(Method::GET, "/v1/status").await?;
        let bytes = collect(body).await?;
        serde_json::from_slice(&bytes).map_err(|err| ClientError::Decode(err.to_string()))
    }

    /// `POST /v1/services/{service}/{action}`: the daemon's message.
    pub async fn action(&self, service: &str, action: &str) -> Result<String, ClientError> {
        let path = format!("/v1/services/{}/{action}", encode(service));
        let body = self.request(Method::POST, &path).await?;
        let bytes = collect(body).await?;
        let answer: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|err| ClientError::Decode(err.to_string()))?;
        Ok(answer["message"].as_str().unwrap_or_default().to_owned())
    }

    /// `POST /v1/services/{service}/maintenance`: on or off, with an
    /// optional message for the page; the daemon's message.
    pub async fn maintenance(
        &self,
        service: &str,
        on: bool,
        message: Option<&str>,
    ) -> Result<String, ClientError> {
        let mut path = format!("/v1/services/{}/maintenance?on={on}", encode(service));
        if let Some(message) = message {
            path.push_str("&message=");
            path.push_str(&encode(message));
        }
        let body = self.request(Method::POST, &path).await?;
        let bytes = collect(body).await?;
        let answer: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|err| ClientError::Decode(err.to_string()))?;
        Ok(answer["message"].as_str().unwrap_or_default().to_owned())
    }

    /// `GET /v1/progress`, drawn by `view` until the returned watch is
    /// finished; `None` when the daemon offers no progress (the work is
    /// then done without it).
    pub async fn watch_progress(&self, mut view: super::progress::View) -> Option<ProgressWatch> {
        let mut body = self.request(Method::GET, "/v1/progress").await.ok()?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut pending = Vec::new();
            loop {
                let frame = tokio::select! {
                    _ = &mut stopped => break,
                    frame = body.frame() => frame,
                };
                let Some(Ok(frame)) = frame else { break };
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                pending.extend_from_slice(data);
                while let Some(end) = pending.iter().position(|byte| *byte == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(update) = serde_json::from_slice(&line) {
                        view.show(&update);
                    }
                }
                // A line longer than any update is not one: drop it.
                if pending.len() > MAX_PROGRESS_LINE {
                    pending.clear();
                }
            }
            view.finish();
        });
        Some(ProgressWatch { stop, task })
    }

    /// `GET /v1/logs/{service}`: copies the output to stdout as it comes.
    pub async fn logs(&self, service: &str, tail: usize, follow: bool) -> Result<(), ClientError> {
        let path = format!(
            "/v1/logs/{}?tail={tail}&follow={}",
            encode(service),
            u8::from(follow)
        );
        let mut body = self.request(Method::GET, &path).await?;
        let mut stdout = std::io::stdout().lock();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|err| self.io(err.to_string()))?;
            if let Some(data) = frame.data_ref() {
                if stdout
                    .write_all(data)
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    // stdout closed (`| head`): stop quietly.
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Sends one request; an answer other than 2xx is `Refused` with the
    /// daemon's message.
    async fn request(
        &self,
        method: Method,
        path: &str,
    ) -> Result<hyper::body::Incoming, ClientError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    ClientError::NotRunning {
                        config: self.config.display().to_string(),
                    }
                }
                std::io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                    socket: self.socket.display().to_string(),
                },
                _ => self.io(err.to_string()),
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| self.io(err.to_string()))?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "dispenser")
            .body(Empty::<Bytes>::new())
            .map_err(|err| self.io(err.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| self.io(err.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response.into_body());
        }
        let bytes = collect(response.into_body()).await?;
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|value| value["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
        Err(ClientError::Refused { status, message })
    }

    fn io(&self, reason: String) -> ClientError {
        ClientError::Io {
            socket: self.socket.display().to_string(),
            reason,
        }
    }
}

async fn collect(body: hyper::body::Incoming) -> Result<Bytes, ClientError> {
    body.collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|err| ClientError::Decode(err.to_string()))
}

/// Percent-encodes a path segment (service names are simple, but the
/// argument comes from a person).
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The status report as a table for people.
pub fn table(report: &StatusReport) -> String {
    let headers = [
        "SERVICE",
        "STATE",
        "IMAGE",
        "DIGEST",
        "UPTIME",
        "LAST DEPLOY",
        "NEXT RUN",
        "ROUTES",
        "CERT EXPIRES",
    ];
    let rows: Vec<[String; 9]> = report
        .services
        .iter()
        .map(|service| {
            [
                service.name.clone(),
                service.state_text(),
                service.image.clone(),
                service.short_digest.clone().unwrap_or_else(|| "-".into()),
                service.uptime().unwrap_or_else(|| "-".into()),
                service.last_deploy_text().unwrap_or_else(|| "-".into()),
                service.next_run.clone().unwrap_or_else(|| "-".into()),
                match (&service.routes[..], &service.route_state) {
                    ([], _) => "-".into(),
                    (routes, Some(state)) => format!("{} ({state})", routes.join(" ")),
                    (routes, None) => routes.join(" "),
                },
                service
                    .certificate_expires
                    .clone()
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(&headers);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    if rows.is_empty() {
        out.push_str("(no services)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("api-1"), "api-1");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }

    #[tokio::test]
    async fn a_missing_socket_says_how_to_start_the_daemon() {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = Client::for_config(&dir.path().join("dispenser.toml"));
        let err = client.status().await.expect_err("no daemon");
        assert!(matches!(err, ClientError::NotRunning { .. }));
        assert!(err.to_string().contains("systemctl start dispenser"));
    }
}
