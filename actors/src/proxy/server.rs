//! The proxy's listeners: plain HTTP and HTTPS (rustls, HTTP/2 and
//! HTTP/1.1 by ALPN), served by actix-http's `HttpService` on actix-server,
//! on a thread of their own with single-threaded workers (one per core plus
//! one, unless set), each with its own `Forwarder` and so its own upstream
//! pool, so a request never hops threads. Started once by the daemon and
//! never restarted: reloads and deploys change the `SharedTable` and the
//! `CertMap`, which every request and handshake reads afresh.
//!
//! This module is the only one that knows actix-http's server side: each
//! connection passes its listener's `Admission` (connection caps), a plain
//! one must send its first byte within `header_timeout` (it tells HTTP/1.1
//! from h2c), a TLS one keeps its SNI for the forwarder's 421 check. It
//! serves each worker's `ProxyApp`, hands the forwarder actix-http's own
//! request head (after enforcing `max_header_bytes`, 431), bridges the request
//! payload (not `Send`) into a `RequestBody` chunk by chunk, and streams the
//! forwarder's `ProxyBody` back.
//!
//! Strategies: `https-only` serves HTTPS and makes the HTTP listener answer
//! ACME challenges and redirect everything else; `http-only` serves plain
//! HTTP only; `both` proxies on both listeners.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_http::body::{BodySize, MessageBody};
use actix_http::header as actix_header;
use actix_http::{
    ConnectionType, Extensions, HttpService, KeepAlive, Payload, Protocol, Request as ActixRequest,
    RequestHead, TlsAcceptorConfig,
};
use actix_rt::net::TcpStream;
use actix_service::{fn_factory, fn_service, Service, ServiceFactory};
use actix_tls::accept::rustls_0_23::TlsStream;
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt as _;
use http02::header::{self, HeaderValue};
use http02::{Method, StatusCode};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::certs::CertMap;
use super::challenge::Challenges;
use super::forward::{ClientConn, Forwarder, Listener, ProxyBody, RequestBody};
use super::headers::Headers;
use super::table::SharedTable;
use super::tls::{self, TlsError};
use crate::plan::{ProxySettings, ProxyStrategy};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {address}: {reason}")]
    Bind { address: SocketAddr, reason: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot start the proxy's runtime: {0}")]
    Runtime(String),
}

/// The running proxy. Dropping it leaves the listeners running until the
/// process exits (they are never restarted).
#[derive(Debug)]
pub struct ProxyServer {
    /// The addresses actually bound (a configured port 0 becomes a real one).
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    _thread: JoinHandle<()>,
}

/// One worker's request handler: its forwarder (and upstream pool).
struct Worker {
    forwarder: Forwarder,
    max_header_bytes: usize,
    /// The last client IP and its header value.
    last_peer: RefCell<Option<(IpAddr, HeaderValue)>>,
}

/// What each worker builds its `ProxyApp`s from.
#[derive(Clone)]
struct AppFactory {
    settings: ProxySettings,
    table: SharedTable,
    challenges: Challenges,
}

/// The service actix-http runs on each worker for each listener.
struct ProxyApp {
    worker: Rc<Worker>,
    listener: Listener,
}

/// The server name a TLS client sent (SNI), lowercase: kept with its
/// connection so that every request on it is checked against it.
#[derive(Clone)]
struct Sni(Rc<str>);

/// One listener's open connections, shared by its workers, and its caps.
#[derive(Clone)]
struct Admission {
    limits: AdmissionLimits,
    open: Arc<Mutex<OpenConnections>>,
}

#[derive(Debug, Clone, Copy)]
struct AdmissionLimits {
    per_listener: usize,
    per_client: usize,
}

#[derive(Default)]
struct OpenConnections {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
    last_warning: Option<Instant>,
}

/// A connection's place in its listener's `Admission`, given back on drop.
struct AdmissionSlot {
    open: Arc<Mutex<OpenConnections>>,
    ip: IpAddr,
}

/// `ProxyApp` on one listener.
struct ProxyService {
    worker: Rc<Worker>,
    listener: Listener,
}

