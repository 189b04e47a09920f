//! Waiting for a published TXT record to show on the servers the CA may
//! ask, before the CA is told to look: each server is asked directly,
//! without recursion, until all of them answer with the value or the
//! timeout passes. With no servers configured they are the zone's
//! authoritative servers, from its NS records, found through the system's
//! resolver.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};
use thiserror::Error;
use tracing::debug;

use super::wire;

/// First pause between two rounds of queries; doubles up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(2);
/// The system's resolver configuration.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Most name servers of a zone asked.
const MAX_SERVERS: usize = 8;

/// Why a record was not seen everywhere in time.
#[derive(Debug, Clone, Error)]
pub enum PropagationError {
    #[error("cannot find the authoritative servers of {zone}: {reason}")]
    NoServers { zone: String, reason: String },
    #[error("{fqdn} did not show on {servers} within {seconds}s (last answer: {last})")]
    Timeout {
        fqdn: String,
        servers: String,
        seconds: u64,
        last: String,
    },
}

/// Waits until every server in `servers` (`host:port`) answers the TXT
/// query for `fqdn` with every value in `values`.
pub async fn wait_until_visible(
    servers: &[String],
    fqdn: &str,
    values: &[String],
    timeout: Duration,
) -> Result<(), PropagationError> {
    let name = Name::from_ascii(fqdn).map_err(|err| PropagationError::Timeout {
        fqdn: fqdn.to_string(),
        servers: servers.join(", "),
        seconds: 0,
        last: err.to_string(),
    })?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut waiting: Vec<&String> = servers.iter().collect();
    let mut pause = FIRST_PAUSE;
    let mut last = String::from("none yet");
    loop {
        let mut still = Vec::new();
        for server in waiting {
            let asked = wire::query(server, &name, RecordType::TXT, false);
            match tokio::time::timeout_at(deadline, asked).await {
                Err(_) => last = format!("{server} did not answer"),
                Ok(Ok(answer)) => {
                    let found = wire::txt_values(&answer, &name);
                    if values.iter().all(|value| found.contains(value)) {
                        debug!(server = %server, fqdn = %fqdn, "the challenge record shows");
                        continue;
                    }
                    last = format!("{server}: {} record(s), not the challenge's", found.len());
                }
                Ok(Err(err)) => last = err.to_string(),
            }
            still.push(server);
        }
        if still.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Err(PropagationError::Timeout {
                fqdn: fqdn.to_string(),
                servers: still
                    .iter()
                    .map(|server| server.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                seconds: timeout.as_secs(),
                last,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
        waiting = still;
    }
}

/// The authoritative servers of `zone` (`example.com.`) as `address:53`,
/// from its NS records and their addresses, asked of the system's resolver.
pub async fn authoritative_servers(zone: &str) -> Result<Vec<String>, PropagationError> {
    let no_servers = |reason: String| PropagationError::NoServers {
        zone: zone.to_string(),
        reason,
    };
    let conf = std::fs::read_to_string(RESOLV_CONF)
        .map_err(|err| no_servers(format!("cannot read {RESOLV_CONF}: {err}")))?;
    let resolvers = nameservers(&conf);
    let resolver = resolvers
        .first()
        .ok_or_else(|| no_servers(format!("{RESOLV_CONF} names no nameserver")))?;
    authoritative_servers_via(resolver, zone).await
}

/// The authoritative servers of `zone` as `address:53`, asked of
/// `resolver` (`host:port`).
pub async fn authoritative_servers_via(
    resolver: &str,
    zone: &str,
) -> Result<Vec<String>, PropagationError> {
    let no_servers = |reason: String| PropagationError::NoServers {
        zone: zone.to_string(),
        reason,
    };
    let zone_name =
        Name::from_ascii(zone).map_err(|err| no_servers(format!("not a dns name: {err}")))?;
    let answer = wire::query(resolver, &zone_name, RecordType::NS, true)
        .await
        .map_err(|err| no_servers(err.to_string()))?;
    if answer.metadata.response_code != ResponseCode::NoError {
        return Err(no_servers(format!(
            "{resolver} answered {}",
            answer.metadata.response_code
        )));
    }
    let targets: Vec<Name> = answer
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::NS(ns) => Some(ns.0.clone()),
            _ => None,
        })
        .take(MAX_SERVERS)
        .collect();
    if targets.is_empty() {
        return Err(no_servers(format!("{resolver} gave no ns records")));
    }
    let mut servers = Vec::new();
    for target in targets {
        let answer = wire::query(resolver, &target, RecordType::A, true)
            .await
            .map_err(|err| no_servers(err.to_string()))?;
        let address = answer.answers.iter().find_map(|record| match &record.data {
            RData::A(a) => Some(a.0),
            _ => None,
        });
        match address {
            Some(address) => servers.push(format!("{address}:53")),
            None => debug!(server = %target, "a name server without an ipv4 address"),
        }
    }
    if servers.is_empty() {
        return Err(no_servers("no name server has an address".to_string()));
    }
    Ok(servers)
}

/// The `nameserver` lines of a resolv.conf, as `address:53`.
fn nameservers(conf: &str) -> Vec<String> {
    conf.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .filter_map(|address| address.parse::<std::net::IpAddr>().ok())
        .map(|address| std::net::SocketAddr::new(address, 53).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_reads_addresses_and_skips_the_rest() {
        let conf = "# comment\nsearch example.test\nnameserver 10.0.0.2\nnameserver ::1\nnameserver bogus\noptions ndots:1\n";
        assert_eq!(nameservers(conf), vec!["10.0.0.2:53", "[::1]:53"]);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_ends_in_a_timeout_naming_it() {
        // A listener that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap().to_string();
        let held = tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                kept.push(stream);
            }
        });
        let err = wait_until_visible(
            std::slice::from_ref(&server),
            "_acme-challenge.example.test.",
            &["value".to_string()],
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        held.abort();
        let text = err.to_string();
        assert!(
            text.contains(&server) && text.contains("_acme-challenge.example.test."),
            "{text}"
        );
    }
}
