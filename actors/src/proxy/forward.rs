//! The request path: answers ACME challenges and HTTPS redirects on the HTTP
//! listener, routes by host and path through the `SharedTable`, and forwards
//! to the upstream container over a pooled keep-alive HTTP/1.1 client
//! (`upstream`; one pool per worker thread).
//!
//! It sees requests as `http` 0.2 types with a `RequestBody` the server
//! fills chunk by chunk (server.rs bridges actix-http's payload into it),
//! and answers with an actix-http `Response` (the container's head is
//! parsed straight into it, see `upstream.rs`) whose `ProxyBody` the server
//! streams back: an upload or a server-sent event stream is never buffered
//! whole. WebSocket upgrades are
//! tunnelled once both sides agree on `101 Switching Protocols`: the
//! client's bytes keep arriving through the `RequestBody`, the container's
//! go back through `ProxyBody::Tunnel`.
//! Hop-by-hop headers are removed; `X-Forwarded-For`, `-Proto`, `-Host` and
//! `X-Real-IP` are set. Error answers are short plain text with no detail
//! about the inside, or a route's own pages for 502, 503 and 504.
//!
//! A route with rules (`Entry::guard`) is checked once before its upstream
//! state is looked at (`Forwarder::check`: redirect, allow-list,
//! maintenance, basic auth; `guard.rs`); a plain route skips all of it on
//! one `Option` test.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::header::HeaderMap;
use actix_http::{RequestHead, Response};
use bytes::Bytes;
use bytes::BytesMut;
use http02::header::{self, HeaderName, HeaderValue};
use http02::uri::{PathAndQuery, Scheme};
use http02::{Method, StatusCode, Uri, Version};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tracing::debug;

use super::challenge::{Challenges, CHALLENGE_PREFIX};
use super::guard::{self, AuthCache, RouteGuard};
use super::headers::{list_items, Headers};
use super::maintenance::MAINTENANCE_RETRY_AFTER;
use super::table::{same_host, Lookup, SharedTable, Upstream};
use super::upstream::{BodyReader, Conn, UpstreamBody, UpstreamError, Upstreams};
use crate::plan::{ProxySettings, ProxyStrategy};

/// The body of every response the proxy sends.
#[derive(Debug)]
pub enum ProxyBody {
    /// The container's, streamed.
    Upstream(BodyReader),
    /// A short one of the proxy's own.
    Own(Bytes),
    /// The container's side of an upgraded (WebSocket) tunnel; its end
    /// closes the client connection (idle tunnel, either side gone).
    Tunnel(mpsc::Receiver<io::Result<Bytes>>),
    /// None: the answer to a `HEAD`, which announces the length of the
    /// body it does not send (when the container gave one).
    Headless(Option<u64>),
}

/// A peer's IP as a header value (an IPv4-mapped IPv6 address as IPv4).
fn ip_header(ip: IpAddr) -> HeaderValue {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    HeaderValue::try_from(ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The body of a request as the forwarder sends it upstream: nothing, or
/// the chunks the server's bridge passes on as the client sends them.
#[derive(Debug)]
pub enum RequestBody {
    Empty,
    Chunks {
        chunks: mpsc::Receiver<io::Result<Bytes>>,
        /// The client's `Content-Length`, when it sent one.
        length: Option<u64>,
    },
}

/// Why a request is answered before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `CONNECT`: the proxy is no tunnel to arbitrary hosts (405).
    Method,
    /// No host at all (400).
    MissingHost,
    /// Two `Host` headers, a `Host` that disagrees with the request target's
    /// authority, userinfo or hostile characters (400).
    Host,
}

/// Longest wait of a bodiless idempotent request whose upstream failed
/// (the container went away) for the route to point elsewhere, before the
/// one replay on the new container. Bounded by `[proxy] hold_timeout`.
const REPLAY_WAIT: Duration = Duration::from_secs(3);

/// A request that failed upstream before any answer and can be sent again
/// (its head left ready to go in the caller's `RequestHead`, hop-by-hop
/// headers removed): the upstream that failed and the forwarded headers.
struct Replay {
    failed: SocketAddr,
    forwarded: Forwarded,
}

/// The forwarded headers a request carries to its container
/// (`X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host`).
/// They are written after the client's own headers (`upstream.rs`
/// `encode_head`), never inserted in the client's header map, and the
/// client's headers they replace are skipped on the way.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// With `trust_forwarded_headers`: the client's `Forwarded` and
    /// `X-Forwarded-*` headers pass, except `X-Forwarded-For`, whose chain
    /// `chain` continues. Without it, none of them passes.
    trusted: bool,
    /// `X-Forwarded-For`.
    chain: HeaderValue,
    /// `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host`; `None` where
    /// the client's own passes instead.
    real_ip: Option<HeaderValue>,
    proto: Option<HeaderValue>,
    host: Option<HeaderValue>,
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Http,
    Https,
}

