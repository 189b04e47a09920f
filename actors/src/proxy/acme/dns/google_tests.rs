//! Tests of the Google Cloud DNS provider against an in-process stand-in of
//! the Cloud DNS API that checks each request's shape and keeps the zone's
//! record sets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{json, Value};

use super::super::http::standin::{self, Request, Response};
use super::*;

const TOKEN: &str = "ya29.good-token-0123456789";
const PREFIX: &str = "/dns/v1/projects/my-project/managedZones/zone-1/";
const OWNER: &str = "_acme-challenge.example.com.";

/// Hands out one fixed token. Its `Debug` shows the token, so a provider
/// that printed its token source would fail the `Debug` test.
#[derive(Debug)]
struct FixedToken(String);

#[async_trait]
impl BearerTokens for FixedToken {
    async fn token(&self) -> Result<Sensitive, String> {
        Ok(Sensitive::new(self.0.clone()))
    }
}

/// The stand-in's zone.
#[derive(Default)]
struct Zone {
    /// Record sets by name (all TXT).
    sets: HashMap<String, Value>,
    /// Changes applied.
    applied: usize,
    /// Changes posted, applied or not.
    posted: usize,
    /// A value another client adds just before our next change lands.
    concurrent: Option<String>,
}

fn google_error(code: u16, message: &str) -> Response {
    Response::new(
        code,
        json!({"error": {"code": code, "message": message, "errors": [{"message": message}]}}),
    )
}

/// Whether `set` is a TXT record set with quoted rrdatas and a ttl.
fn well_formed(set: &Value) -> bool {
    set["name"].as_str().is_some_and(|name| name.ends_with('.'))
        && set["type"] == "TXT"
        && set["ttl"].as_u64().is_some()
        && set["rrdatas"].as_array().is_some_and(|datas| {
            !datas.is_empty()
                && datas.iter().all(|data| {
                    data.as_str()
                        .is_some_and(|d| d.len() >= 2 && d.starts_with('"') && d.ends_with('"'))
                })
        })
}

fn cloud_dns(zone: &Mutex<Zone>, request: Request) -> Response {
    if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return google_error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        );
    }
    if !request.query.is_empty() {
        return google_error(400, "Unexpected query parameters");
    }
    let Some(rest) = request.path.strip_prefix(PREFIX) else {
        return google_error(
            404,
            "The 'parameters.managedZone' resource named 'unknown' does not exist.",
        );
    };
    let mut zone = zone.lock().unwrap();
    let segments: Vec<&str> = rest.split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["rrsets", name, "TXT"]) => match zone.sets.get(*name) {
            Some(set) => Response::new(200, set.clone()),
            None => google_error(
                404,
                &format!("The 'parameters.name' resource named '{name}' does not exist."),
            ),
        },
        ("POST", ["changes"]) => {
            if request.header("content-type") != Some("application/json") {
                return google_error(400, "Invalid content type");
            }
            let Some(change) = request.json() else {
                return google_error(400, "Invalid JSON payload received.");
            };
            zone.posted += 1;
            if let Some(value) = zone.concurrent.take() {
                let set = zone.sets.entry(OWNER.to_string()).or_insert_with(
                    || json!({"kind": "dns#resourceRecordSet", "name": OWNER, "type": "TXT", "ttl": 300, "rrdatas": []}),
                );
                set["rrdatas"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!(format!("\"{value}\"")));
            }
            let list = |key: &str| change[key].as_array().cloned().unwrap_or_default();
            let (additions, deletions) = (list("additions"), list("deletions"));
            if additions.is_empty() && deletions.is_empty() {
                return google_error(
                    400,
                    "The 'entity.change' parameter is required but was missing.",
                );
            }
            if !additions.iter().chain(&deletions).all(well_formed) {
                return google_error(
                    400,
                    "Invalid value for 'entity.change.additions[0].rrdata[0]'",
                );
            }
            for deletion in &deletions {
                let name = deletion["name"].as_str().unwrap_or_default();
                let Some(existing) = zone.sets.get(name) else {
                    return google_error(404, &format!("The 'entity.change.deletions[0]' resource named '{name} (TXT)' does not exist."));
                };
                let same = existing["ttl"] == deletion["ttl"]
                    && existing["rrdatas"] == deletion["rrdatas"];
                if !same {
                    return google_error(
                        412,
                        "Precondition not met for 'entity.change.deletions[0]'",
                    );
                }
            }
            for addition in &additions {
                let name = addition["name"].as_str().unwrap_or_default();
                let deleted = deletions.iter().any(|d| d["name"] == name);
                if zone.sets.contains_key(name) && !deleted {
                    return google_error(
                        409,
                        &format!("The resource 'entity.change.additions[0]' named '{name} (TXT)' already exists"),
                    );
                }
            }
            for deletion in &deletions {
                zone.sets
                    .remove(deletion["name"].as_str().unwrap_or_default());
            }
            for addition in additions {
                let name = addition["name"].as_str().unwrap_or_default().to_string();
                zone.sets.insert(name, addition);
            }
            zone.applied += 1;
            Response::new(
                200,
                json!({"kind": "dns#change", "id": zone.applied.to_string(), "status": "pending"}),
            )
        }
        _ => google_error(404, "Not Found"),
    }
}

