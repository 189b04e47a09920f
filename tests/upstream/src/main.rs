//! `upstream`: the small HTTP/1.1 server the proxy tests and benchmarks put
//! behind Dispenser (image `dispenser-test/upstream:latest`).
//!
//! Listens on `0.0.0.0:$PORT` (default 8080) and exits on SIGTERM or SIGINT.
//! - `/`: `$VERSION` (default `v1`) and a newline.
//! - `/headers`: the request's method, path and headers as JSON.
//! - `/ws`: WebSocket echo (text and binary; answers pings, closes on close).
//! - `/sse?n=N`: server-sent events, one per 100 ms (`n` of them, or endless).
//! - `/upload`: reads the streamed body and answers its length in bytes.
//! - `/slow?ms=N`: answers after N milliseconds.
//! - `/bulk?bytes=N`: N bytes (default 1 MiB) as fast as the reader takes
//!   them, with a `Content-Length`.
//! - anything else: 404.
//!
//! Every response carries `X-Upstream: $VERSION`, so a test can tell which
//! container answered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

type Body =
    Either<Full<Bytes>, StreamBody<stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>>;

/// The GUID RFC 6455 appends to the client's key.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Length of a `/bulk` answer when the query does not give one.
const BULK_DEFAULT: u64 = 1 << 20;
/// Size of the chunks a `/bulk` answer is sent in.
const BULK_CHUNK: u64 = 64 * 1024;
/// Port when `$PORT` is not set.
const DEFAULT_PORT: u16 = 8080;
/// Time between two server-sent events.
const SSE_INTERVAL: Duration = Duration::from_millis(100);
/// Longest WebSocket frame echoed.
const MAX_FRAME: u64 = 1 << 20;

fn main() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> std::io::Result<()> {
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_PORT);
    let version = std::env::var("VERSION").unwrap_or_else(|_| "v1".to_string());
    let index = Bytes::from(format!("{version}\n"));
    let tag = HeaderValue::from_str(&version).unwrap_or(HeaderValue::from_static("invalid"));
    let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    eprintln!("upstream {version} listening on :{port}");
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let _ = stream.set_nodelay(true);
        let index = index.clone();
        let tag = tag.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let index = index.clone();
                let tag = tag.clone();
                async move {
                    let mut response = handle(req, index).await;
                    response.headers_mut().insert("x-upstream", tag);
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
    Ok(())
}

async fn handle(req: Request<Incoming>, index: Bytes) -> Response<Body> {
    match req.uri().path() {
        "/" => text(StatusCode::OK, index),
        "/headers" => headers(&req),
        "/ws" => websocket(req),
        "/sse" => sse(query_number(&req, "n")),
        "/upload" => upload(req).await,
        "/slow" => {
            let ms = query_number(&req, "ms").unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(StatusCode::OK, Bytes::from_static(b"slow\n"))
        }
        "/bulk" => bulk(query_number(&req, "bytes").unwrap_or(BULK_DEFAULT)),
        _ => text(StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
    }
}

fn text(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn query_number(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == key).then(|| value.parse().ok()).flatten()
    })
}

fn headers(req: &Request<Incoming>) -> Response<Body> {
    let mut map = serde_json::Map::new();
    for name in req.headers().keys() {
        let values: Vec<serde_json::Value> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        map.insert(name.as_str().to_string(), serde_json::Value::Array(values));
    }
    let body = serde_json::json!({
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map_or("/", |p| p.as_str()),
        "headers": map,
    });
    let mut response = text(StatusCode::OK, Bytes::from(body.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn sse(count: Option<u64>) -> Response<Body> {
    let events = stream::unfold(0u64, move |n| async move {
        if count.is_some_and(|count| n >= count) {
            return None;
        }
        tokio::time::sleep(SSE_INTERVAL).await;
        let event = Frame::data(Bytes::from(format!("data: event {n}\n\n")));
        Some((Ok(event), n + 1))
    });
    let mut response = streamed(Box::pin(events));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A 200 whose body is the frames of `frames`, sent as they come.
fn streamed(
    frames: stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>,
) -> Response<Body> {
    Response::new(Either::Right(StreamBody::new(frames)))
}

fn bulk(length: u64) -> Response<Body> {
    let chunk = Bytes::from(vec![b'x'; BULK_CHUNK as usize]);
    let chunks = stream::unfold(length, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let size = left.min(BULK_CHUNK);
            Some((Ok(Frame::data(chunk.slice(..size as usize))), left - size))
        }
    });
    let mut response = streamed(Box::pin(chunks));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

async fn upload(req: Request<Incoming>) -> Response<Body> {
    let mut body = req.into_body();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    total += data.len() as u64;
                }
            }
            Err(_) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    Bytes::from_static(b"broken body\n"),
                )
            }
        }
    }
    text(StatusCode::OK, Bytes::from(format!("{total}\n")))
}

fn websocket(mut req: Request<Incoming>) -> Response<Body> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return text(
            StatusCode::BAD_REQUEST,
            Bytes::from_static(b"not a websocket request\n"),
        );
    };
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let _ = echo(TokioIo::new(upgraded)).await;
        }
    });
    let mut response = text(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert("sec-websocket-accept", accept);
    }
    response
}

/// Echoes WebSocket frames until a close frame or an error.
async fn echo<S>(mut io: S) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let mut head = [0u8; 2];
        io.read_exact(&mut head).await?;
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let mut length = u64::from(head[1] & 0x7f);
        if length == 126 {
            length = u64::from(io.read_u16().await?);
        } else if length == 127 {
            length = io.read_u64().await?;
        }
        if length > MAX_FRAME {
            return Ok(());
        }
        let mut mask = [0u8; 4];
        if masked {
            io.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; length as usize];
        io.read_exact(&mut payload).await?;
        if masked {
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
        }
        let reply_opcode = match opcode {
            0x8 => {
                write_frame(&mut io, 0x8, &payload).await?;
                return Ok(());
            }
            0x9 => 0xA,
            0xA => continue,
            other => other,
        };
        write_frame(&mut io, reply_opcode, &payload).await?;
    }
}

async fn write_frame<S>(io: &mut S, opcode: u8, payload: &[u8]) -> std::io::Result<()>
where
    S: tokio::io::AsyncWrite + Unpin,
{
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    io.write_all(&frame).await?;
    io.flush().await
}