/// What the forwarder knows about a client connection, computed once per
/// connection rather than per request.
#[derive(Debug, Clone)]
pub struct ClientConn {
    pub listener: Listener,
    pub peer: SocketAddr,
    /// The peer's IP as a header value.
    peer_ip: HeaderValue,
    /// The server name the TLS client sent (SNI), lowercase.
    sni: Option<Rc<str>>,
}

/// Routes and forwards requests. One per worker thread, shared by its
/// connections.
#[derive(Debug)]
pub struct Forwarder {
    table: SharedTable,
    challenges: Challenges,
    upstreams: Rc<Upstreams>,
    strategy: ProxyStrategy,
    trust_forwarded_headers: bool,
    /// An upgraded tunnel idle this long is closed.
    idle_timeout: Duration,
    /// Longest wait of a request for a service that is being replaced.
    hold_timeout: Duration,
    /// The port of the HTTPS listener, for redirects (omitted when 443).
    https_port: u16,
    /// The port of the HTTP listener, for `redirect_from` (omitted when 80).
    http_port: u16,
    /// Basic-auth successes of this worker's clients.
    auth_cache: AuthCache,
}

/// Marks an answer of the proxy's own (a failed upstream), which a route's
/// error page may replace; the container's answers never carry it.
#[derive(Debug, Clone, Copy)]
struct OwnFailure;

/// Headers that describe one connection and never cross a proxy.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];
/// End-to-end headers that a `Connection` option never removes (RFC 9110
/// 7.6.1): naming them there is how a client would strip the framing, the
/// host or the forwarded headers of the request the container reads.
const PROTECTED: [HeaderName; 10] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::UPGRADE,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_REAL_IP,
    FORWARDED,
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// Upstream connections kept idle per container and worker, at most (each
/// holds a socket and a read buffer of about 16 KiB; past a burst, the
/// extra ones are closed as they finish).
const MAX_IDLE_PER_UPSTREAM: usize = 256;
/// Chunks of a tunnel's container side waiting for the client, at most.
const TUNNEL_CHUNKS: usize = 4;
/// Read buffer of a tunnel's container side.
const TUNNEL_BUFFER: usize = 16 * 1024;

impl ClientConn {
    pub fn new(listener: Listener, peer: SocketAddr) -> Self {
        ClientConn {
            listener,
            peer,
            peer_ip: ip_header(peer.ip()),
            sni: None,
        }
    }

    /// The same, for a TLS connection that named `sni`.
    pub fn with_sni(mut self, sni: Option<Rc<str>>) -> Self {
        self.sni = sni;
        self
    }

    /// The same, reusing `last`'s header value when the peer's IP is the
    /// same as the previous request's (it usually is, on a kept-alive
    /// connection), and keeping this one's for the next.
    pub fn reusing(
        listener: Listener,
        peer: SocketAddr,
        last: &std::cell::RefCell<Option<(IpAddr, HeaderValue)>>,
    ) -> Self {
        let mut last = last.borrow_mut();
        let peer_ip = match &*last {
            Some((ip, value)) if *ip == peer.ip() => value.clone(),
            _ => {
                let value = ip_header(peer.ip());
                *last = Some((peer.ip(), value.clone()));
                value
            }
        };
        ClientConn {
            listener,
            peer,
            peer_ip,
            sni: None,
        }
    }

    fn scheme(&self) -> HeaderValue {
        HeaderValue::from_static(match self.listener {
            Listener::Http => "http",
            Listener::Https => "https",
        })
    }
}

impl Forwarded {
    /// The proxy's forwarded headers for a request from `conn` for `host`,
    /// in place of all the client's own.
    pub fn replacing(conn: &ClientConn, host: HeaderValue) -> Self {
        Forwarded {
            trusted: false,
            chain: conn.peer_ip.clone(),
            real_ip: Some(conn.peer_ip.clone()),
            proto: Some(conn.scheme()),
            host: Some(host),
        }
    }