type ActixResponse = actix_http::Response<ProxyBody>;

/// A request head longer than `max_header_bytes` (answered 431).
#[derive(Debug, Clone, Copy)]
struct HeadTooLarge;

/// Longest time a client may take for the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a client to close its side after the proxy closed a
/// connection (then it is dropped).
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How far behind actix-http's clock may be: it reads a time cached every
/// 500 ms, so its deadlines come up to that much early; added to timeouts
/// so a client always gets at least the configured time.
const COARSE_CLOCK: Duration = Duration::from_millis(500);
/// Most worker threads the proxy starts on its own (each single-threaded);
/// `[proxy] workers` may ask for more.
const MAX_AUTO_WORKERS: usize = 16;
/// Request body chunks on their way upstream, at most, per request.
const BRIDGE_CHUNKS: usize = 4;
/// Open connections per listener, at most (lowered at start-up to fit the
/// open-file limit). Past it, new connections are closed at once.
const MAX_CONNECTIONS_PER_LISTENER: usize = 16_384;
/// Open connections per client address and listener, at most.
const MAX_CONNECTIONS_PER_CLIENT: usize = 256;
/// Least time between two warnings about refused connections.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(60);
/// The first bytes of the HTTP/2 preface (RFC 9113 3.4), enough to tell a
/// plain connection's protocol from one peek.
const H2_PREFACE: &[u8; 12] = b"PRI * HTTP/2";
/// Bytes of a request head beyond its header lines (request line, CRLFs).
const HEADER_LINE_OVERHEAD: usize = 4;

impl ProxyServer {
    /// Binds the listeners the strategy needs and starts serving them.
    pub fn start(
        settings: &ProxySettings,
        table: SharedTable,
        certs: CertMap,
        challenges: Challenges,
    ) -> Result<ProxyServer, ServerError> {
        let http_listener = bind(settings.http_listen, settings.idle_timeout)?;
        let https_listener = match settings.strategy {
            ProxyStrategy::HttpOnly => None,
            ProxyStrategy::HttpsOnly | ProxyStrategy::Both => {
                Some(bind(settings.https_listen, settings.idle_timeout)?)
            }
        };
        let local = |listener: &StdTcpListener| listener.local_addr().ok();
        let http = local(&http_listener);
        let https = https_listener.as_ref().and_then(local);
        let tls = match &https_listener {
            Some(_) => Some(tls::server_config(certs, challenges.clone())?),
            None => None,
        };
        let mut forwarding = settings.clone();
        if let Some(https) = https {
            forwarding.https_listen = https;
        }
        let workers = settings.workers.unwrap_or_else(automatic_workers);
        let (started, result) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("proxy".to_string())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let listeners = (http_listener, https_listener.zip(tls));
                    match serve(&forwarding, table, challenges, listeners, workers) {
                        Ok(server) => {
                            let _ = started.send(Ok(()));
                            if let Err(err) = server.await {
                                error!(error = %err, "the proxy stopped");
                            }
                        }
                        Err(err) => {
                            let _ = started.send(Err(err));
                        }
                    }
                });
            })
            .map_err(|err| ServerError::Runtime(err.to_string()))?;
        match result.recv() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err),
            Err(_) => return Err(ServerError::Runtime("the proxy thread ended".to_string())),
        }
        info!(
            http = %http.map_or("-".to_string(), |a| a.to_string()),
            https = %https.map_or("-".to_string(), |a| a.to_string()),
            strategy = ?settings.strategy,
            workers,
            "proxy listening"
        );
        Ok(ProxyServer {
            http,
            https,
            _thread: thread,
        })
    }
}

/// Worker threads when `[proxy] workers` is not set: one per core plus one.
/// The extra worker is measured (docs/BENCHMARKS.md): on a small VM the
/// proxy shares its cores with the containers, and while one worker is
/// preempted the others keep serving, so the proxy answers more requests
/// for less CPU than with one worker per core.
fn automatic_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() + 1)
        .min(MAX_AUTO_WORKERS)
}

