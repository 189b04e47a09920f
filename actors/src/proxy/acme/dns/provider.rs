//! The seam between the ACME manager and a DNS provider: publish one TXT
//! record, withdraw it again. Each provider (RFC 2136, Google Cloud DNS,
//! Cloudflare) implements [`DnsProvider`]; the issuance code knows no other.

use std::fmt;

use async_trait::async_trait;
use thiserror::Error;

use crate::plan::Sensitive;

/// One TXT record to publish for a DNS-01 challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtRecord {
    /// The owner name, fully qualified with its trailing dot:
    /// `_acme-challenge.example.com.` (for `*.example.com` too).
    pub fqdn: String,
    /// The challenge's key authorization digest (RFC 8555 section 8.4), as
    /// the record's text. Public once published, but not worth logging.
    pub value: String,
    /// Seconds a resolver may cache the record.
    pub ttl: u32,
}

/// What a provider needs to withdraw a record it published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub record: TxtRecord,
    /// The provider's own id of the record, where it has one (Cloudflare's
    /// record id); `None` where the name and value identify it.
    pub id: Option<String>,
}

/// Why a provider could not publish or withdraw a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsErrorKind {
    /// The credentials were refused (a wrong TSIG key, an expired token).
    Unauthorized,
    /// The provider refused the change itself (no such zone, not allowed).
    Refused,
    /// The provider could not be reached, or answered something unexpected.
    Unavailable,
}

/// A failure of one provider on one zone. Its text names both and never a
/// credential.
#[derive(Debug, Clone, Error)]
#[error("dns provider {provider} (zone {zone}): {detail}")]
pub struct DnsError {
    /// `rfc2136`, `google` or `cloudflare`.
    pub provider: &'static str,
    pub zone: String,
    pub kind: DnsErrorKind,
    pub detail: String,
}

impl DnsError {
    pub fn new(
        provider: &'static str,
        zone: impl Into<String>,
        kind: DnsErrorKind,
        detail: impl Into<String>,
    ) -> DnsError {
        DnsError {
            provider,
            zone: zone.into(),
            kind,
            detail: detail.into(),
        }
    }
}

/// A DNS provider that can add and remove TXT records in one zone.
#[async_trait]
pub trait DnsProvider: Send + Sync + fmt::Debug {
    /// The provider's name in errors and logs: `rfc2136`, `google`, `cloudflare`.
    fn name(&self) -> &'static str;

    /// The zone this provider writes in, fully qualified with its trailing
    /// dot (`example.com.`).
    fn zone(&self) -> &str;

    /// Adds the record beside any other TXT records of the same name (two
    /// challenges, `example.com` and `*.example.com`, share one owner name).
    async fn publish(&self, record: &TxtRecord) -> Result<Published, DnsError>;

    /// Removes exactly the record `publish` added, and no other record of
    /// that name. Removing a record that is already gone succeeds.
    async fn withdraw(&self, published: &Published) -> Result<(), DnsError>;
}

/// OAuth bearer tokens for a REST provider (Google Cloud DNS). The binary
/// implements it with google-cloud-auth, the same credentials the secrets use,
/// so this crate needs no Google dependency.
#[async_trait]
pub trait BearerTokens: Send + Sync + fmt::Debug {
    /// A token valid for at least the next minute, or why there is none.
    async fn token(&self) -> Result<Sensitive, String>;
}