    /// Whether the client's header `name` goes on to the container.
    pub fn passes(&self, name: &HeaderName) -> bool {
        // By its text: comparing with the `HeaderName` constants would build
        // and drop one per comparison.
        match name.as_str() {
            "x-forwarded-for" => false,
            "x-real-ip" | "x-forwarded-proto" | "x-forwarded-host" | "forwarded" => self.trusted,
            _ => true,
        }
    }

    /// The proxy's own forwarded header lines, as names and values.
    pub fn lines(&self) -> impl Iterator<Item = (&'static str, &HeaderValue)> {
        [
            ("x-forwarded-for", Some(&self.chain)),
            ("x-real-ip", self.real_ip.as_ref()),
            ("x-forwarded-proto", self.proto.as_ref()),
            ("x-forwarded-host", self.host.as_ref()),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
    }
}

impl RequestBody {
    /// The next chunk the client sent; `None` at the body's end.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        match self {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Chunks { chunks, .. } => chunks.poll_recv(cx),
        }
    }

    /// The body's length, when known (none is 0).
    pub fn length(&self) -> Option<u64> {
        match self {
            RequestBody::Empty => Some(0),
            RequestBody::Chunks { length, .. } => *length,
        }
    }
}

impl Refusal {
    fn response(self) -> Response<ProxyBody> {
        match self {
            Refusal::Method => plain(
                StatusCode::METHOD_NOT_ALLOWED,
                Bytes::from_static(b"method not allowed\n"),
            ),
            Refusal::MissingHost => plain(
                StatusCode::BAD_REQUEST,
                Bytes::from_static(b"missing host\n"),
            ),
            Refusal::Host => plain(
                StatusCode::BAD_REQUEST,
                Bytes::from_static(b"invalid host\n"),
            ),
        }
    }
}

impl Forwarder {
    pub fn new(settings: &ProxySettings, table: SharedTable, challenges: Challenges) -> Self {
        let upstreams = Upstreams::new(
            settings.connect_timeout,
            settings.idle_timeout,
            settings.header_timeout,
            settings.max_header_bytes.max(16 * 1024),
            MAX_IDLE_PER_UPSTREAM,
        );
        Forwarder {
            table,
            challenges,
            upstreams,
            strategy: settings.strategy,
            trust_forwarded_headers: settings.trust_forwarded_headers,
            idle_timeout: settings.idle_timeout,
            hold_timeout: settings.hold_timeout,
            https_port: settings.https_listen.port(),
            http_port: settings.http_listen.port(),
            auth_cache: AuthCache::default(),
        }
    }

    /// Starts closing the upstream connections that stay idle too long
    /// (on the worker's local task set).
    pub fn start_sweeper(&self) {
        self.upstreams.start_sweeper();
    }

