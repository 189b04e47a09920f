//! Routes with aliases and guards, and maintenance mode, end to end: the
//! real daemon on free 127.0.0.1 ports in front of real upstream containers,
//! with real bcrypt lines from `htpasswd -B` (apache2-utils).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::proxy::{connect, exchange, free_port, get, upstream_service, wait_until};
use crate::support::{text, Sandbox};

const BUSYBOX: &str = "dispenser-test/busybox:latest";
/// bcrypt cost of the test's htpasswd line: about a quarter of a second
/// per check here, so twenty uncached requests could not be fast.
const BCRYPT_COST: &str = "12";

/// `user:hash` from `htpasswd -nbB`.
fn htpasswd(user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-nbB", "-C", BCRYPT_COST, user, password])
        .output()
        .expect("htpasswd (apache2-utils) runs");
    assert!(out.status.success(), "htpasswd: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {encoded}\r\n")
}

#[test]
fn aliases_redirects_prefixes_basic_auth_allow_lists_and_error_pages() {
    let mut sb = Sandbox::new();
    let http = free_port();
    sb.proxy_settings(&format!(
        "strategy = \"http-only\"\nhttp_listen = \"127.0.0.1:{http}\"\ntrust_forwarded_headers = true\n"
    ));
    // The htpasswd line comes from a file secret, as an operator would keep it.
    let line = htpasswd("alice", "s3cret:x");
    let hash = line.split_once(':').unwrap().1.to_string();
    sb.write("secrets/htpasswd", &line);
    sb.write(
        "dispenser.vars",
        "site_users = { source = \"file\", path = \"secrets/htpasswd\" }\n",
    );
    upstream_service(
        &mut sb,
        "site",
        "site",
        "host = [\"site.test\", \"alias.test\"]\nredirect_from = [\"www.site.test\"]\nbasic_auth = [\"${ site_users }\"]",
    );
    upstream_service(
        &mut sb,
        "api",
        "api",
        "host = \"site.test\"\npath = \"/api\"\nstrip_prefix = true",
    );
    upstream_service(
        &mut sb,
        "closed",
        "closed",
        "host = \"closed.test\"\nallow = [\"192.0.2.0/24\", \"2001:db8::/32\"]",
    );
    upstream_service(
        &mut sb,
        "open",
        "open",
        "host = \"open.test\"\nallow = [\"127.0.0.1\"]",
    );
    sb.write("gone/errors/502.html", "<h1>we will be right back</h1>\n");
    sb.service(
        "gone",
        BUSYBOX,
        "command = [\"true\"]\nrestart = \"no\"\n\n[proxy]\nhost = \"gone.test\"\nservice_port = 8080\nerror_pages = \"errors\"\n",
    );
    let daemon = sb.start();

    // Basic auth: nothing or a wrong password is 401 with a challenge.
    let refused = wait_until(http, "site.test", "/", 401);
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Basic realm=\"site.test\", charset=\"UTF-8\"")
    );
    let mut conn = connect(http);
    let wrong = exchange(&mut conn, "site.test", "/", &basic("alice", "s3cret"));
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let stranger = exchange(&mut conn, "site.test", "/", &basic("bob", "s3cret:x"));
    assert_eq!(stranger.status, 401, "{stranger:?}");
    // The right one passes, on the host and on its alias (a password may hold `:`).
    let good = basic("alice", "s3cret:x");
    let reply = exchange(&mut conn, "site.test", "/", &good);
    assert_eq!((reply.status, reply.body.as_str()), (200, "site\n"));
    let reply = get_with(http, "alias.test", "/", &good);
    assert_eq!((reply.status, reply.body.as_str()), (200, "site\n"));
    // No bcrypt per request after the first success: twenty requests on new
    // connections take far less than twenty checks would.
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(get_with(http, "site.test", "/", &good).status, 200);
    }
    let twenty = started.elapsed();
    assert!(
        twenty < Duration::from_secs(3),
        "20 authenticated requests took {twenty:?}: is every one checked with bcrypt?"
    );

    // `redirect_from`: 308 to the first host, path and query kept.
    let moved = get(http, "www.site.test", "/a/b?c=1&d=2");
    assert_eq!(moved.status, 308, "{moved:?}");
    assert_eq!(
        moved.header("location"),
        Some(format!("http://site.test:{http}/a/b?c=1&d=2").as_str())
    );

    // `strip_prefix`: the container sees the path below `/api`; the route
    // of another service on the same host has no basic auth.
    let seen = get(http, "site.test", "/api/headers?x=1");
    assert_eq!(seen.status, 200, "{seen:?}");
    let seen: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(seen["path"], serde_json::json!("/headers?x=1"), "{seen}");
    let root = get(http, "site.test", "/api");
    assert_eq!(
        (root.status, root.body.as_str()),
        (200, "api\n"),
        "`/api` is `/` upstream"
    );

    // `allow`: the peer (127.0.0.1) is not in 192.0.2.0/24; with
    // `trust_forwarded_headers`, the address the proxy in front added last
    // counts, not one the client put before it.
    let closed = get(http, "closed.test", "/");
    assert_eq!(
        (closed.status, closed.body.as_str()),
        (403, "forbidden\n"),
        "{closed:?}"
    );
    let forwarded = get_with(
        http,
        "closed.test",
        "/",
        "X-Forwarded-For: 10.9.9.9, 192.0.2.5\r\n",
    );
    assert_eq!(forwarded.status, 200, "{forwarded:?}");
    let spoofed = get_with(
        http,
        "closed.test",
        "/",
        "X-Forwarded-For: 192.0.2.5, 10.9.9.9\r\n",
    );
    assert_eq!(spoofed.status, 403, "{spoofed:?}");
    let v6 = get_with(http, "closed.test", "/", "X-Forwarded-For: 2001:db8::7\r\n");
    assert_eq!(v6.status, 200, "{v6:?}");
    assert_eq!(get(http, "open.test", "/").status, 200);
    let elsewhere = get_with(http, "open.test", "/", "X-Real-IP: 10.1.1.1\r\n");
    assert_eq!(elsewhere.status, 403, "{elsewhere:?}");

    // `error_pages`: the proxy's own 502 is the route's page.
    let down = wait_until(http, "gone.test", "/", 502);
    assert_eq!(down.status, 502);
    assert_eq!(down.body, "<h1>we will be right back</h1>\n");
    assert_eq!(
        down.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    // Routes without a page keep the short text.
    assert_eq!(get(http, "nobody.test", "/").body, "unknown host\n");

    let log = daemon.stop();
    assert!(!log.contains(&hash), "the bcrypt hash reached the log");
    assert!(!log.contains("s3cret"), "a password reached the log");
}

