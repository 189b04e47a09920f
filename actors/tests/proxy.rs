//! The real proxy server (`ProxyServer`, actix-web and the forwarder), in
//! process, in front of a raw keep-alive upstream on 127.0.0.1 that logs
//! every request it reads: what a container behind the proxy really sees.
//! Attacks on the framing, the host and idle connections go to the
//! listeners as raw bytes. Every wait is bounded; all traffic stays on
//! 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dispenser_actors::plan::{ProxySettings, ProxyStrategy, Route, TlsSource};
use dispenser_actors::proxy::certs::CertMap;
use dispenser_actors::proxy::challenge::Challenges;
use dispenser_actors::proxy::server::ProxyServer;
use dispenser_actors::proxy::table::{EndpointState, RouteInput, RouteTable, SharedTable};

/// How long a test waits for any one answer.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// One request as the upstream read it off its connection.
#[derive(Debug, Clone)]
struct Seen {
    /// Which upstream connection it came on (0, 1, ... in accept order).
    connection: usize,
    line: String,
    /// Header lines as sent, names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive HTTP/1.1 server that frames requests by `Content-Length`
/// (or chunked) exactly as a strict container would, logs each one, and
/// answers with the request line as its body.
struct RawUpstream {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RawUpstream {
    fn start() -> RawUpstream {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the upstream");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for (connection, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                let log = log.clone();
                std::thread::spawn(move || serve_connection(stream, connection, &log));
            }
        });
        RawUpstream { port, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve_connection(stream: TcpStream, connection: usize, log: &Mutex<Vec<Seen>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = stream.try_clone().expect("clone the upstream socket");
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = line.trim_end().to_string();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        let mut seen = Seen {
            connection,
            line: line.clone(),
            headers,
            body: Vec::new(),
        };
        if seen
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).unwrap_or(0);
                let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; size + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                if size == 0 {
                    break;
                }
                seen.body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(length) = seen.header("content-length") {
            let mut body = vec![0; length.parse().unwrap_or(0)];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            seen.body = body;
        }
        log.lock().unwrap().push(seen);
        // `/status/502`: the container's own failure, with its own body.
        let status = if line.contains(" /status/502 ") {
            "502 Bad Gateway"
        } else {
            "200 OK"
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nx-upstream: raw\r\n\r\n{line}",
            line.len()
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// The proxy, listening on free loopback ports, routing `hosts` to the
/// raw upstream.
struct Proxy {
    server: ProxyServer,
}

impl Proxy {
    fn start(strategy: ProxyStrategy, upstream: &RawUpstream, hosts: &[&str]) -> Proxy {
        Proxy::start_with(strategy, upstream, hosts, |_| {})
    }

    fn start_with(
        strategy: ProxyStrategy,
        upstream: &RawUpstream,
        hosts: &[&str],
        adjust: impl FnOnce(&mut ProxySettings),
    ) -> Proxy {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut settings = ProxySettings::with_listeners(strategy, any, any);
        settings.workers = Some(1);
        adjust(&mut settings);
        let routes: Vec<Route> = hosts
            .iter()
            .map(|host| Route {
                host: host.to_string(),
                path: "/".to_string(),
                service_port: upstream.port,
                health_path: None,
                tls: TlsSource::Automatic,
                challenge: None,
                rules: Default::default(),
            })
            .collect();
        let table = SharedTable::default();
        table.store(RouteTable::build(routes.iter().map(|route| RouteInput {
            fallback: None,
            maintenance: None,
            service: "raw",
            route,
            ip: Some(Ipv4Addr::LOCALHOST.into()),
            state: EndpointState::Ready,
        })));
        let server =
            ProxyServer::start(&settings, table, CertMap::default(), Challenges::default())
                .expect("start the proxy");
        Proxy { server }
    }

    fn http_port(&self) -> u16 {
        self.server.http.expect("an HTTP listener").port()
    }
}

/// Sends `request` on a fresh connection to `port`, then reads until the
/// proxy closes it or `wait` passes; returns everything read.
fn raw(port: u16, request: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect to the proxy");
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(request).expect("send the request");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// How many HTTP/1.1 answers `text` holds.
fn answers(text: &str) -> usize {
    text.matches("HTTP/1.1 ").count()
}

/// Waits (bounded) until the upstream logged at least `count` requests.
fn wait_seen(upstream: &RawUpstream, count: usize) -> Vec<Seen> {
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        let seen = upstream.seen();
        if seen.len() >= count || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: e.test\r\nX-Real-IP: 6.6.6.6\r\n\
                        X-Forwarded-For: 6.6.6.6\r\n\r\n";

#[test]
fn connection_cannot_remove_the_framing_so_a_body_is_never_a_second_request() {
    let upstream = RawUpstream::start();
    let proxy = Proxy::start(ProxyStrategy::HttpOnly, &upstream, &["e.test"]);
    let attack = format!(
        "POST /one HTTP/1.1\r\nHost: e.test\r\nContent-Length: {}\r\n\
         Connection: Content-Length\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    let answer = raw(proxy.http_port(), attack.as_bytes(), Duration::from_secs(2));
    assert_eq!(answers(&answer), 1, "one request, one answer: {answer}");
    assert!(answer.ends_with("POST /one HTTP/1.1"), "{answer}");
    // Another client on a fresh connection gets its own answer, not the
    // one to a smuggled request.
    let other = raw(
        proxy.http_port(),
        b"GET /two HTTP/1.1\r\nHost: e.test\r\nConnection: close\r\n\r\n",
        ANSWER_WAIT,
    );
    assert!(other.ends_with("GET /two HTTP/1.1"), "{other}");

    let seen = wait_seen(&upstream, 2);
    let lines: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
    assert_eq!(
        lines,
        ["POST /one HTTP/1.1", "GET /two HTTP/1.1"],
        "{seen:#?}"
    );
    assert_eq!(
        seen[1].connection, seen[0].connection,
        "both went over one kept-alive container connection, where a smuggled \
         request would poison the next client's answer"
    );
    assert_eq!(
        seen[0].body,
        SMUGGLED.as_bytes(),
        "the body arrived as a body"
    );
    assert_eq!(
        seen[0].header("content-length"),
        Some(SMUGGLED.len().to_string().as_str())
    );
    assert_eq!(seen[0].header("x-real-ip"), Some("127.0.0.1"));
}

#[test]
fn a_chunked_body_named_in_connection_is_still_framed() {
    let upstream = RawUpstream::start();
    let proxy = Proxy::start(ProxyStrategy::HttpOnly, &upstream, &["e.test"]);
    let body = format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len());
    let attack = format!(
        "POST /one HTTP/1.1\r\nHost: e.test\r\nTransfer-Encoding: chunked\r\n\
         Connection: Transfer-Encoding, Content-Length\r\n\r\n{body}"
    );
    let answer = raw(proxy.http_port(), attack.as_bytes(), Duration::from_secs(2));
    assert_eq!(answers(&answer), 1, "{answer}");
    let seen = wait_seen(&upstream, 1);
    std::thread::sleep(Duration::from_millis(200));
    let seen_after = upstream.seen();
    assert_eq!(seen_after.len(), 1, "{seen_after:#?}");
    assert_eq!(seen[0].line, "POST /one HTTP/1.1");
    assert_eq!(seen[0].body, SMUGGLED.as_bytes());
}

#[test]
fn connection_cannot_remove_the_host_or_the_forwarded_headers() {
    let upstream = RawUpstream::start();
    let proxy = Proxy::start(ProxyStrategy::HttpOnly, &upstream, &["e.test"]);
    let answer = raw(
        proxy.http_port(),
        b"GET /h HTTP/1.1\r\nHost: e.test\r\nX-Real-IP: 6.6.6.6\r\n\
          Connection: Host, X-Real-IP, X-Forwarded-For, close\r\n\r\n",
        ANSWER_WAIT,
    );
    assert!(answer.ends_with("GET /h HTTP/1.1"), "{answer}");
    let seen = wait_seen(&upstream, 1);
    assert_eq!(seen[0].header("host"), Some("e.test"), "{seen:#?}");
    assert_eq!(seen[0].header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(seen[0].header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen[0].header("connection"), None, "hop-by-hop stays here");
}

#[test]
fn the_https_redirect_is_only_for_routed_hosts() {
    let upstream = RawUpstream::start();
    let proxy = Proxy::start(ProxyStrategy::HttpsOnly, &upstream, &["e.test"]);
    let routed = raw(
        proxy.http_port(),
        b"GET /a?b=c HTTP/1.1\r\nHost: E.test:8080\r\nConnection: close\r\n\r\n",
        ANSWER_WAIT,
    );
    assert!(routed.starts_with("HTTP/1.1 301"), "{routed}");
    let https = proxy.server.https.expect("an HTTPS listener").port();
    assert!(
        routed
            .to_ascii_lowercase()
            .contains(&format!("location: https://e.test:{https}/a?b=c\r\n")),
        "{routed}"
    );
    let unknown = raw(
        proxy.http_port(),
        b"GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        ANSWER_WAIT,
    );
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    assert!(!unknown.contains("evil.example"), "{unknown}");
    assert_eq!(upstream.seen().len(), 0);
}

#[test]
fn a_silent_connection_on_the_plain_listener_is_closed_after_the_header_timeout() {
    let upstream = RawUpstream::start();
    let header_timeout = Duration::from_secs(1);
    let proxy = Proxy::start_with(ProxyStrategy::HttpOnly, &upstream, &["e.test"], |s| {
        s.header_timeout = header_timeout;
    });
    let mut silent = TcpStream::connect((Ipv4Addr::LOCALHOST, proxy.http_port())).expect("connect");
    silent.set_read_timeout(Some(ANSWER_WAIT)).unwrap();
    let opened = Instant::now();
    let mut byte = [0; 1];
    let read = silent.read(&mut byte);
    let waited = opened.elapsed();
    assert!(
        matches!(read, Ok(0))
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the proxy must close a silent connection, got {read:?} after {waited:?}"
    );
    // The timeout plus actix-http's clock grain, and some slack; never the
    // test's own read timeout.
    assert!(
        waited < header_timeout + Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(
        waited >= header_timeout - Duration::from_millis(100),
        "{waited:?}"
    );
}

/// The per-client cap of `server.rs` (`MAX_CONNECTIONS_PER_CLIENT`).
const PER_CLIENT_CAP: usize = 256;

#[test]
fn one_client_cannot_hold_more_than_its_share_of_connections() {
    let upstream = RawUpstream::start();
    let proxy = Proxy::start_with(ProxyStrategy::HttpOnly, &upstream, &["e.test"], |s| {
        s.header_timeout = Duration::from_secs(60);
    });
    let port = proxy.http_port();
    let mut held: Vec<TcpStream> = (0..PER_CLIENT_CAP)
        .map(|_| TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect"))
        .collect();
    // The proxy admits connections as its workers accept them: wait until
    // the last of them is admitted (it answers a request).
    let mut last = held.pop().unwrap();
    last.set_read_timeout(Some(ANSWER_WAIT)).unwrap();
    last.write_all(b"GET /last HTTP/1.1\r\nHost: e.test\r\n\r\n")
        .unwrap();
    let mut answer = [0; 64];
    let read = last
        .read(&mut answer)
        .expect("the last admitted connection answers");
    assert!(String::from_utf8_lossy(&answer[..read]).starts_with("HTTP/1.1 200"));
    held.push(last);
    // One more from the same address is closed at once, unanswered.
    let over = raw(
        port,
        b"GET /over HTTP/1.1\r\nHost: e.test\r\nConnection: close\r\n\r\n",
        ANSWER_WAIT,
    );
    assert_eq!(over, "", "a connection over the cap is closed unanswered");
    // Giving one back makes room for another.
    drop(held.pop());
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        let again = raw(
            port,
            b"GET /again HTTP/1.1\r\nHost: e.test\r\nConnection: close\r\n\r\n",
            ANSWER_WAIT,
        );
        if again.ends_with("GET /again HTTP/1.1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no room after a connection closed: {again:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(upstream
        .seen()
        .iter()
        .all(|seen| seen.line != "GET /over HTTP/1.1"));
}

/// Accepts any certificate: these tests are about routing, not trust.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Sends `request` over TLS with `sni` as the server name; returns the
/// answer, read until the proxy closes.
fn over_tls(port: u16, sni: &str, request: &[u8]) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    tcp.set_read_timeout(Some(ANSWER_WAIT)).unwrap();
    let mut tls = rustls::StreamOwned::new(client, tcp);
    tls.write_all(request).expect("send over TLS");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_tls_connection_serves_only_the_host_its_handshake_named() {
    let upstream = RawUpstream::start();
    let proxy = Proxy::start(ProxyStrategy::HttpsOnly, &upstream, &["a.test", "b.test"]);
    let https = proxy.server.https.expect("an HTTPS listener").port();
    let other = over_tls(
        https,
        "a.test",
        b"GET /x HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
    );
    assert!(other.starts_with("HTTP/1.1 421"), "{other}");
    let same = over_tls(
        https,
        "a.test",
        b"GET /y HTTP/1.1\r\nHost: A.test:443\r\nConnection: close\r\n\r\n",
    );
    assert!(same.ends_with("GET /y HTTP/1.1"), "{same}");
    let lines: Vec<String> = upstream.seen().into_iter().map(|s| s.line).collect();
    assert_eq!(lines, ["GET /y HTTP/1.1"]);
}

#[test]
fn a_route_page_replaces_the_proxy_own_502_never_the_container_one() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let upstream = RawUpstream::start();
    let closed_port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut settings = ProxySettings::with_listeners(ProxyStrategy::HttpOnly, any, any);
    settings.workers = Some(1);
    let paged = |host: &str, port: u16| {
        let mut route = Route {
            host: host.to_string(),
            path: "/".to_string(),
            service_port: port,
            health_path: None,
            tls: TlsSource::Automatic,
            challenge: None,
            rules: Default::default(),
        };
        route
            .rules
            .error_pages
            .set(502, "<p>our own page</p>".to_string());
        route
    };
    // The listener above is dropped: nothing answers on `closed_port`.
    let routes = [
        paged("live.test", upstream.port),
        paged("dead.test", closed_port),
    ];
    let table = SharedTable::default();
    table.store(RouteTable::build(routes.iter().map(|route| RouteInput {
        fallback: None,
        maintenance: None,
        service: "raw",
        route,
        ip: Some(Ipv4Addr::LOCALHOST.into()),
        state: EndpointState::Ready,
    })));
    let server = ProxyServer::start(&settings, table, CertMap::default(), Challenges::default())
        .expect("start the proxy");
    let port = server.http.expect("an HTTP listener").port();

    // POST: not replayed, so the refused connection is answered at once.
    let dead = raw(
        port,
        b"POST / HTTP/1.1\r\nHost: dead.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ANSWER_WAIT,
    );
    assert!(dead.starts_with("HTTP/1.1 502"), "{dead}");
    assert!(dead.ends_with("<p>our own page</p>"), "{dead}");
    assert!(
        dead.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{dead}"
    );

    let container = raw(
        port,
        b"GET /status/502 HTTP/1.1\r\nHost: live.test\r\nConnection: close\r\n\r\n",
        ANSWER_WAIT,
    );
    assert!(container.starts_with("HTTP/1.1 502"), "{container}");
    assert!(
        container.ends_with("GET /status/502 HTTP/1.1"),
        "the container's own body: {container}"
    );
}
