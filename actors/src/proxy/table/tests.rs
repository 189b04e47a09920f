//! Unit tests of the route table: host and path matching, upstream states.

use super::*;
use crate::plan::TlsSource;

fn route(host: &str, path: &str, port: u16) -> Route {
    Route {
        host: host.into(),
        path: path.into(),
        service_port: port,
        health_path: None,
        tls: TlsSource::Automatic,
        challenge: None,
        rules: Default::default(),
    }
}

/// An endpoint as the router holds it.
type Endpoint = (Option<IpAddr>, EndpointState);

fn ready(ip: [u8; 4]) -> Endpoint {
    (Some(IpAddr::from(ip)), EndpointState::Ready)
}

fn table(routes: &[(&str, Route, Endpoint)]) -> RouteTable {
    RouteTable::build(
        routes
            .iter()
            .map(|(service, route, (ip, state))| RouteInput {
                fallback: None,
                maintenance: None,
                service,
                route,
                ip: *ip,
                state: *state,
            }),
    )
}

fn service_of<'a>(lookup: Lookup<'a>) -> Option<&'a str> {
    match lookup {
        Lookup::Found(entry) => Some(&entry.service),
        _ => None,
    }
}

#[test]
fn host_ignores_case_port_and_trailing_dot() {
    let t = table(&[(
        "web",
        route("app.example.com", "/", 80),
        ready([10, 0, 0, 2]),
    )]);
    for host in [
        "app.example.com",
        "APP.Example.COM",
        "app.example.com:8443",
        "app.example.com.",
        "App.Example.Com.:80",
    ] {
        assert_eq!(service_of(t.lookup(host, "/")), Some("web"), "{host}");
    }
    assert_eq!(t.lookup("other.example.com", "/"), Lookup::UnknownHost);
    assert_eq!(t.lookup("example.com", "/"), Lookup::UnknownHost);
    assert_eq!(t.lookup("", "/"), Lookup::UnknownHost);
}

#[test]
fn longest_prefix_wins_on_segment_boundaries() {
    let t = table(&[
        ("root", route("h.test", "/", 80), ready([10, 0, 0, 1])),
        ("api", route("h.test", "/api", 80), ready([10, 0, 0, 2])),
        ("v1", route("h.test", "/api/v1/", 80), ready([10, 0, 0, 3])),
    ]);
    let cases = [
        ("/", "root"),
        ("/index.html", "root"),
        ("/api", "api"),
        ("/api/", "api"),
        ("/api/users", "api"),
        ("/api-v2", "root"),
        ("/apis", "root"),
        ("/api/v1", "v1"),
        ("/api/v1/x", "v1"),
        ("/api/v10", "api"),
    ];
    for (path, expected) in cases {
        assert_eq!(
            service_of(t.lookup("h.test", path)),
            Some(expected),
            "{path}"
        );
    }
}

#[test]
fn a_host_without_a_covering_path_is_no_path_not_unknown() {
    let t = table(&[("api", route("h.test", "/api", 80), ready([10, 0, 0, 2]))]);
    assert_eq!(t.lookup("h.test", "/"), Lookup::NoPath);
    assert_eq!(t.lookup("h.test", "/api-v2"), Lookup::NoPath);
    assert_eq!(service_of(t.lookup("h.test", "/api/x")), Some("api"));
}

#[test]
fn upstream_follows_the_endpoint_state() {
    let t = table(&[
        ("up", route("up.test", "/", 8080), ready([10, 0, 0, 7])),
        (
            "starting",
            route("starting.test", "/", 80),
            (None, EndpointState::Starting),
        ),
        (
            "down",
            route("down.test", "/", 80),
            (Some(IpAddr::from([10, 0, 0, 8])), EndpointState::Down),
        ),
        (
            "no-ip",
            route("noip.test", "/", 80),
            (None, EndpointState::Ready),
        ),
    ]);
    let Lookup::Found(entry) = t.lookup("up.test", "/") else {
        panic!("up.test not found");
    };
    match &entry.upstream {
        Upstream::Ready {
            address, authority, ..
        } => {
            assert_eq!(address.to_string(), "10.0.0.7:8080");
            assert_eq!(authority.as_str(), "10.0.0.7:8080");
        }
        other => panic!("expected ready, got {other:?}"),
    }
    let upstream = |host| match t.lookup(host, "/x") {
        Lookup::Found(entry) => entry.upstream.clone(),
        other => panic!("{host}: {other:?}"),
    };
    assert_eq!(upstream("starting.test"), Upstream::Starting);
    assert_eq!(upstream("down.test"), Upstream::Down);
    assert_eq!(upstream("noip.test"), Upstream::Down);
}

