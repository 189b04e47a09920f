//! Google Cloud DNS as a DNS-01 provider: the TXT records of one name form
//! one record set, so publishing or withdrawing a value replaces that set
//! through one change (delete the old set, add the new one).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::http;
use super::provider::{BearerTokens, DnsError, DnsErrorKind, DnsProvider, Published, TxtRecord};
use crate::plan::Sensitive;

const NAME: &str = "google";

/// The Cloud DNS API's base URL.
pub const DEFAULT_ENDPOINT: &str = "https://dns.googleapis.com/dns/v1/";

/// One managed zone of one Google Cloud project.
pub struct GoogleCloudDns {
    project: String,
    managed_zone: String,
    zone: String,
    tokens: Arc<dyn BearerTokens>,
    endpoint: Url,
    http: reqwest::Client,
}

impl fmt::Debug for GoogleCloudDns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleCloudDns")
            .field("provider", &NAME)
            .field("zone", &self.zone)
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

/// A resource record set as Cloud DNS reads and writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RecordSet {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<u32>,
    #[serde(default)]
    rrdatas: Vec<String>,
}

/// A change: the sets to delete (exactly as they are) and to add.
#[derive(Debug, Serialize)]
struct Change<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    additions: Vec<&'a RecordSet>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    deletions: Vec<&'a RecordSet>,
}

/// Google's error body: `{"error": {"code": 403, "message": "..."}}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: Option<ErrorDetail>,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}

/// One answer, with the token it was sent with (to scrub it from a detail).
struct Reply {
    status: StatusCode,
    body: Bytes,
    token: Sensitive,
}

/// What a change came to.
enum Applied {
    Done,
    /// Someone else changed the set between our read and our change.
    Conflict,
}

impl GoogleCloudDns {
    /// A provider writing in `managed_zone` of `project`, whose DNS name is
    /// `zone` (`example.com.`). `endpoint` overrides [`DEFAULT_ENDPOINT`]
    /// (a stand-in in tests); it must be https, or plain http to a loopback
    /// host.
    pub fn new(
        project: String,
        managed_zone: String,
        zone: String,
        tokens: Arc<dyn BearerTokens>,
        endpoint: Option<String>,
    ) -> Result<GoogleCloudDns, DnsError> {
        let http::Setup {
            zone,
            endpoint,
            http,
        } = http::Setup::new(NAME, &zone, DEFAULT_ENDPOINT, endpoint.as_deref())?;
        Ok(GoogleCloudDns {
            project,
            managed_zone,
            zone,
            tokens,
            endpoint,
            http,
        })
    }

    fn error(&self, kind: DnsErrorKind, detail: String) -> DnsError {
        DnsError::new(NAME, self.zone.clone(), kind, detail)
    }

    /// The record's owner name, checked to lie in this zone.
    fn owner(&self, record: &TxtRecord) -> Result<String, DnsError> {
        let name = http::absolute(&record.fqdn);
        if !http::within_zone(&name, &self.zone) {
            return Err(self.error(
                DnsErrorKind::Refused,
                format!("name {name} is outside the zone"),
            ));
        }
        Ok(name)
    }

    fn url(&self, rest: &[&str]) -> Url {
        let mut segments = vec![
            "projects",
            self.project.as_str(),
            "managedZones",
            self.managed_zone.as_str(),
        ];
        segments.extend_from_slice(rest);
        http::join(&self.endpoint, &segments)
    }

