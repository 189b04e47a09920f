//! Talking to the ACME server: the HTTP client (the system roots plus the
//! configured CA bundle, on rustls with ring), the account (created once and
//! reused from its stored credentials), one HTTP-01 issuance for one host,
//! and the renewal window of a certificate (RFC 9773) where it is offered.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, BytesResponse, CertificateIdentifier, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use thiserror::Error;
use tracing::{debug, warn};

use super::dns::{DnsError, PropagationError, Published, Publisher};
use super::policy::FailureKind;
use super::store::{Store, StoreError};
use crate::plan::{AcmeSettings, Challenge};
use crate::proxy::challenge::Challenges;

/// Time to open a TCP connection to the ACME server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// First pause when polling an order; doubles after each poll.
const POLL_FIRST_DELAY: Duration = Duration::from_millis(250);
/// The problem type of a rate-limit error (RFC 8555 section 6.7).
const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";
/// The problem type when the CA no longer knows the account.
const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";
/// The problem type when a `replaces` names an already replaced certificate.
const ALREADY_REPLACED: &str = "urn:ietf:params:acme:error:alreadyReplaced";

/// A failure to talk to the CA or to obtain a certificate.
#[derive(Debug, Error)]
pub enum AcmeError {
    #[error("cannot use the ca bundle {path}: {reason}")]
    Bundle { path: String, reason: String },
    #[error("acme request failed: {0}")]
    Protocol(#[source] instant_acme::Error),
    #[error("the ca rate-limits this account: {detail}")]
    RateLimited {
        detail: String,
        retry_after: Option<Duration>,
    },
    #[error("the order for {host} ended {status}: {detail}")]
    OrderFailed {
        host: String,
        status: String,
        detail: String,
    },
    #[error("the ca offers no {challenge} challenge for {host}")]
    NoChallenge {
        host: String,
        challenge: &'static str,
    },
    #[error("{host} uses dns-01, but [certbot.dns] names no provider")]
    NoDnsProvider { host: String },
    #[error("publishing the dns-01 record for {host}: {source}")]
    Dns {
        host: String,
        #[source]
        source: DnsError,
    },
    #[error(
        "the dns-01 record for {host} through dns provider {provider} (zone {zone}): {source}"
    )]
    Propagation {
        host: String,
        provider: &'static str,
        zone: String,
        #[source]
        source: Box<PropagationError>,
    },
    #[error("cannot make the tls-alpn-01 certificate for {host}: {reason}")]
    AlpnCertificate { host: String, reason: String },
    #[error("issuing for {host} took longer than {seconds}s")]
    Timeout { host: String, seconds: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The `Retry-After` of the last refused request, so a rate-limit problem
/// (which instant-acme reports without headers) can honour it.
#[derive(Debug, Clone, Default)]
struct RetryAfterSlot(Arc<Mutex<Option<Duration>>>);

/// instant-acme's HTTP client: hyper over rustls, recording `Retry-After`.
struct RecordingClient {
    inner: HyperClient<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    retry_after: RetryAfterSlot,
}

/// An ACME account on one directory, ready to order certificates.
#[derive(Clone)]
pub struct CaClient {
    account: Account,
    directory_url: String,
    retry_after: RetryAfterSlot,
}

/// The CA's suggested renewal window for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalWindow {
    pub start: SystemTime,
    pub end: SystemTime,
    /// Do not ask again before this long.
    pub refresh_after: Duration,
}

/// Where an order publishes its answers: the proxy's challenge maps (HTTP-01,
/// TLS-ALPN-01) and the DNS provider (DNS-01), when there is one.
#[derive(Debug, Clone, Copy)]
pub struct Answers<'a> {
    pub challenges: &'a Challenges,
    pub dns: Option<&'a Publisher>,
}

/// Withdraws published challenge tokens when dropped, also when the
/// issuance fails or is cancelled by a timeout.
struct PublishedTokens {
    challenges: Challenges,
    tokens: Vec<String>,
    /// Hosts with a TLS-ALPN-01 certificate published.
    alpn_hosts: Vec<String>,
}

impl AcmeError {
    /// How the schedule treats this failure.
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            AcmeError::RateLimited { retry_after, .. } => FailureKind::RateLimited {
                retry_after: *retry_after,
            },
            _ => FailureKind::Other,
        }
    }
}