/// Builds the server on the bound listeners (inside the proxy's actix
/// system); awaiting the result serves until the process exits.
///
/// Each listener's connections pass its `Admission` first (a cap for the
/// listener and one per client address; over either, the connection is
/// closed at once). A plain connection must send its first byte within
/// `header_timeout` (that byte tells HTTP/1.1 from h2c); a TLS one must
/// finish its handshake within `TLS_HANDSHAKE_TIMEOUT`.
fn serve(
    settings: &ProxySettings,
    table: SharedTable,
    challenges: Challenges,
    (http, https): (
        StdTcpListener,
        Option<(StdTcpListener, rustls::ServerConfig)>,
    ),
    workers: usize,
) -> Result<actix_server::Server, ServerError> {
    let http_address = settings.http_listen;
    let https_address = settings.https_listen;
    let fail = |address: SocketAddr| {
        move |err: io::Error| ServerError::Bind {
            address,
            reason: err.to_string(),
        }
    };
    let listeners = if https.is_some() { 2 } else { 1 };
    let limits = admission_limits(listeners);
    let app = AppFactory {
        settings: settings.clone(),
        table,
        challenges,
    };
    let plain = {
        let app = app.clone();
        let admission = Admission::new(limits);
        let first_byte = settings.header_timeout + COARSE_CLOCK;
        move || {
            let service = app
                .http_service::<TcpStream>(Listener::Http)
                .finish(app.proxy(Listener::Http));
            admitted(sniffing(service, first_byte), admission.clone())
        }
    };
    let mut server = actix_server::Server::build()
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(1)
        .listen("proxy-http", http, plain)
        .map_err(fail(http_address))?;
    if let Some((listener, config)) = https {
        let admission = Admission::new(limits);
        let secure = move || {
            let service = app
                .http_service::<TlsStream<TcpStream>>(Listener::Https)
                .on_connect_ext(|io: &TlsStream<TcpStream>, data: &mut Extensions| {
                    if let Some(name) = io.get_ref().1.server_name() {
                        data.insert(Sni(Rc::from(name.to_ascii_lowercase())));
                    }
                })
                .finish(app.proxy(Listener::Https))
                .rustls_0_23_with_config(
                    config.clone(),
                    TlsAcceptorConfig::default().handshake_timeout(TLS_HANDSHAKE_TIMEOUT),
                );
            admitted(service, admission.clone())
        };
        server = server
            .listen("proxy-https", listener, secure)
            .map_err(fail(https_address))?;
    }
    Ok(server.run())
}

impl AppFactory {
    /// actix-http's settings for one listener: the timeouts, `TCP_NODELAY`.
    fn http_service<T>(&self, listener: Listener) -> actix_http::HttpServiceBuilder<T, ProxyApp> {
        let address = match listener {
            Listener::Http => self.settings.http_listen,
            Listener::Https => self.settings.https_listen,
        };
        HttpService::<T, ProxyApp, ProxyBody>::build()
            .keep_alive(KeepAlive::Timeout(
                self.settings.header_timeout + COARSE_CLOCK,
            ))
            .client_request_timeout(self.settings.header_timeout + COARSE_CLOCK)
            .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .local_addr(address)
    }

    /// One worker's `ProxyApp` for one listener: its own forwarder and pool.
    fn proxy(&self, listener: Listener) -> ProxyApp {
        let forwarder = Forwarder::new(&self.settings, self.table.clone(), self.challenges.clone());
        forwarder.start_sweeper();
        ProxyApp {
            worker: Rc::new(Worker {
                forwarder,
                max_header_bytes: self.settings.max_header_bytes,
                last_peer: RefCell::new(None),
            }),
            listener,
        }
    }
}

