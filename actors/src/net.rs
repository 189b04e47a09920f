//! What the runtime's HTTP clients (the registry client, the DNS providers)
//! share about hosts and failures.

use std::net::IpAddr;

/// `localhost` (in any case) or a loopback address, with or without the
/// brackets of an IPv6 literal: the hosts that plain HTTP may reach.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An error with its chain of causes, each said once, for a log line.
pub fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_localhost_and_loopback_addresses_only() {
        for host in [
            "localhost",
            "LocalHost",
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "localhost.example.com",
            "10.0.0.1",
            "[::2]",
            "example.com",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Chain {
        text: &'static str,
        #[source]
        cause: Option<Box<Chain>>,
    }

    #[test]
    fn describe_joins_the_causes_and_says_each_once() {
        let inner = Chain {
            text: "connection refused",
            cause: None,
        };
        let middle = Chain {
            text: "connect: connection refused",
            cause: Some(Box::new(inner)),
        };
        let outer = Chain {
            text: "request failed",
            cause: Some(Box::new(middle)),
        };
        assert_eq!(
            describe(&outer),
            "request failed: connect: connection refused"
        );
    }
}
