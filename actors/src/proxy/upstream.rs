//! The proxy's HTTP/1.1 client to containers.
//!
//! One `Upstreams` per worker thread owns that worker's idle keep-alive
//! connections (no lock: the pool is `Rc` and never leaves the thread). A
//! request is written, its answer read and its body streamed by the client
//! connection's own task: there is no connection task and no channel between
//! the request and its upstream socket. A small body that came in with the
//! head is handed over whole and the connection goes back to the pool at
//! once.
//!
//! Framing follows RFC 9112 section 6.3: no body after `HEAD`, 1xx, 204 and
//! 304; `Transfer-Encoding` ending in `chunked` wins over `Content-Length`
//! (and the connection is not reused); conflicting or malformed lengths are
//! refused; anything else is read until the container closes. Interim 1xx
//! answers (`100 Continue`) are skipped; `101 Switching Protocols` hands the
//! connection over for a tunnel. The container is trusted to run, not to be
//! well-behaved: heads, chunk lines and trailers are bounded.
//!
//! A connection taken from the pool is checked first (a closed one is
//! dropped without a system call when the event loop has already seen its
//! end); if a reused connection still fails before any byte of an answer,
//! a bodiless idempotent request is sent again on a fresh connection.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_http::header::HeaderMap;
use actix_http::{RequestHead, Response};
use bytes::{Buf as _, Bytes, BytesMut};
// foldhash: the pool's keys are container addresses, not a client's input.
use foldhash::{HashMap, HashMapExt as _};
use futures_util::future::{self, Either};
use http02::header::{self, HeaderName, HeaderValue};
use http02::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::io::poll_read_buf;

use super::forward::{Forwarded, RequestBody};
use super::headers::{list_items, Headers as _};

/// Headers an answer may carry, at most.
const MAX_HEADERS: usize = 128;
/// Bytes read from a container at a time, at least.
const READ_CHUNK: usize = 16 * 1024;
/// Longest chunk-size line (with extensions) of a chunked body.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Most bytes of trailers after a chunked body (they are dropped).
const MAX_TRAILERS: usize = 16 * 1024;
/// A body that came in whole with the head and is at most this long is
/// copied out, so the connection's buffer is reused without reallocating.
const COPY_BELOW: usize = 4 * 1024;
/// Longest wait for the container to close a connection that is not
/// reused, before it is closed from this side.
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes read (and dropped) from such a connection meanwhile.
const LINGER_READ_LIMIT: usize = 64 * 1024;
/// Spare header-timeout timers kept per worker, at most (one per request
/// in flight is needed).
const MAX_SPARE_TIMERS: usize = 1024;
/// How often idle connections are checked for their age and end.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Why a request got no answer from the container.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("the container closed the connection before answering")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("invalid answer from the container: {0}")]
    Invalid(&'static str),
    #[error("no answer from the container within the header timeout")]
    TimedOut,
}

impl UpstreamError {
    /// True when no connection could be made (the container is not
    /// serving).
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect(_))
    }
}

/// One worker's upstream connections.
#[derive(Debug)]
pub struct Upstreams {
    idle: RefCell<HashMap<SocketAddr, VecDeque<Idle>>>,
    /// Timers for header timeouts, not in use now (see `send`).
    timers: RefCell<Vec<Pin<Box<Sleep>>>>,
    connect_timeout: Duration,
    /// An idle connection older than this is closed.
    idle_timeout: Duration,
    /// Longest wait of a request for its answer's head.
    header_timeout: Duration,
    /// Longest answer head (status line and headers).
    max_head: usize,
    /// Idle connections kept per container, at most.
    max_idle: usize,
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// A connection to a container and what was read from it and not used yet.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    address: SocketAddr,
}

/// The body of an answer.
#[derive(Debug)]
pub enum UpstreamBody {
    /// All of it (possibly nothing), read with the head.
    Full(Bytes),
    /// The rest comes from the connection as it is read.
    Stream(BodyReader),
    /// `101 Switching Protocols`: the connection, for a tunnel, with any
    /// bytes the container sent after the head.
    Upgraded(Conn),
}

