use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::LocalSet;

use super::*;
use crate::proxy::forward::{ClientConn, Listener};

/// A scripted container on 127.0.0.1: each accepted connection is handed to
/// `script` with its number (0, 1, ...). Returns the address and the count
/// of accepted connections.
async fn container<F, Fut>(script: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream, usize) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(script(stream, n));
        }
    });
    (address, accepted)
}

/// Reads one request head (up to the blank line) from `stream`.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn pool() -> Rc<Upstreams> {
    Upstreams::new(
        Duration::from_secs(2),
        Duration::from_secs(30),
        Duration::from_secs(30),
        16 * 1024,
        8,
    )
}

fn request(method: Method, target: &str) -> RequestHead {
    let mut head = RequestHead::default();
    head.method = method;
    head.uri = target.parse().unwrap();
    head.headers
        .insert(header::HOST, HeaderValue::from_static("app.test"));
    head
}

/// The forwarded headers of a request from 192.0.2.7 over HTTP.
fn forwarded() -> Forwarded {
    let conn = ClientConn::new(Listener::Http, "192.0.2.7:5555".parse().unwrap());
    Forwarded::replacing(&conn, HeaderValue::from_static("app.test"))
}

/// The whole body of an answer.
async fn body(response: Response<UpstreamBody>) -> io::Result<Vec<u8>> {
    match response.into_body() {
        UpstreamBody::Full(bytes) => Ok(bytes.to_vec()),
        UpstreamBody::Stream(mut reader) => {
            let mut all = Vec::new();
            while let Some(chunk) = std::future::poll_fn(|cx| reader.poll_chunk(cx)).await {
                all.extend_from_slice(&chunk?);
            }
            Ok(all)
        }
        UpstreamBody::Upgraded(_) => panic!("unexpected upgrade"),
    }
}

