//! Unit tests of the header rules and redirects of the forwarder.

use super::*;
use crate::plan::ProxySettings;

use crate::proxy::table::{EndpointState, RouteInput, RouteTable};

fn settings(trust: bool) -> ProxySettings {
    let mut settings = ProxySettings::with_listeners(
        ProxyStrategy::HttpsOnly,
        "127.0.0.1:8080".parse().unwrap(),
        "127.0.0.1:8443".parse().unwrap(),
    );
    settings.trust_forwarded_headers = trust;
    settings
}

fn forwarder(trust: bool) -> Forwarder {
    Forwarder::new(
        &settings(trust),
        SharedTable::default(),
        Challenges::default(),
    )
}

fn client_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
    headers.insert(X_REAL_IP, HeaderValue::from_static("6.6.6.6"));
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("gopher"));
    headers.insert(X_FORWARDED_HOST, HeaderValue::from_static("evil.test"));
    headers.insert(FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
    headers
}

fn conn() -> ClientConn {
    ClientConn::new(Listener::Https, "[::ffff:192.0.2.7]:5555".parse().unwrap())
}

/// The header lines the container reads for a request with `headers`,
/// from `conn()`, for `app.test`.
fn sent_headers(trust: bool, headers: HeaderMap) -> Vec<String> {
    let mut head = RequestHead::default();
    head.headers = headers;
    let forwarded =
        forwarder(trust).forwarded(&head.headers, &conn(), HeaderValue::from_static("app.test"));
    let mut wire = BytesMut::new();
    crate::proxy::upstream::encode_head(&head, &forwarded, &RequestBody::Empty, &mut wire);
    let wire = String::from_utf8(wire.to_vec()).unwrap();
    let mut lines: Vec<String> = wire
        .split("\r\n")
        .skip(1)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[test]
fn client_forwarded_headers_are_replaced_by_default() {
    let mut headers = client_headers();
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    assert_eq!(
        sent_headers(false, headers),
        [
            "accept: */*",
            "x-forwarded-for: 192.0.2.7",
            "x-forwarded-host: app.test",
            "x-forwarded-proto: https",
            "x-real-ip: 192.0.2.7",
        ]
    );
}

#[test]
fn trusted_forwarded_headers_are_appended_or_kept() {
    let mut headers = client_headers();
    headers.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
    assert_eq!(
        sent_headers(true, headers),
        [
            "forwarded: for=6.6.6.6",
            "x-forwarded-for: 6.6.6.6, 10.0.0.1, 192.0.2.7",
            "x-forwarded-host: evil.test",
            "x-forwarded-proto: gopher",
            "x-real-ip: 6.6.6.6",
        ]
    );
    assert_eq!(
        sent_headers(true, HeaderMap::new()),
        [
            "x-forwarded-for: 192.0.2.7",
            "x-forwarded-host: app.test",
            "x-forwarded-proto: https",
            "x-real-ip: 192.0.2.7",
        ]
    );
}

#[test]
fn hop_by_hop_headers_and_those_named_by_connection_go() {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONNECTION,
        HeaderValue::from_static("keep-alive, x-secret-hop"),
    );
    // A second `Connection` header continues the list.
    headers.append(
        header::CONNECTION,
        HeaderValue::from_static(" X-Other-Hop "),
    );
    headers.insert(
        HeaderName::from_static("x-secret-hop"),
        HeaderValue::from_static("1"),
    );
    headers.insert(
        HeaderName::from_static("x-other-hop"),
        HeaderValue::from_static("2"),
    );
    headers.insert(
        HeaderName::from_static("keep-alive"),
        HeaderValue::from_static("timeout=5"),
    );
    headers.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    strip_hop_by_hop(&mut headers);
    let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
    assert_eq!(left, vec!["accept"]);
}

#[test]
fn upgrade_needs_both_headers() {
    let mut headers = HeaderMap::new();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    assert!(!wants_upgrade(&headers));
    headers.insert(
        header::CONNECTION,
        HeaderValue::from_static("keep-alive, Upgrade"),
    );
    assert!(wants_upgrade(&headers));
    // Also when the token comes in a second `Connection` header.
    headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    assert!(!wants_upgrade(&headers));
    headers.append(header::CONNECTION, HeaderValue::from_static("upgrade"));
    assert!(wants_upgrade(&headers));
    drop(headers.remove(header::UPGRADE));
    assert!(!wants_upgrade(&headers));
}

#[test]
fn redirect_hosts_are_plain_names_without_port() {
    assert_eq!(redirect_host("app.test:8080"), Some("app.test"));
    assert_eq!(redirect_host("app.test"), Some("app.test"));
    assert_eq!(redirect_host("[::1]:80"), Some("[::1]"));
    assert_eq!(redirect_host("evil.test/@x"), None);
    assert_eq!(redirect_host("a b"), None);
    assert_eq!(redirect_host(""), None);
}

fn request(target: &str, hosts: &[&str]) -> RequestHead {
    let mut head = RequestHead::default();
    head.uri = target.parse().unwrap();
    for host in hosts {
        head.headers
            .append(header::HOST, HeaderValue::from_str(host).unwrap());
    }
    head
}