/// A stand-in with `zone`'s state; returns its endpoint.
async fn standin(zone: Arc<Mutex<Zone>>) -> String {
    let addr = standin::serve(move |request| cloud_dns(&zone, request)).await;
    format!("http://{addr}/dns/v1/")
}

fn provider(endpoint: &str, managed_zone: &str, token: &str) -> GoogleCloudDns {
    GoogleCloudDns::new(
        "my-project".to_string(),
        managed_zone.to_string(),
        "example.com.".to_string(),
        Arc::new(FixedToken(token.to_string())),
        Some(endpoint.to_string()),
    )
    .expect("a loopback endpoint is accepted")
}

fn record(value: &str) -> TxtRecord {
    TxtRecord {
        fqdn: OWNER.to_string(),
        value: value.to_string(),
        ttl: 120,
    }
}

fn rrdatas(zone: &Mutex<Zone>) -> Option<Vec<String>> {
    let zone = zone.lock().unwrap();
    let set = zone.sets.get(OWNER)?;
    Some(
        set["rrdatas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|data| data.as_str().unwrap().to_string())
            .collect(),
    )
}

fn seed_other(zone: &Mutex<Zone>) {
    zone.lock().unwrap().sets.insert(
        OWNER.to_string(),
        json!({"kind": "dns#resourceRecordSet", "name": OWNER, "type": "TXT", "ttl": 300, "rrdatas": ["\"other\""]}),
    );
}

#[tokio::test]
async fn google_dns_publish_adds_beside_an_existing_value() {
    let zone = Arc::new(Mutex::new(Zone::default()));
    seed_other(&zone);
    let dns = provider(&standin(zone.clone()).await, "zone-1", TOKEN);

    let published = dns.publish(&record("ours")).await.unwrap();

    assert_eq!(
        published,
        Published {
            record: record("ours"),
            id: None
        }
    );
    assert_eq!(rrdatas(&zone).unwrap(), ["\"other\"", "\"ours\""]);
    let zone = zone.lock().unwrap();
    assert_eq!(zone.sets[OWNER]["ttl"], 120);
    assert_eq!(zone.applied, 1);
}

#[tokio::test]
async fn google_dns_publish_twice_is_idempotent() {
    let zone = Arc::new(Mutex::new(Zone::default()));
    let dns = provider(&standin(zone.clone()).await, "zone-1", TOKEN);

    dns.publish(&record("ours")).await.unwrap();
    dns.publish(&record("ours")).await.unwrap();

    assert_eq!(rrdatas(&zone).unwrap(), ["\"ours\""]);
    assert_eq!(
        zone.lock().unwrap().posted,
        1,
        "the second publish changes nothing"
    );
}

#[tokio::test]
async fn google_dns_withdraw_removes_only_ours() {
    let zone = Arc::new(Mutex::new(Zone::default()));
    seed_other(&zone);
    let dns = provider(&standin(zone.clone()).await, "zone-1", TOKEN);

    let published = dns.publish(&record("ours")).await.unwrap();
    dns.withdraw(&published).await.unwrap();
    assert_eq!(rrdatas(&zone).unwrap(), ["\"other\""]);

    dns.withdraw(&published).await.unwrap();
    assert_eq!(rrdatas(&zone).unwrap(), ["\"other\""]);
    assert_eq!(
        zone.lock().unwrap().posted,
        2,
        "the second withdraw changes nothing"
    );
}

#[tokio::test]
async fn google_dns_withdraw_of_the_last_value_removes_the_set() {
    let zone = Arc::new(Mutex::new(Zone::default()));
    let dns = provider(&standin(zone.clone()).await, "zone-1", TOKEN);

    let published = dns.publish(&record("ours")).await.unwrap();
    dns.withdraw(&published).await.unwrap();
    assert_eq!(rrdatas(&zone), None);
    dns.withdraw(&published).await.unwrap();
}

#[tokio::test]
async fn google_dns_retries_a_concurrent_change_once() {
    let zone = Arc::new(Mutex::new(Zone::default()));
    zone.lock().unwrap().concurrent = Some("theirs".to_string());
    let dns = provider(&standin(zone.clone()).await, "zone-1", TOKEN);

    dns.publish(&record("ours")).await.unwrap();

    assert_eq!(rrdatas(&zone).unwrap(), ["\"theirs\"", "\"ours\""]);
    let zone = zone.lock().unwrap();
    assert_eq!((zone.posted, zone.applied), (2, 1));
}

#[tokio::test]
async fn google_dns_wrong_token_is_unauthorized() {
    let zone = Arc::new(Mutex::new(Zone::default()));
    let secret = "ya29.wrong-token-9876543210";
    let dns = provider(&standin(zone.clone()).await, "zone-1", secret);

    let err = dns.publish(&record("ours")).await.unwrap_err();

    assert_eq!(err.kind, DnsErrorKind::Unauthorized);
    let text = err.to_string();
    assert!(text.contains("google"), "{text}");
    assert!(text.contains("example.com."), "{text}");
    assert!(
        text.contains("invalid authentication credentials"),
        "{text}"
    );
    assert!(!text.contains(secret), "{text}");
    assert!(!format!("{err:?}").contains(secret));
    assert_eq!(rrdatas(&zone), None);
}

#[tokio::test]
async fn google_dns_unknown_managed_zone_is_refused() {
    let zone = Arc::new(Mutex::new(Zone::default()));
    let dns = provider(&standin(zone.clone()).await, "no-such-zone", TOKEN);

    let err = dns.publish(&record("ours")).await.unwrap_err();

    assert_eq!(err.kind, DnsErrorKind::Refused, "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn google_dns_name_outside_the_zone_is_refused() {
    let zone = Arc::new(Mutex::new(Zone::default()));
    let dns = provider(&standin(zone.clone()).await, "zone-1", TOKEN);
    let mut outside = record("ours");
    outside.fqdn = "_acme-challenge.example.org.".to_string();

    let err = dns.publish(&outside).await.unwrap_err();

    assert_eq!(err.kind, DnsErrorKind::Refused);
    assert_eq!(zone.lock().unwrap().posted, 0);
}

#[tokio::test]
async fn google_dns_unreachable_endpoint_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let dns = provider(&format!("http://{addr}/dns/v1/"), "zone-1", TOKEN);

    let err = dns.publish(&record("ours")).await.unwrap_err();

    assert_eq!(err.kind, DnsErrorKind::Unavailable, "{err}");
    assert!(!err.to_string().contains(TOKEN));
}

#[test]
fn google_dns_endpoint_must_be_https_or_loopback() {
    let new = |endpoint: Option<&str>| {
        GoogleCloudDns::new(
            "my-project".to_string(),
            "zone-1".to_string(),
            "example.com.".to_string(),
            Arc::new(FixedToken(TOKEN.to_string())),
            endpoint.map(str::to_string),
        )
    };
    let err = new(Some("http://dns.example.net/dns/v1/")).unwrap_err();
    assert_eq!(err.kind, DnsErrorKind::Refused);
    assert!(err.to_string().contains("https"), "{err}");
    new(Some("https://dns.example.net/dns/v1/")).unwrap();
    new(Some("http://127.0.0.1:1/dns/v1/")).unwrap();
    let default = new(None).unwrap();
    assert!(format!("{default:?}").contains(DEFAULT_ENDPOINT));
}

#[test]
fn google_dns_debug_hides_the_token() {
    let dns = provider("http://127.0.0.1:1/dns/v1/", "zone-1", TOKEN);
    let debug = format!("{dns:?}");
    assert!(
        debug.contains("google") && debug.contains("example.com."),
        "{debug}"
    );
    assert!(!debug.contains(TOKEN), "{debug}");
    assert_eq!(dns.name(), "google");
    assert_eq!(dns.zone(), "example.com.");
}
