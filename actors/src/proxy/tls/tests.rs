//! Unit tests of certificate loading and the `CertLoader`.

use std::path::PathBuf;

use super::*;
use crate::plan::{sample, Route, TlsSource};

/// Writes a certificate for `host` and its key as PEM; returns (cert, key).
fn write_pair(dir: &Path, name: &str, host: &str) -> (PathBuf, PathBuf) {
    let generated = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn routed(name: &str, host: &str, tls: TlsSource) -> crate::plan::Service {
    let mut service = sample::service(name, "web:1");
    service.route = Some(Route {
        host: host.into(),
        path: "/".into(),
        service_port: 80,
        health_path: None,
        tls,
        challenge: None,
        rules: Default::default(),
    });
    service
}

#[test]
fn a_matching_pem_pair_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_pair(dir.path(), "a", "a.test");
    let loaded = load_manual(&cert, &key).expect("loads");
    assert_eq!(loaded.cert.len(), 1);
}

#[test]
fn bad_files_are_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, _) = write_pair(dir.path(), "a", "a.test");
    let (_, key_b) = write_pair(dir.path(), "b", "b.test");
    let err = load_manual(&cert_a, &key_b).unwrap_err();
    assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let err = load_manual(&garbage, &key_b).unwrap_err();
    assert!(err.to_string().contains("garbage.pem"), "{err}");
    let err = load_manual(&cert_a, &garbage).unwrap_err();
    assert!(err.to_string().contains("garbage.pem"), "{err}");

    let missing = dir.path().join("missing.pem");
    let err = load_manual(&missing, &key_b).unwrap_err();
    assert!(err.to_string().starts_with("cannot read "), "{err}");
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[test]
fn cert_loader_installs_manual_and_self_signed_and_drops_stale_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_pair(dir.path(), "m", "manual.test");
    let certs = CertMap::default();
    let loader = CertLoader::new(certs.clone());
    let plan = sample::plan(
        "t",
        vec![
            routed(
                "m",
                "manual.test",
                TlsSource::Manual {
                    cert_file: cert.clone(),
                    key_file: key.clone(),
                },
            ),
            routed("a", "auto.test", TlsSource::Automatic),
        ],
    );
    loader.apply(&plan);
    assert_eq!(
        certs.hosts(),
        vec![
            ("auto.test".to_string(), CertSource::SelfSigned),
            ("manual.test".to_string(), CertSource::Manual),
        ]
    );
    // An ACME certificate is never replaced by a self-signed one.
    let acme = certs.get("auto.test").unwrap();
    certs.set(
        "auto.test",
        HostCert {
            key: acme.key.clone(),
            source: CertSource::Acme,
        },
    );
    // The manual route becomes automatic; the other host leaves the plan.
    let plan = sample::plan(
        "t",
        vec![
            routed("m", "manual.test", TlsSource::Automatic),
            routed("b", "new.test", TlsSource::Automatic),
        ],
    );
    loader.apply(&plan);
    assert_eq!(
        certs.hosts(),
        vec![
            ("auto.test".to_string(), CertSource::Acme),
            ("manual.test".to_string(), CertSource::SelfSigned),
            ("new.test".to_string(), CertSource::SelfSigned),
        ]
    );
}

#[test]
fn a_broken_manual_pair_keeps_the_host_served() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nxx\n").unwrap();
    let certs = CertMap::default();
    let loader = CertLoader::new(certs.clone());
    let plan = sample::plan(
        "t",
        vec![routed(
            "m",
            "m.test",
            TlsSource::Manual {
                cert_file: broken.clone(),
                key_file: broken,
            },
        )],
    );
    loader.apply(&plan);
    assert_eq!(
        certs.hosts(),
        vec![("m.test".to_string(), CertSource::SelfSigned)]
    );
}

#[test]
fn server_config_offers_h2_and_http11_before_acme_tls() {
    let config = server_config(CertMap::default(), Challenges::default()).expect("config");
    assert_eq!(
        config.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"acme-tls/1".to_vec()]
    );
}

/// Accepts any server certificate: the test looks at which one it got.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    // No check of the handshake's signature: webpki, which would parse the
    // certificate for it, refuses the validation certificate's critical
    // extension, and the CA checks it in its own way.
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One in-memory handshake with `server` for `sni`, offering `alpn`: the
/// protocol agreed and the leaf certificate served, or the failure.
fn handshake(
    server: &Arc<ServerConfig>,
    sni: &str,
    alpn: &[&[u8]],
) -> Result<(Option<Vec<u8>>, CertificateDer<'static>), rustls::Error> {
    let provider = Arc::new(ring_provider());
    let mut client_config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    client_config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
    let mut server = rustls::ServerConnection::new(server.clone()).unwrap();
    for _ in 0..10 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        server.read_tls(&mut wire.as_slice()).unwrap();
        server.process_new_packets()?;
        let mut back = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut back).unwrap();
        }
        client.read_tls(&mut back.as_slice()).unwrap();
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
    }
    let leaf = client.peer_certificates().expect("a certificate")[0].clone();
    Ok((client.alpn_protocol().map(<[u8]>::to_vec), leaf))
}

