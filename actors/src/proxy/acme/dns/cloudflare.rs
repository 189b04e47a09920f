//! Cloudflare as a DNS-01 provider: each TXT value is a record of its own
//! with an id, so publishing creates one and withdrawing deletes it by id.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::http;
use super::provider::{DnsError, DnsErrorKind, DnsProvider, Published, TxtRecord};
use crate::plan::Sensitive;

const NAME: &str = "cloudflare";

/// Cloudflare's API base URL.
pub const DEFAULT_ENDPOINT: &str = "https://api.cloudflare.com/client/v4/";

/// Cloudflare's shortest TTL (1 means "automatic", which is longer).
const MIN_TTL: u32 = 60;
/// Cloudflare's longest TTL.
const MAX_TTL: u32 = 86_400;
/// "An identical record already exists."
const RECORD_EXISTS: i64 = 81_058;
/// Codes Cloudflare answers a bad token with, whatever the status.
const AUTH_CODES: [i64; 4] = [6_003, 6_111, 9_109, 10_000];

/// One Cloudflare zone, written with an API token.
pub struct Cloudflare {
    api_token: Sensitive,
    zone: String,
    endpoint: Url,
    http: reqwest::Client,
    /// The zone's id, looked up once.
    zone_id: OnceCell<String>,
}

impl fmt::Debug for Cloudflare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cloudflare")
            .field("provider", &NAME)
            .field("zone", &self.zone)
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

/// Cloudflare's envelope around every answer.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiError>,
    result: Option<T>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

/// A zone or a record: all this provider reads of either is the id.
#[derive(Debug, Deserialize)]
struct Entry {
    id: String,
    #[serde(default)]
    content: Option<String>,
}

/// One answer.
struct Reply {
    status: StatusCode,
    body: Bytes,
}

impl Reply {
    fn errors(&self) -> Vec<ApiError> {
        serde_json::from_slice::<Envelope<serde_json::Value>>(&self.body)
            .map(|envelope| envelope.errors)
            .unwrap_or_default()
    }
}

impl Cloudflare {
    /// A provider writing in `zone` (`example.com.`, the trailing dot
    /// optional) with `api_token`, which needs the Zone:Read and DNS:Edit
    /// permissions. `endpoint` overrides [`DEFAULT_ENDPOINT`] (a stand-in in
    /// tests); it must be https, or plain http to a loopback host.
    pub fn new(
        api_token: Sensitive,
        zone: String,
        endpoint: Option<String>,
    ) -> Result<Cloudflare, DnsError> {
        let http::Setup {
            zone,
            endpoint,
            http,
        } = http::Setup::new(NAME, &zone, DEFAULT_ENDPOINT, endpoint.as_deref())?;
        Ok(Cloudflare {
            api_token,
            zone,
            endpoint,
            http,
            zone_id: OnceCell::new(),
        })
    }

    fn error(&self, kind: DnsErrorKind, detail: String) -> DnsError {
        DnsError::new(
            NAME,
            self.zone.clone(),
            kind,
            http::scrub(detail, &self.api_token),
        )
    }

    /// The record's name as Cloudflare writes it (no trailing dot), checked
    /// to lie in this zone.
    fn owner(&self, record: &TxtRecord) -> Result<String, DnsError> {
        let name = http::absolute(&record.fqdn);
        if !http::within_zone(&name, &self.zone) {
            return Err(self.error(
                DnsErrorKind::Refused,
                format!("name {name} is outside the zone"),
            ));
        }
        Ok(name.trim_end_matches('.').to_string())
    }

