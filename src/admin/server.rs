//! `AdminServer`: actix-web (HTTP/1.1) on the unix socket and, read-only,
//! on the optional loopback TCP address: one small server of one worker
//! thread each, started from the daemon's actix system; the handlers only
//! ask actors and the engine.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use actix::MailboxError;
use actix_web::dev::ServerHandle;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use dispenser_actors::metrics;
use dispenser_actors::proxy::maintenance::{Maintenance, MAX_MESSAGE_CHARS};
use dispenser_actors::proxy::router::{MaintenanceError, SetMaintenance};
use dispenser_actors::service::ServiceError;
use dispenser_actors::supervisor::{ControlError, DeployNow, RollbackNow, TakeoverNow};
use futures_util::TryStreamExt;
use serde::Serialize;
use tracing::{debug, error, info, warn};

use super::{page, report, AdminError, AdminState, SOCKET_MODE};

/// Lines of output `GET /v1/logs` returns when `tail` is not given.
const DEFAULT_TAIL: usize = 100;
/// Largest `tail` accepted.
const MAX_TAIL: usize = 100_000;

/// The running admin listeners; dropping it stops them and removes the
/// socket file.
pub struct AdminServer {
    socket: PathBuf,
    servers: Vec<ServerHandle>,
}

/// A bound admin listener.
enum AdminListener {
    Unix(UnixListener),
    Tcp(std::net::TcpListener),
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
        listener.set_nonblocking(true).map_err(socket_error)?;
        let mut servers = vec![
            serve(AdminListener::Unix(listener), state.clone(), Access::Full)
                .map_err(socket_error)?,
        ];
        info!(socket = %socket.display(), "admin API listening");
        if let Some(address) = tcp {
            // The socket is enough to run: a busy port is reported, not fatal.
            let tcp_error = |source| AdminError::Tcp { address, source };
            let served = bind_tcp(address).and_then(|listener| {
                serve(AdminListener::Tcp(listener), state, Access::ReadOnly).map_err(tcp_error)
            });
            match served {
                Ok(server) => {
                    info!(address = %address, "admin API listening on loopback");
                    servers.push(server);
                }
                Err(err) => error!(error = %err, "the admin API is on the socket only"),
            }
        }
        Ok(AdminServer {
            socket: socket.to_path_buf(),
            servers,
        })
    }
}

fn bind_tcp(address: std::net::SocketAddr) -> Result<std::net::TcpListener, AdminError> {
    let tcp_error = |source| AdminError::Tcp { address, source };
    let listener = std::net::TcpListener::bind(address).map_err(tcp_error)?;
    listener.set_nonblocking(true).map_err(tcp_error)?;
    Ok(listener)
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        for server in &self.servers {
            // The command is sent now; waiting for the workers is not needed.
            drop(server.stop(false));
        }
        let _ = fs::remove_file(&self.socket);
    }
}

