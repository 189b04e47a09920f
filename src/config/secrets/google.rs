//! Google Secret Manager: `GET {endpoint}/v1/{name}/versions/{version}:access`
//! with Application Default Credentials (google-cloud-auth): the key file in
//! `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's application-default file, or the
//! metadata server of a GCP VM.
//!
//! A load hands over all its Google references at once; they are fetched
//! concurrently on a thread of their own with a small tokio runtime (the
//! caller may be inside the daemon's actix system, which must not host a
//! nested runtime). Each request has a timeout and one retry when the failure
//! may be transient. Response bodies hold secrets: they are never logged and
//! never quoted in an error.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use dispenser_actors::net::is_loopback_host;
use dispenser_actors::plan::Sensitive;
use google_cloud_auth::credentials::{self, CacheableResource};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

/// Environment variable that overrides the Secret Manager endpoint.
pub const ENDPOINT_ENV: &str = "DISPENSER_SECRETMANAGER_ENDPOINT";
/// The public Secret Manager endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://secretmanager.googleapis.com";
/// Longest wait for one attempt (token or secret).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before the one retry of a transient failure.
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// The IAM role that lets a principal read secret payloads.
pub const ACCESSOR_ROLE: &str = "roles/secretmanager.secretAccessor";
/// ADC's key file variable.
const CREDENTIALS_ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// gcloud's application-default credentials, under `$HOME`.
const GCLOUD_ADC_FILE: &str = ".config/gcloud/application_default_credentials.json";
/// The variable google-cloud-auth reads to find the metadata server.
const METADATA_HOST_ENV: &str = "GCE_METADATA_HOST";
/// The metadata server's default host.
const METADATA_HOST: &str = "metadata.google.internal";
/// The longest Google error message quoted in an error.
const MAX_QUOTED_MESSAGE: usize = 300;

/// Fetches Google secrets. Cheap to clone; holds settings only.
#[derive(Debug, Clone)]
pub struct GoogleSecrets {
    endpoint: String,
    attempt_timeout: Duration,
}

/// Why a Google secret could not be fetched, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoogleError {
    #[error("not found: the secret or this version does not exist (or it was destroyed)")]
    NotFound,
    #[error("permission denied to {principal}")]
    PermissionDenied { principal: String },
    #[error("the Secret Manager API is not enabled in project `{project}`")]
    ApiDisabled {
        project: String,
        activation_url: Option<String>,
    },
    #[error("no google credentials found: {searched}")]
    NoCredentials { searched: String },
    #[error("cannot use the google credentials of {source_name}: {reason}")]
    Credentials { source_name: String, reason: String },
    #[error("google rejected the credentials of {principal} (401 unauthenticated)")]
    Unauthenticated { principal: String },
    #[error("network unreachable: cannot connect to {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("no answer from {endpoint} within {seconds}s, twice")]
    Timeout { endpoint: String, seconds: u64 },
    #[error("the payload is binary (not UTF-8); a variable can only hold text")]
    Binary,
    #[error("google secret manager answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("unexpected answer from google secret manager: {reason}")]
    Malformed { reason: String },
    #[error("cannot start the secret fetcher: {reason}")]
    Internal { reason: String },
    /// A plain-HTTP endpoint off this machine: the credentials and the
    /// secrets would cross the network in the clear.
    #[error("{ENDPOINT_ENV} is `{endpoint}`: plain http is only for a loopback address")]
    InsecureEndpoint { endpoint: String },
}

/// True when requests may go to `endpoint`: over https anywhere, over plain
/// http only to this machine (a local stand-in of the API).
fn endpoint_allowed(endpoint: &str) -> bool {
    if endpoint.starts_with("https://") {
        return true;
    }
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    is_loopback_host(host)
}

/// Where Application Default Credentials come from on this host.
#[derive(Debug, Clone)]
enum CredentialSource {
    /// `GOOGLE_APPLICATION_CREDENTIALS`, or gcloud's file.
    File {
        path: PathBuf,
        from_env: bool,
        principal: String,
    },
    /// Neither file: the metadata server, which answers only on a GCP VM.
    MetadataServer { host: String, searched: String },
}

