//! What the REST providers (Google Cloud DNS, Cloudflare) share: one HTTP
//! client on rustls with ring and the platform's roots, the https-or-loopback
//! rule for an endpoint override, and the text of a failure.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use rustls_platform_verifier::BuilderVerifierExt;
use thiserror::Error;

use super::provider::{DnsError, DnsErrorKind};
use crate::net::{describe, is_loopback_host};
use crate::plan::Sensitive;

/// How long one request (connecting, sending, reading the answer) may take.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const USER_AGENT: &str = concat!("dispenser/", env!("CARGO_PKG_VERSION"));
/// How many characters of a provider's own error message a detail quotes.
const MESSAGE_LIMIT: usize = 200;

/// Why a REST provider could not be set up.
#[derive(Debug, Error)]
pub(super) enum SetupError {
    #[error("endpoint {endpoint:?} is not a url: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    #[error("endpoint {0} must use https (plain http only to a loopback host)")]
    Insecure(String),
    #[error("endpoint {0} must not carry credentials")]
    Credentials(String),
    #[error("cannot build the http client: {0}")]
    Client(String),
}

/// What a REST provider starts from: its zone, fully qualified, its API's
/// base URL, and a client.
pub(super) struct Setup {
    pub zone: String,
    pub endpoint: Url,
    pub http: reqwest::Client,
}

impl Setup {
    /// `provider`'s setup for `zone`, at `default` or the `custom` endpoint
    /// (see [`endpoint`]).
    pub fn new(
        provider: &'static str,
        zone: &str,
        default: &str,
        custom: Option<&str>,
    ) -> Result<Setup, DnsError> {
        let zone = absolute(zone);
        let refused = |err: SetupError| {
            DnsError::new(
                provider,
                zone.clone(),
                DnsErrorKind::Refused,
                err.to_string(),
            )
        };
        let endpoint = endpoint(default, custom).map_err(refused)?;
        let http = http_client().map_err(refused)?;
        Ok(Setup {
            zone,
            endpoint,
            http,
        })
    }
}

/// A client that verifies TLS with the platform's roots (rustls on ring),
/// with a per-request timeout.
pub(super) fn http_client() -> Result<reqwest::Client, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_platform_verifier())
        .map_err(|err| SetupError::Client(err.to_string()))?
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(USER_AGENT)
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|err| SetupError::Client(describe(&err)))
}

/// The API's base URL: `default`, or an override that is https, or plain
/// http to a loopback host (a stand-in in tests), so that a typo cannot send
/// a token in clear text. The result ends with `/`.
pub(super) fn endpoint(default: &str, custom: Option<&str>) -> Result<Url, SetupError> {
    let text = custom.unwrap_or(default).trim();
    let mut url = Url::parse(text).map_err(|err| SetupError::BadEndpoint {
        endpoint: text.to_string(),
        reason: err.to_string(),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SetupError::Credentials(format!(
            "{}://{}",
            url.scheme(),
            url.host_str().unwrap_or_default()
        )));
    }
    let loopback = url.host_str().is_some_and(is_loopback_host);
    let secure = match url.scheme() {
        "https" => url.host_str().is_some_and(|host| !host.is_empty()),
        "http" => loopback,
        _ => false,
    };
    if !secure {
        return Err(SetupError::Insecure(url.to_string()));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// `base` with `segments` appended to its path, each one percent-encoded.
pub(super) fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    // An http(s) URL with a host, as `endpoint` guarantees, always has a path.
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// A provider's own error message, cut to a length fit for a log line.
pub(super) fn quote_message(message: &str) -> String {
    let message = message.trim();
    if message.chars().count() <= MESSAGE_LIMIT {
        return format!("{message:?}");
    }
    let cut: String = message.chars().take(MESSAGE_LIMIT).collect();
    format!("{:?}", format!("{cut}..."))
}

/// `text` with every occurrence of the secret masked: a belt for details
/// built from what a server answered.
pub(super) fn scrub(text: String, secret: &Sensitive) -> String {
    let value = secret.expose();
    if value.is_empty() || !text.contains(value) {
        return text;
    }
    text.replace(value, &Sensitive::default().to_string())
}

/// Whether `name` (with its trailing dot) is `zone` or a name under it.
pub(super) fn within_zone(name: &str, zone: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let zone = zone.to_ascii_lowercase();
    name == zone || name.ends_with(&format!(".{zone}"))
}

/// `name` fully qualified with one trailing dot.
pub(super) fn absolute(name: &str) -> String {
    format!("{}.", name.trim().trim_end_matches('.'))
}

/// The text of one TXT record's data as a zone file writes it: one quoted
/// string, `"` and `\` escaped.
pub(super) fn quote_txt(value: &str) -> String {
    let mut text = String::with_capacity(value.len() + 2);
    text.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            text.push('\\');
        }
        text.push(c);
    }
    text.push('"');
    text
}

/// The text a TXT record's data holds: its quoted strings joined (a long
/// value comes back split in 255-byte strings), or the data itself where it
/// is not quoted.
pub(super) fn unquote_txt(data: &str) -> String {
    let data = data.trim();
    if !data.starts_with('"') {
        return data.to_string();
    }
    let mut text = String::with_capacity(data.len());
    let mut inside = false;
    let mut chars = data.chars();
    while let Some(c) = chars.next() {
        match (inside, c) {
            (_, '"') => inside = !inside,
            (true, '\\') => {
                if let Some(next) = chars.next() {
                    text.push(next);
                }
            }
            (true, c) => text.push(c),
            (false, _) => {}
        }
    }
    text
}

#[cfg(test)]
#[path = "standin.rs"]
pub(super) mod standin;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_endpoint_must_be_https_or_loopback() {
        let default = "https://api.example.net/v1/";
        assert_eq!(endpoint(default, None).unwrap().as_str(), default);
        for ok in [
            "https://dns.example.net/v1",
            "http://127.0.0.1:8080/v1/",
            "http://127.3.4.5/",
            "http://[::1]:9000/",
            "http://localhost:1234/x/",
        ] {
            let url = endpoint(default, Some(ok)).unwrap_or_else(|err| panic!("{ok}: {err}"));
            assert!(url.path().ends_with('/'), "{url}");
        }
        for bad in [
            "http://dns.example.net/v1/",
            "http://10.0.0.1/",
            "http://localhost.example.net/",
            "ftp://127.0.0.1/",
            "not a url",
            "https://user:secret@dns.example.net/",
        ] {
            let err = endpoint(default, Some(bad)).expect_err(bad);
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn dns_txt_data_round_trips_through_quotes() {
        assert_eq!(quote_txt("abc"), "\"abc\"");
        assert_eq!(quote_txt("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(unquote_txt("\"a\\\"b\\\\c\""), "a\"b\\c");
        assert_eq!(unquote_txt("\"abc\" \"def\""), "abcdef");
        assert_eq!(unquote_txt("plain"), "plain");
    }

    #[test]
    fn dns_names_within_zone() {
        assert!(within_zone("_acme-challenge.example.com.", "example.com."));
        assert!(within_zone("_acme-challenge.Example.COM.", "example.com."));
        assert!(within_zone("example.com.", "example.com."));
        assert!(!within_zone(
            "_acme-challenge.badexample.com.",
            "example.com."
        ));
        assert!(!within_zone("_acme-challenge.example.org.", "example.com."));
    }

    #[test]
    fn dns_scrub_masks_the_secret() {
        let secret = Sensitive::new("s3cr3t");
        assert_eq!(scrub("a s3cr3t b".into(), &secret), "a ******** b");
        assert_eq!(scrub("nothing".into(), &secret), "nothing");
    }
}