/// The plain listener's connections: HTTP/1.1 or h2c by their first bytes,
/// which must come within `first_byte` (a silent connection is dropped).
/// `admitted` wraps it like the TLS side.
fn sniffing<S>(
    http: S,
    first_byte: Duration,
) -> impl ServiceFactory<TcpStream, Config = (), Response = (), Error = (), InitError = ()>
where
    S: ServiceFactory<
            (TcpStream, Protocol, Option<SocketAddr>),
            Config = (),
            Response = (),
            InitError = (),
        > + 'static,
    S::Service: 'static,
{
    fn_factory(move || {
        let http = http.new_service(());
        async move {
            let http = Rc::new(http.await?);
            Ok(fn_service(move |io: TcpStream| {
                let http = http.clone();
                async move {
                    // A subset of the HTTP/2 preface (RFC 9113 3.4): one
                    // peek tells the protocols apart.
                    let mut first = [0; H2_PREFACE.len()];
                    match tokio::time::timeout(first_byte, io.peek(&mut first)).await {
                        Ok(Ok(read)) if read > 0 => {}
                        // Silent for too long, closed, or failed: dropped.
                        _ => return Ok::<(), ()>(()),
                    }
                    let protocol = if first == *H2_PREFACE {
                        Protocol::Http2
                    } else {
                        Protocol::Http1
                    };
                    let peer = io.peer_addr().ok();
                    let _ = http.call((io, protocol, peer)).await;
                    Ok(())
                }
            }))
        }
    })
}

/// A listener's connections, admitted before `inner` (the plain listener's
/// `sniffing`, or the TLS handshake and then HTTP) sees them.
fn admitted<S>(
    inner: S,
    admission: Admission,
) -> impl ServiceFactory<TcpStream, Config = (), Response = (), Error = (), InitError = ()>
where
    S: ServiceFactory<TcpStream, Config = (), Response = (), InitError = ()> + 'static,
    S::Service: 'static,
{
    fn_factory(move || {
        let admission = admission.clone();
        let inner = inner.new_service(());
        async move {
            let inner = Rc::new(inner.await?);
            Ok(fn_service(move |io: TcpStream| {
                let inner = inner.clone();
                let admission = admission.clone();
                async move {
                    let peer = io.peer_addr().ok();
                    let Some(_slot) = peer.and_then(|peer| admission.enter(peer.ip())) else {
                        return Ok(());
                    };
                    // actix-http's `tcp_nodelay` applies only to the streams
                    // its own `tcp()` and TLS helpers accept: these are ours.
                    // Without it an answer written in two pieces waits for
                    // the client's delayed ACK (40 ms on Linux).
                    let _ = io.set_nodelay(true);
                    let _ = inner.call(io).await;
                    Ok(())
                }
            }))
        }
    })
}

impl Admission {
    fn new(limits: AdmissionLimits) -> Self {
        Admission {
            limits,
            open: Arc::new(Mutex::new(OpenConnections::default())),
        }
    }

    /// A place for a connection from `ip`, or `None` when the listener or
    /// that client is at its cap. The place is given back on drop.
    fn enter(&self, ip: IpAddr) -> Option<AdmissionSlot> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if open.total >= self.limits.per_listener {
            drop(open);
            self.refused("listener");
            return None;
        }
        let client = open.by_client.entry(ip).or_default();
        if *client >= self.limits.per_client {
            drop(open);
            self.refused("client");
            return None;
        }
        *client += 1;
        open.total += 1;
        Some(AdmissionSlot {
            open: self.open.clone(),
            ip,
        })
    }

    /// Logs a refusal, at most once a minute per listener.
    fn refused(&self, cap: &'static str) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if open
            .last_warning
            .is_none_or(|last| now.duration_since(last) >= REFUSAL_WARNING_EVERY)
        {
            open.last_warning = Some(now);
            warn!(
                cap,
                per_listener = self.limits.per_listener,
                per_client = self.limits.per_client,
                "connection refused: the proxy's connection cap is reached"
            );
        }
    }
}

impl Drop for AdmissionSlot {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_client.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.by_client.remove(&self.ip);
            }
        }
    }
}

/// The caps for each listener: `MAX_CONNECTIONS_PER_LISTENER`, lowered so
/// that all listeners together, and the container connections behind them,
/// stay within the process's open-file limit; `MAX_CONNECTIONS_PER_CLIENT`.
fn admission_limits(listeners: usize) -> AdmissionLimits {
    let per_listener = match open_file_limit() {
        // Half the descriptors for clients; the other half is for the
        // container connections behind them, files and the rest.
        Some(limit) => (limit / 2 / listeners as u64).max(1) as usize,
        None => MAX_CONNECTIONS_PER_LISTENER,
    }
    .min(MAX_CONNECTIONS_PER_LISTENER);
    AdmissionLimits {
        per_listener,
        per_client: MAX_CONNECTIONS_PER_CLIENT.min(per_listener),
    }
}