/// Serves `listener` with one worker thread, on the current actix system.
fn serve(
    listener: AdminListener,
    state: AdminState,
    access: Access,
) -> std::io::Result<ServerHandle> {
    let server = HttpServer::new(move || {
        let state = state.clone();
        App::new().default_service(web::to(move |req: HttpRequest| {
            let state = state.clone();
            async move { route(&req, &state, access).await }
        }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1);
    let server = match listener {
        AdminListener::Unix(listener) => server.listen_uds(listener)?,
        AdminListener::Tcp(listener) => server.listen(listener)?,
    }
    .run();
    let handle = server.handle();
    actix_rt::spawn(async move {
        if let Err(err) = server.await {
            debug!(error = %err, "admin server ended");
        }
    });
    Ok(handle)
}

async fn route(req: &HttpRequest, state: &AdminState, access: Access) -> HttpResponse {
    // DNS rebinding: a web page whose name an attacker points at 127.0.0.1
    // reaches the loopback listener from the user's browser, with its own
    // name in `Host`. Only loopback names are served there.
    if access == Access::ReadOnly && !addressed_to_loopback(req) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "the loopback admin listener answers only to localhost, 127.0.0.1 or [::1] in Host",
        );
    }
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let socket_only = matches!(
        segments.as_slice(),
        ["v1", "logs", ..] | ["v1", "services", ..] | ["v1", "progress"]
    );
    if access == Access::ReadOnly && socket_only {
        return error(
            StatusCode::FORBIDDEN,
            "logs, progress, deploy, rollback, takeover and maintenance are only served on the unix socket",
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
        (&Method::GET, ["v1", "progress"]) => progress_stream(),
        (&Method::POST, ["v1", "services", service, action @ ("deploy" | "rollback")]) => {
            operator_action(state, service, action).await
        }
        (&Method::POST, ["v1", "services", service, "takeover"]) => takeover(state, service).await,
        (&Method::POST, ["v1", "services", service, "maintenance"]) => {
            maintenance(state, service, req.query_string()).await
        }
        (_, ["v1", ..] | ["metrics"] | [""]) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// The request names a loopback host: exactly one `Host` header, and the
/// authority of an absolute-form target if there is one, each
/// [`loopback_authority`].
fn addressed_to_loopback(req: &HttpRequest) -> bool {
    let mut hosts = req.headers().get_all(actix_web::http::header::HOST);
    let host = match (hosts.next(), hosts.next()) {
        (Some(host), None) => host.to_str().ok(),
        _ => None,
    };
    let Some(host) = host else {
        return false;
    };
    let target_ok = req
        .uri()
        .authority()
        .is_none_or(|authority| loopback_authority(authority.as_str()));
    loopback_authority(host) && target_ok
}

/// `authority` (`host` or `host:port`) names this machine's loopback:
/// `localhost` or a name under `.localhost` (RFC 6761), an address of
/// 127.0.0.0/8, or `[::1]`.
fn loopback_authority(authority: &str) -> bool {
    // A port, when given, is digits only.
    let port_ok = |port: &str| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = authority.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        let port_fits = after.is_empty() || after.strip_prefix(':').is_some_and(port_ok);
        return port_fits
            && address
                .parse::<std::net::Ipv6Addr>()
                .is_ok_and(|address| address.is_loopback());
    }
    let host = match authority.split_once(':') {
        Some((host, port)) if port_ok(port) => host,
        Some(_) => return false,
        None => authority,
    };
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|address| address.is_loopback())
}

/// `GET /v1/progress`: every progress update from now on (pulls, the
/// health gate), one JSON object per line, until the client goes away. The
/// CLI opens it before it asks for a deploy or a takeover.
fn progress_stream() -> HttpResponse {
    let receiver = dispenser_actors::progress::subscribe();
    let lines = futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(update) => {
                    let mut line = serde_json::to_vec(&update).unwrap_or_default();
                    line.push(b'\n');
                    return Some((
                        Ok::<_, std::io::Error>(actix_web::web::Bytes::from(line)),
                        receiver,
                    ));
                }
                // A slow reader lost the oldest updates: go on with the rest.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(lines)
}

async fn logs(state: &AdminState, service: &str, query: Option<&str>) -> HttpResponse {
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
        Ok(stream) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .streaming(stream.map_err(|err| std::io::Error::other(err.to_string()))),
        Err(err) => error(StatusCode::BAD_GATEWAY, &err.to_string()),
    }
}

async fn operator_action(state: &AdminState, service: &str, action: &str) -> HttpResponse {
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
    // The deploy is counted and announced by the service's pipeline, which
    // records every deploy: the answer here is only the operator's.
    let (status, answer) = match answer {
        Ok(Ok(message)) => {
            info!(service = %service, action, "operator request done");
            (StatusCode::OK, ActionAnswer { ok: true, message })
        }
        Ok(Err(err)) => {
            let message = err.to_string();
            warn!(service = %service, action, error = %message, "operator request failed");
            (control_status(&err), ActionAnswer { ok: false, message })
        }
        Err(err) => supervisor_away(&err),
    };
    json(status, &answer)
}

/// `dispenser takeover` for one service. The deploy it makes is counted and
/// announced by the service's pipeline, like every deploy.
async fn takeover(state: &AdminState, service: &str) -> HttpResponse {
    let answer = state
        .supervisor
        .send(TakeoverNow {
            service: service.to_owned(),
        })
        .await;
    let (status, answer) = match answer {
        Ok(Ok(message)) => {
            info!(service = %service, action = "takeover", "operator request done");
            (StatusCode::OK, ActionAnswer { ok: true, message })
        }
        Ok(Err(err)) => {
            let message = err.to_string();
            warn!(service = %service, action = "takeover", error = %message, "operator request failed");
            (control_status(&err), ActionAnswer { ok: false, message })
        }
        Err(err) => supervisor_away(&err),
    };
    json(status, &answer)
}

/// The query of `POST /v1/services/NAME/maintenance`.
#[derive(Debug, serde::Deserialize)]
struct MaintenanceQuery {
    on: bool,
    message: Option<String>,
}

/// `dispenser maintenance on|off SERVICE`: the proxy's router saves it and
/// the service's routes answer 503 (or serve again).
async fn maintenance(state: &AdminState, service: &str, query: &str) -> HttpResponse {
    let query = match web::Query::<MaintenanceQuery>::from_query(query) {
        Ok(query) => query.into_inner(),
        Err(err) => return error(StatusCode::BAD_REQUEST, &format!("bad query: {err}")),
    };
    let Some(router) = &state.maintenance else {
        return error(
            StatusCode::CONFLICT,
            "the proxy is disabled: maintenance changes what routes answer",
        );
    };
    let message = query
        .message
        .map(|message| message.trim().to_owned())
        .filter(|message| !message.is_empty());
    if let Some(message) = &message {
        if message.chars().count() > MAX_MESSAGE_CHARS {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the message is longer than {MAX_MESSAGE_CHARS} characters"),
            );
        }
    }
    let asked = router
        .send(SetMaintenance {
            service: service.to_owned(),
            maintenance: query.on.then(|| Maintenance::now(message)),
        })
        .await;
    let (status, answer) = match asked {
        Ok(Ok(changed)) => {
            let message = match (query.on, changed) {
                (true, true) => format!("service `{service}` is in maintenance"),
                (true, false) => format!("service `{service}` was already in maintenance"),
                (false, true) => format!("service `{service}` is out of maintenance"),
                (false, false) => format!("service `{service}` was not in maintenance"),
            };
            info!(service = %service, on = query.on, "operator request done");
            (StatusCode::OK, ActionAnswer { ok: true, message })
        }
        Ok(Err(err)) => {
            let message = err.to_string();
            warn!(service = %service, action = "maintenance", error = %message, "operator request failed");
            (
                maintenance_status(&err),
                ActionAnswer { ok: false, message },
            )
        }
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            ActionAnswer {
                ok: false,
                message: format!("the proxy did not answer: {err}"),
            },
        ),
    };
    json(status, &answer)
}