#[test]
fn maintenance_answers_503_with_a_page_survives_a_restart_and_ends() {
    let mut sb = Sandbox::new();
    let http = free_port();
    sb.proxy_settings(&format!(
        "strategy = \"http-only\"\nhttp_listen = \"127.0.0.1:{http}\"\n"
    ));
    upstream_service(&mut sb, "web", "web", "host = \"web.test\"");
    upstream_service(&mut sb, "other", "other", "host = \"other.test\"");
    sb.service("worker", BUSYBOX, "");
    let daemon = sb.start();
    assert_eq!(wait_until(http, "web.test", "/", 200).body, "web\n");
    let web = sb.name("web");

    let on = sb.cli(&[
        "maintenance",
        "on",
        &web,
        "--message",
        "Back at 5 <b>pm</b>",
    ]);
    assert!(on.status.success(), "{}", text(&on.stderr));
    assert!(text(&on.stdout).contains("is in maintenance"), "{on:?}");
    let reply = get(http, "web.test", "/");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.header("retry-after"), Some("300"));
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        reply.body.contains("Back at 5 &lt;b&gt;pm&lt;/b&gt;"),
        "{}",
        reply.body
    );
    assert_eq!(get(http, "other.test", "/").status, 200, "others serve");

    // Unknown and unrouted services are refused, naming why.
    let unknown = sb.cli(&["maintenance", "on", "nobody"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("no service named `nobody`"),
        "{unknown:?}"
    );
    let unrouted = sb.cli(&["maintenance", "on", &sb.name("worker")]);
    assert!(!unrouted.status.success());
    assert!(
        text(&unrouted.stderr).contains("has no route"),
        "{unrouted:?}"
    );

    // `status` (JSON and table) and the page show it.
    let status = sb.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let row = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["name"] == serde_json::json!(web))
        .unwrap()
        .clone();
    assert_eq!(
        row["maintenance"]["message"],
        serde_json::json!("Back at 5 <b>pm</b>")
    );
    let table = text(&sb.cli(&["status"]).stdout);
    assert!(
        table
            .lines()
            .any(|line| line.starts_with(&web) && line.contains("in maintenance")),
        "{table}"
    );
    let page = Command::new("curl")
        .args(["-sS", "--unix-socket"])
        .arg(sb.path("dispenser.sock"))
        .arg("http://localhost/")
        .output()
        .unwrap();
    let page = text(&page.stdout);
    let document = scraper::Html::parse_document(&page);
    let selector = scraper::Selector::parse(&format!(
        "tr.service[data-name=\"{web}\"] td.state .maintenance"
    ))
    .unwrap();
    let cell: Vec<String> = document
        .select(&selector)
        .map(|cell| cell.text().collect())
        .collect();
    assert_eq!(cell.len(), 1, "{page}");
    assert!(cell[0].contains("Back at 5 <b>pm</b>"), "{cell:?}");

    // Kept in the state dir, owner-only, and across a restart: the first
    // answers after the restart are already 503.
    let file = sb.path(".dispenser/maintenance.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    daemon.stop();
    let daemon = sb.spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answered = None;
    while answered.is_none() && Instant::now() < deadline {
        if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", http)) {
            drop(stream);
            answered = Some(get(http, "web.test", "/"));
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let first = answered.expect("the proxy listens again");
    assert_eq!(
        first.status, 503,
        "first answer after the restart: {first:?}"
    );
    daemon.wait_for("dispenser is ready", 1);
    assert_eq!(get(http, "web.test", "/").status, 503);

    // Off: served again, and the file says so.
    let off = sb.cli(&["maintenance", "off", &web]);
    assert!(off.status.success(), "{}", text(&off.stderr));
    assert_eq!(get(http, "web.test", "/").body, "web\n");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved, serde_json::json!({}));
    let again = sb.cli(&["maintenance", "off", &web]);
    assert!(again.status.success());
    assert!(text(&again.stdout).contains("was not in maintenance"));
    daemon.stop();
}