impl AcmeError {
    /// True when the CA does not know the stored account (a test CA that
    /// restarted, or an account deleted on the CA's side).
    pub fn is_unknown_account(&self) -> bool {
        matches!(self, AcmeError::Protocol(instant_acme::Error::Api(problem))
            if problem.r#type.as_deref() == Some(ACCOUNT_DOES_NOT_EXIST))
    }
}

impl RetryAfterSlot {
    fn take(&self) -> Option<Duration> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn set(&self, value: Option<Duration>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = value;
    }
}

impl HttpClient for RecordingClient {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.inner.request(req);
        let slot = self.retry_after.clone();
        Box::pin(async move {
            let response = response
                .await
                .map_err(|err| instant_acme::Error::Other(Box::new(err)))?;
            let status = response.status();
            if status.is_client_error() || status.is_server_error() {
                slot.set(retry_after(response.headers(), SystemTime::now()));
            }
            Ok(BytesResponse::from(response))
        })
    }
}

impl CaClient {
    /// Opens the account on `settings.directory_url`: from the stored
    /// credentials when there are some, else a new account whose credentials
    /// are stored at once. Returns whether an account was created.
    pub async fn connect(
        settings: &AcmeSettings,
        store: &Store,
    ) -> Result<(Self, bool), AcmeError> {
        let retry_after = RetryAfterSlot::default();
        let http = RecordingClient {
            inner: http_client(settings.ca_bundle.as_deref())?,
            retry_after: retry_after.clone(),
        };
        let builder = Account::builder_with_http(Box::new(http));
        let directory_url = settings.directory_url.clone();
        let (account, created) = match store.load_account(&directory_url)? {
            Some(credentials) => {
                let account = builder
                    .from_credentials(credentials)
                    .await
                    .map_err(|err| classify(err, &retry_after))?;
                (account, false)
            }
            None => {
                let contact = format!("mailto:{}", settings.email);
                let contacts = [contact.as_str()];
                let new_account = NewAccount {
                    contact: if settings.email.is_empty() {
                        &[]
                    } else {
                        &contacts
                    },
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let (account, credentials) = builder
                    .create(&new_account, directory_url.clone(), None)
                    .await
                    .map_err(|err| classify(err, &retry_after))?;
                store.save_account(&directory_url, &credentials)?;
                (account, true)
            }
        };
        Ok((
            CaClient {
                account,
                directory_url,
                retry_after,
            },
            created,
        ))
    }

    pub fn directory_url(&self) -> &str {
        &self.directory_url
    }

    /// Obtains a certificate for `host` (perhaps a wildcard, `*.example.com`)
    /// by `challenge`: publishes each answer (a key authorization for port
    /// 80 in `challenges`, a validation certificate for the HTTPS listener,
    /// or a TXT record through `dns`, waited for until it shows), tells the
    /// CA, polls the order with back-off, and withdraws the answers
    /// afterwards, also when the order fails or times out. Returns the PEM
    /// chain and the PEM private key. `replaces` names the certificate being
    /// renewed, for CAs that offer renewal information.
    pub async fn issue(
        &self,
        host: &str,
        challenge: Challenge,
        answers: Answers<'_>,
        replaces: Option<CertificateIdentifier<'static>>,
        timeout: Duration,
    ) -> Result<(String, String), AcmeError> {
        let mut records = Vec::new();
        let work = self.issue_inner(host, challenge, answers, &mut records, replaces, timeout);
        let outcome = match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(AcmeError::Timeout {
                host: host.to_string(),
                seconds: timeout.as_secs(),
            }),
        };
        if let (Some(dns), false) = (answers.dns, records.is_empty()) {
            dns.withdraw_all(records).await;
        }
        outcome
    }

