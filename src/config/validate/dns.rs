//! `[certbot.dns]` of dispenser.toml: the DNS provider that publishes
//! DNS-01 records, its credentials, and the propagation wait. The table is
//! flat; `provider` says which keys apply, and a key of another provider is
//! an error rather than ignored. Credentials (`secret`, `api_token`) are
//! never quoted in a diagnostic, whether or not they came from a secret.

use std::time::Duration;

use base64::Engine as _;
use dispenser_actors::plan::{
    DnsProviderSettings, DnsSettings, Sensitive, TsigAlgorithm, DEFAULT_DNS_PROPAGATION_TIMEOUT,
    DEFAULT_DNS_TTL,
};

use super::field::{duration, in_range, pick};
use crate::config::check::FileCheck;
use crate::config::file::CertbotDnsTable;
use crate::config::values::{DNS_PROVIDERS, TSIG_ALGORITHMS};

/// The DNS port, where a server is written without one.
const DNS_PORT: u16 = 53;
/// Longest `propagation_timeout`: past it the CA's order expires anyway.
const MAX_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest TTL of a challenge record.
const MAX_TTL: u64 = 86_400;

/// `[certbot.dns]`; `None` when it has errors (reported).
pub(super) fn dns(check: &mut FileCheck<'_>, table: &CertbotDnsTable) -> Option<DnsSettings> {
    let errors_before = check.error_count();
    let provider = pick(
        check,
        "certbot.dns.provider",
        DNS_PROVIDERS,
        &table.provider,
        "dns provider",
    );
    let zone = dns_name(check, "certbot.dns.zone", "zone", &table.zone);
    let provider = provider.and_then(|name| match name {
        "rfc2136" => rfc2136(check, table),
        "google" => google(check, table),
        _ => cloudflare(check, table),
    });
    let propagation_servers = table
        .propagation_servers
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(index, server)| {
            server_address(
                check,
                &format!("certbot.dns.propagation_servers[{index}]"),
                server,
            )
        })
        .collect();
    let propagation_timeout = match duration(
        check,
        "certbot.dns.propagation_timeout",
        table.propagation_timeout.as_ref(),
    ) {
        Some(wait) if wait.is_zero() || wait > MAX_PROPAGATION_TIMEOUT => {
            check.error(
                "certbot.dns.propagation_timeout",
                "`propagation_timeout` must be above zero and at most 1h",
                "out of range",
            );
            DEFAULT_DNS_PROPAGATION_TIMEOUT
        }
        Some(wait) => wait,
        None => DEFAULT_DNS_PROPAGATION_TIMEOUT,
    };
    let ttl = in_range(check, "certbot.dns.ttl", table.ttl, 1..=MAX_TTL)
        .map_or(DEFAULT_DNS_TTL, |ttl| ttl as u32);
    if check.error_count() != errors_before {
        return None;
    }
    Some(DnsSettings {
        zone: zone?,
        provider: provider?,
        propagation_servers,
        propagation_timeout,
        ttl,
    })
}

fn rfc2136(check: &mut FileCheck<'_>, table: &CertbotDnsTable) -> Option<DnsProviderSettings> {
    foreign(check, "rfc2136", "project", table.project.is_some());
    foreign(
        check,
        "rfc2136",
        "managed_zone",
        table.managed_zone.is_some(),
    );
    foreign(check, "rfc2136", "api_token", table.api_token.is_some());
    let server = required(check, "rfc2136", "server", table.server.as_deref())
        .and_then(|server| server_address(check, "certbot.dns.server", server));
    let key_name = required(check, "rfc2136", "key_name", table.key_name.as_deref())
        .and_then(|name| dns_name(check, "certbot.dns.key_name", "key_name", name));
    let algorithm = match &table.algorithm {
        Some(word) => pick(
            check,
            "certbot.dns.algorithm",
            TSIG_ALGORITHMS,
            word,
            "tsig algorithm",
        ),
        None => Some(TsigAlgorithm::HmacSha256),
    };
    let secret = required(check, "rfc2136", "secret", table.secret.as_deref()).and_then(|secret| {
        literal_credential(check, "secret", secret);
        let decoded = base64::engine::general_purpose::STANDARD.decode(secret.trim());
        match decoded {
            Ok(key) if !key.is_empty() => Some(Sensitive::new(secret.trim())),
            _ => {
                check
                    .error(
                        "certbot.dns.secret",
                        "`secret` must be the tsig key's secret in base64",
                        "not base64",
                    )
                    .help = Some(
                    "copy the `secret` line of the key that `tsig-keygen` printed, without the quotes"
                        .to_string(),
                );
                None
            }
        }
    });
    Some(DnsProviderSettings::Rfc2136 {
        server: server?,
        key_name: key_name?,
        algorithm: algorithm?,
        secret: secret?,
    })
}