    /// Answers one request. The head is borrowed, not moved, so that it is
    /// not copied into every future on the way (it is also the replay's).
    pub async fn handle(
        &self,
        head: &mut RequestHead,
        body: RequestBody,
        conn: &ClientConn,
    ) -> Response<ProxyBody> {
        if conn.listener == Listener::Http {
            let path = head.uri.path();
            if path.starts_with(CHALLENGE_PREFIX) {
                return match self.challenges.answer(path) {
                    Some(key_authorization) => {
                        plain(StatusCode::OK, Bytes::from(key_authorization))
                    }
                    None => plain(StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
                };
            }
            if self.strategy == ProxyStrategy::HttpsOnly {
                return self.redirect(head);
            }
        }
        let host = match request_host(head) {
            Ok(host) => host,
            Err(refusal) => return refusal.response(),
        };
        // A TLS connection serves the host its handshake named: a request
        // for another host (a reused connection, or a client that sends one
        // name to pass a check and another to be routed) goes elsewhere.
        if let Some(sni) = &conn.sni {
            if !same_host(host, sni) {
                return plain(
                    StatusCode::MISDIRECTED_REQUEST,
                    Bytes::from_static(b"misdirected request\n"),
                );
            }
        }
        // Read from the clock only when a request has to wait.
        let mut held_until = None;
        // The guard the request passed, once it did (its pages answer the
        // proxy's own failures); a table swap brings a new one to pass.
        let mut passed: Option<Arc<RouteGuard>> = None;
        // The route a held request waits for, to count its 503 on.
        let mut waiting_for: Option<Arc<str>> = None;
        let (route, address, in_flight) = loop {
            // Armed before the table is read, so no swap in between is missed.
            let changed = self.table.changed();
            // Before the first table (the daemon starting, for example after
            // a crash) no host is unknown yet: held like a starting route.
            let loaded = self.table.loaded();
            let to_check = {
                let table = self.table.load();
                match table.lookup(host, head.uri.path()) {
                    Lookup::UnknownHost | Lookup::NoPath if !loaded => None,
                    Lookup::UnknownHost => {
                        return plain(StatusCode::NOT_FOUND, Bytes::from_static(b"unknown host\n"))
                    }
                    Lookup::NoPath => {
                        return plain(
                            StatusCode::NOT_FOUND,
                            Bytes::from_static(b"no route for this path\n"),
                        )
                    }
                    Lookup::Found(entry) => match &entry.guard {
                        Some(guard)
                            if passed
                                .as_ref()
                                .is_none_or(|passed| !Arc::ptr_eq(passed, guard)) =>
                        {
                            Some((entry.service.clone(), guard.clone()))
                        }
                        _ => match &entry.upstream {
                            Upstream::Ready {
                                address, in_flight, ..
                            } => break (entry.service.clone(), *address, in_flight.enter()),
                            Upstream::Starting => {
                                waiting_for = Some(entry.service.clone());
                                None
                            }
                            Upstream::Down => {
                                crate::metrics::global().proxy_request(
                                    &entry.service,
                                    StatusCode::BAD_GATEWAY.as_u16(),
                                    Duration::ZERO,
                                );
                                return own_failure(
                                    passed.as_deref(),
                                    StatusCode::BAD_GATEWAY,
                                    b"service down\n",
                                );
                            }
                        },
                    },
                }
            };
            if let Some((service, guard)) = to_check {
                let checked_at = std::time::Instant::now();
                // Boxed: only guarded routes pay for its future.
                if let Some(answer) = Box::pin(self.check(&guard, head, conn)).await {
                    crate::metrics::global().proxy_request(
                        &service,
                        answer.status().as_u16(),
                        checked_at.elapsed(),
                    );
                    return answer;
                }
                passed = Some(guard);
                continue;
            }
            // Starting (or replaced stop-first, or no table yet): hold the
            // request until the router publishes a change, up to the hold
            // timeout.
            let deadline =
                *held_until.get_or_insert_with(|| tokio::time::Instant::now() + self.hold_timeout);
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                if let Some(route) = &waiting_for {
                    crate::metrics::global().proxy_request(
                        route,
                        StatusCode::SERVICE_UNAVAILABLE.as_u16(),
                        self.hold_timeout,
                    );
                }
                return own_failure(
                    passed.as_deref(),
                    StatusCode::SERVICE_UNAVAILABLE,
                    b"service starting\n",
                );
            }
        };
        // `strip_prefix`: the container sees the path below the route's; a
        // replay looks the route up again by the path as it came.
        let original_path = match passed
            .as_deref()
            .and_then(|guard| guard.strip_prefix.as_deref())
        {
            Some(prefix) => {
                let original = head.uri.path().to_owned();
                if let Some(stripped) = strip_prefix(&head.uri, prefix) {
                    head.uri = stripped;
                }
                Some(original)
            }
            None => None,
        };
        let started = std::time::Instant::now();
        let outcome = self.forward(head, body, address, conn).await;
        drop(in_flight);
        let mut response = match outcome {
            Ok(response) => response,
            // Boxed: rare, and kept out of every request's future.
            Err(replay) => Box::pin(self.replay(head, replay, original_path.as_deref())).await,
        };
        if let Some(guard) = &passed {
            if response.extensions().get::<OwnFailure>().is_some() {
                if let Some(page) = guard.error_page(response.status().as_u16()) {
                    response = page_response(response.status(), page.clone());
                }
            }
        }
        crate::metrics::global().proxy_request(
            &route,
            response.status().as_u16(),
            started.elapsed(),
        );
        response
    }