/// The soft limit on open files (`RLIMIT_NOFILE`), read once at start-up
/// from `/proc/self/limits`.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl ServiceFactory<ActixRequest> for ProxyApp {
    type Response = ActixResponse;
    type Error = actix_http::Error;
    type Config = ();
    type Service = ProxyService;
    type InitError = ();
    type Future = std::future::Ready<Result<ProxyService, ()>>;

    fn new_service(&self, _: ()) -> Self::Future {
        std::future::ready(Ok(ProxyService {
            worker: self.worker.clone(),
            listener: self.listener,
        }))
    }
}

impl Service<ActixRequest> for ProxyService {
    type Response = ActixResponse;
    type Error = actix_http::Error;
    type Future = LocalBoxFuture<'static, Result<ActixResponse, actix_http::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: ActixRequest) -> Self::Future {
        let worker = self.worker.clone();
        let listener = self.listener;
        Box::pin(async move { Ok(worker.answer(req, listener).await) })
    }
}

impl Worker {
    /// Answers one request: checks its head's size, forwards it, converts
    /// the answer. The forwarder works on actix-http's own request head.
    async fn answer(&self, mut req: ActixRequest, listener: Listener) -> ActixResponse {
        let peer = req
            .peer_addr()
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        let sni = req.conn_data::<Sni>().map(|sni| sni.0.clone());
        let conn = ClientConn::reusing(listener, peer, &self.last_peer).with_sni(sni);
        if let Err(refusal) = check_size(req.head(), self.max_header_bytes) {
            return refusal.response();
        }
        let body = bridge(req.take_payload(), declared_length(&req.head().headers)).await;
        let head = req.head_mut();
        let is_head = head.method == Method::HEAD;
        let response = self.forwarder.handle(head, body, &conn).await;
        into_actix(response, is_head)
    }
}

/// The refusal of a head whose header lines and target together are longer
/// than `max_header_bytes` (431).
fn check_size(req: &RequestHead, max_header_bytes: usize) -> Result<(), HeadTooLarge> {
    let mut size = req.uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    if size > max_header_bytes {
        return Err(HeadTooLarge);
    }
    for (name, value) in req.headers.iter() {
        size += name.as_str().len() + value.len() + HEADER_LINE_OVERHEAD;
        if size > max_header_bytes {
            return Err(HeadTooLarge);
        }
    }
    Ok(())
}