fn google(check: &mut FileCheck<'_>, table: &CertbotDnsTable) -> Option<DnsProviderSettings> {
    for (key, set) in [
        ("server", table.server.is_some()),
        ("key_name", table.key_name.is_some()),
        ("algorithm", table.algorithm.is_some()),
        ("secret", table.secret.is_some()),
        ("api_token", table.api_token.is_some()),
    ] {
        foreign(check, "google", key, set);
    }
    let project = required(check, "google", "project", table.project.as_deref())?;
    let managed_zone = required(
        check,
        "google",
        "managed_zone",
        table.managed_zone.as_deref(),
    )?;
    Some(DnsProviderSettings::Google {
        project: project.to_string(),
        managed_zone: managed_zone.to_string(),
    })
}

fn cloudflare(check: &mut FileCheck<'_>, table: &CertbotDnsTable) -> Option<DnsProviderSettings> {
    for (key, set) in [
        ("server", table.server.is_some()),
        ("key_name", table.key_name.is_some()),
        ("algorithm", table.algorithm.is_some()),
        ("secret", table.secret.is_some()),
        ("project", table.project.is_some()),
        ("managed_zone", table.managed_zone.is_some()),
    ] {
        foreign(check, "cloudflare", key, set);
    }
    let token = required(check, "cloudflare", "api_token", table.api_token.as_deref())?;
    literal_credential(check, "api_token", token);
    Some(DnsProviderSettings::Cloudflare {
        api_token: Sensitive::new(token.trim()),
    })
}

/// A credential written in the file itself: a warning, as the file is
/// meant for version control.
fn literal_credential(check: &mut FileCheck<'_>, key: &str, value: &str) {
    let path = format!("certbot.dns.{key}");
    if !check.masked(&path, value).masked {
        check
            .warning(
                &path,
                format!("`{key}` is written in the file; read it from a secret instead"),
                "a credential in clear text",
            )
            .help = Some(format!(
            "write `{key} = \"${{ dns_{key} }}\"` and define `dns_{key}` in dispenser.vars with a secret source (docs/secrets.md)"
        ));
    }
}

/// A key `provider` needs; missing or empty: an error at the table.
fn required<'a>(
    check: &mut FileCheck<'_>,
    provider: &str,
    key: &str,
    value: Option<&'a str>,
) -> Option<&'a str> {
    match value.map(str::trim) {
        Some(value) if !value.is_empty() => Some(value),
        Some(_) => {
            check.error(
                &format!("certbot.dns.{key}"),
                format!("`{key}` must not be empty"),
                "empty",
            );
            None
        }
        None => {
            check
                .error(
                    "certbot.dns.provider",
                    format!("the {provider} provider needs `{key}`"),
                    "missing a key",
                )
                .help = Some(format!("add `{key} = ...` to [certbot.dns]"));
            None
        }
    }
}

/// A key set for another provider than the one chosen.
fn foreign(check: &mut FileCheck<'_>, provider: &str, key: &str, set: bool) {
    if set {
        check.error(
            &format!("certbot.dns.{key}"),
            format!("`{key}` is not a key of the {provider} provider"),
            "another provider's key",
        );
    }
}

/// A DNS name, lower-cased and fully qualified (a trailing dot).
fn dns_name(check: &mut FileCheck<'_>, path: &str, key: &str, name: &str) -> Option<String> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !ok {
        check.error(
            path,
            format!("`{key}` must be a dns name such as `example.com`"),
            "not a dns name",
        );
        return None;
    }
    Some(format!("{name}."))
}

/// A DNS server, `host` or `host:port` (an IPv6 address in brackets), as
/// `host:port`.
fn server_address(check: &mut FileCheck<'_>, path: &str, written: &str) -> Option<String> {
    let written = written.trim();
    if let Ok(address) = written.parse::<std::net::SocketAddr>() {
        return Some(address.to_string());
    }
    if let Ok(address) = written.parse::<std::net::IpAddr>() {
        return Some(std::net::SocketAddr::new(address, DNS_PORT).to_string());
    }
    let (host, port) = match written.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().ok().filter(|port| *port != 0)),
        None => (written, Some(DNS_PORT)),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    match (host_ok, port) {
        (true, Some(port)) => Some(format!("{}:{port}", host.to_ascii_lowercase())),
        _ => {
            check
                .error(
                    path,
                    "expected a dns server: `host` or `host:port`",
                    "not a server",
                )
                .help = Some("for example \"ns1.example.com\" or \"127.0.0.1:5353\"".to_string());
            None
        }
    }
}
