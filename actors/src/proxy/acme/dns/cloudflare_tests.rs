//! Tests of the Cloudflare provider against an in-process stand-in of the
//! Cloudflare API that checks each request's shape and keeps the zone's
//! records.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::super::http::standin::{self, Request, Response};
use super::*;

const TOKEN: &str = "cf-good-token-0123456789";
const ZONE_ID: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const NAME: &str = "_acme-challenge.example.com";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    id: String,
    name: String,
    content: String,
    ttl: u64,
}

/// The stand-in's account: one zone and its TXT records.
#[derive(Default)]
struct Account {
    records: Vec<Record>,
    next_id: usize,
    zone_lookups: usize,
}

fn cloudflare_error(status: u16, code: u32, message: &str) -> Response {
    Response::new(
        status,
        json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null}),
    )
}

fn ok(result: Value) -> Response {
    Response::new(
        200,
        json!({"success": true, "errors": [], "messages": [], "result": result}),
    )
}

fn listed(record: &Record) -> Value {
    json!({"id": record.id, "type": "TXT", "name": record.name, "content": record.content, "ttl": record.ttl})
}

fn cloudflare(account: &Mutex<Account>, request: Request) -> Response {
    if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return cloudflare_error(403, 10000, "Authentication error");
    }
    let Some(rest) = request.path.strip_prefix("/client/v4/") else {
        return cloudflare_error(404, 7000, "No route for that URI");
    };
    let mut account = account.lock().unwrap();
    let segments: Vec<&str> = rest.split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["zones"]) => {
            account.zone_lookups += 1;
            let zones = match request.query("name") {
                Some("example.com") => {
                    vec![json!({"id": ZONE_ID, "name": "example.com", "status": "active"})]
                }
                Some(_) => Vec::new(),
                None => return cloudflare_error(400, 1001, "name is required by this stand-in"),
            };
            ok(Value::Array(zones))
        }
        (_, ["zones", zone, ..]) if *zone != ZONE_ID => cloudflare_error(
            404,
            7003,
            "Could not route to /zones/x/dns_records, perhaps your object identifier is invalid?",
        ),
        ("POST", ["zones", _, "dns_records"]) => {
            if request.header("content-type") != Some("application/json") {
                return cloudflare_error(400, 6007, "Malformed JSON in request body");
            }
            let Some(body) = request.json() else {
                return cloudflare_error(400, 6007, "Malformed JSON in request body");
            };
            if body["type"] != "TXT" {
                return cloudflare_error(400, 9000, "DNS name is invalid");
            }
            let (Some(name), Some(content), Some(ttl)) = (
                body["name"].as_str(),
                body["content"].as_str(),
                body["ttl"].as_u64(),
            ) else {
                return cloudflare_error(400, 9000, "name, content and ttl are required");
            };
            if name.ends_with('.') || !name.ends_with(".example.com") {
                return cloudflare_error(400, 9000, "DNS name is invalid");
            }
            if ttl != 1 && !(60..=86_400).contains(&ttl) {
                return cloudflare_error(
                    400,
                    9021,
                    "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic",
                );
            }
            let exists = account
                .records
                .iter()
                .any(|record| record.name == name && record.content == content);
            if exists {
                return cloudflare_error(400, 81058, "An identical record already exists.");
            }
            account.next_id += 1;
            let record = Record {
                id: format!("rec-{}", account.next_id),
                name: name.to_string(),
                content: content.to_string(),
                ttl,
            };
            let answer = listed(&record);
            account.records.push(record);
            ok(answer)
        }
        ("GET", ["zones", _, "dns_records"]) => {
            let matches = |record: &&Record| {
                request.query("type").is_none_or(|kind| kind == "TXT")
                    && request.query("name").is_none_or(|name| name == record.name)
                    && request
                        .query("content")
                        .is_none_or(|content| content == record.content)
            };
            ok(account.records.iter().filter(matches).map(listed).collect())
        }
        ("DELETE", ["zones", _, "dns_records", id]) => {
            let before = account.records.len();
            account.records.retain(|record| record.id != *id);
            if account.records.len() == before {
                return cloudflare_error(404, 81044, "Record does not exist.");
            }
            ok(json!({"id": id}))
        }
        _ => cloudflare_error(404, 7000, "No route for that URI"),
    }
}