/// Reads a body from its connection, chunk by chunk, and gives the
/// connection back to the pool when the body ended cleanly.
#[derive(Debug)]
pub struct BodyReader {
    source: Option<Source>,
    decoder: Decoder,
    /// The body's length, when the head announced it.
    length: Option<u64>,
    /// The pool the connection goes back to (gone: the worker stopped).
    pool: Weak<Upstreams>,
}

/// Where a body is read from: its connection, or the read half of a
/// connection whose request body is still being sent (never reused).
#[derive(Debug)]
enum Source {
    Whole(Conn),
    Half(OwnedReadHalf, BytesMut),
}

/// How the body's end is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoder {
    /// `Content-Length`: this many bytes are left.
    Length(u64),
    Chunked(Chunk),
    /// Until the container closes.
    Close,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    /// Trailer bytes seen so far.
    Trailers(usize),
    Done,
}

/// What the head says about the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Body(Decoder),
    Upgrade,
}

/// A timer lent from a pool's spares for one request, given back on drop
/// (also when the request is dropped half-way).
struct SpareTimer<'a> {
    spares: &'a RefCell<Vec<Pin<Box<Sleep>>>>,
    timer: Option<Pin<Box<Sleep>>>,
}

/// A failed exchange, and whether the container had sent anything.
struct Failure {
    error: UpstreamError,
    answered: bool,
}

impl From<UpstreamError> for Failure {
    fn from(error: UpstreamError) -> Self {
        Failure {
            error,
            answered: false,
        }
    }
}