async fn get(pool: &Rc<Upstreams>, address: SocketAddr) -> Response<UpstreamBody> {
    pool.send(
        address,
        &request(Method::GET, "/x?y=1"),
        &forwarded(),
        RequestBody::Empty,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_length_body_comes_whole_and_the_connection_is_reused() {
    let (address, accepted) = container(|mut stream, _| async move {
        while let Some(head) = read_request(&mut stream).await {
            assert!(head.starts_with("GET /x?y=1 HTTP/1.1\r\n"), "{head}");
            assert!(head.contains("host: app.test\r\n"), "{head}");
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello")
                .await;
        }
    })
    .await;
    let pool = pool();
    for _ in 0..3 {
        let response = get(&pool, address).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers().get("x-a").unwrap(), "b");
        assert_eq!(body(response).await.unwrap(), b"hello");
        assert_eq!(pool.idle_count(address), 1);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_long_length_body_is_streamed_then_the_connection_reused() {
    let (address, accepted) = container(|mut stream, _| async move {
        while read_request(&mut stream).await.is_some() {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n")
                .await;
            for _ in 0..100 {
                let _ = stream.write_all(&[b'a'; 1000]).await;
                tokio::task::yield_now().await;
            }
        }
    })
    .await;
    let pool = pool();
    for _ in 0..2 {
        let response = get(&pool, address).await;
        let UpstreamBody::Stream(mut reader) = response.into_body() else {
            panic!("expected a streamed body");
        };
        assert_eq!(reader.length(), Some(100_000));
        // Read up to the announced length, without asking for the end:
        // the connection is back in the pool by then.
        let mut read = 0;
        while read < 100_000 {
            let chunk = std::future::poll_fn(|cx| reader.poll_chunk(cx)).await;
            let chunk = chunk.expect("more body").unwrap();
            assert!(chunk.iter().all(|&b| b == b'a'));
            read += chunk.len();
        }
        assert_eq!(read, 100_000);
        assert_eq!(pool.idle_count(address), 1);
        assert!(std::future::poll_fn(|cx| reader.poll_chunk(cx))
            .await
            .is_none());
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.idle_count(address), 1);
}

#[tokio::test]
async fn a_chunked_body_is_decoded_across_reads() {
    let answer: &'static [u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
        5;name=value\r\nhello\r\n6 \r\n world\r\nA\r\n0123456789\r\n0\r\nx-trailer: y\r\n\r\n";
    let (address, accepted) = container(move |mut stream, _| async move {
        while read_request(&mut stream).await.is_some() {
            // In small pieces, so every state sees a partial buffer.
            for piece in answer.chunks(3) {
                let _ = stream.write_all(piece).await;
                let _ = stream.flush().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    })
    .await;
    let pool = pool();
    for _ in 0..2 {
        let response = get(&pool, address).await;
        assert!(!response.headers().contains_key(header::CONTENT_LENGTH));
        assert_eq!(body(response).await.unwrap(), b"hello world0123456789");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn chunked_decoding_does_not_depend_on_how_the_bytes_arrive() {
    let wire = b"3\r\nabc\r\n1;x\r\nd\r\n0\r\nt: 1\r\n\r\n";
    for split in 0..=wire.len() {
        let mut state = Chunk::Size;
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for part in [&wire[..split], &wire[split..]] {
            buf.extend_from_slice(part);
            while let Some(bytes) = decode_chunked(&mut state, &mut buf).unwrap() {
                out.extend_from_slice(&bytes);
            }
        }
        assert_eq!(out, b"abcd", "split at {split}");
        assert_eq!(state, Chunk::Done, "split at {split}");
        assert!(buf.is_empty());
    }
}

#[test]
fn hostile_chunk_framing_is_refused() {
    for wire in [
        &b"zz\r\n"[..],
        b"\r\n",
        b"3x\r\n",
        b"fffffffffffffffffff\r\n",
        b"3\r\nabcX\r\n",
        &[b'1'; MAX_CHUNK_LINE + 1],
    ] {
        let mut state = Chunk::Size;
        let mut buf = BytesMut::from(wire);
        let result = std::iter::from_fn(|| decode_chunked(&mut state, &mut buf).transpose())
            .collect::<io::Result<Vec<_>>>();
        assert!(result.is_err(), "{:?}", String::from_utf8_lossy(wire));
    }
    let mut state = Chunk::Trailers(0);
    let mut buf = BytesMut::from(&[b'x'; MAX_TRAILERS + 1][..]);
    assert!(decode_chunked(&mut state, &mut buf).is_err());
}

#[tokio::test]
async fn a_body_until_close_is_read_and_the_connection_not_kept() {
    let (address, _) = container(|mut stream, _| async move {
        read_request(&mut stream).await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil ").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = stream.write_all(b"the end").await;
    })
    .await;
    let pool = pool();
    let response = get(&pool, address).await;
    assert_eq!(body(response).await.unwrap(), b"until the end");
    assert_eq!(pool.idle_count(address), 0);
}

#[tokio::test]
async fn interim_answers_are_skipped_and_bodiless_answers_have_no_body() {
    let (address, accepted) = container(|mut stream, _| async move {
        let answers: [&[u8]; 3] = [
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n",
        ];
        for answer in answers {
            read_request(&mut stream).await;
            let _ = stream.write_all(answer).await;
        }
        read_request(&mut stream).await;
    })
    .await;
    let pool = pool();
    let response = get(&pool, address).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(body(response).await.unwrap(), b"ok");
    let head = pool
        .send(
            address,
            &request(Method::HEAD, "/"),
            &forwarded(),
            RequestBody::Empty,
        )
        .await
        .unwrap();
    assert_eq!(head.headers().get(header::CONTENT_LENGTH).unwrap(), "10");
    assert_eq!(body(head).await.unwrap(), b"");
    let not_modified = get(&pool, address).await;
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(body(not_modified).await.unwrap(), b"");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.idle_count(address), 1);
}

#[tokio::test]
async fn invalid_answers_are_refused() {
    let answers: [&'static [u8]; 6] = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"NOT HTTP\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab",
    ];
    for answer in answers {
        let (address, _) = container(move |mut stream, _| async move {
            read_request(&mut stream).await;
            let _ = stream.write_all(answer).await;
        })
        .await;
        let pool = pool();
        let outcome = match pool
            .send(
                address,
                &request(Method::GET, "/"),
                &forwarded(),
                RequestBody::Empty,
            )
            .await
        {
            Ok(response) => body(response)
                .await
                .map(|_| ())
                .map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        assert!(outcome.is_err(), "{:?}", String::from_utf8_lossy(answer));
        assert_eq!(pool.idle_count(address), 0);
    }
}

#[tokio::test]
async fn a_head_longer_than_the_limit_is_refused() {
    let (address, _) = container(|mut stream, _| async move {
        read_request(&mut stream).await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
        for _ in 0..100 {
            if stream.write_all(&[b'x'; 1000]).await.is_err() {
                return;
            }
        }
    })
    .await;
    let pool = Upstreams::new(
        Duration::from_secs(2),
        Duration::from_secs(30),
        Duration::from_secs(30),
        8 * 1024,
        8,
    );
    let err = pool
        .send(
            address,
            &request(Method::GET, "/"),
            &forwarded(),
            RequestBody::Empty,
        )
        .await
        .err()
        .expect("the exchange fails");
    assert!(matches!(err, UpstreamError::Invalid(_)), "{err}");
}

/// Connection 0 answers once, then reads the next request and closes
/// without answering; later connections answer every request.
async fn closes_its_first_connection_after_one_answer(mut stream: TcpStream, n: usize) {
    let mut answered = 0;
    while read_request(&mut stream).await.is_some() {
        if n == 0 && answered == 1 {
            return;
        }
        answered += 1;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
    }
}

#[tokio::test]
async fn a_kept_connection_closed_by_the_container_is_replaced_for_idempotent_requests() {
    let (address, accepted) = container(closes_its_first_connection_after_one_answer).await;
    let pool = pool();
    assert_eq!(body(get(&pool, address).await).await.unwrap(), b"ok");
    assert_eq!(body(get(&pool, address).await).await.unwrap(), b"ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    // The same with a POST: not sent twice, the failure is reported.
    let (address, accepted) = container(closes_its_first_connection_after_one_answer).await;
    assert_eq!(body(get(&pool, address).await).await.unwrap(), b"ok");
    let err = pool
        .send(
            address,
            &request(Method::POST, "/"),
            &forwarded(),
            RequestBody::Empty,
        )
        .await
        .err()
        .expect("the exchange fails");
    assert!(matches!(err, UpstreamError::Closed), "{err}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let err = pool()
        .send(
            address,
            &request(Method::GET, "/"),
            &forwarded(),
            RequestBody::Empty,
        )
        .await
        .err()
        .expect("the exchange fails");
    assert!(err.is_connect(), "{err}");
}

/// Reads from `stream` until `end` has arrived, returning everything.
async fn read_until(stream: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 1024];
    while !all.ends_with(end) {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&all));
        all.extend_from_slice(&buf[..n]);
    }
    all
}

#[tokio::test]
async fn a_body_of_unknown_length_goes_chunked_and_a_known_one_as_is() {
    let (seen, mut requests) = mpsc::unbounded_channel();
    let (address, _) = container(move |mut stream, _| {
        let seen = seen.clone();
        async move {
            let chunked = read_until(&mut stream, b"0\r\n\r\n").await;
            seen.send(chunked).unwrap();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
            let sized = read_until(&mut stream, b"\r\n\r\nabc").await;
            seen.send(sized).unwrap();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    })
    .await;
    let pool = pool();
    for length in [None, Some(3)] {
        let (chunks, receiver) = mpsc::channel(4);
        chunks.send(Ok(Bytes::from_static(b"ab"))).await.unwrap();
        chunks.send(Ok(Bytes::from_static(b"c"))).await.unwrap();
        drop(chunks);
        let body = RequestBody::Chunks {
            chunks: receiver,
            length,
        };
        let mut head = request(Method::POST, "/upload");
        if let Some(length) = length {
            head.headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        let response = pool.send(address, &head, &forwarded(), body).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let chunked = String::from_utf8(requests.recv().await.unwrap()).unwrap();
    assert!(
        chunked.contains("transfer-encoding: chunked\r\n"),
        "{chunked}"
    );
    assert!(
        chunked.ends_with("\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"),
        "{chunked}"
    );
    let sized = String::from_utf8(requests.recv().await.unwrap()).unwrap();
    assert!(sized.contains("content-length: 3\r\n"), "{sized}");
    assert!(!sized.contains("transfer-encoding"), "{sized}");
}

#[tokio::test]
async fn an_answer_before_the_whole_body_is_passed_on_while_the_body_goes_on() {
    LocalSet::new()
        .run_until(async {
            let (address, _) = container(|mut stream, _| async move {
                read_request(&mut stream).await;
                // Answers at once, then echoes the body as it comes.
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                let mut buf = [0u8; 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let chunk = format!("{n:x}\r\n");
                            let _ = stream.write_all(chunk.as_bytes()).await;
                            let _ = stream.write_all(&buf[..n]).await;
                            let _ = stream.write_all(b"\r\n").await;
                            if buf[..n].ends_with(b"0\r\n\r\n") {
                                let _ = stream.write_all(b"0\r\n\r\n").await;
                                return;
                            }
                        }
                    }
                }
            })
            .await;
            let pool = pool();
            let (chunks, receiver) = mpsc::channel(4);
            chunks.send(Ok(Bytes::from_static(b"first"))).await.unwrap();
            let upload = RequestBody::Chunks {
                chunks: receiver,
                length: None,
            };
            let response = tokio::time::timeout(
                Duration::from_secs(5),
                pool.send(
                    address,
                    &request(Method::POST, "/echo"),
                    &forwarded(),
                    upload,
                ),
            )
            .await
            .expect("the answer came while the body was still open")
            .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            chunks
                .send(Ok(Bytes::from_static(b"second")))
                .await
                .unwrap();
            drop(chunks);
            let echoed = String::from_utf8(body(response).await.unwrap()).unwrap();
            assert!(echoed.contains("first"), "{echoed}");
            assert!(echoed.contains("second"), "{echoed}");
            assert_eq!(pool.idle_count(address), 0);
        })
        .await;
}

#[tokio::test]
async fn switching_protocols_hands_over_the_connection_and_early_bytes() {
    let (address, _) = container(|mut stream, _| async move {
        read_request(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nearly")
            .await;
    })
    .await;
    let response = pool()
        .send(
            address,
            &request(Method::GET, "/ws"),
            &forwarded(),
            RequestBody::Empty,
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let UpstreamBody::Upgraded(conn) = response.into_body() else {
        panic!("expected the connection");
    };
    let (mut stream, early) = conn.into_parts();
    let mut rest = early.to_vec();
    while rest.len() < 5 {
        let mut buf = [0u8; 16];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0);
        rest.extend_from_slice(&buf[..n]);
    }
    assert_eq!(rest, b"early");
}

#[tokio::test]
async fn idle_connections_expire_and_closed_ones_are_swept() {
    let (address, accepted) = container(|mut stream, _| async move {
        while read_request(&mut stream).await.is_some() {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    })
    .await;
    let short = Upstreams::new(
        Duration::from_secs(2),
        Duration::from_millis(50),
        Duration::from_secs(30),
        16 * 1024,
        8,
    );
    body(get(&short, address).await).await.unwrap();
    assert_eq!(short.idle_count(address), 1);
    tokio::time::sleep(Duration::from_millis(80)).await;
    short.sweep();
    assert_eq!(short.idle_count(address), 0);
    body(get(&short, address).await).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    // A connection the container closed goes at the next sweep.
    let (address, _) = container(|mut stream, _| async move {
        read_request(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await;
    })
    .await;
    let pool = pool();
    body(get(&pool, address).await).await.unwrap();
    assert_eq!(pool.idle_count(address), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.idle_count(address) > 0 {
        assert!(Instant::now() < deadline, "the closed connection stayed");
        tokio::time::sleep(Duration::from_millis(10)).await;
        pool.sweep();
    }
}

#[tokio::test]
async fn a_connection_whose_request_body_broke_off_is_not_reused() {
    let (address, _) = container(|mut stream, _| async move {
        read_request(&mut stream).await;
        let mut part = [0u8; 3];
        let _ = stream.read_exact(&mut part).await;
        // Answers although 7 announced bytes never came, and keeps the
        // connection open.
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
        let _ = read_request(&mut stream).await;
    })
    .await;
    let pool = pool();
    let (chunks, receiver) = mpsc::channel(4);
    chunks.send(Ok(Bytes::from_static(b"abc"))).await.unwrap();
    chunks
        .send(Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client gone",
        )))
        .await
        .unwrap();
    let mut head = request(Method::POST, "/upload");
    head.headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(10u64));
    let upload = RequestBody::Chunks {
        chunks: receiver,
        length: Some(10),
    };
    let response = pool
        .send(address, &head, &forwarded(), upload)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body(response).await.unwrap(), b"");
    assert_eq!(pool.idle_count(address), 0);
}

#[tokio::test]
async fn a_connection_not_kept_is_closed_after_the_container_closes_it() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (address, _) = container(move |mut stream, _| {
        let tx = tx.clone();
        async move {
            read_request(&mut stream).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
                .await;
            // The proxy has its answer; it must not close first.
            let mut byte = [0u8; 1];
            let early =
                tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await;
            let _ = tx.send(format!("before our close: {early:?}"));
            let _ = stream.shutdown().await;
            let after = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte)).await;
            let _ = tx.send(format!("after our close: {after:?}"));
        }
    })
    .await;
    let pool = pool();
    let response = get(&pool, address).await;
    assert_eq!(body(response).await.unwrap(), b"ok");
    assert_eq!(pool.idle_count(address), 0);
    let before = rx.recv().await.unwrap();
    assert!(
        before.contains("Elapsed"),
        "the proxy closed first: {before}"
    );
    let after = rx.recv().await.unwrap();
    assert!(
        after.contains("Ok(Ok(0))"),
        "the proxy did not close after the container: {after}"
    );
}

/// The header timeout holds for every request, also on a spare timer whose
/// last request was answered in time or that has fired already; requests
/// one after another share one timer.
#[tokio::test]
async fn every_request_waits_for_its_head_no_longer_than_the_header_timeout() {
    let (address, _) = container(|mut stream, _| async move {
        while let Some(head) = read_request(&mut stream).await {
            if head.starts_with("GET /slow ") {
                tokio::time::sleep(Duration::from_secs(10)).await;
                return;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    })
    .await;
    let timeout = Duration::from_millis(300);
    let pool = Upstreams::new(
        Duration::from_secs(2),
        Duration::from_secs(30),
        timeout,
        16 * 1024,
        8,
    );
    let send = |target: &'static str| {
        let pool = pool.clone();
        async move {
            let started = Instant::now();
            let head = request(Method::GET, target);
            let sent = pool
                .send(address, &head, &forwarded(), RequestBody::Empty)
                .await;
            (sent.map(|response| response.status()), started.elapsed())
        }
    };
    for target in ["/fast", "/slow", "/slow", "/fast", "/slow"] {
        let (sent, took) = send(target).await;
        if target == "/fast" {
            assert_eq!(sent.unwrap(), StatusCode::OK, "{target}");
        } else {
            assert!(
                matches!(sent, Err(UpstreamError::TimedOut)),
                "{target}: {sent:?}"
            );
            assert!(took >= timeout, "{target} timed out early: {took:?}");
            assert!(took < Duration::from_secs(5), "{target} took {took:?}");
        }
    }
    assert_eq!(pool.timers.borrow().len(), 1, "one timer served them all");
}