impl GoogleError {
    /// Retrying may help: the network, a timeout, a 5xx or a 429.
    pub fn is_transient(&self) -> bool {
        match self {
            GoogleError::Unreachable { .. } | GoogleError::Timeout { .. } => true,
            GoogleError::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// What to do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            GoogleError::NotFound => Some(
                "check `name` (projects/PROJECT/secrets/SECRET) and `version`; `gcloud secrets versions list SECRET --project PROJECT` lists the versions"
                    .to_string(),
            ),
            GoogleError::PermissionDenied { principal } => Some(format!(
                "grant {principal} the role `{ACCESSOR_ROLE}` on the secret or its project"
            )),
            GoogleError::ApiDisabled {
                project,
                activation_url,
            } => Some(match activation_url {
                Some(url) => format!("enable it at {url}, or with `gcloud services enable secretmanager.googleapis.com --project {project}`, then wait a few minutes"),
                None => format!("enable it with `gcloud services enable secretmanager.googleapis.com --project {project}`, then wait a few minutes"),
            }),
            GoogleError::NoCredentials { .. } => Some(format!(
                "set {CREDENTIALS_ENV} to a service account key file, run `gcloud auth application-default login` as the user dispenser runs as, or run on a GCP VM with a service account attached"
            )),
            GoogleError::Unauthenticated { .. } => Some(
                "the key may be revoked or the user credentials expired; create a new key or run `gcloud auth application-default login` again"
                    .to_string(),
            ),
            GoogleError::Unreachable { .. } | GoogleError::Timeout { .. } => Some(format!(
                "check this host's network, DNS, proxy and firewall; {ENDPOINT_ENV} overrides the endpoint"
            )),
            GoogleError::InsecureEndpoint { .. } => Some(format!(
                "use https://, or http:// with 127.0.0.1, [::1] or localhost (a local stand-in); unset {ENDPOINT_ENV} for Google's own endpoint"
            )),
            GoogleError::Binary => Some(
                "store the value as text (for example base64-encoded) in a new version".to_string(),
            ),
            _ => None,
        }
    }
}

impl GoogleSecrets {
    /// The endpoint from `DISPENSER_SECRETMANAGER_ENDPOINT`, else Google's.
    pub fn from_env() -> Self {
        let endpoint = std::env::var(ENDPOINT_ENV)
            .ok()
            .filter(|value| !value.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        Self::new(endpoint, ATTEMPT_TIMEOUT)
    }

    pub fn new(endpoint: impl Into<String>, attempt_timeout: Duration) -> Self {
        Self {
            endpoint: endpoint.into().trim_end_matches('/').to_string(),
            attempt_timeout,
        }
    }

    /// Fetches every `(name, version)` concurrently; one result per entry, in
    /// order. Blocks the calling thread until all are done or have failed.
    pub fn fetch_all(&self, wanted: &[(String, String)]) -> Vec<Result<Sensitive, GoogleError>> {
        if wanted.is_empty() {
            return Vec::new();
        }
        let joined = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("secrets".into())
                .spawn_scoped(scope, || self.fetch_on_own_runtime(wanted))
                .map(|handle| handle.join())
        });
        match joined {
            Ok(Ok(results)) => results,
            Ok(Err(_)) => fail_all(wanted.len(), "the fetching thread panicked"),
            Err(err) => fail_all(wanted.len(), &err.to_string()),
        }
    }

    fn fetch_on_own_runtime(
        &self,
        wanted: &[(String, String)],
    ) -> Vec<Result<Sensitive, GoogleError>> {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(self.fetch_concurrently(wanted)),
            Err(err) => fail_all(wanted.len(), &err.to_string()),
        }
    }

    async fn fetch_concurrently(
        &self,
        wanted: &[(String, String)],
    ) -> Vec<Result<Sensitive, GoogleError>> {
        if !endpoint_allowed(&self.endpoint) {
            let refused = GoogleError::InsecureEndpoint {
                endpoint: self.endpoint.clone(),
            };
            return vec![Err(refused); wanted.len()];
        }
        let source = CredentialSource::detect();
        let auth = match self.authenticate(&source).await {
            Ok(headers) => headers,
            Err(err) => return vec![Err(err); wanted.len()],
        };
        let client = match reqwest::Client::builder()
            .timeout(self.attempt_timeout)
            .build()
        {
            Ok(client) => client,
            Err(err) => return fail_all(wanted.len(), &error_chain(&err)),
        };
        let mut tasks = tokio::task::JoinSet::new();
        for (index, (name, version)) in wanted.iter().enumerate() {
            let request = Request {
                client: client.clone(),
                auth: auth.clone(),
                endpoint: self.endpoint.clone(),
                url: format!("{}/v1/{name}/versions/{version}:access", self.endpoint),
                principal: source.principal(),
                project: project_of(name),
                timeout: self.attempt_timeout,
            };
            tasks.spawn(async move { (index, request.send_with_retry().await) });
        }
        let mut results: Vec<Option<Result<Sensitive, GoogleError>>> = vec![None; wanted.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((index, result)) = joined {
                results[index] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(GoogleError::Internal {
                        reason: "a fetch task failed".to_string(),
                    })
                })
            })
            .collect()
    }

    /// The authorization headers of ADC, with one retry of a transient failure.
    async fn authenticate(&self, source: &CredentialSource) -> Result<HeaderMap, GoogleError> {
        let credentials = credentials::Builder::default()
            .build()
            .map_err(|err| source.build_error(&err))?;
        let mut last = None;
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            let headers = tokio::time::timeout(
                self.attempt_timeout,
                credentials.headers(http::Extensions::new()),
            )
            .await;
            match headers {
                Ok(Ok(CacheableResource::New { data, .. })) => return Ok(data),
                Ok(Ok(CacheableResource::NotModified)) => {
                    return Err(GoogleError::Internal {
                        reason: "the credentials returned no headers".to_string(),
                    })
                }
                Ok(Err(err)) => {
                    let transient = err.is_transient();
                    last = Some(source.token_error(&err));
                    if !transient {
                        break;
                    }
                }
                Err(_) => {
                    last = Some(source.token_timeout(self.attempt_timeout));
                }
            }
        }
        Err(last.unwrap_or_else(|| GoogleError::Internal {
            reason: "no attempt was made".to_string(),
        }))
    }
}

