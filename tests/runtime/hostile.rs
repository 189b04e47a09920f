//! Hostile HTTP against the proxy: request smuggling, oversized and slow
//! headers, request-line garbage, absolute-form targets and `Host` tricks,
//! ACME path traversal, idle WebSocket tunnels and a client that stops
//! reading a large answer. Each attack gets a clean
//! 4xx or a closed connection, nothing reaches a container it should not,
//! and the daemon keeps answering another client during the attack. Every
//! loop is bounded; all traffic goes to 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proxy::{
    connect, exchange, free_port, get, read_head, read_reply, upstream_service, wait_until,
};
use crate::support::{text, Sandbox};

/// The proxy's `header_timeout` in this test.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// The proxy's `idle_timeout` in this test.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// Length of the answer the stalled client stops reading: well beyond what
/// the socket buffers on both sides of the proxy hold.
const BULK_BYTES: usize = 256 << 20;
/// The proxy's `max_header_bytes` in this test.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Sends raw bytes on a fresh connection and reads until the proxy closes
/// it (or 10 s pass); returns everything read.
fn raw(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The proxy may close before taking every byte: that is an answer too.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    text(&answer)
}

/// The status of the first response in `answer`, `None` when the proxy
/// closed the connection without answering.
fn status_of(answer: &str) -> Option<u16> {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

/// Asserts a clean refusal: a 4xx from the proxy itself (no container
/// answered: no `x-upstream` header) or a connection closed without answer.
fn assert_refused(answer: &str, what: &str) {
    match status_of(answer) {
        None => assert!(answer.is_empty(), "{what}: not HTTP: {answer:?}"),
        Some(status) => assert!((400..500).contains(&status), "{what}: {answer}"),
    }
    assert!(
        !answer.to_ascii_lowercase().contains("x-upstream"),
        "{what}: reached a container: {answer}"
    );
}

#[test]
fn hostile_requests_get_clean_refusals_and_others_are_served() {
    let mut sb = Sandbox::new();
    let http = free_port();
    sb.proxy_settings(&format!(
        "strategy = \"http-only\"\nhttp_listen = \"127.0.0.1:{http}\"\n\
         header_timeout = \"{}s\"\nidle_timeout = \"{}s\"\nmax_header_bytes = {MAX_HEADER_BYTES}\n\
         workers = 1\n",
        HEADER_TIMEOUT.as_secs(),
        IDLE_TIMEOUT.as_secs()
    ));
    upstream_service(&mut sb, "app", "app", "host = \"app.test\"");
    upstream_service(&mut sb, "secret", "secret", "host = \"secret.test\"");
    let daemon = sb.start();
    assert_eq!(wait_until(http, "app.test", "/", 200).body, "app\n");
    // One worker, as set: every hostile client below shares it with the
    // well-behaved ones.
    assert!(daemon.log().contains("workers=1"), "{}", daemon.log());
    assert_eq!(wait_until(http, "secret.test", "/", 200).body, "secret\n");

    // Another client keeps being served during every attack below.
    let attacking = Arc::new(AtomicBool::new(true));
    let bystander = {
        let attacking = attacking.clone();
        std::thread::spawn(move || {
            let mut served = 0u32;
            for _ in 0..2000 {
                if !attacking.load(Ordering::Relaxed) {
                    break;
                }
                let reply = get(http, "app.test", "/");
                assert_eq!((reply.status, reply.body.as_str()), (200, "app\n"));
                served += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            served
        })
    };

    // Slowloris: one header byte per 500 ms is cut off by header_timeout
    // (the idle timeout never fires: bytes keep moving).
    let slow = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", http)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let started = Instant::now();
        let head = b"GET /headers HTTP/1.1\r\nHost: app.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for byte in head {
            if stream.write_all(&[*byte]).is_err() {
                return started.elapsed();
            }
            // Each read waits 500 ms: nothing to read means still open.
            let mut buf = [0u8; 256];
            match stream.read(&mut buf) {
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                // Closed, reset, or an error answer before the close.
                _ => return started.elapsed(),
            }
        }
        panic!("the slow client was never cut off");
    });

    // Conflicting Content-Length and Transfer-Encoding: the body is read as
    // chunked (never by the length) and the connection closes, so the
    // request smuggled behind it is never seen.
    let smuggle = raw(
        http,
        b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\n\
          Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
          GET /headers HTTP/1.1\r\nHost: secret.test\r\n\r\n",
    );
    match status_of(&smuggle) {
        Some(200) => assert!(smuggle.ends_with("\r\n\r\n5\n"), "{smuggle}"),
        _ => assert_refused(&smuggle, "CL and TE"),
    }
    assert_eq!(smuggle.matches("HTTP/1.1 ").count(), 1, "{smuggle}");
    for (what, request) in [
        (
            "TE not chunked",
            &b"POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip\r\n\r\nxx"[..],
        ),
        (
            "two lengths",
            b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
        ),
        (
            "bad length",
            b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: -1\r\n\r\n",
        ),
    ] {
        assert_refused(&raw(http, request), what);
    }

    // Oversized headers: 431.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n",
        "b".repeat(MAX_HEADER_BYTES + 1024)
    );
    let answer = raw(http, big.as_bytes());
    assert_eq!(status_of(&answer), Some(431), "{answer}");
    let many: String = (0..200).map(|n| format!("X-H{n}: {n}\r\n")).collect();
    let answer = raw(
        http,
        format!("GET / HTTP/1.1\r\nHost: app.test\r\n{many}\r\n").as_bytes(),
    );
    assert_eq!(status_of(&answer), Some(431), "too many headers: {answer}");

    // Request-line garbage.
    for (what, request) in [
        ("binary", &b"\x00\x01\x02\xff\xfe GARBAGE\r\n\r\n"[..]),
        ("no version", b"GET /\r\nHost: app.test\r\n\r\n"),
        ("bad version", b"GET / HTTP/9.9\r\nHost: app.test\r\n\r\n"),
        (
            "space in target",
            b"GET /a b HTTP/1.1\r\nHost: app.test\r\n\r\n",
        ),
        (
            "control byte",
            b"GET /\x7f HTTP/1.1\r\nHost: app.test\r\n\r\n",
        ),
        ("bad method", b"G(T / HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        (
            "bad header",
            b"GET / HTTP/1.1\r\nHost: app.test\r\nNo colon\r\n\r\n",
        ),
        ("lone LF", b"GET / HTTP/1.1\nHost: app.test\n\x00\n\n"),
    ] {
        assert_refused(&raw(http, request), what);
    }

    // Absolute-form targets and Host tricks never reach the other host.
    for (what, request) in [
        (
            "absolute-form for another host",
            &b"GET http://secret.test/headers HTTP/1.1\r\nHost: app.test\r\n\r\n"[..],
        ),
        (
            "absolute-form with another scheme",
            b"GET ftp://app.test/headers HTTP/1.1\r\nHost: app.test\r\n\r\n",
        ),
        (
            "two Host headers",
            b"GET /headers HTTP/1.1\r\nHost: app.test\r\nHost: secret.test\r\n\r\n",
        ),
        (
            "userinfo in Host",
            b"GET /headers HTTP/1.1\r\nHost: app.test@secret.test\r\n\r\n",
        ),
        (
            "userinfo in the target",
            b"GET http://app.test@secret.test/headers HTTP/1.1\r\nHost: secret.test\r\n\r\n",
        ),
        (
            "path in Host",
            b"GET /headers HTTP/1.1\r\nHost: secret.test/../app.test\r\n\r\n",
        ),
        ("no Host", b"GET /headers HTTP/1.1\r\n\r\n"),
        (
            "CONNECT",
            b"CONNECT secret.test:80 HTTP/1.1\r\nHost: secret.test:80\r\n\r\n",
        ),
    ] {
        assert_refused(&raw(http, request), what);
    }
    // The absolute form for the same host is served normally.
    let mut conn = connect(http);
    conn.get_mut()
        .write_all(b"GET http://app.test/ HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut conn).body, "app\n");

    // ACME challenge traversal: 404 from memory, nothing forwarded.
    for path in [
        "/.well-known/acme-challenge/../../../etc/passwd",
        "/.well-known/acme-challenge/..%2f..%2fdispenser.toml",
        "/.well-known/acme-challenge/%2e%2e/%2e%2e/etc/passwd",
        "/.well-known/acme-challenge//etc/passwd",
        "/.well-known/acme-challenge/a/../../../headers",
    ] {
        let reply = get(http, "app.test", path);
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (404, "not found\n"),
            "{path}"
        );
        assert!(reply.header("x-upstream").is_none(), "{path}");
    }

    // The slow client was cut off by header_timeout, not by idle_timeout.
    let cut_after = slow.join().expect("slowloris thread");
    assert!(
        cut_after >= HEADER_TIMEOUT && cut_after < HEADER_TIMEOUT + Duration::from_secs(3),
        "slow client cut off after {cut_after:?}"
    );

    // An upgraded tunnel idle for idle_timeout is closed.
    let mut ws = connect(http);
    ws.get_mut()
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let (status, _) = read_head(&mut ws);
    assert_eq!(status, 101);
    let opened = Instant::now();
    ws.get_mut()
        .set_read_timeout(Some(IDLE_TIMEOUT * 4))
        .unwrap();
    let mut rest = Vec::new();
    let _ = ws.read_to_end(&mut rest);
    let closed_after = opened.elapsed();
    assert!(
        closed_after >= IDLE_TIMEOUT - Duration::from_millis(200)
            && closed_after < IDLE_TIMEOUT * 2,
        "idle tunnel closed after {closed_after:?}"
    );

    // A client that stops reading a large answer is cut once its receive
    // window has stayed shut for idle_timeout: it never gets the whole body,
    // and its stream ends in a reset or an early end.
    let mut stalled = connect(http);
    stalled
        .get_mut()
        .write_all(
            format!("GET /bulk?bytes={BULK_BYTES} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let (status, _) = read_head(&mut stalled);
    assert_eq!(status, 200);
    std::thread::sleep(IDLE_TIMEOUT * 2);
    stalled
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut received = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    let ended = loop {
        match stalled.read(&mut chunk) {
            Ok(0) => break "end".to_string(),
            Ok(n) => received += n,
            Err(err) => break err.to_string(),
        }
    };
    assert!(
        received < BULK_BYTES,
        "the stalled client still got all {received} bytes ({ended})"
    );

    attacking.store(false, Ordering::Relaxed);
    let served = bystander.join().expect("the bystander was always served");
    assert!(served > 20, "bystander served {served} requests");
    // Still up and answering on a kept-alive connection.
    let mut conn = connect(http);
    assert_eq!(exchange(&mut conn, "app.test", "/", "").status, 200);
    assert_eq!(exchange(&mut conn, "secret.test", "/", "").body, "secret\n");
    daemon.stop();
}
