//! ACME through the daemon: Debian's `pebble` (with `pebble-challtestsrv`
//! answering 127.0.0.1 for every name) validates HTTP-01 against the
//! daemon's own proxy HTTP listener. Two hosts get certificates, checked by
//! an HTTPS request with SNI against pebble's root; the files land under
//! `.dispenser/certs/` with owner-only keys; a restart does not re-issue;
//! with pebble stopped the proxy keeps serving. And `dispenser dev` serves
//! HTTPS that verifies against its development CA. Everything on 127.0.0.1.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bind::{Bind, KEY_NAME, ZONE};
use crate::google_standin::{CloudDnsZone, StandIn};
use crate::proxy::{free_port, upstream_service};
use crate::secrets::google_sandbox;
use crate::support::{text, Sandbox};

/// Longest wait for pebble to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for both certificates.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(60);
const HOSTS: [&str; 2] = ["one.test", "two.test"];

/// pebble and challtestsrv on free ports of 127.0.0.1, stopped in `Drop`.
pub(crate) struct Pebble {
    dir: tempfile::TempDir,
    /// Trusts pebble's own HTTPS certificate (made here with openssl).
    pub(crate) ca_bundle: PathBuf,
    pub(crate) directory_url: String,
    management_port: u16,
    listen_port: u16,
    /// The DNS server pebble asks (`127.0.0.1:port`).
    dns_server: String,
    pebble: Option<Child>,
    challtestsrv: Option<Child>,
}

impl Pebble {
    /// Starts challtestsrv and pebble; pebble validates HTTP-01 on `http_port`.
    pub(crate) fn start(http_port: u16) -> Pebble {
        Pebble::start_with_dns(http_port, None)
    }

    /// The same, and pebble asks `dns_server` (a real named) for DNS-01
    /// records instead of challtestsrv.
    pub(crate) fn start_with_dns(http_port: u16, dns_server: Option<&str>) -> Pebble {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_bundle = write_tls_files(dir.path());
        let (dns_port, listen_port, management_port) = (free_port(), free_port(), free_port());
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv runs (apt-get install pebble)");
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen_port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write pebble.json");
        let mut pebble = Pebble {
            ca_bundle,
            directory_url: format!("https://127.0.0.1:{listen_port}/dir"),
            management_port,
            listen_port,
            dns_server: dns_server
                .map(str::to_string)
                .unwrap_or_else(|| format!("127.0.0.1:{dns_port}")),
            pebble: None,
            challtestsrv: Some(challtestsrv),
            dir,
        };
        pebble.start_ca();
        pebble
    }