    /// Sends one request with a fresh token; fails only when no answer came.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        action: &str,
    ) -> Result<Reply, DnsError> {
        let token = self.tokens.token().await.map_err(|reason| {
            self.error(
                DnsErrorKind::Unauthorized,
                format!("{action}: no oauth token: {reason}"),
            )
        })?;
        let mut authorization = HeaderValue::try_from(format!("Bearer {}", token.expose()))
            .map_err(|_| {
                self.error(
                    DnsErrorKind::Unauthorized,
                    format!("{action}: the oauth token is not a valid header value"),
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
                http::scrub(format!("{action}: {}", crate::net::describe(&err)), &token),
            )
        };
        let response = request.send().await.map_err(unavailable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unavailable)?;
        Ok(Reply {
            status,
            body,
            token,
        })
    }

    /// The error for an answer that is not a success.
    fn failure(&self, action: &str, reply: &Reply) -> DnsError {
        let kind = match reply.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => DnsErrorKind::Unauthorized,
            StatusCode::BAD_REQUEST
            | StatusCode::NOT_FOUND
            | StatusCode::CONFLICT
            | StatusCode::PRECONDITION_FAILED => DnsErrorKind::Refused,
            _ => DnsErrorKind::Unavailable,
        };
        let message = serde_json::from_slice::<ErrorBody>(&reply.body)
            .ok()
            .and_then(|body| body.error)
            .and_then(|error| error.message)
            .map(|message| format!(": {}", http::quote_message(&message)))
            .unwrap_or_default();
        let detail = format!("{action}: http {}{message}", reply.status.as_u16());
        self.error(kind, http::scrub(detail, &reply.token))
    }

    /// The TXT record set of `name`, `None` where there is none.
    async fn read(&self, name: &str) -> Result<Option<RecordSet>, DnsError> {
        let action = format!("reading the txt records of {name}");
        let reply = self
            .send(
                Method::GET,
                self.url(&["rrsets", name, "TXT"]),
                None,
                &action,
            )
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(self.failure(&action, &reply));
        }
        let set: RecordSet = serde_json::from_slice(&reply.body).map_err(|err| {
            self.error(
                DnsErrorKind::Unavailable,
                format!("{action}: unexpected answer: {err}"),
            )
        })?;
        Ok(Some(set))
    }

    /// Applies one change. A conflict (409, or 412 where the set to delete
    /// changed meanwhile) is returned for a retry unless `last`.
    async fn apply(
        &self,
        change: &Change<'_>,
        last: bool,
        action: &str,
    ) -> Result<Applied, DnsError> {
        let body = serde_json::to_vec(change).map_err(|err| {
            self.error(
                DnsErrorKind::Unavailable,
                format!("{action}: cannot encode the change: {err}"),
            )
        })?;
        let reply = self
            .send(Method::POST, self.url(&["changes"]), Some(body), action)
            .await?;
        if reply.status.is_success() {
            return Ok(Applied::Done);
        }
        let conflict = matches!(
            reply.status,
            StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED
        );
        if conflict && !last {
            return Ok(Applied::Conflict);
        }
        Err(self.failure(action, &reply))
    }
}

#[async_trait]
impl DnsProvider for GoogleCloudDns {
    fn name(&self) -> &'static str {
        NAME
    }

    fn zone(&self) -> &str {
        &self.zone
    }

    async fn publish(&self, record: &TxtRecord) -> Result<Published, DnsError> {
        let name = self.owner(record)?;
        let action = format!("publishing a txt record at {name}");
        let published = Published {
            record: record.clone(),
            id: None,
        };
        for attempt in 0..2 {
            let existing = self.read(&name).await?;
            let mut rrdatas = existing
                .as_ref()
                .map(|set| set.rrdatas.clone())
                .unwrap_or_default();
            if rrdatas
                .iter()
                .any(|data| http::unquote_txt(data) == record.value)
            {
                return Ok(published);
            }
            rrdatas.push(http::quote_txt(&record.value));
            let addition = RecordSet {
                name: name.clone(),
                kind: "TXT".to_string(),
                ttl: Some(record.ttl),
                rrdatas,
            };
            let change = Change {
                additions: vec![&addition],
                deletions: existing.iter().collect(),
            };
            if let Applied::Done = self.apply(&change, attempt == 1, &action).await? {
                return Ok(published);
            }
        }
        Err(self.error(
            DnsErrorKind::Refused,
            format!("{action}: concurrent changes kept conflicting"),
        ))
    }

    async fn withdraw(&self, published: &Published) -> Result<(), DnsError> {
        let name = self.owner(&published.record)?;
        let action = format!("withdrawing a txt record at {name}");
        for attempt in 0..2 {
            let Some(existing) = self.read(&name).await? else {
                return Ok(());
            };
            let (ours, rest): (Vec<String>, Vec<String>) = existing
                .rrdatas
                .iter()
                .cloned()
                .partition(|data| http::unquote_txt(data) == published.record.value);
            if ours.is_empty() {
                return Ok(());
            }
            let remaining = RecordSet {
                rrdatas: rest,
                ..existing.clone()
            };
            let change = Change {
                additions: if remaining.rrdatas.is_empty() {
                    Vec::new()
                } else {
                    vec![&remaining]
                },
                deletions: vec![&existing],
            };
            if let Applied::Done = self.apply(&change, attempt == 1, &action).await? {
                return Ok(());
            }
        }
        Err(self.error(
            DnsErrorKind::Refused,
            format!("{action}: concurrent changes kept conflicting"),
        ))
    }
}

#[cfg(test)]
#[path = "google_tests.rs"]
mod tests;
