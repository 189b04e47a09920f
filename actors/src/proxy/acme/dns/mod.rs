//! DNS-01: publishing `_acme-challenge` TXT records through a DNS provider,
//! so the CA can validate names that HTTP-01 cannot reach (wildcards, hosts
//! without port 80). `provider.rs` is the seam every provider implements.

pub mod cloudflare;
pub mod google;
mod http;
pub mod provider;

pub use cloudflare::Cloudflare;
pub use google::GoogleCloudDns;
pub use provider::{BearerTokens, DnsError, DnsErrorKind, DnsProvider, Published, TxtRecord};