impl HeadTooLarge {
    fn response(self) -> ActixResponse {
        let status = actix_http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        let body = Bytes::from_static(b"request headers too large\n");
        let mut response = ActixResponse::with_body(status, ProxyBody::Own(body));
        response.headers_mut().insert(
            actix_header::CONTENT_TYPE,
            actix_header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// The request body for the forwarder. A request whose payload is already
/// at its end (no body) gets `RequestBody::Empty`; any other payload is
/// passed on chunk by chunk by a task on this worker (the payload is not
/// `Send`; the upstream client wants a `Send` body), with back-pressure.
async fn bridge(mut payload: Payload, length: Option<u64>) -> RequestBody {
    if let Payload::None = payload {
        return RequestBody::Empty;
    }
    let first = std::future::poll_fn(|cx| Poll::Ready(payload.poll_next_unpin(cx))).await;
    let first = match first {
        Poll::Ready(None) => return RequestBody::Empty,
        Poll::Ready(Some(chunk)) => Some(chunk),
        Poll::Pending => None,
    };
    let (chunks, receiver) = mpsc::channel(BRIDGE_CHUNKS);
    actix_rt::spawn(async move {
        let mut next = first;
        loop {
            let chunk = match next.take() {
                Some(chunk) => chunk,
                None => match payload.next().await {
                    Some(chunk) => chunk,
                    None => return,
                },
            };
            let failed = chunk.is_err();
            let chunk = chunk.map_err(|err| io::Error::other(err.to_string()));
            if chunks.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    RequestBody::Chunks {
        chunks: receiver,
        length,
    }
}

/// The length a head's `Content-Length` declares, when it is one number.
fn declared_length(headers: &impl Headers) -> Option<u64> {
    headers
        .values(header::CONTENT_LENGTH)
        .next()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

/// The forwarder's answer as the server sends it. Its `Connection` is
/// actix-http's to set (an upgrade keeps its `Upgrade` protocol); a `HEAD`
/// answer keeps the length of the body it does not carry.
fn into_actix(mut response: ActixResponse, is_head: bool) -> ActixResponse {
    let upgrade = response.status() == StatusCode::SWITCHING_PROTOCOLS
        && response.headers().contains_key(header::UPGRADE);
    drop(response.headers_mut().remove(header::CONNECTION));
    if is_head {
        let length = declared_length(response.headers());
        response = response.set_body(ProxyBody::Headless(length));
    }
    if upgrade {
        response
            .head_mut()
            .set_connection_type(ConnectionType::Upgrade);
    }
    response
}

impl MessageBody for ProxyBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        match self {
            ProxyBody::Upstream(body) => body.length().map_or(BodySize::Stream, BodySize::Sized),
            ProxyBody::Own(bytes) => BodySize::Sized(bytes.len() as u64),
            ProxyBody::Tunnel(_) => BodySize::Stream,
            ProxyBody::Headless(length) => length.map_or(BodySize::None, BodySize::Sized),
        }
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(body) => body
                .poll_chunk(cx)
                .map(|chunk| chunk.map(|chunk| chunk.map_err(Into::into))),
            ProxyBody::Own(bytes) if bytes.is_empty() => Poll::Ready(None),
            ProxyBody::Own(bytes) => Poll::Ready(Some(Ok(std::mem::take(bytes)))),
            ProxyBody::Tunnel(chunks) => chunks
                .poll_recv(cx)
                .map(|chunk| chunk.map(|chunk| chunk.map_err(Into::into))),
            ProxyBody::Headless(_) => Poll::Ready(None),
        }
    }
}

/// Binds a listening socket now, so a taken port fails the start-up.
///
/// `stalled` becomes the socket's `TCP_USER_TIMEOUT`, which the connections
/// it accepts inherit: the kernel cuts a client that leaves data
/// unacknowledged, or keeps its receive window shut, that long. Nothing in
/// user space sees a client that stopped reading: the response's writer just
/// stops being polled, holding its container connection.
fn bind(address: SocketAddr, stalled: Duration) -> Result<StdTcpListener, ServerError> {
    let fail = |err: io::Error| ServerError::Bind {
        address,
        reason: err.to_string(),
    };
    let listener = StdTcpListener::bind(address).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    socket2::SockRef::from(&listener)
        .set_tcp_user_timeout(Some(stalled))
        .map_err(fail)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every admitted connection has `TCP_NODELAY`: actix-http sets it only
    /// on the streams its own helpers accept, and without it an answer
    /// written in two pieces waits for the client's delayed ACK.
    #[actix_rt::test]
    async fn admitted_connections_send_without_delay() {
        let (seen, mut nodelay) = tokio::sync::mpsc::unbounded_channel();
        let inner = fn_factory(move || {
            let seen = seen.clone();
            async move {
                Ok::<_, ()>(fn_service(move |io: TcpStream| {
                    let _ = seen.send(io.nodelay().ok());
                    async { Ok::<(), ()>(()) }
                }))
            }
        });
        let limits = AdmissionLimits {
            per_listener: 8,
            per_client: 8,
        };
        let service = admitted(inner, Admission::new(limits))
            .new_service(())
            .await
            .expect("the service");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let _client = std::net::TcpStream::connect(address).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        accepted.set_nonblocking(true).expect("nonblocking");
        let accepted = TcpStream::from_std(accepted).expect("a tokio stream");
        assert_eq!(accepted.nodelay().ok(), Some(false), "off to begin with");
        service.call(accepted).await.expect("served");
        assert_eq!(nodelay.recv().await, Some(Some(true)));
    }
}