impl<'a> SpareTimer<'a> {
    /// A spare timer set to `deadline`, or a new one when none is left.
    fn take(spares: &'a RefCell<Vec<Pin<Box<Sleep>>>>, deadline: tokio::time::Instant) -> Self {
        let spare = spares.borrow_mut().pop();
        let timer = match spare {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        SpareTimer {
            spares,
            timer: Some(timer),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.timer {
            Some(timer) => timer.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl Drop for SpareTimer<'_> {
    fn drop(&mut self) {
        let mut spares = self.spares.borrow_mut();
        if spares.len() < MAX_SPARE_TIMERS {
            spares.extend(self.timer.take());
        }
    }
}

impl Upstreams {
    /// A worker's pool: `header_timeout` bounds each request from its
    /// connect (or checkout) to its answer's head.
    pub fn new(
        connect_timeout: Duration,
        idle_timeout: Duration,
        header_timeout: Duration,
        max_head: usize,
        max_idle: usize,
    ) -> Rc<Self> {
        Rc::new(Upstreams {
            idle: RefCell::new(HashMap::new()),
            timers: RefCell::new(Vec::new()),
            connect_timeout,
            idle_timeout,
            header_timeout,
            max_head,
            max_idle,
        })
    }

    /// Closes idle connections that are too old or closed by the
    /// container, every few seconds, for as long as the pool lives. Needs a
    /// local task set (an actix worker).
    pub fn start_sweeper(self: &Rc<Self>) {
        let pool = Rc::downgrade(self);
        tokio::task::spawn_local(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.sweep();
            }
        });
    }

    fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        idle.retain(|_, conns| {
            conns.retain(|entry| {
                now.duration_since(entry.since) < self.idle_timeout && entry.conn.is_open()
            });
            !conns.is_empty()
        });
    }

    /// Idle connections to `address` right now.
    #[cfg(test)]
    fn idle_count(&self, address: SocketAddr) -> usize {
        self.idle.borrow().get(&address).map_or(0, VecDeque::len)
    }

    /// A live idle connection to `address`, the most recently used first.
    fn checkout(&self, address: SocketAddr) -> Option<Conn> {
        let mut idle = self.idle.borrow_mut();
        let conns = idle.get_mut(&address)?;
        let now = Instant::now();
        while let Some(entry) = conns.pop_back() {
            if now.duration_since(entry.since) < self.idle_timeout && entry.conn.is_open() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Keeps a connection whose last exchange ended cleanly.
    fn put(&self, conn: Conn) {
        let mut idle = self.idle.borrow_mut();
        let conns = idle.entry(conn.address).or_default();
        if conns.len() >= self.max_idle {
            conns.pop_front();
        }
        conns.push_back(Idle {
            conn,
            since: Instant::now(),
        });
    }

    async fn connect(&self, address: SocketAddr) -> Result<Conn, UpstreamError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| {
                UpstreamError::Connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            })?
            .map_err(UpstreamError::Connect)?;
        stream.set_nodelay(true).map_err(UpstreamError::Connect)?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            address,
        })
    }

    /// Sends a request to `address` and reads the head of its answer. The
    /// request target is `head`'s path and query; its headers go as they
    /// are (the caller removed hop-by-hop ones), but for those `forwarded`
    /// replaces, and `forwarded`'s after them.
    pub async fn send(
        self: &Rc<Self>,
        address: SocketAddr,
        head: &RequestHead,
        forwarded: &Forwarded,
        body: RequestBody,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let mut wire = BytesMut::with_capacity(512);
        encode_head(head, forwarded, &body, &mut wire);
        let wire = wire.freeze();
        let is_head = head.method == Method::HEAD;
        let retry = matches!(body, RequestBody::Empty)
            && matches!(
                head.method,
                Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
            );
        // The header timeout, on a timer lent from the spares: moving an
        // armed timer's deadline later is one atomic exchange, where a timer
        // of its own per request would be inserted into the runtime's timer
        // wheel and removed again. The exchange is pinned here and polled in
        // place, not moved into a timeout future.
        let mut timer = SpareTimer::take(
            &self.timers,
            tokio::time::Instant::now() + self.header_timeout,
        );
        let mut exchange =
            std::pin::pin!(self.exchange_retrying(address, &wire, body, is_head, retry));
        std::future::poll_fn(|cx| {
            if let Poll::Ready(done) = exchange.as_mut().poll(cx) {
                return Poll::Ready(done);
            }
            timer.poll(cx).map(|()| Err(UpstreamError::TimedOut))
        })
        .await
    }

    /// The exchange on a pooled connection, or a new one, and once more on
    /// a new one when a pooled connection the container had closed fails a
    /// request that may be sent again (`retry`).
    async fn exchange_retrying(
        self: &Rc<Self>,
        address: SocketAddr,
        wire: &Bytes,
        body: RequestBody,
        is_head: bool,
        retry: bool,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let mut body = Some(body);
        loop {
            let (conn, reused) = match self.checkout(address) {
                Some(conn) => (conn, true),
                None => (self.connect(address).await?, false),
            };
            match self.exchange(conn, wire, &mut body, is_head).await {
                Ok(response) => return Ok(response),
                // A kept connection the container had closed: once more on
                // another (a fresh one ends this loop).
                Err(failure) if reused && retry && !failure.answered => {}
                Err(failure) => return Err(failure.error),
            }
        }
    }

    async fn exchange(
        self: &Rc<Self>,
        mut conn: Conn,
        wire: &Bytes,
        body: &mut Option<RequestBody>,
        is_head: bool,
    ) -> Result<Response<UpstreamBody>, Failure> {
        let request_body = match body.take() {
            Some(RequestBody::Empty) | None => {
                conn.stream
                    .write_all(wire)
                    .await
                    .map_err(UpstreamError::Io)?;
                None
            }
            Some(chunks) => Some(chunks),
        };
        match request_body {
            None => {
                let (response, framing) =
                    read_head(&mut conn.stream, &mut conn.buf, self.max_head, is_head).await?;
                self.answer(Source::Whole(conn), response, framing)
            }
            // Boxed: the bodiless exchange, the common one, stays small.
            Some(request_body) => {
                Box::pin(self.exchange_with_body(conn, wire, request_body, is_head)).await
            }
        }
    }

    /// The exchange of a request with a body: sent while the answer is
    /// awaited, since a container may answer (or say 100 Continue) before
    /// it has read all of it.
    async fn exchange_with_body(
        self: &Rc<Self>,
        mut conn: Conn,
        wire: &Bytes,
        mut request_body: RequestBody,
        is_head: bool,
    ) -> Result<Response<UpstreamBody>, Failure> {
        let chunked = request_body.length().is_none();
        let head_read = {
            let (mut reader, mut writer) = conn.stream.split();
            let send = send_body(&mut writer, wire, &mut request_body, chunked);
            let read = read_head(&mut reader, &mut conn.buf, self.max_head, is_head);
            futures_util::pin_mut!(send, read);
            match future::select(send, read).await {
                Either::Left((sent, read)) => Either::Left((sent.is_ok(), read.await)),
                Either::Right((head, _)) => Either::Right(head),
            }
        };
        match head_read {
            // The whole body went (or the container stopped reading it and
            // answered anyway, and then the connection is not reused).
            Either::Left((sent, head)) => {
                let (response, (framing, keep)) = head?;
                self.answer(Source::Whole(conn), response, (framing, keep && sent))
            }
            // Answered before the body was all sent: the rest is sent
            // alongside, and the connection is not reused.
            Either::Right(head) => {
                let (response, framing) = head?;
                let buf = std::mem::take(&mut conn.buf);
                let (reader, mut writer) = conn.stream.into_split();
                tokio::task::spawn_local(async move {
                    let _ = send_body(&mut writer, &Bytes::new(), &mut request_body, chunked).await;
                });
                self.answer(Source::Half(reader, buf), response, framing)
            }
        }
    }

    /// The answer with its body, the connection given back when the body
    /// is already complete.
    fn answer(
        self: &Rc<Self>,
        source: Source,
        response: Response<()>,
        framing: (Framing, bool),
    ) -> Result<Response<UpstreamBody>, Failure> {
        let (framing, keep) = framing;
        let body = match framing {
            Framing::Upgrade => match source {
                Source::Whole(conn) => UpstreamBody::Upgraded(conn),
                Source::Half(..) => {
                    return Err(Failure {
                        error: UpstreamError::Invalid("upgrade with a request body"),
                        answered: true,
                    })
                }
            },
            Framing::None => {
                self.finish(source, keep);
                UpstreamBody::Full(Bytes::new())
            }
            Framing::Body(Decoder::Length(length)) if source.buffered() as u64 >= length => {
                let mut source = source;
                let buf = source.buf_mut();
                let length = usize::try_from(length).unwrap_or(usize::MAX);
                let bytes = if length <= COPY_BELOW {
                    let bytes = Bytes::copy_from_slice(&buf[..length]);
                    buf.advance(length);
                    bytes
                } else {
                    buf.split_to(length).freeze()
                };
                self.finish(source, keep);
                UpstreamBody::Full(bytes)
            }
            Framing::Body(decoder) => UpstreamBody::Stream(BodyReader {
                source: Some(source),
                decoder,
                length: match decoder {
                    Decoder::Length(length) => Some(length),
                    _ => None,
                },
                pool: if keep {
                    Rc::downgrade(self)
                } else {
                    Weak::new()
                },
            }),
        };
        Ok(response.set_body(body))
    }

    /// Gives a connection whose exchange is over back to the pool, when it
    /// may be reused and nothing unexpected is left in it.
    fn finish(&self, source: Source, keep: bool) {
        if let Source::Whole(conn) = source {
            if keep && conn.buf.is_empty() {
                self.put(conn);
            } else {
                conn.close_after_the_container();
            }
        }
    }
}