/// A stand-in with `account`'s state; returns its endpoint.
async fn standin(account: Arc<Mutex<Account>>) -> String {
    let addr = standin::serve(move |request| cloudflare(&account, request)).await;
    format!("http://{addr}/client/v4/")
}

fn provider(endpoint: &str, zone: &str, token: &str) -> Cloudflare {
    Cloudflare::new(
        Sensitive::new(token),
        zone.to_string(),
        Some(endpoint.to_string()),
    )
    .expect("a loopback endpoint is accepted")
}

fn record(value: &str, ttl: u32) -> TxtRecord {
    TxtRecord {
        fqdn: format!("{NAME}."),
        value: value.to_string(),
        ttl,
    }
}

fn seed_other(account: &Mutex<Account>) {
    account.lock().unwrap().records.push(Record {
        id: "rec-other".to_string(),
        name: NAME.to_string(),
        content: "other".to_string(),
        ttl: 300,
    });
}

fn contents(account: &Mutex<Account>) -> Vec<String> {
    let account = account.lock().unwrap();
    account.records.iter().map(|r| r.content.clone()).collect()
}

#[tokio::test]
async fn cloudflare_dns_publish_adds_beside_an_existing_value() {
    let account = Arc::new(Mutex::new(Account::default()));
    seed_other(&account);
    let dns = provider(&standin(account.clone()).await, "example.com.", TOKEN);

    let published = dns.publish(&record("ours", 120)).await.unwrap();

    assert_eq!(published.record, record("ours", 120));
    assert_eq!(published.id.as_deref(), Some("rec-1"));
    let account = account.lock().unwrap();
    assert_eq!(
        account.records,
        [
            Record {
                id: "rec-other".to_string(),
                name: NAME.to_string(),
                content: "other".to_string(),
                ttl: 300
            },
            Record {
                id: "rec-1".to_string(),
                name: NAME.to_string(),
                content: "ours".to_string(),
                ttl: 120
            },
        ]
    );
}

#[tokio::test]
async fn cloudflare_dns_publish_twice_finds_the_existing_record() {
    let account = Arc::new(Mutex::new(Account::default()));
    let dns = provider(&standin(account.clone()).await, "example.com.", TOKEN);

    let first = dns.publish(&record("ours", 120)).await.unwrap();
    let second = dns.publish(&record("ours", 120)).await.unwrap();

    assert_eq!(first, second);
    assert_eq!(contents(&account), ["ours"]);
}

#[tokio::test]
async fn cloudflare_dns_withdraw_removes_only_ours() {
    let account = Arc::new(Mutex::new(Account::default()));
    seed_other(&account);
    let dns = provider(&standin(account.clone()).await, "example.com.", TOKEN);

    let published = dns.publish(&record("ours", 120)).await.unwrap();
    dns.withdraw(&published).await.unwrap();
    assert_eq!(contents(&account), ["other"]);

    dns.withdraw(&published).await.unwrap();
    assert_eq!(contents(&account), ["other"]);
}

#[tokio::test]
async fn cloudflare_dns_withdraw_without_an_id_looks_the_record_up() {
    let account = Arc::new(Mutex::new(Account::default()));
    seed_other(&account);
    let dns = provider(&standin(account.clone()).await, "example.com.", TOKEN);

    let mut published = dns.publish(&record("ours", 120)).await.unwrap();
    published.id = None;
    dns.withdraw(&published).await.unwrap();
    assert_eq!(contents(&account), ["other"]);

    dns.withdraw(&published).await.unwrap();
    assert_eq!(contents(&account), ["other"]);
}