    /// Sends one request; fails only when no answer came.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        action: &str,
    ) -> Result<Reply, DnsError> {
        let mut authorization =
            HeaderValue::try_from(format!("Bearer {}", self.api_token.expose())).map_err(|_| {
                self.error(
                    DnsErrorKind::Unauthorized,
                    format!("{action}: the api token is not a valid header value"),
                )
            })?;
        authorization.set_sensitive(true);
        let mut request = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, authorization);
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let unavailable = |err: reqwest::Error| {
            self.error(
                DnsErrorKind::Unavailable,
                format!("{action}: {}", crate::net::describe(&err)),
            )
        };
        let response = request.send().await.map_err(unavailable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unavailable)?;
        Ok(Reply { status, body })
    }

    /// The `result` of a successful answer, or the error for any other.
    fn result<T: DeserializeOwned>(&self, action: &str, reply: &Reply) -> Result<T, DnsError> {
        if !reply.status.is_success() {
            return Err(self.failure(action, reply));
        }
        let envelope: Envelope<T> = serde_json::from_slice(&reply.body).map_err(|err| {
            self.error(
                DnsErrorKind::Unavailable,
                format!("{action}: unexpected answer: {err}"),
            )
        })?;
        match envelope.result {
            Some(result) if envelope.success => Ok(result),
            _ => Err(self.failure(action, reply)),
        }
    }

    /// The error for an answer that is not a success.
    fn failure(&self, action: &str, reply: &Reply) -> DnsError {
        let errors = reply.errors();
        let first = errors.first();
        let kind = match reply.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => DnsErrorKind::Unauthorized,
            _ if first.is_some_and(|error| AUTH_CODES.contains(&error.code)) => {
                DnsErrorKind::Unauthorized
            }
            StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => DnsErrorKind::Refused,
            _ => DnsErrorKind::Unavailable,
        };
        let message = first
            .map(|error| {
                format!(
                    ": {} (code {})",
                    http::quote_message(&error.message),
                    error.code
                )
            })
            .unwrap_or_default();
        self.error(
            kind,
            format!("{action}: http {}{message}", reply.status.as_u16()),
        )
    }

    /// The zone's id: looked up by name once, then remembered.
    async fn zone_id(&self) -> Result<&str, DnsError> {
        self.zone_id
            .get_or_try_init(|| async {
                let name = self.zone.trim_end_matches('.');
                let action = format!("looking up the zone {name}");
                let mut url = http::join(&self.endpoint, &["zones"]);
                url.query_pairs_mut().append_pair("name", name);
                let reply = self.send(Method::GET, url, None, &action).await?;
                let zones: Vec<Entry> = self.result(&action, &reply)?;
                match zones.into_iter().next() {
                    Some(zone) => Ok(zone.id),
                    None => Err(self.error(
                        DnsErrorKind::Refused,
                        format!("no zone {name} visible to this token"),
                    )),
                }
            })
            .await
            .map(String::as_str)
    }

    /// The id of the TXT record `name` holding `value`, if there is one.
    async fn find(
        &self,
        zone_id: &str,
        name: &str,
        value: &str,
    ) -> Result<Option<String>, DnsError> {
        let action = format!("looking up a txt record at {name}");
        let mut url = http::join(&self.endpoint, &["zones", zone_id, "dns_records"]);
        url.query_pairs_mut()
            .append_pair("type", "TXT")
            .append_pair("name", name)
            .append_pair("content", value);
        let reply = self.send(Method::GET, url, None, &action).await?;
        let records: Vec<Entry> = self.result(&action, &reply)?;
        // Cloudflare may show a TXT record's content quoted.
        Ok(records
            .into_iter()
            .find(|record| {
                record
                    .content
                    .as_deref()
                    .is_none_or(|content| http::unquote_txt(content) == value)
            })
            .map(|record| record.id))
    }
}

#[async_trait]
impl DnsProvider for Cloudflare {
    fn name(&self) -> &'static str {
        NAME
    }

    fn zone(&self) -> &str {
        &self.zone
    }

    async fn publish(&self, record: &TxtRecord) -> Result<Published, DnsError> {
        let name = self.owner(record)?;
        let zone_id = self.zone_id().await?;
        let action = format!("publishing a txt record at {name}");
        let body = serde_json::json!({
            "type": "TXT",
            "name": name,
            "content": record.value,
            "ttl": record.ttl.clamp(MIN_TTL, MAX_TTL),
        });
        let url = http::join(&self.endpoint, &["zones", zone_id, "dns_records"]);
        let reply = self
            .send(
                Method::POST,
                url,
                Some(body.to_string().into_bytes()),
                &action,
            )
            .await?;
        if reply
            .errors()
            .iter()
            .any(|error| error.code == RECORD_EXISTS)
        {
            return match self.find(zone_id, &name, &record.value).await? {
                Some(id) => Ok(Published {
                    record: record.clone(),
                    id: Some(id),
                }),
                None => Err(self.error(
                    DnsErrorKind::Unavailable,
                    format!("{action}: the record exists, yet no such record is listed"),
                )),
            };
        }
        let created: Entry = self.result(&action, &reply)?;
        Ok(Published {
            record: record.clone(),
            id: Some(created.id),
        })
    }

    async fn withdraw(&self, published: &Published) -> Result<(), DnsError> {
        let name = self.owner(&published.record)?;
        let zone_id = self.zone_id().await?;
        let action = format!("withdrawing a txt record at {name}");
        let id = match &published.id {
            Some(id) => id.clone(),
            None => match self.find(zone_id, &name, &published.record.value).await? {
                Some(id) => id,
                None => return Ok(()),
            },
        };
        let url = http::join(&self.endpoint, &["zones", zone_id, "dns_records", &id]);
        let reply = self.send(Method::DELETE, url, None, &action).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        self.result::<serde_json::Value>(&action, &reply)?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "cloudflare_tests.rs"]
mod tests;