    /// Starts pebble (again) on the same ports; its issuing root is new.
    pub(crate) fn start_ca(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("pebble.log"))
            .expect("pebble log");
        let child = Command::new("pebble")
            .arg("-config")
            .arg(self.dir.path().join("pebble.json"))
            .args(["-dnsserver", &self.dns_server])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("pebble runs (apt-get install pebble)");
        self.pebble = Some(child);
        wait_listening(self.listen_port);
        wait_listening(self.management_port);
    }

    /// Stops pebble (challtestsrv keeps running), as if the CA went away.
    pub(crate) fn stop_ca(&mut self) {
        if let Some(mut child) = self.pebble.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// Writes the root that signs the certificates this pebble issues.
    pub(crate) fn write_issuing_root(&self) -> PathBuf {
        let root = self.dir.path().join("issuing-root.pem");
        let url = format!("https://127.0.0.1:{}/roots/0", self.management_port);
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
            .arg(&self.ca_bundle)
            .arg("-o")
            .arg(&root)
            .arg(&url)
            .output()
            .expect("curl");
        assert!(out.status.success(), "{url}: {}", text(&out.stderr));
        root
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop_ca();
        if let Some(mut child) = self.challtestsrv.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CA (`ca.pem`) and pebble's HTTPS certificate for 127.0.0.1 signed by
/// it (`cert.pem`, `key.pem`), made with openssl; returns the CA's path.
fn write_tls_files(dir: &Path) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            text(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec[..],
        &[
            "-days",
            "2",
            "-subj",
            "/CN=dispenser test ca",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec[..],
        &[
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "cert.csr",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext.cnf");
    run(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    dir.join("ca.pem")
}

/// GETs `/` of `host` over HTTPS through the proxy, verified against
/// `root`; `None` while the certificate does not verify.
pub(crate) fn https_get(port: u16, host: &str, root: &Path) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", "--cacert"])
        .arg(root)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/"))
        .output()
        .expect("curl");
    out.status.success().then(|| text(&out.stdout))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn certificates_come_from_pebble_through_the_proxy_and_survive_a_restart() {
    let mut sb = Sandbox::new();
    let (http, https) = (free_port(), free_port());
    let mut pebble = Pebble::start(http);
    sb.proxy_settings(&format!(
        "strategy = \"https-only\"\nhttp_listen = \"127.0.0.1:{http}\"\n\
         https_listen = \"127.0.0.1:{https}\"\n\n\
         [certbot]\nemail = \"ops@example.com\"\ndirectory_url = \"{}\"\nca_bundle = \"{}\"\n",
        pebble.directory_url,
        pebble.ca_bundle.display()
    ));
    upstream_service(&mut sb, "one", "one", &format!("host = \"{}\"", HOSTS[0]));
    upstream_service(&mut sb, "two", "two", &format!("host = \"{}\"", HOSTS[1]));
    let daemon = sb.start();
    let root = pebble.write_issuing_root();

    // Both hosts are served certificates that verify against pebble's root.
    let deadline = Instant::now() + ISSUE_TIMEOUT;
    for (host, body) in HOSTS.iter().zip(["one\n", "two\n"]) {
        loop {
            if let Some(answer) = https_get(https, host, &root) {
                assert_eq!(answer, body);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{host}: no certificate from pebble\n{}\n{}",
                daemon.log(),
                pebble.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    // Stored under .dispenser/certs/ with owner-only keys.
    let certs = sb.path(".dispenser/certs");
    let files: Vec<PathBuf> = std::fs::read_dir(&certs)
        .unwrap_or_else(|err| panic!("{}: {err}\n{}", certs.display(), daemon.log()))
        .map(|entry| entry.unwrap().path())
        .collect();
    for host in HOSTS {
        let mine: Vec<&PathBuf> = files
            .iter()
            .filter(|path| path.file_name().unwrap().to_string_lossy().contains(host))
            .collect();
        assert!(mine.len() >= 2, "{host}: {files:?}");
        for path in mine {
            let content = std::fs::read_to_string(path).unwrap_or_default();
            if content.contains("PRIVATE KEY") {
                assert_eq!(mode(path), 0o600, "{}", path.display());
            }
        }
    }
    let keys = files
        .iter()
        .filter(|path| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .contains("PRIVATE KEY")
        })
        .count();
    assert_eq!(keys, HOSTS.len(), "{files:?}");
    let issued = daemon.log().matches("certificate issued").count();
    assert_eq!(issued, HOSTS.len(), "{}", daemon.log());
    daemon.stop();

    // A restart serves the stored certificates without a new order.
    let daemon = sb.start();
    for host in HOSTS {
        let deadline = Instant::now() + Duration::from_secs(20);
        while https_get(https, host, &root).is_none() {
            assert!(Instant::now() < deadline, "{host}\n{}", daemon.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let log = daemon.log();
    assert_eq!(
        log.matches("loaded the stored certificate").count(),
        2,
        "{log}"
    );
    assert!(!log.contains("certificate issued"), "{log}");

    // pebble gone: the proxy keeps serving with the certificates it has.
    pebble.stop_ca();
    for _ in 0..5 {
        for (host, body) in HOSTS.iter().zip(["one\n", "two\n"]) {
            assert_eq!(https_get(https, host, &root).as_deref(), Some(body));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    daemon.stop();
}

#[test]
fn dispenser_dev_serves_https_verified_by_its_development_ca() {
    let mut sb = Sandbox::new();
    // The ports of `[proxy]` are production's; dev listens on its own.
    sb.proxy_settings("http_listen = \"127.0.0.1:80\"\nhttps_listen = \"127.0.0.1:443\"\n");
    upstream_service(&mut sb, "web", "dev-v1", "host = \"app.dev.test\"");
    let (http, https) = (free_port(), free_port());
    let _cleanup = crate::operator::InstanceCleanup(format!("{}-dev", sb.id));
    let log = sb.path("dev.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dispenser"))
        .arg("-c")
        .arg(sb.config())
        .args(["dev", "--http-port", &http.to_string()])
        .args(["--https-port", &https.to_string()])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn dispenser dev");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let ca = sb.path(".dispenser/dev/dev-ca.crt");
    let deadline = Instant::now() + ISSUE_TIMEOUT;
    let body = loop {
        if ca.exists() {
            if let Some(body) = https_get(https, "app.dev.test", &ca) {
                break body;
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no verified HTTPS answer from dev:\n{}", read_log());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(body.trim(), "dev-v1");
    assert!(
        read_log().contains(&format!("https://app.dev.test:{https}/")),
        "dev prints the URL it serves:\n{}",
        read_log()
    );
    // The certificate verifies against the dev CA only: not against the
    // system's roots, and not for another name.
    let untrusted = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--resolve"])
        .arg(format!("app.dev.test:{https}:127.0.0.1"))
        .arg(format!("https://app.dev.test:{https}/"))
        .output()
        .expect("curl");
    assert!(!untrusted.status.success(), "verified without the dev CA");
    assert_eq!(https_get(https, "other.dev.test", &ca), None);
    assert_eq!(mode(&sb.path(".dispenser/dev/dev-ca.key")) & 0o777, 0o600);

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = crate::support::wait_exit(
        &mut child,
        crate::support::EXIT_TIMEOUT,
        "dispenser dev after SIGTERM",
        read_log,
    );
    assert!(status.success(), "{}", read_log());
}

/// DNS-01 through the daemon: a wildcard route gets one certificate over
/// RFC 2136 updates to a real named, which serves two names under it; the
/// TSIG secret, read from a secret variable, is in no log line, at trace
/// level too, nor in `--test`'s output; the key is stored owner-only.
#[test]
fn a_wildcard_route_gets_its_certificate_over_dns_01_without_the_secret_in_any_log() {
    let bind = Bind::start();
    let mut sb = Sandbox::new();
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start_with_dns(http, Some(&bind.server));
    sb.write(
        "dispenser.vars",
        "tsig_secret = { source = \"env\", name = \"DISPENSER_TEST_TSIG\" }\n",
    );
    sb.set_env("DISPENSER_TEST_TSIG", &bind.secret);
    sb.set_env("RUST_LOG", "trace");
    sb.proxy_settings(&format!(
        "strategy = \"https-only\"\nhttp_listen = \"127.0.0.1:{http}\"\n\
         https_listen = \"127.0.0.1:{https}\"\n\n\
         [certbot]\nemail = \"ops@example.com\"\ndirectory_url = \"{}\"\nca_bundle = \"{}\"\n\
         challenge = \"dns-01\"\n\n\
         [certbot.dns]\nprovider = \"rfc2136\"\nzone = \"{ZONE}\"\nserver = \"{}\"\n\
         key_name = \"{KEY_NAME}\"\nsecret = \"${{ tsig_secret }}\"\n",
        pebble.directory_url,
        pebble.ca_bundle.display(),
        bind.server,
    ));
    upstream_service(&mut sb, "wild", "wild", "host = \"*.example.test\"");
    let checked = sb.cli(&["--test"]);
    let checked_text = format!("{}{}", text(&checked.stdout), text(&checked.stderr));
    assert!(checked.status.success(), "{checked_text}");
    assert!(!checked_text.contains(&bind.secret), "{checked_text}");

    let daemon = sb.start();
    let root = pebble.write_issuing_root();
    let deadline = Instant::now() + ISSUE_TIMEOUT;
    for host in ["a.example.test", "b.example.test"] {
        loop {
            if let Some(answer) = https_get(https, host, &root) {
                assert_eq!(answer, "wild\n");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{host}: no wildcard certificate\n{}\n{}\n{}",
                daemon.log(),
                pebble.log(),
                bind.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    // One certificate for both names; stored under the wildcard's name.
    let log = daemon.log();
    assert_eq!(log.matches("certificate issued").count(), 1, "{log}");
    let key = sb.path(".dispenser/certs/_wildcard.example.test.key");
    assert_eq!(mode(&key), 0o600, "{}", key.display());
    assert!(
        bind.txt("_acme-challenge.example.test").is_empty(),
        "the challenge record was withdrawn"
    );
    let log = daemon.stop();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "trace logging was on:\n{log}"
    );
    assert!(
        !log.contains(&bind.secret),
        "the tsig secret was logged:\n{log}"
    );
}

/// DNS-01 through Google Cloud DNS, with the daemon's real client: the
/// Application Default Credentials of a service-account file get a token
/// from the stand-in's token endpoint, and the stand-in's Cloud DNS (which
/// checks the token, the paths and the change bodies) writes the records
/// into a real named that pebble asks. The record is withdrawn afterwards.
#[test]
fn google_cloud_dns_proves_a_wildcard_with_the_secrets_credentials() {
    let bind = Bind::start();
    let standin = StandIn::start();
    standin.serve_zone(CloudDnsZone {
        project: "dtest-project".to_string(),
        managed_zone: "example-test".to_string(),
        dns_name: ZONE.to_string(),
        server: bind.server.clone(),
        key_name: KEY_NAME.to_string(),
        secret: bind.secret.clone(),
    });
    let mut sb = google_sandbox(&standin);
    sb.set_env("DISPENSER_CLOUDDNS_ENDPOINT", &standin.clouddns_url());
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start_with_dns(http, Some(&bind.server));
    sb.proxy_settings(&format!(
        "strategy = \"https-only\"\nhttp_listen = \"127.0.0.1:{http}\"\n\
         https_listen = \"127.0.0.1:{https}\"\n\n\
         [certbot]\nemail = \"ops@example.com\"\ndirectory_url = \"{}\"\nca_bundle = \"{}\"\n\n\
         [certbot.dns]\nprovider = \"google\"\nzone = \"{ZONE}\"\nproject = \"dtest-project\"\n\
         managed_zone = \"example-test\"\npropagation_servers = [\"{}\"]\n",
        pebble.directory_url,
        pebble.ca_bundle.display(),
        bind.server,
    ));
    upstream_service(
        &mut sb,
        "wild",
        "wild",
        "host = \"*.example.test\"\nchallenge = \"dns-01\"",
    );
    let daemon = sb.start();
    let root = pebble.write_issuing_root();
    let deadline = Instant::now() + ISSUE_TIMEOUT;
    while https_get(https, "a.example.test", &root).is_none() {
        assert!(
            Instant::now() < deadline,
            "no wildcard certificate through cloud dns\n{}\n{:?}\n{}",
            daemon.log(),
            standin.requests(),
            pebble.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        https_get(https, "b.example.test", &root).as_deref(),
        Some("wild\n")
    );
    // Each call carried a token the stand-in verified (a self-signed JWT of
    // the service account), or it would have been refused with 401.
    let calls = standin.requests();
    assert!(
        calls.iter().any(|call| call.starts_with("GET /dns/v1/projects/dtest-project/managedZones/example-test/rrsets/_acme-challenge.example.test./TXT")),
        "{calls:#?}"
    );
    // One change added the record, one took it away again.
    let changes = standin.dns_changes();
    assert_eq!(changes.len(), 2, "{changes:#?}");
    assert_eq!(
        changes[0]["additions"][0]["name"], "_acme-challenge.example.test.",
        "{changes:#?}"
    );
    assert!(changes[1]["deletions"].is_array(), "{changes:#?}");
    assert!(bind.txt("_acme-challenge.example.test").is_empty());
    daemon.stop();
}
