//! The daemon's DNS providers for DNS-01: RFC 2136 from the runtime, Google
//! Cloud DNS with the Application Default Credentials that the secrets use
//! (google-cloud-auth), and Cloudflare. The REST endpoints can be pointed at
//! local stand-ins for tests (`DISPENSER_CLOUDDNS_ENDPOINT`,
//! `DISPENSER_CLOUDFLARE_ENDPOINT`); the providers accept only https or a
//! loopback address there, so a token never travels in clear text.

use std::sync::Arc;

use async_trait::async_trait;
use dispenser_actors::plan::{DnsProviderSettings, DnsSettings, Sensitive};
use dispenser_actors::proxy::acme::dns::{
    self, BearerTokens, Cloudflare, Connector, DnsProvider, GoogleCloudDns,
};
use google_cloud_auth::credentials::{self, CacheableResource, Credentials};
use tokio::sync::OnceCell;

/// Overrides the Cloud DNS endpoint (tests).
pub const CLOUDDNS_ENDPOINT_ENV: &str = "DISPENSER_CLOUDDNS_ENDPOINT";
/// Overrides the Cloudflare endpoint (tests).
pub const CLOUDFLARE_ENDPOINT_ENV: &str = "DISPENSER_CLOUDFLARE_ENDPOINT";

/// OAuth tokens from Application Default Credentials, built on first use.
#[derive(Default)]
struct AdcTokens {
    credentials: OnceCell<Credentials>,
}

/// The connector that knows every provider.
pub fn connector() -> Connector {
    Arc::new(
        |settings: &DnsSettings| -> Result<Arc<dyn DnsProvider>, dns::DnsError> {
            match &settings.provider {
                DnsProviderSettings::Rfc2136 { .. } => dns::connect_rfc2136(settings),
                DnsProviderSettings::Google {
                    project,
                    managed_zone,
                } => Ok(Arc::new(GoogleCloudDns::new(
                    project.clone(),
                    managed_zone.clone(),
                    settings.zone.clone(),
                    Arc::new(AdcTokens::default()),
                    endpoint(CLOUDDNS_ENDPOINT_ENV),
                )?)),
                DnsProviderSettings::Cloudflare { api_token } => Ok(Arc::new(Cloudflare::new(
                    api_token.clone(),
                    settings.zone.clone(),
                    endpoint(CLOUDFLARE_ENDPOINT_ENV),
                )?)),
            }
        },
    )
}

fn endpoint(variable: &str) -> Option<String> {
    std::env::var(variable)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

impl std::fmt::Debug for AdcTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdcTokens").finish_non_exhaustive()
    }
}

#[async_trait]
impl BearerTokens for AdcTokens {
    async fn token(&self) -> Result<Sensitive, String> {
        let credentials = self
            .credentials
            .get_or_try_init(|| async {
                credentials::Builder::default()
                    .build()
                    .map_err(|err| format!("no google credentials: {err}"))
            })
            .await?;
        let headers = match credentials.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => data,
            Ok(CacheableResource::NotModified) => {
                return Err("the google credentials returned no token".to_string())
            }
            Err(err) => return Err(format!("cannot get a google access token: {err}")),
        };
        headers
            .get(reqwest::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(Sensitive::new)
            .ok_or_else(|| "the google credentials gave no bearer token".to_string())
    }
}
