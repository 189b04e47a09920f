//! A real ACME server for the tests: Debian's `pebble` with
//! `pebble-challtestsrv` answering 127.0.0.1 for every name, on free ports,
//! behind a TLS certificate made here; and the HTTP-01 responder pebble
//! validates against, answering from the same `Challenges` map the manager
//! fills. Everything listens on 127.0.0.1 and stops in `Drop`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dispenser_actors::proxy::challenge::Challenges;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest wait for pebble to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Times pebble is started on new ports before a test gives up.
const START_ATTEMPTS: usize = 3;

/// A running pebble and challtestsrv, and the files they use.
pub struct Pebble {
    pub dir: tempfile::TempDir,
    /// The CA bundle that trusts pebble's own TLS certificate.
    pub ca_bundle: PathBuf,
    pub directory_url: String,
    pub management_port: u16,
    pebble: Option<Child>,
    challtestsrv: Option<Child>,
}

/// The HTTP-01 responder: serves `/.well-known/acme-challenge/<token>`
/// from a `Challenges` map, as the proxy's port-80 listener does.
pub struct Responder {
    pub port: u16,
    /// Paths answered with a key authorization.
    pub served: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Pebble {
    /// Starts challtestsrv and pebble; pebble validates HTTP-01 on `http_port`.
    pub fn start(http_port: u16) -> Pebble {
        Pebble::start_with_tls(http_port, free_port())
    }

    /// The same, and pebble validates TLS-ALPN-01 on `tls_port`.
    pub fn start_with_tls(http_port: u16, tls_port: u16) -> Pebble {
        Pebble::start_with(http_port, tls_port, None)
    }

    /// Pebble asking `dns_server` (`127.0.0.1:port`, a real named) for
    /// DNS-01 records and every name's address.
    pub fn start_with_dns(dns_server: &str) -> Pebble {
        Pebble::start_with(free_port(), free_port(), Some(dns_server))
    }

    /// Starts pebble on free ports; again on others when a port was taken
    /// between choosing it and pebble binding it (pebble then exits).
    fn start_with(http_port: u16, tls_port: u16, dns_server: Option<&str>) -> Pebble {
        for _ in 0..START_ATTEMPTS {
            if let Some(pebble) = Pebble::try_start(http_port, tls_port, dns_server) {
                return pebble;
            }
        }
        panic!("pebble did not start in {START_ATTEMPTS} attempts");
    }

    fn try_start(http_port: u16, tls_port: u16, dns_server: Option<&str>) -> Option<Pebble> {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_bundle = write_tls_files(dir.path());
        let dns_port = free_port();
        let dns_server = dns_server
            .map(str::to_string)
            .unwrap_or_else(|| format!("127.0.0.1:{dns_port}"));
        let listen_port = free_port();
        let management_port = free_port();
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
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write pebble.json");
        let log = std::fs::File::create(dir.path().join("pebble.log")).expect("pebble log");
        let mut pebble = Pebble {
            dir,
            ca_bundle,
            directory_url: format!("https://127.0.0.1:{listen_port}/dir"),
            management_port,
            pebble: None,
            challtestsrv: Some(challtestsrv),
        };
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &dns_server])
            .env("PEBBLE_VA_NOSLEEP", "1")
            // Orders prove their names afresh: pebble reuses half of the
            // valid authorizations by default (at 0, still now and then).
            .env("PEBBLE_AUTHZREUSE", "0")
            // No random nonce rejections: the tests count requests' effects.
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("pebble runs (apt-get install pebble)");
        pebble.pebble = Some(child);
        for port in [listen_port, management_port] {
            if !pebble.wait_listening(port) {
                eprintln!("pebble exited before listening:\n{}", pebble.log());
                return None;
            }
        }
        Some(pebble)
    }

    /// Waits until pebble listens on `port`; false when it exited first.
    fn wait_listening(&mut self, port: u16) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = self
                .pebble
                .as_mut()
                .is_none_or(|child| !matches!(child.try_wait(), Ok(None)));
            if exited {
                return false;
            }
            assert!(Instant::now() < deadline, "nothing listens on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// Stops pebble (challtestsrv keeps running), as if the CA went away.
    pub fn stop_ca(&mut self) {
        if let Some(mut child) = self.pebble.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Pebble's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// The root that signs the certificates this pebble issues.
    pub async fn issuing_root(&self) -> CertificateDer<'static> {
        let pem = https_get(
            &self.ca_bundle,
            &format!("https://127.0.0.1:{}/roots/0", self.management_port),
        )
        .await;
        CertificateDer::from_pem_slice(&pem).expect("pebble root PEM")
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

impl Responder {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start(challenges: Challenges) -> Responder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the responder");
        let port = listener.local_addr().expect("address").port();
        let served = Arc::new(Mutex::new(Vec::new()));
        let log = served.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, challenges.clone(), log.clone()));
            }
        });
        Responder { port, served, task }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers one HTTP/1.1 request from the challenge map, then closes.
async fn answer(
    mut stream: tokio::net::TcpStream,
    challenges: Challenges,
    served: Arc<Mutex<Vec<String>>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let response = match challenges.answer(path) {
        Some(body) => {
            served.lock().expect("lock").push(path.to_string());
            format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
            )
        }
        None => {
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
        }
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A CA and a certificate for 127.0.0.1 signed by it: `cert.pem`,
/// `key.pem` and the bundle `ca.pem`, whose path is returned.
fn write_tls_files(dir: &Path) -> PathBuf {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dispenser test ca");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params");
    let cert = params.signed_by(&key, &issuer).expect("cert");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
    let bundle = dir.join("ca.pem");
    std::fs::write(&bundle, ca_cert.pem()).expect("write ca");
    bundle
}

/// GET over HTTPS trusting only `bundle`; the body.
async fn https_get(bundle: &Path, url: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(bundle).expect("bundle") {
        roots.add(cert.expect("cert")).expect("root");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let response = client
        .get(url.parse().expect("url"))
        .await
        .expect("https request");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec()
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}