/// One `:access` call, ready to send.
struct Request {
    client: reqwest::Client,
    auth: HeaderMap,
    endpoint: String,
    url: String,
    principal: String,
    project: String,
    timeout: Duration,
}

impl Request {
    async fn send_with_retry(&self) -> Result<Sensitive, GoogleError> {
        match self.send().await {
            Err(err) if err.is_transient() => {
                tokio::time::sleep(RETRY_PAUSE).await;
                self.send().await
            }
            other => other,
        }
    }

    async fn send(&self) -> Result<Sensitive, GoogleError> {
        let response = self
            .client
            .get(&self.url)
            .headers(self.auth.clone())
            .send()
            .await
            .map_err(|err| self.transport_error(&err))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|err| self.transport_error(&err))?;
        if status.is_success() {
            decode_payload(&body)
        } else {
            Err(classify(status, &body, &self.principal, &self.project))
        }
    }

    fn transport_error(&self, err: &reqwest::Error) -> GoogleError {
        if err.is_timeout() {
            GoogleError::Timeout {
                endpoint: self.endpoint.clone(),
                seconds: self.timeout.as_secs().max(1),
            }
        } else {
            GoogleError::Unreachable {
                endpoint: self.endpoint.clone(),
                reason: root_cause(err),
            }
        }
    }
}

impl CredentialSource {
    /// Finds the credentials the way ADC does, to name them in errors.
    fn detect() -> Self {
        let gcloud = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(GCLOUD_ADC_FILE));
        if let Some(path) = std::env::var_os(CREDENTIALS_ENV) {
            let path = PathBuf::from(path);
            let principal = principal_in_file(&path);
            return CredentialSource::File {
                path,
                from_env: true,
                principal,
            };
        }
        if let Some(path) = gcloud.as_ref().filter(|path| path.is_file()) {
            return CredentialSource::File {
                principal: principal_in_file(path),
                path: path.clone(),
                from_env: false,
            };
        }
        let host = std::env::var(METADATA_HOST_ENV).unwrap_or_else(|_| METADATA_HOST.to_string());
        let gcloud_text = gcloud
            .map(|path| format!("there is no gcloud credentials file at {}", path.display()))
            .unwrap_or_else(|| "HOME is not set, so no gcloud credentials file".to_string());
        CredentialSource::MetadataServer {
            searched: format!(
                "{CREDENTIALS_ENV} is not set, {gcloud_text}, and the metadata server at {host} did not answer (this is not a GCP VM?)"
            ),
            host,
        }
    }

    /// Who asks Google, as the user would name them.
    fn principal(&self) -> String {
        match self {
            CredentialSource::File { principal, .. } => principal.clone(),
            CredentialSource::MetadataServer { .. } => {
                "the service account attached to this VM".to_string()
            }
        }
    }

    fn name(&self) -> String {
        match self {
            CredentialSource::File {
                path,
                from_env: true,
                ..
            } => {
                format!("{CREDENTIALS_ENV} ({})", path.display())
            }
            CredentialSource::File { path, .. } => format!("gcloud ({})", path.display()),
            CredentialSource::MetadataServer { host, .. } => {
                format!("the metadata server at {host}")
            }
        }
    }

    fn build_error(&self, err: &google_cloud_auth::build_errors::Error) -> GoogleError {
        let reason = match self {
            CredentialSource::File { path, .. } if !path.exists() => {
                "the file does not exist".to_string()
            }
            _ => error_chain(err),
        };
        GoogleError::Credentials {
            source_name: self.name(),
            reason,
        }
    }

    fn token_error(&self, err: &google_cloud_auth::errors::CredentialsError) -> GoogleError {
        match self {
            CredentialSource::MetadataServer { searched, .. } => GoogleError::NoCredentials {
                searched: searched.clone(),
            },
            CredentialSource::File { .. } => GoogleError::Credentials {
                source_name: self.name(),
                reason: format!("cannot get an access token: {}", error_chain(err)),
            },
        }
    }

    fn token_timeout(&self, timeout: Duration) -> GoogleError {
        match self {
            CredentialSource::MetadataServer { searched, .. } => GoogleError::NoCredentials {
                searched: searched.clone(),
            },
            CredentialSource::File { .. } => GoogleError::Credentials {
                source_name: self.name(),
                reason: format!(
                    "no access token within {}s, twice",
                    timeout.as_secs().max(1)
                ),
            },
        }
    }
}