/// The HTTP status of a refused maintenance request, from its type alone.
fn maintenance_status(err: &MaintenanceError) -> StatusCode {
    match err {
        MaintenanceError::UnknownService(_) => StatusCode::NOT_FOUND,
        MaintenanceError::NoRoute(_) => StatusCode::CONFLICT,
        MaintenanceError::NotLoaded => StatusCode::SERVICE_UNAVAILABLE,
        MaintenanceError::File(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The answer when the supervisor's mailbox did not take the request.
fn supervisor_away(err: &MailboxError) -> (StatusCode, ActionAnswer) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        ActionAnswer {
            ok: false,
            message: format!("the supervisor did not answer: {err}"),
        },
    )
}

/// The HTTP status of a refused operator request: one exhaustive match over
/// the typed reply, never a look at its text. 404 for an unknown service,
/// 503 while the request cannot be served now (Docker away, the daemon
/// stopping, the actor restarting), 500 for a crash, 409 for a refusal or a
/// failed or rolled-back deploy.
fn control_status(err: &ControlError) -> StatusCode {
    match err {
        ControlError::UnknownService(_) => StatusCode::NOT_FOUND,
        ControlError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ControlError::Service(err) => match err {
            ServiceError::Unreachable(_) | ServiceError::Stopping(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServiceError::Crashed => StatusCode::INTERNAL_SERVER_ERROR,
            ServiceError::State(_)
            | ServiceError::NameTaken { .. }
            | ServiceError::ImageUnavailable { .. }
            | ServiceError::Engine(_)
            | ServiceError::RolledBack { .. }
            | ServiceError::Superseded(_) => StatusCode::CONFLICT,
        },
    }
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

fn json<T: Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    match serde_json::to_string_pretty(value) {
        Ok(body) => text(status, "application/json", body),
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("cannot encode: {err}\n"),
        ),
    }
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    json(
        status,
        &ActionAnswer {
            ok: false,
            message: message.to_owned(),
        },
    )
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(content_type)
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::{control_status, loopback_authority, ControlError, ServiceError, StatusCode};

    #[test]
    fn refused_requests_get_their_status_from_the_type_alone() {
        let cases = [
            (
                ControlError::UnknownService("api".into()),
                StatusCode::NOT_FOUND,
            ),
            (
                ControlError::Unavailable("mailbox closed".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                ControlError::Service(ServiceError::Stopping("deploy was not started".into())),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                ControlError::Service(ServiceError::Unreachable("no docker".into())),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                ControlError::Service(ServiceError::Crashed),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            // A message that reads like another error changes nothing.
            (
                ControlError::Service(ServiceError::Engine("no service named `api`".into())),
                StatusCode::CONFLICT,
            ),
            (
                ControlError::Service(ServiceError::RolledBack {
                    reason: "unhealthy".into(),
                }),
                StatusCode::CONFLICT,
            ),
        ];
        for (err, status) in cases {
            assert_eq!(control_status(&err), status, "{err}");
        }
    }

    #[test]
    fn loopback_names_and_addresses_with_or_without_a_port() {
        for authority in [
            "localhost",
            "LocalHost:9180",
            "localhost.",
            "status.localhost:80",
            "127.0.0.1",
            "127.0.0.1:9180",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:9180",
        ] {
            assert!(loopback_authority(authority), "{authority}");
        }
    }

    #[test]
    fn other_names_and_addresses_are_refused() {
        for authority in [
            "evil.example",
            "evil.example:9180",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1:9180",
            "0.0.0.0",
            "[::2]:9180",
            "[::1",
            "[::1]x",
            "[::1]:",
            "localhost:",
            "localhost:80:80",
            "localhost:http",
            "",
            ":9180",
        ] {
            assert!(!loopback_authority(authority), "{authority:?}");
        }
    }
}