impl Conn {
    /// Drops a connection that is not reused once the container has closed
    /// its end (it does at once after a `Connection: close` answer), or
    /// after `LINGER`: the side that closes first keeps the connection's
    /// TIME_WAIT, so it stays in the container's network namespace instead
    /// of filling this host's ephemeral ports, one per request, with an
    /// upstream that closes every connection.
    fn close_after_the_container(self) {
        let mut stream = self.stream;
        tokio::spawn(async move {
            let mut sink = [0u8; 512];
            let mut left = LINGER_READ_LIMIT;
            let drain = async {
                while left > 0 {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => left = left.saturating_sub(read),
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER, drain).await;
        });
    }

    /// False when the container closed the connection or sent something
    /// unasked. No system call unless the event loop saw it readable.
    fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
    }

    /// The connection and the bytes already read from it, for a tunnel.
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.stream, self.buf)
    }
}

impl Source {
    fn buffered(&self) -> usize {
        match self {
            Source::Whole(conn) => conn.buf.len(),
            Source::Half(_, buf) => buf.len(),
        }
    }

    fn buf_mut(&mut self) -> &mut BytesMut {
        match self {
            Source::Whole(conn) => &mut conn.buf,
            Source::Half(_, buf) => buf,
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        fn fill<R: AsyncRead + Unpin>(
            reader: &mut R,
            buf: &mut BytesMut,
            cx: &mut Context<'_>,
        ) -> Poll<io::Result<usize>> {
            make_room(buf);
            poll_read_buf(Pin::new(reader), cx, buf)
        }
        match self {
            Source::Whole(conn) => fill(&mut conn.stream, &mut conn.buf, cx),
            Source::Half(half, buf) => fill(half, buf, cx),
        }
    }
}

impl BodyReader {
    /// The body's length, when the container announced it.
    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// The body ended cleanly: its connection goes back to the pool (when
    /// it may be reused).
    fn finish(&mut self) {
        if let (Some(pool), Some(source)) = (self.pool.upgrade(), self.source.take()) {
            pool.finish(source, true);
        }
    }