#[test]
fn only_an_acme_tls_handshake_for_a_pending_host_gets_its_validation_certificate() {
    let certs = CertMap::default();
    let normal = Arc::new(self_signed("alpn.test").unwrap());
    certs.set(
        "alpn.test",
        HostCert {
            key: normal.clone(),
            source: CertSource::SelfSigned,
        },
    );
    let challenges = Challenges::default();
    let validation = Arc::new(alpn_validation("alpn.test", &[7u8; 32]).unwrap());
    challenges.insert_alpn("alpn.test", validation.clone());
    let server = Arc::new(server_config(certs, challenges.clone()).unwrap());

    // The CA: acme-tls/1 only, the validation certificate.
    let (alpn, leaf) = handshake(&server, "alpn.test", &[b"acme-tls/1"]).expect("handshake");
    assert_eq!(alpn.as_deref(), Some(&b"acme-tls/1"[..]));
    assert_eq!(leaf, validation.cert[0]);
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let extension = parsed
        .extensions()
        .iter()
        .find(|ext| ext.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
        .expect("the acmeIdentifier extension");
    assert!(extension.critical);
    assert!(extension.value.ends_with(&[7u8; 32]), "the digest");

    // Everybody else, at the same time: the host's own certificate.
    let (alpn, leaf) = handshake(&server, "alpn.test", &[b"h2", b"http/1.1"]).expect("handshake");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(leaf, normal.cert[0]);

    // acme-tls/1 for a host with nothing pending, or after the challenge:
    // no certificate, no handshake.
    assert!(handshake(&server, "other.test", &[b"acme-tls/1"]).is_err());
    challenges.remove_alpn("alpn.test");
    assert!(handshake(&server, "alpn.test", &[b"acme-tls/1"]).is_err());
}

#[test]
fn self_signed_certificates_live_90_days_and_are_renewed_near_expiry() {
    let certs = CertMap::default();
    let loader = CertLoader::new(certs.clone());
    loader.apply(&sample::plan(
        "t",
        vec![routed("a", "auto.test", TlsSource::Automatic)],
    ));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expiry = |certs: &CertMap| certs.expiries()[0].2.expect("parsed");
    let first = expiry(&certs);
    let days = (first - now) as f64 / 86_400.0;
    assert!((89.9..=90.1).contains(&days), "valid for {days} days");

    // Not yet due: kept as it is.
    let before = certs.get("auto.test").unwrap().key;
    loader.renew_self_signed(now);
    assert!(Arc::ptr_eq(&before, &certs.get("auto.test").unwrap().key));
    // 61 days later less than 30 are left: a new one, valid 90 days from today.
    loader.renew_self_signed(now + 61 * 86_400);
    assert!(!Arc::ptr_eq(&before, &certs.get("auto.test").unwrap().key));
    assert_eq!(certs.hosts()[0].1, CertSource::SelfSigned);
    assert!(expiry(&certs) >= first, "renewed");
}

/// A manual certificate covers every route of its host: a second route
/// without files (here named after the first, so it is applied later) does
/// not replace it with a self-signed one.
#[test]
fn a_manual_certificate_covers_every_route_of_its_host() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_pair(dir.path(), "m", "shared.test");
    let manual = TlsSource::Manual {
        cert_file: cert.clone(),
        key_file: key.clone(),
    };
    let mut docs = routed("z-docs", "shared.test", TlsSource::Automatic);
    docs.route.as_mut().unwrap().path = "/d".into();
    let mut before = routed("0-api", "shared.test", TlsSource::Automatic);
    before.route.as_mut().unwrap().path = "/api".into();
    let certs = CertMap::default();
    let loader = CertLoader::new(certs.clone());
    let plan = sample::plan("t", vec![before, routed("m", "shared.test", manual), docs]);
    loader.apply(&plan);
    assert_eq!(
        certs.hosts(),
        vec![("shared.test".to_string(), CertSource::Manual)]
    );
    let served = certs.get("shared.test").unwrap().key;
    let expected = load_manual(&cert, &key).unwrap();
    assert_eq!(
        served.cert, expected.cert,
        "the manual certificate is served"
    );

    // Applied again (a reload), it stays.
    loader.apply(&plan);
    assert_eq!(certs.get("shared.test").unwrap().source, CertSource::Manual);
}

/// `cert_file` and `key_file` are read bounded: a 2 MiB file and a link to
/// `/dev/zero` are errors naming the path, at once, without reading them.
#[test]
fn huge_files_and_devices_are_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_pair(dir.path(), "a", "a.test");
    let huge = dir.path().join("huge.pem");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    let zero = dir.path().join("zero.pem");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let started = std::time::Instant::now();
    for (cert_file, key_file, bad, reason) in [
        (&huge, &key, &huge, "the file is larger than 1 MiB"),
        (&cert, &huge, &huge, "the file is larger than 1 MiB"),
        (&zero, &key, &zero, "not a regular file"),
        (&cert, &zero, &zero, "not a regular file"),
    ] {
        let err = load_manual(cert_file, key_file).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&bad.display().to_string()), "{text}");
        assert!(text.ends_with(reason), "{text}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // A link to a real pair is followed.
    let link = dir.path().join("link.crt");
    std::os::unix::fs::symlink(&cert, &link).unwrap();
    assert!(load_manual(&link, &key).is_ok());
}
