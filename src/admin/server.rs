//! `AdminServer`: hyper HTTP/1.1 on the unix socket (and the optional
//! loopback TCP address), one task per connection on the actix system's
//! runtime; the handlers only ask actors and the engine.

use std::convert::Infallible;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use dispenser_actors::events::{self, Event};
use dispenser_actors::metrics;
use dispenser_actors::supervisor::{DeployNow, RollbackNow};
use futures_util::TryStreamExt;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tracing::{debug, error, info, warn};

use super::{page, report, AdminError, AdminState, SOCKET_MODE};

/// Lines of output `GET /v1/logs` returns when `tail` is not given.
const DEFAULT_TAIL: usize = 100;
/// Largest `tail` accepted.
const MAX_TAIL: usize = 100_000;

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// The running admin listeners; dropping it removes the socket file.
pub struct AdminServer {
    socket: PathBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What a listener may do: the socket is guarded by its file mode; any
/// local user can reach the loopback address, so it only reads status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Full,
    ReadOnly,
}

/// `POST` answers.
#[derive(Debug, Serialize)]
struct ActionAnswer {
    ok: bool,
    message: String,
}

impl AdminServer {
    /// Binds the socket (replacing a stale file: the pidfile proves no other
    /// daemon uses this folder), sets its mode, and serves. Must run inside
    /// the actix system.
    pub fn start(
        socket: &Path,
        tcp: Option<std::net::SocketAddr>,
        state: AdminState,
    ) -> Result<AdminServer, AdminError> {
        let socket_error = |source| AdminError::Socket {
            path: socket.display().to_string(),
            source,
        };
        match fs::remove_file(socket) {
            Ok(()) => debug!(socket = %socket.display(), "removed a stale admin socket"),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(socket_error(err)),
        }
        let listener = UnixListener::bind(socket).map_err(socket_error)?;
        fs::set_permissions(socket, fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(socket_error)?;
        info!(socket = %socket.display(), "admin API listening");
        let mut tasks = Vec::new();
        let unix_state = state.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => serve(stream, unix_state.clone(), Access::Full),
                    Err(err) => warn!(error = %err, "admin socket accept failed"),
                }
            }
        }));
        if let Some(address) = tcp {
            // The socket is enough to run: a busy port is reported, not fatal.
            match bind_tcp(address) {
                Ok(listener) => {
                    info!(address = %address, "admin API listening on loopback");
                    tasks.push(tokio::spawn(async move {
                        loop {
                            match listener.accept().await {
                                Ok((stream, _)) => serve(stream, state.clone(), Access::ReadOnly),
                                Err(err) => warn!(error = %err, "admin accept failed"),
                            }
                        }
                    }));
                }
                Err(err) => error!(error = %err, "the admin API is on the socket only"),
            }
        }
        Ok(AdminServer {
            socket: socket.to_path_buf(),
            tasks,
        })
    }
}

fn bind_tcp(address: std::net::SocketAddr) -> Result<TcpListener, AdminError> {
    let tcp_error = |source| AdminError::Tcp { address, source };
    let listener = std::net::TcpListener::bind(address).map_err(tcp_error)?;
    listener.set_nonblocking(true).map_err(tcp_error)?;
    TcpListener::from_std(listener).map_err(tcp_error)
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let _ = fs::remove_file(&self.socket);
    }
}

fn serve<S>(stream: S, state: AdminState, access: Access)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(route(req, &state, access).await) }
        });
        if let Err(err) = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await
        {
            debug!(error = %err, "admin connection ended");
        }
    });
}

async fn route(req: Request<Incoming>, state: &AdminState, access: Access) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let socket_only = matches!(
        segments.as_slice(),
        ["v1", "logs", ..] | ["v1", "services", ..]
    );
    if access == Access::ReadOnly && socket_only {
        return error(
            StatusCode::FORBIDDEN,
            "logs, deploy and rollback are only served on the unix socket",
        );
    }
    match (req.method(), segments.as_slice()) {
        (&Method::GET, [""]) => {
            let report = report::gather(state).await;
            match page::render(&report) {
                Ok(html) => text(StatusCode::OK, "text/html; charset=utf-8", html),
                Err(err) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("cannot render the page: {err}\n"),
                ),
            }
        }
        (&Method::GET, ["metrics"]) => {
            let mut out = String::new();
            metrics::global().render(&mut out);
            certificate_expiry(state, &mut out);
            text(StatusCode::OK, "text/plain; version=0.0.4", out)
        }
        (&Method::GET, ["v1", "status"]) => json(StatusCode::OK, &report::gather(state).await),
        (&Method::GET, ["v1", "logs", service]) => logs(state, service, req.uri().query()).await,
        (&Method::POST, ["v1", "services", service, action @ ("deploy" | "rollback")]) => {
            operator_action(state, service, action).await
        }
        (_, ["v1", ..] | ["metrics"] | [""]) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