    async fn issue_inner(
        &self,
        host: &str,
        kind: Challenge,
        answers: Answers<'_>,
        records: &mut Vec<Published>,
        replaces: Option<CertificateIdentifier<'static>>,
        timeout: Duration,
    ) -> Result<(String, String), AcmeError> {
        let challenges = answers.challenges;
        let slot = &self.retry_after;
        let identifiers = [Identifier::Dns(host.to_string())];
        let mut order = match replaces {
            Some(replaces) => {
                let request = NewOrder::new(&identifiers).replaces(replaces);
                match self.account.new_order(&request).await {
                    Ok(order) => order,
                    Err(err) if is_replaces_refusal(&err) => {
                        debug!(host = %host, error = %err, "ordering without replaces");
                        self.account
                            .new_order(&NewOrder::new(&identifiers))
                            .await
                            .map_err(|err| classify(err, slot))?
                    }
                    Err(err) => return Err(classify(err, slot)),
                }
            }
            None => self
                .account
                .new_order(&NewOrder::new(&identifiers))
                .await
                .map_err(|err| classify(err, slot))?,
        };
        let mut published = PublishedTokens {
            challenges: challenges.clone(),
            tokens: Vec::new(),
            alpn_hosts: Vec::new(),
        };
        let (challenge_type, name) = match kind {
            Challenge::Http01 => (ChallengeType::Http01, "http-01"),
            Challenge::TlsAlpn01 => (ChallengeType::TlsAlpn01, "tls-alpn-01"),
            Challenge::Dns01 => (ChallengeType::Dns01, "dns-01"),
        };
        if kind == Challenge::Dns01 && answers.dns.is_none() {
            return Err(AcmeError::NoDnsProvider {
                host: host.to_string(),
            });
        }
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|err| classify(err, slot))?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::OrderFailed {
                        host: host.to_string(),
                        status: format!("{other:?}").to_lowercase(),
                        detail: "authorization is not pending".to_string(),
                    })
                }
            }
            let mut challenge =
                authorization
                    .challenge(challenge_type.clone())
                    .ok_or_else(|| AcmeError::NoChallenge {
                        host: host.to_string(),
                        challenge: name,
                    })?;
            let key_authorization = challenge.key_authorization();
            match (kind, answers.dns) {
                (Challenge::Dns01, Some(dns)) => {
                    // The authorization names the domain without `*.`.
                    let domain = match challenge.identifier().identifier {
                        Identifier::Dns(domain) => domain.clone(),
                        other => format!("{other:?}"),
                    };
                    let dns_error = |source| AcmeError::Dns {
                        host: host.to_string(),
                        source,
                    };
                    let record = dns
                        .publish(&domain, &key_authorization.dns_value())
                        .await
                        .map_err(dns_error)?;
                    records.push(record);
                    dns.wait_until_visible(std::slice::from_ref(&records[records.len() - 1]))
                        .await
                        .map_err(|source| AcmeError::Propagation {
                            host: host.to_string(),
                            provider: dns.provider().name(),
                            zone: dns.provider().zone().to_string(),
                            source: Box::new(source),
                        })?;
                }
                (Challenge::TlsAlpn01, _) => {
                    let cert = crate::proxy::tls::alpn_validation(
                        host,
                        key_authorization.digest().as_ref(),
                    )
                    .map_err(|err| AcmeError::AlpnCertificate {
                        host: host.to_string(),
                        reason: err.to_string(),
                    })?;
                    published.challenges.insert_alpn(host, Arc::new(cert));
                    published.alpn_hosts.push(host.to_string());
                }
                _ => {
                    published
                        .challenges
                        .insert(&challenge.token, key_authorization.as_str());
                    published.tokens.push(challenge.token.clone());
                }
            }
            challenge
                .set_ready()
                .await
                .map_err(|err| classify(err, slot))?;
        }
        let retries = RetryPolicy::new()
            .initial_delay(POLL_FIRST_DELAY)
            .backoff(2.0)
            .timeout(timeout);
        let status = order
            .poll_ready(&retries)
            .await
            .map_err(|err| classify(err, slot))?;
        if status != OrderStatus::Ready {
            let detail = order
                .state()
                .error
                .as_ref()
                .map(|problem| problem.to_string())
                .unwrap_or_else(|| "no detail".to_string());
            return Err(AcmeError::OrderFailed {
                host: host.to_string(),
                status: format!("{status:?}").to_lowercase(),
                detail,
            });
        }
        drop(published);
        let key_pem = order.finalize().await.map_err(|err| classify(err, slot))?;
        let chain_pem = order
            .poll_certificate(&retries)
            .await
            .map_err(|err| classify(err, slot))?;
        Ok((chain_pem, key_pem))
    }

    /// The CA's suggested renewal window for `leaf`, or `None` when the
    /// directory offers no renewal information.
    pub async fn renewal_window(
        &self,
        leaf: &CertificateDer<'_>,
    ) -> Result<Option<RenewalWindow>, AcmeError> {
        let Ok(id) = CertificateIdentifier::try_from(leaf) else {
            return Ok(None);
        };
        match self.account.renewal_info(&id).await {
            Ok((info, refresh_after)) => Ok(Some(RenewalWindow {
                start: info.suggested_window.start.into(),
                end: info.suggested_window.end.into(),
                refresh_after,
            })),
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(err) => Err(classify(err, &self.retry_after)),
        }
    }

    /// The identifier of `leaf` for a `replaces` field, when it has one.
    pub fn certificate_id(leaf: &CertificateDer<'_>) -> Option<CertificateIdentifier<'static>> {
        CertificateIdentifier::try_from(leaf)
            .ok()
            .map(CertificateIdentifier::into_owned)
    }
}