#[tokio::test]
async fn cloudflare_dns_ttl_below_the_minimum_is_raised() {
    let account = Arc::new(Mutex::new(Account::default()));
    let dns = provider(&standin(account.clone()).await, "example.com", TOKEN);

    dns.publish(&record("one", 1)).await.unwrap();
    dns.publish(&record("thirty", 30)).await.unwrap();

    let account = account.lock().unwrap();
    let ttls: Vec<u64> = account.records.iter().map(|r| r.ttl).collect();
    assert_eq!(ttls, [60, 60]);
}

#[tokio::test]
async fn cloudflare_dns_zone_id_is_looked_up_once() {
    let account = Arc::new(Mutex::new(Account::default()));
    let dns = provider(&standin(account.clone()).await, "example.com.", TOKEN);

    let published = dns.publish(&record("ours", 120)).await.unwrap();
    dns.withdraw(&published).await.unwrap();

    assert_eq!(account.lock().unwrap().zone_lookups, 1);
}

#[tokio::test]
async fn cloudflare_dns_zone_not_visible_is_refused() {
    let account = Arc::new(Mutex::new(Account::default()));
    let dns = provider(&standin(account.clone()).await, "example.org.", TOKEN);
    let mut elsewhere = record("ours", 120);
    elsewhere.fqdn = "_acme-challenge.example.org.".to_string();

    let err = dns.publish(&elsewhere).await.unwrap_err();

    assert_eq!(err.kind, DnsErrorKind::Refused);
    assert!(
        err.to_string()
            .contains("no zone example.org visible to this token"),
        "{err}"
    );
}

#[tokio::test]
async fn cloudflare_dns_wrong_token_is_unauthorized() {
    let account = Arc::new(Mutex::new(Account::default()));
    let secret = "cf-wrong-token-9876543210";
    let dns = provider(&standin(account.clone()).await, "example.com.", secret);

    let err = dns.publish(&record("ours", 120)).await.unwrap_err();

    assert_eq!(err.kind, DnsErrorKind::Unauthorized);
    let text = err.to_string();
    assert!(text.contains("cloudflare"), "{text}");
    assert!(text.contains("example.com."), "{text}");
    assert!(text.contains("Authentication error"), "{text}");
    assert!(!text.contains(secret), "{text}");
    assert!(!format!("{err:?}").contains(secret));
    assert!(contents(&account).is_empty());
}

#[tokio::test]
async fn cloudflare_dns_name_outside_the_zone_is_refused() {
    let account = Arc::new(Mutex::new(Account::default()));
    let dns = provider(&standin(account.clone()).await, "example.com.", TOKEN);
    let mut outside = record("ours", 120);
    outside.fqdn = "_acme-challenge.notexample.com.".to_string();

    let err = dns.publish(&outside).await.unwrap_err();

    assert_eq!(err.kind, DnsErrorKind::Refused);
    assert_eq!(account.lock().unwrap().zone_lookups, 0);
}

#[test]
fn cloudflare_dns_endpoint_must_be_https_or_loopback() {
    let new = |endpoint: Option<&str>| {
        Cloudflare::new(
            Sensitive::new(TOKEN),
            "example.com.".to_string(),
            endpoint.map(str::to_string),
        )
    };
    let err = new(Some("http://api.example.net/client/v4/")).unwrap_err();
    assert_eq!(err.kind, DnsErrorKind::Refused);
    assert!(err.to_string().contains("https"), "{err}");
    assert!(!err.to_string().contains(TOKEN), "{err}");
    new(Some("https://api.example.net/client/v4/")).unwrap();
    new(Some("http://[::1]:1/client/v4/")).unwrap();
    let default = new(None).unwrap();
    assert!(format!("{default:?}").contains(DEFAULT_ENDPOINT));
}

#[test]
fn cloudflare_dns_debug_hides_the_token() {
    let dns = provider("http://127.0.0.1:1/client/v4/", "example.com", TOKEN);
    let debug = format!("{dns:?}");
    assert!(
        debug.contains("cloudflare") && debug.contains("example.com."),
        "{debug}"
    );
    assert!(!debug.contains(TOKEN), "{debug}");
    assert_eq!(dns.name(), "cloudflare");
    assert_eq!(dns.zone(), "example.com.");
}