async fn logs(state: &AdminState, service: &str, query: Option<&str>) -> Response<Body> {
    let mut tail = DEFAULT_TAIL;
    let mut follow = false;
    for pair in query.unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("tail", value)) => match value.parse::<usize>() {
                Ok(value) => tail = value.min(MAX_TAIL),
                Err(_) => return error(StatusCode::BAD_REQUEST, "tail must be a number"),
            },
            Some(("follow", value)) => follow = matches!(value, "1" | "true"),
            _ => {}
        }
    }
    let statuses = state
        .supervisor
        .send(dispenser_actors::supervisor::GetStatus)
        .await
        .unwrap_or_default();
    let Some(status) = statuses.into_iter().find(|status| status.name == service) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no service named `{service}`"),
        );
    };
    let Some(container) = status.container_id else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("service `{service}` has no container yet"),
        );
    };
    match state.engine.logs(&container, tail, follow).await {
        Ok(stream) => {
            let frames = stream
                .map_ok(Frame::data)
                .map_err(|err| std::io::Error::other(err.to_string()));
            let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
        Err(err) => error(StatusCode::BAD_GATEWAY, &err.to_string()),
    }
}

async fn operator_action(state: &AdminState, service: &str, action: &str) -> Response<Body> {
    let service = service.to_owned();
    let answer = if action == "deploy" {
        state
            .supervisor
            .send(DeployNow {
                service: service.clone(),
            })
            .await
    } else {
        state
            .supervisor
            .send(RollbackNow {
                service: service.clone(),
            })
            .await
    };
    let (status, answer) = match answer {
        Ok(Ok(message)) => {
            let (outcome, event) = if action == "deploy" {
                (
                    "succeeded",
                    Event::Deployed {
                        service: service.clone(),
                        message: message.clone(),
                    },
                )
            } else {
                (
                    "rolled_back",
                    Event::RolledBack {
                        service: service.clone(),
                        message: message.clone(),
                    },
                )
            };
            metrics::global().deploy(&service, outcome);
            events::publish(event);
            info!(service = %service, action, "operator request done");
            (StatusCode::OK, ActionAnswer { ok: true, message })
        }
        Ok(Err(message)) => {
            let (outcome, event) = if action == "deploy" {
                (
                    "failed",
                    Event::DeployFailed {
                        service: service.clone(),
                        reason: message.clone(),
                    },
                )
            } else {
                (
                    "rollback_failed",
                    Event::RollbackFailed {
                        service: service.clone(),
                        reason: message.clone(),
                    },
                )
            };
            // Unknown names are not counted: labels come from known services only.
            if !message.starts_with("no service named") {
                metrics::global().deploy(&service, outcome);
                events::publish(event);
            }
            warn!(service = %service, action, error = %message, "operator request failed");
            let status = if message.starts_with("no service named") {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::CONFLICT
            };
            (status, ActionAnswer { ok: false, message })
        }
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            ActionAnswer {
                ok: false,
                message: format!("the supervisor did not answer: {err}"),
            },
        ),
    };
    json(status, &answer)
}

/// `dispenser_certificate_expiry_timestamp_seconds{host,source}`.
fn certificate_expiry(state: &AdminState, out: &mut String) {
    use std::fmt::Write as _;
    let name = "dispenser_certificate_expiry_timestamp_seconds";
    metrics::header(
        out,
        name,
        "When each served certificate expires (Unix time).",
        "gauge",
    );
    for cert in report::gather_certificates(state) {
        if let Some(expires) = cert.expires_unix {
            let _ = writeln!(
                out,
                "{name}{{host=\"{}\",source=\"{}\"}} {expires}",
                metrics::escape(&cert.host),
                cert.source
            );
        }
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string_pretty(value) {
        Ok(body) => text(status, "application/json", body),
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("cannot encode: {err}\n"),
        ),
    }
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(
        status,
        &ActionAnswer {
            ok: false,
            message: message.to_owned(),
        },
    )
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