    /// A guarded route's checks, in order: a `redirect_from` name's 308, the
    /// allow-list's 403, maintenance's 503, basic auth's 401. `None`: the
    /// request goes on.
    async fn check(
        &self,
        guard: &RouteGuard,
        head: &RequestHead,
        conn: &ClientConn,
    ) -> Option<Response<ProxyBody>> {
        if let Some(target) = &guard.redirect_to {
            return Some(self.moved(target, head, conn));
        }
        if let Some(allow) = &guard.allow {
            let client =
                guard::client_ip(&head.headers, conn.peer.ip(), self.trust_forwarded_headers);
            if !allow.admits(client) {
                return Some(plain(
                    StatusCode::FORBIDDEN,
                    Bytes::from_static(b"forbidden\n"),
                ));
            }
        }
        if let Some(page) = &guard.maintenance {
            let mut response = page_response(StatusCode::SERVICE_UNAVAILABLE, page.clone());
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(MAINTENANCE_RETRY_AFTER),
            );
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return Some(response);
        }
        if let Some(credentials) = &guard.basic_auth {
            if !credentials.admit(&head.headers, &self.auth_cache).await {
                let mut response = plain(
                    StatusCode::UNAUTHORIZED,
                    Bytes::from_static(b"authentication required\n"),
                );
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, credentials.challenge.clone());
                return Some(response);
            }
        }
        None
    }

    /// A `redirect_from` name's answer: 308 to `target`, path and query
    /// kept, in the scheme of the strategy (under `both`, the listener's).
    fn moved(&self, target: &str, head: &RequestHead, conn: &ClientConn) -> Response<ProxyBody> {
        let (scheme, port, default_port) = match (self.strategy, conn.listener) {
            (ProxyStrategy::HttpsOnly, _) | (ProxyStrategy::Both, Listener::Https) => {
                ("https", self.https_port, 443)
            }
            (ProxyStrategy::HttpOnly, _) | (ProxyStrategy::Both, Listener::Http) => {
                ("http", self.http_port, 80)
            }
        };
        let path = head.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let location = if port == default_port {
            format!("{scheme}://{target}{path}")
        } else {
            format!("{scheme}://{target}:{port}{path}")
        };
        let Ok(location) = HeaderValue::try_from(location) else {
            return plain(
                StatusCode::BAD_REQUEST,
                Bytes::from_static(b"bad request\n"),
            );
        };
        let mut response = plain(
            StatusCode::PERMANENT_REDIRECT,
            Bytes::from_static(b"moved permanently\n"),
        );
        response.headers_mut().insert(header::LOCATION, location);
        response
    }

    /// Sends a failed bodiless request once more: at once to the route's
    /// fallback (the previous container, up while the new one soaks), or
    /// when the route's upstream changes within `REPLAY_WAIT` (a deploy
    /// moved traffic away from a container that died); otherwise answers 502.
    async fn replay(
        &self,
        head: &RequestHead,
        replay: Replay,
        lookup_path: Option<&str>,
    ) -> Response<ProxyBody> {
        let Replay { failed, forwarded } = replay;
        let down = || own_failure(None, StatusCode::BAD_GATEWAY, b"service down\n");
        let path = lookup_path.unwrap_or(head.uri.path());
        let Some(host) = head
            .headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .map(str::to_owned)
        else {
            return down();
        };
        let deadline = tokio::time::Instant::now() + REPLAY_WAIT.min(self.hold_timeout);
        let (address, in_flight) = loop {
            let changed = self.table.changed();
            {
                let table = self.table.load();
                match table.lookup(&host, path) {
                    Lookup::Found(entry) => match &entry.upstream {
                        Upstream::Ready {
                            address, in_flight, ..
                        } if *address != failed => break (*address, in_flight.enter()),
                        // The new container failed it during its soak: the
                        // previous one is still up.
                        Upstream::Ready {
                            fallback: Some(fallback),
                            ..
                        } if fallback.address != failed => {
                            break (fallback.address, fallback.in_flight.enter())
                        }
                        Upstream::Ready { .. } | Upstream::Starting => {}
                        Upstream::Down => return down(),
                    },
                    _ => return down(),
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return down();
            }
        };
        debug!(%address, "replaying a request on the route's new upstream");
        let sent = self
            .upstreams
            .send(address, head, &forwarded, RequestBody::Empty)
            .await;
        drop(in_flight);
        match sent {
            Ok(mut response) => {
                strip_hop_by_hop(response.headers_mut());
                response.map_body(|_, body| proxy_body(body))
            }
            Err(UpstreamError::TimedOut) => {
                own_failure(None, StatusCode::GATEWAY_TIMEOUT, b"service timed out\n")
            }
            Err(_) => down(),
        }
    }

    /// Sends the request to `address` and streams the answer back. A
    /// bodiless idempotent request that fails before any answer comes back
    /// as a `Replay`.
    async fn forward(
        &self,
        head: &mut RequestHead,
        body: RequestBody,
        address: SocketAddr,
        conn: &ClientConn,
    ) -> Result<Response<ProxyBody>, Replay> {
        // Only WebSocket: the server passes on the client's bytes after the
        // head for that protocol alone.
        let upgrade = head.version == Version::HTTP_11
            && wants_upgrade(&head.headers)
            && head
                .headers
                .get(header::UPGRADE)
                .is_some_and(|protocol| protocol.as_bytes().eq_ignore_ascii_case(b"websocket"));
        // An upgrade's body is the client's side of the tunnel, kept for it.
        let (body, client_side) = if upgrade {
            (RequestBody::Empty, Some(body))
        } else {
            (body, None)
        };
        let host = match head.headers.get(header::HOST) {
            Some(host) => host.clone(),
            None => match head
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                Some(host) => {
                    head.headers.insert(header::HOST, host.clone());
                    host
                }
                None => HeaderValue::from_static(""),
            },
        };
        head.version = Version::HTTP_11;
        let upgrade_protocol = if upgrade {
            head.headers.get(header::UPGRADE).cloned()
        } else {
            None
        };
        strip_hop_by_hop(&mut head.headers);
        head.headers.remove_all(&header::UPGRADE);
        if let Some(protocol) = upgrade_protocol {
            head.headers.insert(header::UPGRADE, protocol);
            head.headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        let forwarded = self.forwarded(&head.headers, conn, host);

        let replayable = !upgrade
            && matches!(head.method, Method::GET | Method::HEAD | Method::OPTIONS)
            && matches!(body, RequestBody::Empty);
        let sent = self.upstreams.send(address, head, &forwarded, body).await;
        let mut response = match sent {
            Ok(response) => response,
            Err(UpstreamError::TimedOut) => {
                return Ok(own_failure(
                    None,
                    StatusCode::GATEWAY_TIMEOUT,
                    b"service timed out\n",
                ))
            }
            Err(err) => {
                debug!(error = %err, "upstream request failed");
                if replayable {
                    return Err(Replay {
                        failed: address,
                        forwarded,
                    });
                }
                // Refused or timed-out connects mean the container is not
                // serving (it may have exited since it was last reported).
                let body: &'static [u8] = if err.is_connect() {
                    b"service down\n"
                } else {
                    b"bad gateway\n"
                };
                return Ok(own_failure(None, StatusCode::BAD_GATEWAY, body));
            }
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_side) = client_side else {
                return Ok(plain(
                    StatusCode::BAD_GATEWAY,
                    Bytes::from_static(b"unexpected upgrade\n"),
                ));
            };
            let (answer, body) = response.into_parts();
            let UpstreamBody::Upgraded(upstream) = body else {
                return Ok(plain(
                    StatusCode::BAD_GATEWAY,
                    Bytes::from_static(b"bad gateway\n"),
                ));
            };
            let (to_client, from_upstream) = mpsc::channel(TUNNEL_CHUNKS);
            tokio::task::spawn_local(tunnel(client_side, upstream, to_client, self.idle_timeout));
            return Ok(answer.set_body(ProxyBody::Tunnel(from_upstream)));
        }
        strip_hop_by_hop(response.headers_mut());
        response.headers_mut().remove(header::UPGRADE);
        Ok(response.map_body(|_, body| proxy_body(body)))
    }

    /// The forwarded headers for the container: replaced, or with
    /// `trust_forwarded_headers`, appended to (`X-Forwarded-For`) or kept.
    fn forwarded(&self, headers: &HeaderMap, conn: &ClientConn, host: HeaderValue) -> Forwarded {
        if !self.trust_forwarded_headers {
            return Forwarded::replacing(conn, host);
        }
        let chain = headers
            .values(X_FORWARDED_FOR)
            .filter_map(|value| value.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let chain = if chain.is_empty() {
            conn.peer_ip.clone()
        } else {
            let peer = conn.peer_ip.to_str().unwrap_or("unknown");
            HeaderValue::try_from(format!("{chain}, {peer}"))
                .unwrap_or_else(|_| conn.peer_ip.clone())
        };
        let unless_sent =
            |name: HeaderName, value: HeaderValue| (!headers.contains_key(name)).then_some(value);
        Forwarded {
            trusted: true,
            chain,
            real_ip: unless_sent(X_REAL_IP, conn.peer_ip.clone()),
            proto: unless_sent(X_FORWARDED_PROTO, conn.scheme()),
            host: unless_sent(X_FORWARDED_HOST, host),
        }
    }

    /// The HTTPS address of the same resource: 301 for GET and HEAD, 308
    /// (method and body kept) for everything else.
    fn redirect(&self, head: &RequestHead) -> Response<ProxyBody> {
        let Some(host) = request_host(head).ok().and_then(redirect_host) else {
            return plain(
                StatusCode::BAD_REQUEST,
                Bytes::from_static(b"missing or invalid host\n"),
            );
        };
        // Only a routed host is sent on: an unknown one is never echoed back
        // in `Location`, which would make the proxy an open redirector.
        // Before the first table no host is known; the client retries.
        if !self.table.loaded() {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from_static(b"service starting\n"),
            );
        }
        if self.table.load().lookup(host, head.uri.path()) == Lookup::UnknownHost {
            return plain(StatusCode::NOT_FOUND, Bytes::from_static(b"unknown host\n"));
        }
        let path = head.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let location = match self.https_port {
            443 => format!("https://{host}{path}"),
            port => format!("https://{host}:{port}{path}"),
        };
        let Ok(location) = HeaderValue::try_from(location) else {
            return plain(
                StatusCode::BAD_REQUEST,
                Bytes::from_static(b"bad request\n"),
            );
        };
        let status = if head.method == Method::GET || head.method == Method::HEAD {
            StatusCode::MOVED_PERMANENTLY
        } else {
            StatusCode::PERMANENT_REDIRECT
        };
        let mut response = plain(status, Bytes::from_static(b"moved to https\n"));
        response.headers_mut().insert(header::LOCATION, location);
        response
    }
}

