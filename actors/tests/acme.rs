//! The ACME manager against a real ACME server (Debian's pebble), in
//! process: certificates issued for two hosts and checked against pebble's
//! root; the account and certificates reused across a restart; a forced
//! renewal; a stopped CA (old certificate kept, one warning, back-off).

#[path = "acme/bind.rs"]
mod bind;
#[path = "acme/dns01.rs"]
mod dns01;
#[path = "acme/pebble.rs"]
mod pebble;

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use dispenser_actors::plan::{
    sample, AcmeSettings, Challenge, Plan, PlanApplied, ProxySettings, ProxyStrategy, Route,
    TlsSource,
};
use dispenser_actors::proxy::acme::{AcmeManager, AcmeStatus, ForceRenewal, GetStatus, Timing};
use dispenser_actors::proxy::certs::{CertMap, CertSource};
use dispenser_actors::proxy::challenge::Challenges;
use dispenser_actors::proxy::server::ProxyServer;
use pebble::{Pebble, Responder};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Longest wait for certificates to be issued.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(60);
const HOST_A: &str = "a.example.test";
const HOST_B: &str = "b.example.test";
/// The warning logged once per streak of failures.
const FAILURE_WARNING: &str = "certificate request failed; keeping the current certificate";

/// A plan routing one service per host, automatic TLS, ACME on pebble.
fn plan(state_dir: &Path, pebble: &Pebble, hosts: &[&str]) -> Plan {
    let services = hosts
        .iter()
        .enumerate()
        .map(|(n, host)| {
            let mut service = sample::service(&format!("web{n}"), "web:1");
            service.route = Some(Route {
                host: host.to_string(),
                path: "/".to_string(),
                service_port: 80,
                health_path: None,
                tls: TlsSource::Automatic,
                challenge: None,
                rules: Default::default(),
            });
            service
        })
        .collect();
    let mut plan = sample::plan("acme", services);
    plan.settings.state_dir = state_dir.to_path_buf();
    plan.acme = Some(AcmeSettings {
        email: "ops@example.test".to_string(),
        directory_url: pebble.directory_url.clone(),
        ca_bundle: Some(pebble.ca_bundle.clone()),
        retry_after_failure: dispenser_actors::proxy::acme::policy::DEFAULT_BACKOFF_BASE,
        challenge: Default::default(),
        dns: None,
    });
    plan
}

fn timing() -> Timing {
    Timing {
        order_timeout: Duration::from_secs(60),
        ..Timing::default()
    }
}

async fn status(manager: &Addr<AcmeManager>) -> AcmeStatus {
    manager.send(GetStatus).await.expect("manager answers")
}

