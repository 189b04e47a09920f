//! Tests of the manager that need no CA: stored certificates are loaded and
//! installed, never over a manual one, and taken back when a host leaves.

use std::sync::Arc;

use super::*;
use crate::plan::{sample, Route};

/// A directory nothing listens on: any network attempt fails at once.
const NO_CA: &str = "https://127.0.0.1:9/dir";

fn plan(state_dir: &std::path::Path, hosts: &[&str], acme: bool) -> Arc<Plan> {
    let services = hosts
        .iter()
        .enumerate()
        .map(|(n, host)| {
            let mut service = sample::service(&format!("s{n}"), "web:1");
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
    let mut plan = sample::plan("unit", services);
    plan.settings.state_dir = state_dir.to_path_buf();
    plan.acme = acme.then(|| AcmeSettings {
        email: String::new(),
        directory_url: NO_CA.to_string(),
        ca_bundle: None,
        retry_after_failure: policy::DEFAULT_BACKOFF_BASE,
        challenge: Default::default(),
        dns: None,
    });
    Arc::new(plan)
}

/// Stores a long-lived self-signed certificate for `host` as if issued by `NO_CA`.
fn store_cert(state_dir: &std::path::Path, host: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    Store::new(state_dir)
        .save_cert(host, &cert.pem(), &key.serialize_pem(), NO_CA)
        .unwrap()
        .serial
}

fn manual(host: &str) -> HostCert {
    HostCert {
        key: self_signed(host).unwrap(),
        source: CertSource::Manual,
    }
}

#[actix_rt::test]
async fn stored_certificates_are_served_without_issuing() {
    let dir = tempfile::tempdir().unwrap();
    let serial = store_cert(dir.path(), "a.test");
    let certs = CertMap::default();
    certs.set("m.test", manual("m.test"));
    store_cert(dir.path(), "m.test");
    let manager = AcmeManager::new(Challenges::default(), certs.clone(), Timing::default()).start();
    manager
        .send(PlanApplied(plan(dir.path(), &["a.test", "m.test"], true)))
        .await
        .unwrap();
    let status = manager.send(GetStatus).await.unwrap();
    assert_eq!(status.issued, 0);
    let a = status.hosts.iter().find(|h| h.host == "a.test").unwrap();
    assert_eq!(a.serial.as_deref(), Some(serial.as_str()));
    assert!(
        a.due > SystemTime::now() + Duration::from_secs(86_400),
        "not due"
    );
    assert_eq!(
        certs.hosts(),
        vec![
            ("a.test".to_string(), CertSource::Acme),
            ("m.test".to_string(), CertSource::Manual),
        ]
    );
}

#[actix_rt::test]
async fn a_host_that_leaves_gives_back_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    store_cert(dir.path(), "a.test");
    store_cert(dir.path(), "b.test");
    let certs = CertMap::default();
    let manager = AcmeManager::new(Challenges::default(), certs.clone(), Timing::default()).start();
    let both = plan(dir.path(), &["a.test", "b.test"], true);
    manager.send(PlanApplied(both)).await.unwrap();
    // b.test leaves the plan; then ACME is switched off while a.test stays routed.
    manager
        .send(PlanApplied(plan(dir.path(), &["a.test"], true)))
        .await
        .unwrap();
    assert_eq!(
        certs.hosts(),
        vec![("a.test".to_string(), CertSource::Acme)]
    );
    manager
        .send(PlanApplied(plan(dir.path(), &["a.test"], false)))
        .await
        .unwrap();
    assert_eq!(
        certs.hosts(),
        vec![("a.test".to_string(), CertSource::SelfSigned)]
    );
    assert!(manager.send(GetStatus).await.unwrap().hosts.is_empty());
    let forced = manager
        .send(ForceRenewal {
            host: "a.test".to_string(),
        })
        .await
        .unwrap();
    assert!(
        matches!(forced, Err(ManagerError::NotConfigured)),
        "{forced:?}"
    );
}

#[actix_rt::test]
async fn an_unreachable_ca_backs_off_and_keeps_nothing_half_done() {
    let dir = tempfile::tempdir().unwrap();
    let certs = CertMap::default();
    let challenges = Challenges::default();
    let manager = AcmeManager::new(challenges, certs.clone(), Timing::default()).start();
    manager
        .send(PlanApplied(plan(dir.path(), &["new.test"], true)))
        .await
        .unwrap();
    let unknown = manager
        .send(ForceRenewal {
            host: "other.test".to_string(),
        })
        .await
        .unwrap();
    assert!(
        matches!(unknown, Err(ManagerError::UnknownHost(_))),
        "{unknown:?}"
    );
    let forced = manager
        .send(ForceRenewal {
            host: "new.test".to_string(),
        })
        .await
        .unwrap();
    assert!(matches!(forced, Err(ManagerError::Acme(_))), "{forced:?}");
    let status = manager.send(GetStatus).await.unwrap();
    let host = &status.hosts[0];
    assert!(host.failures >= 1);
    assert!(host.serial.is_none());
    // The default back-off is minutes, not a tight loop.
    assert!(
        host.due > SystemTime::now() + Duration::from_secs(60),
        "{host:?}"
    );
    assert!(certs.hosts().is_empty());
    assert!(!dir.path().join("acme").exists(), "no account without a CA");
}

/// A host where one route names certificate files is not ordered from ACME
/// for its other routes: the manual certificate covers them.
#[test]
fn a_host_with_a_manual_certificate_is_not_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = Arc::unwrap_or_clone(plan(dir.path(), &["shared.test", "auto.test"], true));
    let mut manual = sample::service("m", "web:1");
    manual.route = Some(Route {
        host: "shared.test".to_string(),
        path: "/d".to_string(),
        service_port: 80,
        health_path: None,
        tls: TlsSource::Manual {
            cert_file: "/c.pem".into(),
            key_file: "/k.pem".into(),
        },
        challenge: None,
        rules: Default::default(),
    });
    plan.services.insert("m".to_string(), manual);
    assert_eq!(
        AcmeManager::automatic_hosts(&plan),
        BTreeMap::from([("auto.test".to_string(), Challenge::Http01)])
    );
}
