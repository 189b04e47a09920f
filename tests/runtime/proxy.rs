//! The reverse proxy end to end: the real daemon on free 127.0.0.1 ports in
//! front of real upstream containers (tests/upstream). Clients are raw TCP
//! (keep-alive, WebSocket, streaming) and curl (TLS, HTTP/2).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{text, Sandbox};

pub(crate) const UPSTREAM: &str = "dispenser-test/upstream:latest";
const BUSYBOX: &str = "dispenser-test/busybox:latest";
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The first header called `name` (any case) in a parsed head.
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn connect(port: u16) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the proxy");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    BufReader::new(stream)
}

/// Sends one request on a kept-alive connection and reads the whole response
/// (Content-Length or chunked).
pub(crate) fn exchange(
    conn: &mut BufReader<TcpStream>,
    host: &str,
    path: &str,
    extra: &str,
) -> Reply {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n");
    conn.get_mut().write_all(request.as_bytes()).unwrap();
    read_reply(conn)
}

pub(crate) fn read_head(conn: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    conn.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        conn.read_line(&mut line).unwrap();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').unwrap();
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    (status, headers)
}

pub(crate) fn read_reply(conn: &mut BufReader<TcpStream>) -> Reply {
    let (status, headers) = read_head(conn);
    let mut body = Vec::new();
    if let Some(length) = header(&headers, "content-length") {
        body.resize(length.parse().unwrap(), 0);
        conn.read_exact(&mut body).unwrap();
    } else if header(&headers, "transfer-encoding").is_some() {
        loop {
            let mut size = String::new();
            conn.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            conn.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    Reply {
        status,
        headers,
        body: text(&body),
    }
}

pub(crate) fn get(port: u16, host: &str, path: &str) -> Reply {
    exchange(&mut connect(port), host, path, "Connection: close\r\n")
}

/// Writes a PEM certificate and key for `host` with openssl; returns the paths.
fn make_cert(sb: &Sandbox, host: &str) -> (String, String) {
    let cert = sb.path("tls/cert.pem");
    let key = sb.path("tls/key.pem");
    std::fs::create_dir_all(sb.path("tls")).unwrap();
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={host}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{host}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

/// curl with the given arguments; returns stdout.
pub(crate) fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

pub(crate) fn upstream_service(sb: &mut Sandbox, short: &str, version: &str, route: &str) {
    sb.service(
        short,
        UPSTREAM,
        &format!("\n[env]\nVERSION = \"{version}\"\n\n[proxy]\n{route}\nservice_port = 8080\n"),
    );
}

/// Waits until `host` + `path` answers `status` through the proxy.
pub(crate) fn wait_until(port: u16, host: &str, path: &str, status: u16) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = get(port, host, path);
        if reply.status == status || Instant::now() > deadline {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn routes_streams_upgrades_and_switches_routes_under_keep_alive() {
    let mut sb = Sandbox::new();
    let http = free_port();
    sb.proxy_settings(&format!(
        "strategy = \"http-only\"\nhttp_listen = \"127.0.0.1:{http}\"\n"
    ));
    upstream_service(&mut sb, "a", "a", "host = \"app.test\"\npath = \"/\"");
    upstream_service(&mut sb, "b", "b", "host = \"app.test\"\npath = \"/api\"");
    sb.service(
        "down",
        BUSYBOX,
        "command = [\"true\"]\nrestart = \"no\"\n\n[proxy]\nhost = \"down.test\"\nservice_port = 8080\n",
    );
    let daemon = sb.start();

    // Routing by host (any case, with a port) and by path on segment boundaries.
    assert_eq!(wait_until(http, "app.test", "/", 200).body, "a\n");
    assert_eq!(get(http, "APP.test:80", "/").body, "a\n");
    // The path goes upstream unchanged; `X-Upstream` names who answered.
    for (path, expected) in [
        ("/api", "b"),
        ("/api/", "b"),
        ("/api/x?y=1", "b"),
        ("/api-v2", "a"),
        ("/apis/x", "a"),
    ] {
        let reply = get(http, "app.test", path);
        assert_eq!(
            reply.header("x-upstream"),
            Some(expected),
            "{path}: {reply:?}"
        );
    }

    // Unknown host: 404 from the proxy; container down: 502, no detail.
    let unknown = get(http, "nobody.test", "/");
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (404, "unknown host\n")
    );
    let down = wait_until(http, "down.test", "/", 502);
    assert_eq!((down.status, down.body.as_str()), (502, "service down\n"));

    // Forwarded headers: client values replaced (trust is off by default).
    let mut conn = connect(http);
    let reply = exchange(
        &mut conn,
        "app.test",
        "/headers",
        "X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Host: evil.test\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n",
    );
    let seen: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let headers = &seen["headers"];
    assert_eq!(headers["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(headers["x-real-ip"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(headers["x-forwarded-proto"], serde_json::json!(["http"]));
    assert_eq!(headers["x-forwarded-host"], serde_json::json!(["app.test"]));
    assert_eq!(headers["host"], serde_json::json!(["app.test"]));
    assert!(headers.get("x-hop").is_none(), "{headers}");

    // A streamed upload is counted by the upstream.
    let upload = vec![b'x'; 3 * 1024 * 1024];
    conn.get_mut()
        .write_all(
            format!(
                "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n",
                upload.len()
            )
            .as_bytes(),
        )
        .unwrap();
    conn.get_mut().write_all(&upload).unwrap();
    assert_eq!(read_reply(&mut conn).body, format!("{}\n", upload.len()));

    // A chunked upload of unknown length is streamed on, chunk by chunk.
    conn.get_mut()
        .write_all(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = vec![b'y'; 256 * 1024];
    for _ in 0..4 {
        conn.get_mut()
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .unwrap();
        conn.get_mut().write_all(&chunk).unwrap();
        conn.get_mut().write_all(b"\r\n").unwrap();
    }
    conn.get_mut().write_all(b"0\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut conn).body, format!("{}\n", 4 * chunk.len()));

    // HEAD keeps the container's Content-Length and sends no body: the next
    // request on the same connection reads a clean answer.
    let get = exchange(&mut conn, "app.test", "/", "");
    conn.get_mut()
        .write_all(b"HEAD / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    let (status, head) = read_head(&mut conn);
    assert_eq!(status, 200);
    let length = get.body.len().to_string();
    assert_eq!(
        header(&head, "content-length"),
        Some(length.as_str()),
        "{head:?}"
    );
    let after = exchange(&mut conn, "app.test", "/", "");
    assert_eq!((after.status, after.body), (200, get.body));

    // Server-sent events arrive one by one, not at the end.
    let mut sse = connect(http);
    sse.get_mut()
        .write_all(b"GET /sse?n=5 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let (status, _) = read_head(&mut sse);
    assert_eq!(status, 200);
    let mut first = String::new();
    while !first.contains("data: event 0") {
        sse.read_line(&mut first).unwrap();
    }
    let first_at = started.elapsed();
    let mut rest = String::new();
    sse.read_to_string(&mut rest).unwrap();
    let all_at = started.elapsed();
    assert!(rest.contains("data: event 4"), "{rest}");
    assert!(
        first_at < Duration::from_millis(350) && all_at >= Duration::from_millis(450),
        "first event after {first_at:?}, all after {all_at:?}"
    );

    // WebSocket echo through the proxy.
    let mut ws = connect(http);
    ws.get_mut()
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let (status, headers) = read_head(&mut ws);
    assert_eq!(status, 101);
    assert_eq!(
        header(&headers, "sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    let payload = b"hello through the proxy";
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    ws.get_mut().write_all(&frame).unwrap();
    let mut head = [0u8; 2];
    ws.read_exact(&mut head).unwrap();
    assert_eq!(head, [0x81, payload.len() as u8]);
    let mut echoed = vec![0u8; payload.len()];
    ws.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, payload);

    // A route switched by a reload while a client holds a keep-alive
    // connection: the same connection reaches the new target.
    let mut keep = connect(http);
    assert_eq!(exchange(&mut keep, "app.test", "/", "").body, "a\n");
    upstream_service(&mut sb, "a", "a", "host = \"old.test\"");
    upstream_service(&mut sb, "b", "b", "host = \"app.test\"\npath = \"/\"");
    daemon.reload();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut body = String::new();
    while Instant::now() < deadline {
        body = exchange(&mut keep, "app.test", "/", "").body;
        if body == "b\n" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        body, "b\n",
        "the kept-alive connection follows the new route"
    );
    assert_eq!(exchange(&mut keep, "old.test", "/", "").body, "a\n");
    daemon.stop();
}

#[test]
fn https_only_redirects_serves_h2_by_sni_and_keeps_challenges_in_memory() {
    let mut sb = Sandbox::new();
    let (http, https) = (free_port(), free_port());
    let listeners =
        format!("http_listen = \"127.0.0.1:{http}\"\nhttps_listen = \"127.0.0.1:{https}\"\n");
    sb.proxy_settings(&format!("strategy = \"https-only\"\n{listeners}"));
    let (cert, key) = make_cert(&sb, "secure.test");
    upstream_service(
        &mut sb,
        "s",
        "s",
        &format!("host = \"secure.test\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\""),
    );
    upstream_service(&mut sb, "auto", "auto", "host = \"auto.test\"");
    let daemon = sb.start();

    // Port 80 redirects to HTTPS, keeping path and query.
    let redirect = get(http, "secure.test:1234", "/a/b?c=d");
    assert_eq!(redirect.status, 301);
    assert_eq!(
        redirect.header("location"),
        Some(format!("https://secure.test:{https}/a/b?c=d").as_str())
    );
    // ACME challenge paths are answered from memory only: traversal is 404.
    for path in [
        "/.well-known/acme-challenge/../../etc/passwd",
        "/.well-known/acme-challenge//etc/passwd",
        "/.well-known/acme-challenge/%2e%2e%2fdispenser.toml",
        "/.well-known/acme-challenge/unknown-token",
    ] {
        let reply = get(http, "secure.test", path);
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
        assert_eq!(reply.body, "not found\n");
    }

    // HTTP/2 over TLS with the manual certificate, chosen by SNI and trusted.
    let resolve = format!("secure.test:{https}:127.0.0.1");
    let url = format!("https://secure.test:{https}/headers");
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = curl(&[
            "--http2",
            "--cacert",
            &cert,
            "--resolve",
            &resolve,
            "-w",
            "\n%{http_version} %{http_code}",
            &url,
        ]);
        if out.ends_with(" 200") || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (body, status) = out.rsplit_once('\n').unwrap();
    assert_eq!(status, "2 200", "{out}");
    let seen: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        seen["headers"]["x-forwarded-proto"],
        serde_json::json!(["https"])
    );
    assert_eq!(
        seen["headers"]["host"],
        serde_json::json!(["secure.test:".to_string() + &https.to_string()])
    );

    // An automatic host is served a self-signed certificate at once.
    let resolve_auto = format!("auto.test:{https}:127.0.0.1");
    let subject = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo | openssl s_client -connect 127.0.0.1:{https} -servername auto.test 2>/dev/null | openssl x509 -noout -ext subjectAltName"
        ))
        .output()
        .unwrap();
    assert!(
        text(&subject.stdout).contains("DNS:auto.test"),
        "{}",
        text(&subject.stdout)
    );
    let auto = curl(&[
        "-k",
        "--resolve",
        &resolve_auto,
        &format!("https://auto.test:{https}/"),
    ]);
    assert_eq!(auto, "auto\n");
    daemon.stop();

    // With trust_forwarded_headers the client's chain is kept and extended.
    sb.proxy_settings(&format!(
        "strategy = \"https-only\"\ntrust_forwarded_headers = true\n{listeners}"
    ));
    let daemon = sb.start();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let body = curl(&[
            "--cacert",
            &cert,
            "--resolve",
            &resolve,
            "-H",
            "X-Forwarded-For: 203.0.113.9",
            "-H",
            "X-Forwarded-Proto: http",
            &url,
        ]);
        if body.starts_with('{') || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        seen["headers"]["x-forwarded-for"],
        serde_json::json!(["203.0.113.9, 127.0.0.1"])
    );
    assert_eq!(
        seen["headers"]["x-forwarded-proto"],
        serde_json::json!(["http"])
    );
    daemon.stop();
}

/// The SHA-256 fingerprint of a PEM certificate, or of the one the HTTPS
/// listener on `port` serves for SNI `host`.
fn fingerprint(pem: Option<&str>, port: u16, host: &str) -> String {
    let script = match pem {
        Some(path) => format!("openssl x509 -noout -fingerprint -sha256 -in '{path}'"),
        None => format!(
            "echo | openssl s_client -connect 127.0.0.1:{port} -servername {host} 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        ),
    };
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    text(&out.stdout).trim().to_string()
}

/// A host's manual certificate covers all its routes: a second route of the
/// host without `cert_file` (applied after the first, its service sorts
/// later) does not make the host serve a self-signed certificate.
#[test]
fn a_manual_certificate_covers_every_route_of_its_host() {
    let mut sb = Sandbox::new();
    let (http, https) = (free_port(), free_port());
    sb.proxy_settings(&format!(
        "strategy = \"https-only\"\nhttp_listen = \"127.0.0.1:{http}\"\nhttps_listen = \"127.0.0.1:{https}\"\n"
    ));
    let (cert, key) = make_cert(&sb, "shared.test");
    upstream_service(
        &mut sb,
        "main",
        "main",
        &format!("host = \"shared.test\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\""),
    );
    upstream_service(
        &mut sb,
        "more",
        "more",
        "host = \"shared.test\"\npath = \"/headers\"",
    );
    let daemon = sb.start();

    // Both routes answer over TLS verified against the manual certificate alone.
    let resolve = format!("shared.test:{https}:127.0.0.1");
    for (path, expected) in [("/", "main\n"), ("/headers", "\"host\"")] {
        let url = format!("https://shared.test:{https}{path}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let body = loop {
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "10", "--cacert", &cert, "--resolve"])
                .args([&resolve, &url])
                .output()
                .expect("curl");
            let body = text(&out.stdout);
            if (out.status.success() && body.contains(expected)) || Instant::now() > deadline {
                break format!("{body}{}", text(&out.stderr));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(body.contains(expected), "{path}: {body}\n{}", daemon.log());
    }
    // The certificate served for the host is the manual one, byte for byte.
    let expected = fingerprint(Some(&cert), 0, "");
    assert!(expected.contains("Fingerprint="), "{expected}");
    assert_eq!(fingerprint(None, https, "shared.test"), expected);
    let log = daemon.log();
    assert!(log.contains("certificate loaded"), "{log}");
    assert!(
        !log.contains("self-signed certificate installed host=shared.test"),
        "{log}"
    );
    daemon.stop();
}