/// Polls the manager until `done` holds, or fails after `timeout`.
async fn wait_for(
    manager: &Addr<AcmeManager>,
    timeout: Duration,
    what: &str,
    pebble: &Pebble,
    done: impl Fn(&AcmeStatus) -> bool,
) -> AcmeStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let current = status(manager).await;
        if done(&current) {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {current:#?}\npebble log:\n{}",
            pebble.log()
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

fn serial(status: &AcmeStatus, host: &str) -> Option<String> {
    status
        .hosts
        .iter()
        .find(|h| h.host == host)
        .and_then(|h| h.serial.clone())
}

/// Verifies the chain served for `host` against pebble's issuing root.
fn verify(certs: &CertMap, host: &str, root: &CertificateDer<'static>) {
    let served = certs.get(host).expect("a certificate is served");
    assert_eq!(served.source, CertSource::Acme, "{host}");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .expect("verifier");
    verifier
        .verify_server_cert(
            &served.key.cert[0],
            &served.key.cert[1..],
            &ServerName::try_from(host.to_string()).expect("name"),
            &[],
            UnixTime::now(),
        )
        .unwrap_or_else(|err| panic!("{host} does not verify against pebble's root: {err}"));
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn only_file(dir: &Path) -> std::path::PathBuf {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

#[actix_rt::test]
async fn issues_for_two_hosts_reuses_the_account_and_renews_on_demand() {
    let challenges = Challenges::default();
    let responder = Responder::start(challenges.clone()).await;
    let pebble = Pebble::start(responder.port);
    let state = tempfile::tempdir().expect("state dir");
    let plan = Arc::new(plan(state.path(), &pebble, &[HOST_A, HOST_B]));

    let certs = CertMap::default();
    let manager = AcmeManager::new(challenges.clone(), certs.clone(), timing()).start();
    manager.do_send(PlanApplied(plan.clone()));
    let first = wait_for(&manager, ISSUE_TIMEOUT, "two certificates", &pebble, |s| {
        s.hosts.iter().all(|h| h.serial.is_some())
    })
    .await;
    assert_eq!(first.accounts_created, 1);
    assert_eq!(first.issued, 2);
    let root = pebble.issuing_root().await;
    verify(&certs, HOST_A, &root);
    verify(&certs, HOST_B, &root);
    let served = responder.served.lock().expect("lock").clone();
    assert!(
        served.len() >= 2,
        "pebble validated through the map: {served:?}"
    );
    for path in &served {
        assert_eq!(challenges.answer(path), None, "{path} was not withdrawn");
    }

    // Files: keys and credentials owner-only, in owner-only folders.
    let account = only_file(&state.path().join("acme"));
    assert_eq!(mode(&account), 0o600);
    assert_eq!(mode(&state.path().join("acme")), 0o700);
    assert_eq!(mode(&state.path().join("certs")), 0o700);
    for host in [HOST_A, HOST_B] {
        assert_eq!(mode(&state.path().join(format!("certs/{host}.key"))), 0o600);
    }
    let account_before = std::fs::read(&account).expect("account file");

    // A restart: certificates come from disk; nothing is issued or created.
    drop(manager);
    let certs = CertMap::default();
    let manager = AcmeManager::new(challenges.clone(), certs.clone(), timing()).start();
    manager.do_send(PlanApplied(plan.clone()));
    let restarted = wait_for(
        &manager,
        ISSUE_TIMEOUT,
        "certificates loaded",
        &pebble,
        |s| s.hosts.len() == 2 && s.hosts.iter().all(|h| h.serial.is_some()),
    )
    .await;
    for host in [HOST_A, HOST_B] {
        assert_eq!(
            serial(&restarted, host),
            serial(&first, host),
            "{host} reloaded"
        );
        verify(&certs, host, &root);
    }
    // Give a wrongly scheduled issuance the chance to show itself.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let settled = status(&manager).await;
    assert_eq!(settled.issued, 0, "a restart re-issued: {settled:#?}");
    assert_eq!(settled.accounts_created, 0);

    // A forced renewal: a new certificate, same account.
    let renewed = manager
        .send(ForceRenewal {
            host: HOST_A.to_string(),
        })
        .await
        .expect("manager answers")
        .unwrap_or_else(|err| panic!("forced renewal failed: {err}\n{}", pebble.log()));
    assert_ne!(
        Some(renewed.clone()),
        serial(&first, HOST_A),
        "a new serial"
    );
    let after = status(&manager).await;
    assert_eq!(serial(&after, HOST_A), Some(renewed));
    assert_eq!(
        serial(&after, HOST_B),
        serial(&first, HOST_B),
        "B untouched"
    );
    assert_eq!(after.accounts_created, 0, "the stored account was reused");
    assert_eq!(after.issued, 1);
    assert_eq!(std::fs::read(&account).expect("account"), account_before);
    verify(&certs, HOST_A, &root);
    let served_serial = {
        let served = certs.get(HOST_A).expect("served");
        let (_, parsed) = x509_parser::parse_x509_certificate(&served.key.cert[0]).expect("x509");
        hex::encode(parsed.tbs_certificate.raw_serial())
    };
    assert_eq!(
        Some(served_serial),
        serial(&after, HOST_A),
        "the map serves the new one"
    );
}

/// The real proxy with only an HTTPS listener, on a free port of
/// 127.0.0.1 and one worker, serving `certs` and answering the TLS-ALPN-01
/// validations of `challenges`; and that port. It stops when dropped.
fn https_proxy(certs: &CertMap, challenges: &Challenges) -> (ProxyServer, u16) {
    let any = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
    let mut settings = ProxySettings::with_listeners(ProxyStrategy::HttpsOnly, any, any);
    settings.workers = Some(1);
    let server = ProxyServer::start(
        &settings,
        Default::default(),
        certs.clone(),
        challenges.clone(),
    )
    .expect("start the proxy");
    let https = server.https.expect("an HTTPS listener").port();
    (server, https)
}

/// TLS-ALPN-01: pebble validates on the real HTTPS listener, which answers
/// its `acme-tls/1` handshake with the pending validation certificate; the
/// certificate is issued and the validation certificate withdrawn.
#[actix_rt::test]
async fn tls_alpn_01_is_answered_on_the_https_listener() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let challenges = Challenges::default();
    let certs = CertMap::default();
    let (_server, https) = https_proxy(&certs, &challenges);
    // Nothing answers HTTP-01 for pebble, nor DNS-01: only the HTTPS
    // listener can prove the name.
    let pebble = Pebble::start_with_tls(pebble::free_port(), https);
    let state = tempfile::tempdir().expect("state dir");
    let mut plan = plan(state.path(), &pebble, &[HOST_A]);
    plan.acme.as_mut().expect("acme").challenge = Challenge::TlsAlpn01;

    let manager = AcmeManager::new(challenges.clone(), certs.clone(), timing()).start();
    manager.do_send(PlanApplied(Arc::new(plan)));
    let issued = wait_for(&manager, ISSUE_TIMEOUT, "a certificate", &pebble, |s| {
        s.hosts.iter().all(|h| h.serial.is_some())
    })
    .await;
    assert_eq!(issued.issued, 1, "{issued:#?}");
    verify(&certs, HOST_A, &pebble.issuing_root().await);
    assert!(
        challenges.alpn_cert(HOST_A).is_none(),
        "the validation certificate was withdrawn"
    );
}

/// A host switched over from ixpantia/dispenser keeps the certificate that
/// it stored (`certs/<host>.crt` and `.key`, no record) while it is valid:
/// nothing is ordered. An expired one is replaced.
#[actix_rt::test]
async fn upstreams_stored_certificates_are_kept_while_valid() {
    let challenges = Challenges::default();
    let responder = Responder::start(challenges.clone()).await;
    let pebble = Pebble::start(responder.port);
    let state = tempfile::tempdir().expect("state dir");
    let plan = Arc::new(plan(state.path(), &pebble, &[HOST_A, HOST_B]));
    let manager = AcmeManager::new(challenges.clone(), CertMap::default(), timing()).start();
    manager.do_send(PlanApplied(plan.clone()));
    let first = wait_for(&manager, ISSUE_TIMEOUT, "two certificates", &pebble, |s| {
        s.hosts.iter().all(|h| h.serial.is_some())
    })
    .await;
    drop(manager);
    // What ixpantia/dispenser leaves: the chain and the key, no record; and
    // for B an expired certificate.
    for host in [HOST_A, HOST_B] {
        std::fs::remove_file(state.path().join(format!("certs/{host}.json"))).expect("record");
    }
    let mut params = rcgen::CertificateParams::new(vec![HOST_B.to_string()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().expect("key");
    let expired = params.self_signed(&key).expect("self-signed");
    std::fs::write(
        state.path().join(format!("certs/{HOST_B}.crt")),
        expired.pem(),
    )
    .expect("crt");
    std::fs::write(
        state.path().join(format!("certs/{HOST_B}.key")),
        key.serialize_pem(),
    )
    .expect("key");

    let certs = CertMap::default();
    let manager = AcmeManager::new(challenges.clone(), certs.clone(), timing()).start();
    manager.do_send(PlanApplied(plan.clone()));
    let after = wait_for(&manager, ISSUE_TIMEOUT, "B replaced", &pebble, |s| {
        s.issued == 1
    })
    .await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let settled = status(&manager).await;
    assert_eq!(
        settled.issued, 1,
        "only the expired one is ordered: {settled:#?}"
    );
    assert_eq!(serial(&after, HOST_A), serial(&first, HOST_A), "A kept");
    let root = pebble.issuing_root().await;
    verify(&certs, HOST_A, &root);
    verify(&certs, HOST_B, &root);
}

/// Captured log output of the test's thread.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

#[actix_rt::test]
async fn a_stopped_ca_keeps_the_old_certificate_and_backs_off() {
    let logs = Capture::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let challenges = Challenges::default();
    let responder = Responder::start(challenges.clone()).await;
    let mut pebble = Pebble::start(responder.port);
    let state = tempfile::tempdir().expect("state dir");
    let plan = Arc::new(plan(state.path(), &pebble, &[HOST_A]));
    let base = Duration::from_millis(200);
    let cap = Duration::from_millis(1600);
    let timing = Timing {
        backoff_base: base,
        backoff_cap: cap,
        order_timeout: Duration::from_secs(10),
        ..Timing::default()
    };
    let certs = CertMap::default();
    let manager = AcmeManager::new(challenges, certs.clone(), timing).start();
    manager.do_send(PlanApplied(plan));
    let issued = wait_for(&manager, ISSUE_TIMEOUT, "a certificate", &pebble, |s| {
        s.hosts.iter().all(|h| h.serial.is_some())
    })
    .await;
    let old_serial = serial(&issued, HOST_A);
    let old_key = certs.get(HOST_A).expect("served").key;

    pebble.stop_ca();
    let forced = manager
        .send(ForceRenewal {
            host: HOST_A.to_string(),
        })
        .await
        .expect("manager answers");
    assert!(forced.is_err(), "renewal without a CA cannot succeed");
    // The manager retries by itself: 0.2 + 0.4 + 0.8 + 1.6 s (+/- 10%).
    let failing = wait_for(
        &manager,
        Duration::from_secs(15),
        "five failures",
        &pebble,
        |s| s.hosts[0].failures >= 5,
    )
    .await;
    let host = &failing.hosts[0];
    assert_eq!(host.serial, old_serial, "the old certificate stays");
    assert!(Arc::ptr_eq(
        &certs.get(HOST_A).expect("served").key,
        &old_key
    ));
    assert!(host.last_error.is_some());
    // Gaps between attempts follow the back-off: doubling, then capped.
    let attempts = &host.recent_attempts[host.recent_attempts.len() - 5..];
    let gaps: Vec<Duration> = attempts
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).unwrap_or_default())
        .collect();
    for (n, gap) in gaps.iter().enumerate() {
        let expected = (base * (1 << n)).min(cap);
        assert!(
            *gap >= expected.mul_f64(0.85)
                && *gap <= expected.mul_f64(1.1) + Duration::from_millis(600),
            "gap {n} is {gap:?}, expected about {expected:?}: {gaps:?}"
        );
    }
    let text = logs.text();
    assert_eq!(
        text.matches(FAILURE_WARNING).count(),
        1,
        "one warning per streak:\n{text}"
    );
    assert!(text.contains("certificate request failed again"), "{text}");
}