/// The host a request is for: the URI's authority (HTTP/2, absolute-form)
/// or the `Host` header. Ambiguous or hostile requests are refused before
/// routing: `CONNECT`, a scheme other than http(s), more than one `Host`,
/// an authority that differs from `Host`, userinfo or characters no host
/// name has.
fn request_host(head: &RequestHead) -> Result<&str, Refusal> {
    if head.method == Method::CONNECT {
        return Err(Refusal::Method);
    }
    let mut hosts = head.headers.values(header::HOST);
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::Host);
    }
    let header = match header {
        Some(value) => Some(value.to_str().map_err(|_| Refusal::Host)?),
        None => None,
    };
    let uri = &head.uri;
    if let Some(scheme) = uri.scheme() {
        if *scheme != Scheme::HTTP && *scheme != Scheme::HTTPS {
            return Err(Refusal::Host);
        }
    }
    let host = match (uri.authority(), header) {
        (Some(authority), Some(header)) if !authority.as_str().eq_ignore_ascii_case(header) => {
            return Err(Refusal::Host)
        }
        (Some(authority), _) => authority.as_str(),
        (None, Some(header)) => header,
        (None, None) => return Err(Refusal::MissingHost),
    };
    if host.is_empty() {
        return Err(Refusal::MissingHost);
    }
    if !host.bytes().all(is_host_byte) {
        return Err(Refusal::Host);
    }
    Ok(host)
}

