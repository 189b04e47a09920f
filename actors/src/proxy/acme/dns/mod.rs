//! DNS-01: publishing `_acme-challenge` TXT records through a DNS provider,
//! so the CA can validate names that HTTP-01 cannot reach (wildcards, hosts
//! without port 80). `provider.rs` is the seam every provider implements;
//! `rfc2136.rs` is the provider for self-hosted servers, `google.rs` and
//! `cloudflare.rs` those of two DNS hosts (over `http.rs`); `wire.rs` carries
//! DNS messages over TCP; `propagation.rs` waits for a record to show.
//! `Publisher` is what an order uses: publish, wait, withdraw.

pub mod cloudflare;
pub mod google;
mod http;
pub mod propagation;
pub mod provider;
pub mod rfc2136;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

pub use cloudflare::Cloudflare;
pub use google::GoogleCloudDns;
pub use propagation::PropagationError;
pub use provider::{BearerTokens, DnsError, DnsErrorKind, DnsProvider, Published, TxtRecord};
pub use rfc2136::Rfc2136;

use crate::plan::{DnsProviderSettings, DnsSettings};

/// Longest wait to withdraw one record after an order.
const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the provider `[certbot.dns]` names. The daemon passes one that
/// knows every provider (the REST ones need its credentials); the default
/// knows RFC 2136 alone.
pub type Connector =
    Arc<dyn Fn(&DnsSettings) -> Result<Arc<dyn DnsProvider>, DnsError> + Send + Sync>;

/// A provider with the settings of `[certbot.dns]`: what one order uses.
#[derive(Debug, Clone)]
pub struct Publisher {
    provider: Arc<dyn DnsProvider>,
    /// Servers checked for the record; empty: the zone's NS records.
    servers: Vec<String>,
    timeout: Duration,
    ttl: u32,
}

/// The connector that knows RFC 2136 only.
pub fn rfc2136_connector() -> Connector {
    Arc::new(|settings: &DnsSettings| match &settings.provider {
        DnsProviderSettings::Rfc2136 { .. } => connect_rfc2136(settings),
        other => Err(DnsError::new(
            other.name(),
            settings.zone.clone(),
            DnsErrorKind::Unavailable,
            "this provider is not available here",
        )),
    })
}

/// The RFC 2136 provider of `settings`, whose provider must be `rfc2136`.
pub fn connect_rfc2136(settings: &DnsSettings) -> Result<Arc<dyn DnsProvider>, DnsError> {
    let DnsProviderSettings::Rfc2136 {
        server,
        key_name,
        algorithm,
        secret,
    } = &settings.provider
    else {
        return Err(DnsError::new(
            settings.provider.name(),
            settings.zone.clone(),
            DnsErrorKind::Unavailable,
            "not an rfc2136 provider",
        ));
    };
    Ok(Arc::new(Rfc2136::new(
        server,
        &settings.zone,
        key_name,
        *algorithm,
        secret,
    )?))
}

impl Publisher {
    /// The publisher of `settings`, through `connector`. With no servers
    /// configured, an RFC 2136 zone is checked on the server that took the
    /// update; another provider's on the zone's NS records.
    pub fn new(settings: &DnsSettings, connector: &Connector) -> Result<Self, DnsError> {
        let provider = connector(settings)?;
        let servers = match (&settings.provider, settings.propagation_servers.is_empty()) {
            (DnsProviderSettings::Rfc2136 { server, .. }, true) => vec![server.clone()],
            _ => settings.propagation_servers.clone(),
        };
        Ok(Publisher {
            provider,
            servers,
            timeout: settings.propagation_timeout,
            ttl: settings.ttl,
        })
    }

    /// Longest wait for a record to show (`[certbot.dns] propagation_timeout`).
    pub fn propagation_timeout(&self) -> Duration {
        self.timeout
    }

    /// The provider's name and zone, for errors.
    pub fn provider(&self) -> &dyn DnsProvider {
        self.provider.as_ref()
    }

    /// Publishes `value` under `_acme-challenge.<domain>.`; `domain` is a
    /// name without its wildcard label.
    pub async fn publish(&self, domain: &str, value: &str) -> Result<Published, DnsError> {
        let record = TxtRecord {
            fqdn: format!("_acme-challenge.{}.", domain.trim_end_matches('.')),
            value: value.to_string(),
            ttl: self.ttl,
        };
        debug!(provider = self.provider.name(), fqdn = %record.fqdn, "publishing the challenge record");
        self.provider.publish(&record).await
    }

    /// Waits until every record of `published` shows on the servers.
    pub async fn wait_until_visible(
        &self,
        published: &[Published],
    ) -> Result<(), PropagationError> {
        let servers = match self.servers.is_empty() {
            true => propagation::authoritative_servers(self.provider.zone()).await?,
            false => self.servers.clone(),
        };
        let names: std::collections::BTreeSet<&str> =
            published.iter().map(|p| p.record.fqdn.as_str()).collect();
        for fqdn in names {
            let values: Vec<String> = published
                .iter()
                .filter(|p| p.record.fqdn == fqdn)
                .map(|p| p.record.value.clone())
                .collect();
            propagation::wait_until_visible(&servers, fqdn, &values, self.timeout).await?;
        }
        Ok(())
    }

    /// Withdraws every record of `published`, each within a bounded time;
    /// a failure is logged and the others are still withdrawn.
    pub async fn withdraw_all(&self, published: Vec<Published>) {
        for record in published {
            let withdrawn =
                tokio::time::timeout(WITHDRAW_TIMEOUT, self.provider.withdraw(&record)).await;
            match withdrawn {
                Ok(Ok(())) => {
                    debug!(fqdn = %record.record.fqdn, "withdrew the challenge record")
                }
                Ok(Err(err)) => {
                    warn!(fqdn = %record.record.fqdn, error = %err, "cannot withdraw the challenge record")
                }
                Err(_) => warn!(
                    provider = self.provider.name(),
                    zone = self.provider.zone(),
                    fqdn = %record.record.fqdn,
                    "withdrawing the challenge record timed out"
                ),
            }
        }
    }
}