impl Drop for PublishedTokens {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.remove(token);
        }
        for host in &self.alpn_hosts {
            self.challenges.remove_alpn(host);
        }
    }
}

/// hyper over rustls (ring) trusting the system roots plus `bundle`.
fn http_client(
    bundle: Option<&Path>,
) -> Result<HyperClient<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>, AcmeError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        debug!(error = %error, "skipping a system root certificate");
    }
    let (_, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        debug!(ignored, "system root certificates not usable");
    }
    if let Some(path) = bundle {
        let bundle_error = |reason: String| AcmeError::Bundle {
            path: path.display().to_string(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|err| bundle_error(err.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| bundle_error(err.to_string()))?;
        if certs.is_empty() {
            return Err(bundle_error("no certificate in the file".to_string()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|err| bundle_error(err.to_string()))?;
        }
    }
    if roots.is_empty() {
        warn!("no trusted root certificate for the acme server");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| AcmeError::Bundle {
            path: String::new(),
            reason: err.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(HyperClient::builder(TokioExecutor::new()).build(connector))
}

/// Turns an instant-acme error into ours, picking out rate limits.
fn classify(err: instant_acme::Error, slot: &RetryAfterSlot) -> AcmeError {
    let retry_after = slot.take();
    match err {
        instant_acme::Error::Api(problem) if problem.r#type.as_deref() == Some(RATE_LIMITED) => {
            AcmeError::RateLimited {
                detail: problem.detail.unwrap_or_default(),
                retry_after,
            }
        }
        other => AcmeError::Protocol(other),
    }
}

/// A refusal of the `replaces` field that a plain order avoids.
fn is_replaces_refusal(err: &instant_acme::Error) -> bool {
    match err {
        instant_acme::Error::Unsupported(_) => true,
        instant_acme::Error::Api(problem) => problem.r#type.as_deref() == Some(ALREADY_REPLACED),
        _ => false,
    }
}

/// A `Retry-After` header (seconds or an HTTP date) as a delay from `now`.
fn retry_after(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = u64::from_str(value) {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut headers = http::HeaderMap::new();
        assert_eq!(retry_after(&headers, now), None);
        headers.insert(RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(3600));
        headers.insert(RETRY_AFTER, later.parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(3600)));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn rate_limit_problems_carry_the_recorded_retry_after() {
        let slot = RetryAfterSlot::default();
        slot.set(Some(Duration::from_secs(600)));
        let problem: instant_acme::Problem = serde_json::from_str(
            r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many","status":429}"#,
        )
        .unwrap();
        let err = classify(instant_acme::Error::Api(problem), &slot);
        assert_eq!(
            err.failure_kind(),
            FailureKind::RateLimited {
                retry_after: Some(Duration::from_secs(600))
            }
        );
        let other: instant_acme::Problem =
            serde_json::from_str(r#"{"type":"urn:ietf:params:acme:error:malformed"}"#).unwrap();
        assert_eq!(
            classify(instant_acme::Error::Api(other), &slot).failure_kind(),
            FailureKind::Other
        );
    }

    #[test]
    fn a_missing_bundle_is_an_error() {
        let Err(err) = http_client(Some(Path::new("/nonexistent/bundle.pem"))) else {
            panic!("a missing bundle was accepted");
        };
        assert!(err.to_string().contains("/nonexistent/bundle.pem"), "{err}");
    }
}