/// One request with extra header lines on a connection of its own.
fn get_with(port: u16, host: &str, path: &str, extra: &str) -> crate::proxy::Reply {
    exchange(
        &mut connect(port),
        host,
        path,
        &format!("{extra}Connection: close\r\n"),
    )
}

#[test]
fn under_https_only_every_name_has_a_certificate_and_redirects_stay_https() {
    let mut sb = Sandbox::new();
    let (http, https) = (free_port(), free_port());
    sb.proxy_settings(&format!(
        "http_listen = \"127.0.0.1:{http}\"\nhttps_listen = \"127.0.0.1:{https}\"\n"
    ));
    upstream_service(
        &mut sb,
        "site",
        "site",
        "host = [\"site.test\", \"alias.test\"]\nredirect_from = [\"www.site.test\"]",
    );
    let daemon = sb.start();
    let resolve = |name: &str| format!("{name}:{https}:127.0.0.1");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answer = String::new();
    while Instant::now() < deadline {
        // Each name's handshake names it (SNI); the self-signed
        // certificate it gets must be that name's.
        answer = curl_out(&[
            "-k",
            "--resolve",
            &resolve("www.site.test"),
            "-w",
            "%{http_code} %{redirect_url}",
            "-o",
            "/dev/null",
            &format!("https://www.site.test:{https}/a?b=1"),
        ]);
        if answer.starts_with("308") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        answer,
        format!("308 https://site.test:{https}/a?b=1"),
        "the redirect stays on HTTPS, with the listener's port"
    );
    for name in ["site.test", "alias.test", "www.site.test"] {
        let script = format!(
            "echo | openssl s_client -connect 127.0.0.1:{https} -servername {name} 2>/dev/null | openssl x509 -noout -ext subjectAltName"
        );
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        assert!(
            text(&out.stdout).contains(&format!("DNS:{name}")),
            "{name}: {}",
            text(&out.stdout)
        );
    }
    let alias = curl_out(&[
        "-k",
        "--resolve",
        &resolve("alias.test"),
        &format!("https://alias.test:{https}/"),
    ]);
    assert_eq!(alias, "site\n");
    // Plain HTTP goes to HTTPS on the same name first, as for every route.
    let first = get(http, "www.site.test", "/a");
    assert_eq!(first.status, 301, "{first:?}");
    assert_eq!(
        first.header("location"),
        Some(format!("https://www.site.test:{https}/a").as_str())
    );
    // `status` lists the route's own URL, then its aliases'.
    let status = sb.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status["services"][0]["routes"],
        serde_json::json!([
            format!("https://site.test:{https}/"),
            format!("https://alias.test:{https}/")
        ])
    );
    daemon.stop();
}

/// curl's output, whatever its exit status.
fn curl_out(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    text(&out.stdout)
}
