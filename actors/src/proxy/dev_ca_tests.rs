//! Tests of the development CA: certificates verify against it with the
//! rustls webpki verifier, and its key is owner-only.

use std::os::unix::fs::PermissionsExt;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::RootCertStore;

use super::*;
use crate::plan::{sample, Route, TlsSource};

fn verify(ca: &DevCa, key: &CertifiedKey, name: &str) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    verifier
        .verify_server_cert(
            &key.cert[0],
            &key.cert[1..],
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

#[test]
fn host_certificates_verify_against_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(dir.path()).unwrap();
    let key = ca.issue("app.localhost").unwrap();
    verify(&ca, &key, "app.localhost").expect("verifies");
    assert!(verify(&ca, &key, "other.localhost").is_err(), "wrong name");

    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = DevCa::load_or_create(stranger_dir.path()).unwrap();
    assert!(
        verify(&stranger, &key, "app.localhost").is_err(),
        "wrong ca"
    );
}

#[test]
fn the_ca_is_created_once_with_an_owner_only_key() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".dispenser");
    let first = DevCa::load_or_create(&state).unwrap();
    let second = DevCa::load_or_create(&state).unwrap();
    assert_eq!(first.cert_pem(), second.cert_pem());
    // A certificate from the reloaded CA verifies against the first.
    let key = second.issue("api.localhost").unwrap();
    verify(&first, &key, "api.localhost").expect("verifies");
    let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(state.join(DEV_CA_KEY_FILE)), 0o600);
    assert_eq!(mode(state.clone()), 0o700);
    assert_eq!(DevCa::cert_path(&state), state.join(DEV_CA_CERT_FILE));
}

#[test]
fn fill_covers_route_hosts_but_not_manual_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(dir.path()).unwrap();
    let route = |host: &str, tls: TlsSource| Route {
        host: host.to_string(),
        path: "/".to_string(),
        service_port: 80,
        health_path: None,
        tls,
        challenge: None,
        rules: Default::default(),
    };
    let mut web = sample::service("web", "web:1");
    web.route = Some(route("web.localhost", TlsSource::Automatic));
    let mut api = sample::service("api", "api:1");
    api.route = Some(route(
        "api.localhost",
        TlsSource::Manual {
            cert_file: "/c.pem".into(),
            key_file: "/k.pem".into(),
        },
    ));
    // Another route of the manual host, without files: covered by them.
    let mut docs = sample::service("docs", "docs:1");
    docs.route = Some(route("api.localhost", TlsSource::Automatic));
    let plan = sample::plan("dev", vec![web, api, docs]);
    let certs = CertMap::default();
    let filled = ca.fill(&plan, &certs).unwrap();
    assert_eq!(filled, vec!["web.localhost".to_string()]);
    assert_eq!(
        certs.hosts(),
        vec![("web.localhost".to_string(), CertSource::SelfSigned)]
    );
    let served = certs.get("web.localhost").unwrap();
    verify(&ca, &served.key, "web.localhost").expect("verifies");
}
