//! DNS-01 against real parts: Debian's `named` taking TSIG-signed RFC 2136
//! updates, and pebble validating the TXT records it serves. A wildcard
//! certificate is issued, served by the real HTTPS listener for two names
//! under it, renewed on demand; a wrong TSIG key fails with the provider
//! and zone named, is retried with back-off, and the certificate in use
//! keeps serving.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use dispenser_actors::plan::{
    Challenge, DnsProviderSettings, DnsSettings, Plan, PlanApplied, Sensitive, TsigAlgorithm,
};
use dispenser_actors::proxy::acme::dns::{
    DnsErrorKind, DnsProvider, Publisher, Rfc2136, TxtRecord,
};
use dispenser_actors::proxy::acme::{AcmeManager, ForceRenewal, Timing};
use dispenser_actors::proxy::certs::CertMap;
use dispenser_actors::proxy::challenge::Challenges;
use rustls::pki_types::{CertificateDer, ServerName};

use super::bind::{Bind, KEY_NAME, ZONE};
use super::pebble::Pebble;
use super::{https_proxy, plan, serial, wait_for, ISSUE_TIMEOUT};

const WILDCARD: &str = "*.example.test";
const CHALLENGE_NAME: &str = "_acme-challenge.example.test";

fn dns_settings(bind: &Bind, secret: &str) -> DnsSettings {
    DnsSettings {
        zone: ZONE.to_string(),
        provider: DnsProviderSettings::Rfc2136 {
            server: bind.server.clone(),
            key_name: KEY_NAME.to_string(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: Sensitive::new(secret),
        },
        propagation_servers: Vec::new(),
        propagation_timeout: Duration::from_secs(20),
        ttl: 60,
    }
}

fn provider(bind: &Bind, secret: &str) -> Rfc2136 {
    Rfc2136::new(
        &bind.server,
        ZONE,
        KEY_NAME,
        TsigAlgorithm::HmacSha256,
        &Sensitive::new(secret),
    )
    .expect("a provider")
}

fn record(value: &str) -> TxtRecord {
    TxtRecord {
        fqdn: format!("{CHALLENGE_NAME}."),
        value: value.to_string(),
        ttl: 60,
    }
}

/// A wrong secret of the right length, base64.
fn wrong_secret(bind: &Bind) -> String {
    let mut secret = bind.secret.clone().into_bytes();
    secret[0] = if secret[0] == b'A' { b'B' } else { b'A' };
    String::from_utf8(secret).expect("ascii")
}

fn dns01_plan(state: &std::path::Path, pebble: &Pebble, dns: DnsSettings) -> Plan {
    let mut plan = plan(state, pebble, &[WILDCARD]);
    let acme = plan.acme.as_mut().expect("acme");
    acme.challenge = Challenge::Dns01;
    acme.dns = Some(dns);
    plan
}

/// The chain the HTTPS listener on `port` presents for `name`, verified
/// against `root` for that name by the handshake itself.
fn served_chain(port: u16, name: &str, root: &CertificateDer<'static>) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_string()).expect("name");
    let mut tls = rustls::ClientConnection::new(Arc::new(config), server_name).expect("client");
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp)
            .unwrap_or_else(|err| panic!("the handshake for {name} failed: {err}"));
    }
    tls.peer_certificates().expect("a chain")[0].to_vec()
}

#[actix_rt::test]
async fn rfc2136_adds_beside_other_records_and_removes_only_its_own() {
    let bind = Bind::start();
    let ours = provider(&bind, &bind.secret);
    let first = ours.publish(&record("first")).await.expect("publish");
    let second = ours.publish(&record("second")).await.expect("publish");
    let mut values = bind.txt(CHALLENGE_NAME);
    values.sort();
    assert_eq!(values, vec!["first", "second"], "{}", bind.log());

    let settings = dns_settings(&bind, &bind.secret);
    let publisher = Publisher::new(
        &settings,
        &dispenser_actors::proxy::acme::dns::rfc2136_connector(),
    )
    .expect("a publisher");
    publisher
        .wait_until_visible(&[first.clone(), second.clone()])
        .await
        .expect("both records show on the server");

    ours.withdraw(&first).await.expect("withdraw");
    assert_eq!(bind.txt(CHALLENGE_NAME), vec!["second"]);
    ours.withdraw(&first)
        .await
        .expect("withdrawing twice succeeds");
    ours.withdraw(&second).await.expect("withdraw");
    assert!(bind.txt(CHALLENGE_NAME).is_empty());

    // A record that never shows ends the wait with the server named.
    let missing = dispenser_actors::proxy::acme::dns::Published {
        record: record("never-published"),
        id: None,
    };
    let short = DnsSettings {
        propagation_timeout: Duration::from_millis(500),
        ..settings
    };
    let err = Publisher::new(
        &short,
        &dispenser_actors::proxy::acme::dns::rfc2136_connector(),
    )
    .expect("a publisher")
    .wait_until_visible(&[missing])
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&bind.server), "{err}");
}

