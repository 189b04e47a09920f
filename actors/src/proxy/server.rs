//! The proxy's listeners: plain HTTP and HTTPS (rustls, HTTP/2 and
//! HTTP/1.1 by ALPN), served by hyper on worker threads of their own (one
//! single-threaded runtime per core, each accepting on the shared sockets
//! and with its own upstream pool, so a request never hops threads),
//! started once by the daemon and never restarted: reloads and deploys
//! change the `SharedTable` and the `CertMap`, which every request and
//! handshake reads afresh.
//!
//! Strategies: `https-only` serves HTTPS and makes the HTTP listener answer
//! ACME challenges and redirect everything else; `http-only` serves plain
//! HTTP only; `both` proxies on both listeners.

use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use super::certs::CertMap;
use super::challenge::Challenges;
use super::forward::{ClientConn, Forwarder, Listener};
use super::idle::{idle_watch, IdleIo};
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
    _threads: Vec<JoinHandle<()>>,
}

/// One worker's handles on the listening sockets (shared by all workers:
/// whichever worker is free accepts).
struct Listeners {
    http: StdTcpListener,
    https: Option<StdTcpListener>,
}

/// Everything a connection task needs, shared.
struct Shared {
    forwarder: Forwarder,
    http: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    idle_timeout: Duration,
}

/// Longest time a client may take for the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (for example out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// Most worker threads the proxy uses (each a single-threaded runtime).
const MAX_WORKERS: usize = 8;

impl ProxyServer {
    /// Binds the listeners the strategy needs and starts serving them.
    pub fn start(
        settings: &ProxySettings,
        table: SharedTable,
        certs: CertMap,
        challenges: Challenges,
    ) -> Result<ProxyServer, ServerError> {
        let http_listener = bind(settings.http_listen)?;
        let https_listener = match settings.strategy {
            ProxyStrategy::HttpOnly => None,
            ProxyStrategy::HttpsOnly | ProxyStrategy::Both => Some(bind(settings.https_listen)?),
        };
        let local = |listener: &StdTcpListener| listener.local_addr().ok();
        let http = local(&http_listener);
        let https = https_listener.as_ref().and_then(local);
        let tls = match &https_listener {
            Some(_) => Some(TlsAcceptor::from(Arc::new(tls::server_config(certs)?))),
            None => None,
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_timeout)
            .max_buf_size(settings.max_header_bytes);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX));
        let mut forwarding = settings.clone();
        if let Some(https) = https {
            forwarding.https_listen = https;
        }
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(MAX_WORKERS);
        let mut threads = Vec::with_capacity(workers);
        for n in 0..workers {
            // Each worker has its own upstream pool, so a request, its
            // pooled upstream connection and both connection tasks stay on
            // one thread.
            let shared = Arc::new(Shared {
                forwarder: Forwarder::new(&forwarding, table.clone(), challenges.clone()),
                http: builder.clone(),
                tls: tls.clone(),
                idle_timeout: settings.idle_timeout,
            });
            let listeners = Listeners {
                http: clone_listener(&http_listener, settings.http_listen)?,
                https: match &https_listener {
                    Some(listener) => Some(clone_listener(listener, settings.https_listen)?),
                    None => None,
                },
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| ServerError::Runtime(err.to_string()))?;
            let thread = std::thread::Builder::new()
                .name(format!("proxy-{n}"))
                .spawn(move || runtime.block_on(serve_listeners(listeners, shared)))
                .map_err(|err| ServerError::Runtime(err.to_string()))?;
            threads.push(thread);
        }
        info!(
            http = %http.map_or("-".to_string(), |a| a.to_string()),
            https = %https.map_or("-".to_string(), |a| a.to_string()),
            strategy = ?settings.strategy,
            "proxy listening"
        );
        Ok(ProxyServer {
            http,
            https,
            _threads: threads,
        })
    }
}

/// Binds a listening socket now, so a taken port fails the start-up.
fn bind(address: SocketAddr) -> Result<StdTcpListener, ServerError> {
    let fail = |err: io::Error| ServerError::Bind {
        address,
        reason: err.to_string(),
    };
    let listener = StdTcpListener::bind(address).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    Ok(listener)
}

/// Another handle on a listening socket, for one more worker.
fn clone_listener(
    listener: &StdTcpListener,
    address: SocketAddr,
) -> Result<StdTcpListener, ServerError> {
    listener.try_clone().map_err(|err| ServerError::Bind {
        address,
        reason: err.to_string(),
    })
}

/// One worker: accepts on every listener until the process exits.
async fn serve_listeners(listeners: Listeners, shared: Arc<Shared>) {
    let mut tasks = Vec::new();
    match TcpListener::from_std(listeners.http) {
        Ok(listener) => tasks.push(tokio::spawn(accept_loop(
            listener,
            Listener::Http,
            shared.clone(),
        ))),
        Err(err) => error!(error = %err, "cannot serve the HTTP listener"),
    }
    if let Some(https) = listeners.https {
        match TcpListener::from_std(https) {
            Ok(listener) => tasks.push(tokio::spawn(accept_loop(
                listener,
                Listener::Https,
                shared.clone(),
            ))),
            Err(err) => error!(error = %err, "cannot serve the HTTPS listener"),
        }
    }
    for task in tasks {
        let _ = task.await;
    }
}

async fn accept_loop(listener: TcpListener, kind: Listener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(error = %err, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, peer, kind, shared.clone()));
    }
}

/// Serves one client connection until it closes, idles out or upgrades.
async fn serve(stream: TcpStream, peer: SocketAddr, kind: Listener, shared: Arc<Shared>) {
    let (io, activity) = IdleIo::new(stream);
    let idle = idle_watch(activity, shared.idle_timeout);
    let conn = ClientConn::new(kind, peer);
    match (kind, &shared.tls) {
        (Listener::Https, Some(acceptor)) => {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io)).await;
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    debug!(peer = %peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            };
            tokio::select! {
                () = serve_http(TokioIo::new(tls), conn, &shared) => {}
                () = idle => debug!(peer = %peer, "idle connection closed"),
            }
        }
        _ => {
            tokio::select! {
                () = serve_http(TokioIo::new(io), conn, &shared) => {}
                () = idle => debug!(peer = %peer, "idle connection closed"),
            }
        }
    }
}

async fn serve_http<I>(io: I, conn: ClientConn, shared: &Arc<Shared>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let handler = shared.clone();
    let service = service_fn(move |req| {
        let handler = handler.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handler.forwarder.handle(req, &conn).await) }
    });
    if let Err(err) = shared
        .http
        .serve_connection_with_upgrades(io, service)
        .await
    {
        debug!(error = %err, "connection ended with an error");
    }
}