/// Bytes a `Host` may hold: a DNS name or IP, a port, IPv6 brackets.
fn is_host_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_' | b':' | b'[' | b']')
}

/// The host part of a redirect target, when it is a plain DNS name or IP
/// (the port is dropped; hostile characters refuse the redirect).
fn redirect_host(host: &str) -> Option<&str> {
    let name = match host.strip_prefix('[') {
        Some(rest) => return rest.split_once(']').map(|(ip, _)| &host[..ip.len() + 2]),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    plain.then_some(name)
}

/// True when the request asks to switch protocols (`Connection: upgrade`
/// and an `Upgrade` header).
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && list_items(headers, header::CONNECTION)
            .any(|token| token.eq_ignore_ascii_case(b"upgrade"))
}

/// The container's answer body as the server streams it.
fn proxy_body(body: UpstreamBody) -> ProxyBody {
    match body {
        UpstreamBody::Full(bytes) => ProxyBody::Own(bytes),
        UpstreamBody::Stream(reader) => ProxyBody::Upstream(reader),
        // Only a 101 carries a connection; without one asked for, the
        // client gets nothing of it.
        UpstreamBody::Upgraded(_) => ProxyBody::Own(Bytes::new()),
    }
}

/// Removes hop-by-hop headers and those the `Connection` header names,
/// except the end-to-end ones no connection option may remove (`PROTECTED`).
fn strip_hop_by_hop(headers: &mut impl Headers) {
    // Most heads carry none: one pass over them instead of eight lookups.
    if !headers.names().any(is_hop_by_hop) {
        return;
    }
    // Every `Connection` header's tokens: a list may be split over several.
    let named: Vec<HeaderName> = list_items(headers, header::CONNECTION)
        .filter_map(|token| HeaderName::from_bytes(token).ok())
        .filter(|name| !PROTECTED.contains(name))
        .collect();
    for name in &named {
        headers.remove_all(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove_all(name);
    }
}

/// True for a name in `HOP_BY_HOP`, by its text: comparing with the
/// constants would build and drop each of them for every header.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
    )
}