    /// The next piece of the body; `None` at its end.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            let Some(source) = self.source.as_mut() else {
                return Poll::Ready(None);
            };
            match self.decoder.decode(source.buf_mut()) {
                Ok(Some(bytes)) => {
                    // The last bytes of a `Content-Length` body: the
                    // connection is free now, whether or not the server
                    // polls once more for the end.
                    if self.decoder.done() {
                        self.finish();
                    }
                    return Poll::Ready(Some(Ok(bytes)));
                }
                Ok(None) if self.decoder.done() => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Ok(None) => {}
                Err(err) => {
                    self.source = None;
                    return Poll::Ready(Some(Err(err)));
                }
            }
            match source.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) if self.decoder == Decoder::Close => {
                    self.source = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    self.source = None;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the container closed the connection mid-body",
                    ))));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(err)) => {
                    self.source = None;
                    return Poll::Ready(Some(Err(err)));
                }
            }
        }
    }
}

impl Decoder {
    fn done(&self) -> bool {
        matches!(self, Decoder::Length(0) | Decoder::Chunked(Chunk::Done))
    }

    /// The next piece of body in `buf`, `None` when more must be read (or
    /// the body is done).
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
        match self {
            Decoder::Length(left) => {
                if *left == 0 || buf.is_empty() {
                    return Ok(None);
                }
                let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= take as u64;
                Ok(Some(buf.split_to(take).freeze()))
            }
            Decoder::Close => Ok((!buf.is_empty()).then(|| buf.split().freeze())),
            Decoder::Chunked(state) => decode_chunked(state, buf),
        }
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn decode_chunked(state: &mut Chunk, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
    loop {
        match *state {
            Chunk::Size => {
                let Some(end) = buf.iter().take(MAX_CHUNK_LINE).position(|&b| b == b'\n') else {
                    if buf.len() >= MAX_CHUNK_LINE {
                        return Err(invalid("chunk size line too long"));
                    }
                    return Ok(None);
                };
                let size = chunk_size(&buf[..end])?;
                buf.advance(end + 1);
                *state = if size == 0 {
                    Chunk::Trailers(0)
                } else {
                    Chunk::Data(size)
                };
            }
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let left = left - take as u64;
                *state = if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                };
                return Ok(Some(buf.split_to(take).freeze()));
            }
            Chunk::DataEnd => match buf.first() {
                None => return Ok(None),
                Some(b'\n') => {
                    buf.advance(1);
                    *state = Chunk::Size;
                }
                Some(b'\r') if buf.len() < 2 => return Ok(None),
                Some(b'\r') if buf[1] == b'\n' => {
                    buf.advance(2);
                    *state = Chunk::Size;
                }
                Some(_) => return Err(invalid("chunk data longer than its size")),
            },
            Chunk::Trailers(seen) => {
                let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                    if seen + buf.len() > MAX_TRAILERS {
                        return Err(invalid("trailers too long"));
                    }
                    return Ok(None);
                };
                let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
                let empty = line.is_empty();
                buf.advance(end + 1);
                *state = if empty {
                    Chunk::Done
                } else if seen + end + 1 > MAX_TRAILERS {
                    return Err(invalid("trailers too long"));
                } else {
                    Chunk::Trailers(seen + end + 1)
                };
            }
            Chunk::Done => return Ok(None),
        }
    }
}

/// The size on a chunk-size line (`1a;name=value\r`): hex digits, then
/// optional whitespace and extensions, which are ignored.
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(invalid("chunk size missing"));
    }
    let rest = &line[digits..];
    let rest_ok = rest
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .is_none_or(|at| rest[at] == b';');
    if !rest_ok {
        return Err(invalid("invalid chunk size"));
    }
    std::str::from_utf8(&line[..digits])
        .ok()
        .and_then(|digits| u64::from_str_radix(digits, 16).ok())
        .ok_or_else(|| invalid("chunk size too large"))
}

