//! The RFC 2136 provider: dynamic updates signed with a TSIG key (RFC 8945),
//! sent over TCP to the zone's primary server. BIND, Knot and PowerDNS take
//! them. A record is added beside the others of its name and removed by its
//! exact value, so two challenges for one name (`example.com` and
//! `*.example.com`) never remove each other's record. The server's answer
//! must carry a valid signature from the same key before a success counts.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use hickory_proto::op::{update_message, Message, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm as HickoryAlgorithm;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordSet, TSigner};

use super::provider::{DnsError, DnsErrorKind, DnsProvider, Published, TxtRecord};
use super::wire;
use crate::plan::{Sensitive, TsigAlgorithm};

/// Seconds the server's clock may differ from ours (RFC 8945 recommends 300).
const FUDGE: u16 = 300;

/// The provider's name in errors.
const NAME: &str = "rfc2136";

/// A zone on a primary server that takes TSIG-signed updates.
pub struct Rfc2136 {
    server: String,
    zone: String,
    zone_name: Name,
    signer: TSigner,
}

impl Rfc2136 {
    /// A provider for `zone` (`example.com.`) on `server` (`host:port`),
    /// signing with the key `key_name` whose base64 secret is `secret`.
    pub fn new(
        server: &str,
        zone: &str,
        key_name: &str,
        algorithm: TsigAlgorithm,
        secret: &Sensitive,
    ) -> Result<Self, DnsError> {
        let error = |detail: String| DnsError::new(NAME, zone, DnsErrorKind::Refused, detail);
        let zone_name = Name::from_ascii(zone)
            .map_err(|err| error(format!("the zone is not a dns name: {err}")))?;
        let key_name = Name::from_ascii(key_name)
            .map_err(|err| error(format!("the key name is not a dns name: {err}")))?;
        // The decoder's error quotes no input.
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.expose().trim())
            .map_err(|_| error("the tsig secret is not base64".to_string()))?;
        let algorithm = match algorithm {
            TsigAlgorithm::HmacSha256 => HickoryAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384 => HickoryAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512 => HickoryAlgorithm::HmacSha512,
        };
        let signer = TSigner::new(key, algorithm, key_name, FUDGE)
            .map_err(|err| error(format!("cannot sign with the tsig key: {err}")))?;
        Ok(Rfc2136 {
            server: server.to_string(),
            zone: zone.to_string(),
            zone_name,
            signer,
        })
    }

    fn error(&self, kind: DnsErrorKind, detail: impl Into<String>) -> DnsError {
        DnsError::new(NAME, self.zone.clone(), kind, detail)
    }

    /// The record set of one TXT value at `record.fqdn`.
    fn rrset(&self, record: &TxtRecord) -> Result<RecordSet, DnsError> {
        let name = Name::from_ascii(&record.fqdn).map_err(|err| {
            self.error(
                DnsErrorKind::Refused,
                format!("{} is not a dns name: {err}", record.fqdn),
            )
        })?;
        if !self.zone_name.zone_of(&name) {
            return Err(self.error(
                DnsErrorKind::Refused,
                format!("{} is not in the zone", record.fqdn),
            ));
        }
        let rdata = RData::TXT(TXT::new(vec![record.value.clone()]));
        Ok(RecordSet::from(Record::from_rdata(name, record.ttl, rdata)))
    }

    /// Signs `update`, sends it, and checks the signed answer.
    async fn send(&self, mut update: Message, what: &str) -> Result<(), DnsError> {
        update.metadata.id = fastrand::u16(..);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0);
        let verifier = update
            .finalize(&self.signer, now)
            .map_err(|err| self.error(DnsErrorKind::Unavailable, format!("cannot sign: {err}")))?;
        let request = update.to_vec().map_err(|err| {
            self.error(DnsErrorKind::Unavailable, format!("cannot encode: {err}"))
        })?;
        let answer = wire::exchange(&self.server, &request)
            .await
            .map_err(|err| self.error(DnsErrorKind::Unavailable, err.to_string()))?;
        let message = Message::from_vec(&answer).map_err(|err| {
            self.error(
                DnsErrorKind::Unavailable,
                format!("{} answered no dns message: {err}", self.server),
            )
        })?;
        let code = message.metadata.response_code;
        if code != ResponseCode::NoError {
            // A refusal of the key comes unsigned (RFC 8945 section 5.2):
            // it is reported, never counted as a success.
            let tsig_error = message
                .signature()
                .and_then(|record| record.data.error)
                .map(|error| format!(" (tsig {error:?})"))
                .unwrap_or_default();
            let kind = match code {
                ResponseCode::NotAuth | ResponseCode::BADSIG | ResponseCode::BADKEY => {
                    DnsErrorKind::Unauthorized
                }
                ResponseCode::Refused | ResponseCode::NotZone | ResponseCode::NXDomain => {
                    DnsErrorKind::Refused
                }
                _ => DnsErrorKind::Unavailable,
            };
            let hint = if kind == DnsErrorKind::Unauthorized {
                "; check the key name, algorithm and secret, and the zone's update policy"
            } else {
                ""
            };
            return Err(self.error(
                kind,
                format!(
                    "{} refused to {what}: {code}{tsig_error}{hint}",
                    self.server
                ),
            ));
        }
        match verifier {
            Some(mut verifier) => verifier.verify(&answer).map(|_| ()).map_err(|err| {
                self.error(
                    DnsErrorKind::Unavailable,
                    format!(
                        "the answer of {} is not signed by the key: {err}",
                        self.server
                    ),
                )
            }),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc2136")
            .field("server", &self.server)
            .field("zone", &self.zone)
            .field("key_name", &self.signer.signer_name().to_string())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl DnsProvider for Rfc2136 {
    fn name(&self) -> &'static str {
        NAME
    }

    fn zone(&self) -> &str {
        &self.zone
    }

    async fn publish(&self, record: &TxtRecord) -> Result<Published, DnsError> {
        let rrset = self.rrset(record)?;
        let update = update_message::append(rrset, self.zone_name.clone(), false, false);
        self.send(update, &format!("add the txt record at {}", record.fqdn))
            .await?;
        Ok(Published {
            record: record.clone(),
            id: None,
        })
    }

    async fn withdraw(&self, published: &Published) -> Result<(), DnsError> {
        let rrset = self.rrset(&published.record)?;
        let update = update_message::delete_by_rdata(rrset, self.zone_name.clone(), false);
        self.send(
            update,
            &format!("remove the txt record at {}", published.record.fqdn),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_that_is_not_base64_is_refused_without_quoting_it() {
        let secret = Sensitive::new("not base64 !!! s3cr3t");
        let err = Rfc2136::new(
            "127.0.0.1:53",
            "example.test.",
            "key.",
            TsigAlgorithm::HmacSha256,
            &secret,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("rfc2136") && text.contains("example.test."),
            "{text}"
        );
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn debug_names_the_server_zone_and_key_but_not_the_secret() {
        let secret = Sensitive::new("c2VjcmV0LXNlY3JldC1zZWNyZXQ=");
        let provider = Rfc2136::new(
            "127.0.0.1:53",
            "example.test.",
            "dispenser-key",
            TsigAlgorithm::HmacSha512,
            &secret,
        )
        .unwrap();
        let shown = format!("{provider:?}");
        assert!(
            shown.contains("dispenser-key.") && shown.contains("example.test."),
            "{shown}"
        );
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
    }

    #[test]
    fn a_record_outside_the_zone_is_refused_before_anything_is_sent() {
        let secret = Sensitive::new("c2VjcmV0");
        let provider = Rfc2136::new(
            "127.0.0.1:1",
            "example.test.",
            "key.",
            TsigAlgorithm::HmacSha256,
            &secret,
        )
        .unwrap();
        let record = TxtRecord {
            fqdn: "_acme-challenge.other.test.".to_string(),
            value: "v".to_string(),
            ttl: 60,
        };
        let err = provider.rrset(&record).unwrap_err();
        assert_eq!(err.kind, DnsErrorKind::Refused);
        assert!(err.to_string().contains("not in the zone"), "{err}");
    }
}