#[test]
fn ipv6_hosts_and_ports_are_split_correctly() {
    assert_eq!(strip_port("[::1]:8080"), "[::1]");
    assert_eq!(strip_port("[::1]"), "[::1]");
    assert_eq!(strip_port("a.test:80"), "a.test");
    assert_eq!(strip_port("a.test:x"), "a.test:x");
}

#[test]
fn shared_table_swaps_atomically() {
    let shared = SharedTable::default();
    let before = shared.load();
    assert_eq!(before.lookup("a.test", "/"), Lookup::UnknownHost);
    assert!(!shared.loaded(), "no table from a plan yet");
    shared.store(table(&[(
        "a",
        route("a.test", "/", 80),
        ready([10, 0, 0, 1]),
    )]));
    assert_eq!(
        before.lookup("a.test", "/"),
        Lookup::UnknownHost,
        "old snapshot unchanged"
    );
    assert_eq!(service_of(shared.load().lookup("a.test", "/")), Some("a"));
    assert_eq!(shared.load().hosts(), vec!["a.test"]);
    assert!(shared.loaded());
    assert!(shared.clone().loaded(), "clones share the slot");
}

#[test]
fn plain_routes_have_no_guard_and_rules_share_one_per_route() {
    let mut guarded = route("app.test", "/api", 80);
    guarded.rules.aliases = vec!["alias.test".into()];
    guarded.rules.redirect_from = vec!["www.app.test".into()];
    guarded.rules.strip_prefix = true;
    let t = table(&[
        ("plain", route("plain.test", "/", 80), ready([10, 0, 0, 2])),
        ("api", guarded, ready([10, 0, 0, 3])),
    ]);
    let entry = |host: &str, path: &str| match t.lookup(host, path) {
        Lookup::Found(entry) => entry.clone(),
        other => panic!("{host}{path}: {other:?}"),
    };
    assert!(
        entry("plain.test", "/").guard.is_none(),
        "a plain route costs nothing"
    );
    let own = entry("app.test", "/api/x");
    let alias = entry("ALIAS.test", "/api");
    let own_guard = own.guard.as_ref().expect("strip_prefix needs a guard");
    assert_eq!(own_guard.strip_prefix.as_deref(), Some("/api"));
    assert!(own_guard.redirect_to.is_none());
    assert!(
        Arc::ptr_eq(own_guard, alias.guard.as_ref().unwrap()),
        "one guard for the host and its aliases"
    );
    assert_eq!(alias.service.as_ref(), "api");
    let redirect = entry("www.app.test", "/api/y");
    assert_eq!(
        redirect
            .guard
            .as_ref()
            .and_then(|guard| guard.redirect_to.as_deref()),
        Some("app.test")
    );
    assert_eq!(
        t.lookup("www.app.test", "/"),
        Lookup::NoPath,
        "the route's path only"
    );
}

#[test]
fn maintenance_guards_a_plain_route_and_is_reported() {
    let plain = route("plain.test", "/", 80);
    let maintenance = crate::proxy::maintenance::Maintenance::now(Some("soon".into()));
    let mut services = MaintenanceMap::new();
    services.insert("plain".to_string(), maintenance.clone());
    let t = RouteTable::build([RouteInput {
        fallback: None,
        service: "plain",
        route: &plain,
        ip: Some(IpAddr::from([10, 0, 0, 2])),
        state: EndpointState::Ready,
        maintenance: Some(&maintenance),
    }])
    .with_maintenance(services);
    let Lookup::Found(entry) = t.lookup("plain.test", "/") else {
        panic!("no route");
    };
    let page = entry
        .guard
        .as_ref()
        .and_then(|guard| guard.maintenance.clone())
        .expect("maintenance page");
    assert!(String::from_utf8_lossy(&page).contains("soon"));
    assert_eq!(t.maintenance("plain"), Some(&maintenance));
    assert_eq!(t.maintenance("other"), None);
}

#[test]
fn a_wildcard_covers_one_label_and_an_exact_host_wins() {
    let t = table(&[
        ("any", route("*.example.com", "/", 80), ready([10, 0, 0, 2])),
        (
            "api",
            route("api.example.com", "/v1", 80),
            ready([10, 0, 0, 3]),
        ),
    ]);
    for host in ["a.example.com", "B.Example.com:443", "www.example.com."] {
        assert_eq!(service_of(t.lookup(host, "/")), Some("any"), "{host}");
    }
    assert_eq!(
        service_of(t.lookup("api.example.com", "/v1/x")),
        Some("api")
    );
    // The exact host wins even where its paths do not cover the request.
    assert!(matches!(
        t.lookup("api.example.com", "/other"),
        Lookup::NoPath
    ));
    for host in [
        "example.com",
        "a.b.example.com",
        ".example.com",
        "aexample.com",
    ] {
        assert!(matches!(t.lookup(host, "/"), Lookup::UnknownHost), "{host}");
    }
    assert_eq!(t.hosts(), vec!["*.example.com", "api.example.com"]);
}