/// Copies bytes both ways between the client and the container once the
/// container's connection is upgraded, until either side closes or no byte
/// moved either way for `idle`. The client's bytes come in as its request
/// body; the container's go out through `to_client`, dropped when the
/// tunnel ends, so the server ends the response and closes the connection.
async fn tunnel(
    mut client: RequestBody,
    upstream: Conn,
    to_client: mpsc::Sender<io::Result<Bytes>>,
    idle: Duration,
) {
    let (upstream, early) = upstream.into_parts();
    // What the container sent right after its 101 goes first.
    if !early.is_empty() && to_client.send(Ok(early.freeze())).await.is_err() {
        return;
    }
    let (mut from_upstream, mut to_upstream) = upstream.into_split();
    let mut buffer = BytesMut::with_capacity(TUNNEL_BUFFER);
    let mut client_open = true;
    let mut last_moved = tokio::time::Instant::now();
    let reason = loop {
        let client_chunk = async {
            if client_open {
                std::future::poll_fn(|cx| client.poll_chunk(cx)).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            chunk = client_chunk => match chunk {
                Some(Ok(data)) => {
                    if let Err(err) = to_upstream.write_all(&data).await {
                        break err;
                    }
                    last_moved = tokio::time::Instant::now();
                }
                // The client finished sending: pass the half-close on and
                // keep reading the container's side.
                None => {
                    client_open = false;
                    let _ = to_upstream.shutdown().await;
                }
                Some(Err(err)) => break err,
            },
            read = from_upstream.read_buf(&mut buffer) => match read {
                Ok(0) => break io::Error::new(io::ErrorKind::UnexpectedEof, "container closed the tunnel"),
                Ok(_) => {
                    if to_client.send(Ok(buffer.split().freeze())).await.is_err() {
                        return;
                    }
                    if buffer.capacity() < TUNNEL_BUFFER / 4 {
                        buffer.reserve(TUNNEL_BUFFER);
                    }
                    last_moved = tokio::time::Instant::now();
                }
                Err(err) => break err,
            },
            () = tokio::time::sleep_until(last_moved + idle) => {
                break io::Error::new(io::ErrorKind::TimedOut, "idle tunnel closed");
            }
        }
    };
    debug!(reason = %reason, "tunnel closed");
}

/// The proxy's own failure `status`: the route's page for it when `guard`
/// has one, else `body` as plain text, marked `OwnFailure` so the page can
/// still replace it once the route is known.
fn own_failure(
    guard: Option<&RouteGuard>,
    status: StatusCode,
    body: &'static [u8],
) -> Response<ProxyBody> {
    if let Some(page) = guard.and_then(|guard| guard.error_page(status.as_u16())) {
        return page_response(status, page.clone());
    }
    let mut response = plain(status, Bytes::from_static(body));
    response.extensions_mut().insert(OwnFailure);
    response
}

/// An HTML page of the proxy's own (an error page, maintenance).
fn page_response(status: StatusCode, page: Bytes) -> Response<ProxyBody> {
    let mut response = Response::with_body(status, ProxyBody::Own(page));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// `uri` with `prefix` (a route's path, matched on a segment boundary)
/// removed from its path: `/api/v1?x` under `/api` is `/v1?x`, `/api` is `/`.
fn strip_prefix(uri: &Uri, prefix: &str) -> Option<Uri> {
    let rest = uri.path().strip_prefix(prefix)?;
    let path = if rest.is_empty() { "/" } else { rest };
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut uri_parts = uri.clone().into_parts();
    uri_parts.path_and_query = Some(PathAndQuery::try_from(target).ok()?);
    Uri::from_parts(uri_parts).ok()
}

/// A short plain-text response of the proxy's own.
fn plain(status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let mut response = Response::with_body(status, ProxyBody::Own(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
#[path = "forward/tests.rs"]
mod tests;