/// The principal a credentials file stands for, read from its `type` and
/// `client_email` only.
fn principal_in_file(path: &std::path::Path) -> String {
    let json = std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    let kind = json
        .as_ref()
        .and_then(|json| json.get("type"))
        .and_then(|value| value.as_str());
    let email = json
        .as_ref()
        .and_then(|json| json.get("client_email"))
        .and_then(|value| value.as_str());
    match (kind, email) {
        (Some("service_account"), Some(email)) => format!("service account `{email}`"),
        (Some("authorized_user"), _) => {
            "the gcloud user of the application-default credentials".to_string()
        }
        _ => format!("the principal of {}", path.display()),
    }
}

/// Decodes a successful `:access` answer: base64 `payload.data`, UTF-8 text.
/// No error quotes the body or the decoding library's message (which could
/// echo the value).
fn decode_payload(body: &[u8]) -> Result<Sensitive, GoogleError> {
    let malformed = |reason: &str| GoogleError::Malformed {
        reason: reason.to_string(),
    };
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| malformed("the body is not JSON"))?;
    let data = json
        .get("payload")
        .and_then(|payload| payload.get("data"))
        .and_then(|data| data.as_str())
        .ok_or_else(|| malformed("no `payload.data` string"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| malformed("`payload.data` is not base64"))?;
    String::from_utf8(bytes)
        .map(Sensitive::new)
        .map_err(|_| GoogleError::Binary)
}

/// Turns an error answer into what the user should know.
fn classify(status: StatusCode, body: &[u8], principal: &str, project: &str) -> GoogleError {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error = json.as_ref().and_then(|json| json.get("error"));
    let message = error
        .and_then(|error| error.get("message"))
        .and_then(|message| message.as_str())
        .unwrap_or("")
        .to_string();
    let details: Vec<&serde_json::Value> = error
        .and_then(|error| error.get("details"))
        .and_then(|details| details.as_array())
        .map(|details| details.iter().collect())
        .unwrap_or_default();
    let disabled = details.iter().find(|detail| {
        detail.get("reason").and_then(|reason| reason.as_str()) == Some("SERVICE_DISABLED")
    });
    match status {
        StatusCode::NOT_FOUND => GoogleError::NotFound,
        StatusCode::FORBIDDEN
            if disabled.is_some()
                || message.contains("has not been used in project")
                || message.contains("it is disabled") =>
        {
            let metadata = disabled.and_then(|detail| detail.get("metadata"));
            let text = |key: &str| {
                metadata
                    .and_then(|metadata| metadata.get(key))
                    .and_then(|value| value.as_str())
                    .map(str::to_string)
            };
            GoogleError::ApiDisabled {
                project: text("consumer")
                    .map(|consumer| consumer.trim_start_matches("projects/").to_string())
                    .unwrap_or_else(|| project.to_string()),
                activation_url: text("activationUrl"),
            }
        }
        StatusCode::FORBIDDEN => GoogleError::PermissionDenied {
            principal: principal.to_string(),
        },
        StatusCode::UNAUTHORIZED => GoogleError::Unauthenticated {
            principal: principal.to_string(),
        },
        _ => GoogleError::Api {
            status: status.as_u16(),
            message: if message.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no message")
                    .to_lowercase()
            } else {
                message.chars().take(MAX_QUOTED_MESSAGE).collect()
            },
        },
    }
}

/// `P` of `projects/P/secrets/S`.
fn project_of(name: &str) -> String {
    name.split('/').nth(1).unwrap_or(name).to_string()
}

/// The innermost cause of an error (for a connection: "Connection refused").
fn root_cause(err: &(dyn StdError + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// An error and its causes, joined, each said once; without google-cloud's
/// remarks on retrying (dispenser decides that).
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(error) = current {
        let text = error
            .to_string()
            .replace(" and future attempts will not succeed", "")
            .replace(" but future attempts may succeed", "");
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        current = error.source();
    }
    parts.join(": ")
}

fn fail_all(count: usize, reason: &str) -> Vec<Result<Sensitive, GoogleError>> {
    vec![
        Err(GoogleError::Internal {
            reason: reason.to_string(),
        });
        count
    ]
}

#[cfg(test)]
#[path = "google_tests.rs"]
mod tests;