#[test]
fn request_hosts_come_from_one_unambiguous_source() {
    assert_eq!(request_host(&request("/", &["app.test"])), Ok("app.test"));
    assert_eq!(
        request_host(&request("http://app.test/x", &[])),
        Ok("app.test")
    );
    assert_eq!(
        request_host(&request("http://APP.test/x", &["app.TEST"])),
        Ok("APP.test")
    );
    assert_eq!(
        request_host(&request("/", &["[::1]:8080"])),
        Ok("[::1]:8080")
    );
    for (target, hosts, refusal) in [
        ("/", &[][..], Refusal::MissingHost),
        ("/", &[""][..], Refusal::MissingHost),
        ("/", &["app.test", "other.test"][..], Refusal::Host),
        ("/", &["app.test", "app.test"][..], Refusal::Host),
        ("http://other.test/", &["app.test"][..], Refusal::Host),
        ("http://user@app.test/", &[][..], Refusal::Host),
        ("/", &["user@app.test"][..], Refusal::Host),
        ("/", &["app.test/x"][..], Refusal::Host),
        ("/", &["app test"][..], Refusal::Host),
        ("ftp://app.test/", &["app.test"][..], Refusal::Host),
    ] {
        assert_eq!(
            request_host(&request(target, hosts)),
            Err(refusal),
            "{target} {hosts:?}"
        );
    }
    let mut connect = request("app.test:443", &[]);
    connect.method = Method::CONNECT;
    assert_eq!(request_host(&connect), Err(Refusal::Method));
}

#[test]
fn the_peer_header_is_reused_only_for_the_same_ip() {
    let last = std::cell::RefCell::new(None);
    let peers = [
        "192.0.2.7:1",
        "192.0.2.7:2",
        "[::ffff:198.51.100.1]:3",
        "[2001:db8::1]:4",
    ];
    let expected = ["192.0.2.7", "192.0.2.7", "198.51.100.1", "2001:db8::1"];
    for (peer, ip) in peers.iter().zip(expected) {
        let conn = ClientConn::reusing(Listener::Http, peer.parse().unwrap(), &last);
        assert_eq!(conn.peer_ip, ip, "{peer}");
    }
}

/// The current minute's counts of `route` in the traffic ring.
fn this_minute(route: &str) -> crate::metrics::traffic::MinuteCounts {
    let now = crate::metrics::traffic::current_minute();
    crate::metrics::global()
        .traffic(now)
        .remove(route)
        .and_then(|minutes| minutes.into_iter().find(|counts| counts.minute == now))
        .unwrap_or_default()
}

#[actix_rt::test]
async fn the_proxys_own_502_and_503_count_in_the_routes_traffic() {
    let mut settings = settings(false);
    settings.hold_timeout = Duration::from_millis(50);
    let table = SharedTable::default();
    let forwarder = Forwarder::new(&settings, table.clone(), Challenges::default());
    let down = crate::plan::Route {
        host: "down.traffic.test".into(),
        path: "/".into(),
        service_port: 80,
        health_path: None,
        tls: crate::plan::TlsSource::Automatic,
        challenge: None,
        rules: Default::default(),
    };
    let starting = crate::plan::Route {
        host: "starting.traffic.test".into(),
        ..down.clone()
    };
    table.store(RouteTable::build([
        RouteInput {
            fallback: None,
            maintenance: None,
            service: "traffic-down",
            route: &down,
            ip: None,
            state: EndpointState::Down,
        },
        RouteInput {
            fallback: None,
            maintenance: None,
            service: "traffic-starting",
            route: &starting,
            ip: None,
            state: EndpointState::Starting,
        },
    ]));
    let before = (this_minute("traffic-down"), this_minute("traffic-starting"));

    let mut head = request("/", &["down.traffic.test"]);
    let answer = forwarder
        .handle(&mut head, RequestBody::Empty, &conn())
        .await;
    assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
    let mut head = request("/", &["starting.traffic.test"]);
    let answer = forwarder
        .handle(&mut head, RequestBody::Empty, &conn())
        .await;
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);

    let after = (this_minute("traffic-down"), this_minute("traffic-starting"));
    // A minute may have turned between the two readings: then `before` is
    // another minute's, and the counts start from nothing.
    let grew = |before: &crate::metrics::traffic::MinuteCounts,
                after: &crate::metrics::traffic::MinuteCounts| {
        let base = if before.minute == after.minute {
            before.server_errors
        } else {
            0
        };
        after.server_errors - base
    };
    assert_eq!(grew(&before.0, &after.0), 1, "the 502 is counted");
    assert_eq!(grew(&before.1, &after.1), 1, "the 503 is counted");
}

#[test]
fn the_hop_by_hop_test_knows_every_hop_by_hop_name_and_no_other() {
    for name in &HOP_BY_HOP {
        assert!(is_hop_by_hop(name), "{name}");
    }
    for name in PROTECTED.iter().chain([&header::ACCEPT, &header::COOKIE]) {
        assert!(!is_hop_by_hop(name), "{name}");
    }
}