/// With no `propagation_servers`, a REST provider's records are checked
/// on the zone's NS servers: found from the NS records and their
/// addresses, here asked of the test's named (the zone's NS is
/// `ns.example.test`, 127.0.0.1).
#[actix_rt::test]
async fn the_zones_authoritative_servers_come_from_its_ns_records() {
    let bind = Bind::start();
    let servers = dispenser_actors::proxy::acme::dns::propagation::authoritative_servers_via(
        &bind.server,
        ZONE,
    )
    .await
    .unwrap_or_else(|err| panic!("{err}\n{}", bind.log()));
    assert_eq!(servers, vec!["127.0.0.1:53"]);
    let err = dispenser_actors::proxy::acme::dns::propagation::authoritative_servers_via(
        &bind.server,
        "other.test.",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("other.test."), "{err}");
}

#[actix_rt::test]
async fn a_wrong_tsig_key_is_refused_naming_the_provider_and_zone() {
    let bind = Bind::start();
    let secret = wrong_secret(&bind);
    let err = provider(&bind, &secret)
        .publish(&record("value"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, DnsErrorKind::Unauthorized, "{err}");
    let text = err.to_string();
    assert!(text.contains("rfc2136") && text.contains(ZONE), "{text}");
    assert!(
        !text.contains(&secret) && !text.contains(&bind.secret),
        "{text}"
    );
    assert!(bind.txt(CHALLENGE_NAME).is_empty(), "nothing was added");
}

#[actix_rt::test]
async fn a_wildcard_certificate_is_issued_served_renewed_and_kept_when_the_key_is_wrong() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bind = Bind::start();
    let pebble = Pebble::start_with_dns(&bind.server);
    let challenges = Challenges::default();
    let certs = CertMap::default();
    let (_server, https) = https_proxy(&certs, &challenges);
    let state = tempfile::tempdir().expect("state dir");
    let timing = Timing {
        order_timeout: Duration::from_secs(60),
        backoff_base: Duration::from_millis(200),
        backoff_cap: Duration::from_millis(1600),
        ..Timing::default()
    };
    let manager = AcmeManager::new(challenges, certs.clone(), timing).start();
    let good = dns01_plan(state.path(), &pebble, dns_settings(&bind, &bind.secret));
    manager.do_send(PlanApplied(Arc::new(good)));
    let issued = wait_for(
        &manager,
        ISSUE_TIMEOUT,
        "a wildcard certificate",
        &pebble,
        |s| s.hosts.iter().all(|h| h.serial.is_some()),
    )
    .await;
    let first = serial(&issued, WILDCARD).expect("a serial");
    let root = pebble.issuing_root().await;
    let leaf_a = served_chain(https, "a.example.test", &root);
    let leaf_b = served_chain(https, "b.example.test", &root);
    assert_eq!(leaf_a, leaf_b, "one wildcard certificate serves both names");
    assert!(
        bind.txt(CHALLENGE_NAME).is_empty(),
        "the challenge record was withdrawn: {:?}",
        bind.txt(CHALLENGE_NAME)
    );

    let renewed = manager
        .send(ForceRenewal {
            host: WILDCARD.to_string(),
        })
        .await
        .expect("manager answers")
        .unwrap_or_else(|err| panic!("renewal failed: {err}\n{}", pebble.log()));
    assert_ne!(renewed, first, "a new certificate");
    let leaf_renewed = served_chain(https, "c.example.test", &root);
    assert_ne!(leaf_renewed, leaf_a, "the renewed certificate is served");
    assert!(bind.txt(CHALLENGE_NAME).is_empty(), "withdrawn again");

    // The key is wrong from now on: renewals fail, the certificate stays.
    // A new CA, as pebble reuses a valid authorization now and then (also
    // with PEBBLE_AUTHZREUSE=0), and then no record would be needed.
    drop(pebble);
    let pebble = Pebble::start_with_dns(&bind.server);
    let secret = wrong_secret(&bind);
    let bad = dns01_plan(state.path(), &pebble, dns_settings(&bind, &secret));
    manager.do_send(PlanApplied(Arc::new(bad)));
    let forced = manager
        .send(ForceRenewal {
            host: WILDCARD.to_string(),
        })
        .await
        .expect("manager answers");
    let err = match forced {
        Ok(serial) => panic!(
            "a wrong key renewed ({serial}):\n{}\n{}",
            pebble.log(),
            bind.log()
        ),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("rfc2136") && err.contains(ZONE), "{err}");
    assert!(!err.contains(&secret), "{err}");
    let failing = wait_for(&manager, Duration::from_secs(20), "retries", &pebble, |s| {
        s.hosts[0].failures >= 3
    })
    .await;
    assert_eq!(serial(&failing, WILDCARD), Some(renewed));
    let last = failing.hosts[0].last_error.clone().unwrap_or_default();
    assert!(last.contains("rfc2136") && last.contains(ZONE), "{last}");
    assert_eq!(
        served_chain(https, "a.example.test", &root),
        leaf_renewed,
        "the certificate in use keeps serving"
    );
}