/// Writes the request line and headers: origin-form target, HTTP/1.1; the
/// client's headers that `forwarded` lets pass, then its own.
/// The framing is always the proxy's own, from the body it sends: a known
/// length as `Content-Length`, an unknown one chunked, and none for no body
/// (`Content-Length: 0` for a method that carries one). Whatever framing
/// headers the head still holds are never written, so what the container
/// reads as this request's body is exactly the body the proxy sends.
pub(super) fn encode_head(
    head: &RequestHead,
    forwarded: &Forwarded,
    body: &RequestBody,
    out: &mut BytesMut,
) {
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    let target = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut line = |name: &str, value: &HeaderValue| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in head.headers.iter() {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || !forwarded.passes(name)
        {
            continue;
        }
        line(name.as_str(), value);
    }
    for (name, value) in forwarded.lines() {
        line(name, value);
    }
    match body {
        RequestBody::Chunks { length: None, .. } => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        RequestBody::Chunks {
            length: Some(length),
            ..
        } => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(length.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RequestBody::Empty if carries_content(&head.method) => {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        RequestBody::Empty => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// A method whose request has content by its definition: a bodiless one
/// still says `Content-Length: 0`, which some servers require.
fn carries_content(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// Sends the head, then the body as the client sends it (chunk-encoded
/// when its length is unknown).
async fn send_body<W: AsyncWrite + Unpin>(
    writer: &mut W,
    head: &Bytes,
    body: &mut RequestBody,
    chunked: bool,
) -> io::Result<()> {
    if !head.is_empty() {
        writer.write_all(head).await?;
    }
    while let Some(chunk) = std::future::poll_fn(|cx| body.poll_chunk(cx)).await {
        let chunk = chunk?;
        if chunk.is_empty() {
            continue;
        }
        if chunked {
            writer
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            writer.write_all(&chunk).await?;
            writer.write_all(b"\r\n").await?;
        } else {
            writer.write_all(&chunk).await?;
        }
    }
    if chunked {
        writer.write_all(b"0\r\n\r\n").await?;
    }
    writer.flush().await
}

/// Makes sure a read into `buf` has a useful amount of room.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
}

/// Where one header's name and value lie in the head's bytes.
#[derive(Clone, Copy, Default)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

impl Span {
    /// The bytes `(start, length)` covers.
    fn range((start, length): (u32, u32)) -> std::ops::Range<usize> {
        start as usize..(start + length) as usize
    }
}

/// What a parse of a complete head found, besides its headers' spans.
struct Parsed {
    code: u16,
    version: Option<u8>,
    /// The length of the head, blank line included.
    length: usize,
    headers: usize,
}

/// Reads until an answer's head (after any interim 1xx ones) is complete,
/// leaving what follows it in `buf`.
async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max_head: usize,
    is_head: bool,
) -> Result<(Response<()>, (Framing, bool)), Failure> {
    let mut answered = false;
    let fail = |error: UpstreamError, answered: bool| Failure { error, answered };
    let mut spans = [Span::default(); MAX_HEADERS];
    loop {
        if !buf.is_empty() {
            answered = true;
            match parse_head(buf, &mut spans) {
                Ok(Some(parsed)) if (100..200).contains(&parsed.code) && parsed.code != 101 => {
                    buf.advance(parsed.length);
                    continue;
                }
                Ok(Some(parsed)) => {
                    // The head's bytes, split off the buffer without a
                    // copy: its header values share them.
                    let bytes = buf.split_to(parsed.length).freeze();
                    let head = build_head(&bytes, &parsed, &spans[..parsed.headers], is_head)
                        .map_err(|err| fail(err, true))?;
                    return Ok(head);
                }
                Ok(None) if buf.len() > max_head => {
                    return Err(fail(UpstreamError::Invalid("head too large"), true))
                }
                Ok(None) => {}
                Err(err) => return Err(fail(err, true)),
            }
        }
        make_room(buf);
        match reader.read_buf(buf).await {
            Ok(0) if answered => return Err(fail(UpstreamError::Invalid("closed mid-head"), true)),
            Ok(0) => return Err(fail(UpstreamError::Closed, false)),
            Ok(_) => {}
            Err(err) => return Err(fail(UpstreamError::Io(err), answered)),
        }
    }
}

/// Parses the head at the start of `buf`, when it is complete, noting where
/// each header lies in `spans`.
fn parse_head(
    buf: &[u8],
    spans: &mut [Span; MAX_HEADERS],
) -> Result<Option<Parsed>, UpstreamError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let length = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(UpstreamError::Invalid("too many headers"))
        }
        Err(_) => return Err(UpstreamError::Invalid("malformed head")),
    };
    // Offsets into `buf`, which the parsed slices point into; a head is
    // far below 4 GiB (`max_head`).
    let start = buf.as_ptr() as usize;
    let span = |part: &[u8]| ((part.as_ptr() as usize - start) as u32, part.len() as u32);
    for (slot, header) in spans.iter_mut().zip(parsed.headers.iter()) {
        *slot = Span {
            name: span(header.name.as_bytes()),
            value: span(header.value),
        };
    }
    Ok(Some(Parsed {
        code: parsed.code.unwrap_or(0),
        version: parsed.version,
        length,
        headers: parsed.headers.len(),
    }))
}

/// The answer's head as actix-http's types (the map the server writes to
/// the client), its framing, and whether the connection may be reused
/// after it. The header values share `bytes`, the head.
fn build_head(
    bytes: &Bytes,
    parsed: &Parsed,
    spans: &[Span],
    is_head: bool,
) -> Result<(Response<()>, (Framing, bool)), UpstreamError> {
    let status = StatusCode::from_u16(parsed.code).map_err(|_| UpstreamError::Invalid("status"))?;
    // actix-http's pooled head comes with a cleared map that keeps its
    // room: filled in place, it allocates nothing on a kept-alive path.
    let mut response = Response::with_body(status, ());
    let headers = response.headers_mut();
    headers.reserve(spans.len());
    for span in spans {
        let name = HeaderName::from_bytes(&bytes[Span::range(span.name)])
            .map_err(|_| UpstreamError::Invalid("header name"))?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(Span::range(span.value)))
            .map_err(|_| UpstreamError::Invalid("header value"))?;
        headers.append(name, value);
    }
    let http11 = parsed.version == Some(1);
    let mut close = false;
    let mut keep_alive = false;
    for token in list_items(headers, header::CONNECTION) {
        close |= token.eq_ignore_ascii_case(b"close");
        keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
    }
    let mut keep = if http11 { !close } else { keep_alive && !close };
    let framing = if status == StatusCode::SWITCHING_PROTOCOLS {
        Framing::Upgrade
    } else if is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Framing::None
    } else if headers.contains_key(header::TRANSFER_ENCODING) {
        let chunked = list_items(headers, header::TRANSFER_ENCODING)
            .rfind(|coding| !coding.is_empty())
            .is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"));
        if headers.contains_key(header::CONTENT_LENGTH) {
            headers.remove_all(&header::CONTENT_LENGTH);
            keep = false;
        }
        if chunked {
            Framing::Body(Decoder::Chunked(Chunk::Size))
        } else {
            keep = false;
            Framing::Body(Decoder::Close)
        }
    } else if headers.contains_key(header::CONTENT_LENGTH) {
        Framing::Body(Decoder::Length(content_length(headers)?))
    } else {
        keep = false;
        Framing::Body(Decoder::Close)
    };
    Ok((response, (framing, keep)))
}

/// The one length every `Content-Length` value agrees on (a repeated value,
/// also as a list, is allowed; different or non-numeric ones are not).
fn content_length(headers: &HeaderMap) -> Result<u64, UpstreamError> {
    let mut length = None;
    for value in list_items(headers, header::CONTENT_LENGTH) {
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) || value.len() > 19 {
            return Err(UpstreamError::Invalid("content-length"));
        }
        let parsed = std::str::from_utf8(value)
            .ok()
            .and_then(|value| value.parse::<u64>().ok())
            .ok_or(UpstreamError::Invalid("content-length"))?;
        if length.is_some_and(|length| length != parsed) {
            return Err(UpstreamError::Invalid("conflicting content-length"));
        }
        length = Some(parsed);
    }
    length.ok_or(UpstreamError::Invalid("content-length"))
}

#[cfg(test)]
#[path = "upstream/tests.rs"]
mod tests;
