//! DNS messages over TCP (RFC 1035 section 4.2.2, RFC 7766): one request,
//! one answer, with a two-byte length in front of each, and a deadline on
//! the whole exchange. The RFC 2136 provider sends its signed updates this
//! way, and the propagation check its TXT queries. An answer is hostile
//! input: its length is bounded and its id must match the request's.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for one exchange, connection included.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an exchange gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("cannot resolve {server}: {reason}")]
    Resolve { server: String, reason: String },
    #[error("{server} did not answer within {seconds}s")]
    Timeout { server: String, seconds: u64 },
    #[error("talking to {server}: {reason}")]
    Io { server: String, reason: String },
    #[error("{server} answered something that is not a dns answer to the request: {reason}")]
    Malformed { server: String, reason: String },
}

/// Sends `request` (already encoded, perhaps signed) to `server`
/// (`host:port`) and returns the raw answer, whose id is the request's.
pub async fn exchange(server: &str, request: &[u8]) -> Result<Vec<u8>, WireError> {
    match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange_inner(server, request)).await {
        Ok(result) => result,
        Err(_) => Err(WireError::Timeout {
            server: server.to_string(),
            seconds: EXCHANGE_TIMEOUT.as_secs(),
        }),
    }
}

async fn exchange_inner(server: &str, request: &[u8]) -> Result<Vec<u8>, WireError> {
    let io = |err: std::io::Error| WireError::Io {
        server: server.to_string(),
        reason: err.to_string(),
    };
    let malformed = |reason: &str| WireError::Malformed {
        server: server.to_string(),
        reason: reason.to_string(),
    };
    let address = resolve(server).await?;
    let length = u16::try_from(request.len()).map_err(|_| malformed("request too long"))?;
    let mut stream = TcpStream::connect(address).await.map_err(io)?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await.map_err(io)?;
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await.map_err(io)?;
    // A u16 bounds the answer at 64 KiB.
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut answer).await.map_err(io)?;
    if answer.len() < 12 || request.len() < 2 || answer[..2] != request[..2] {
        return Err(malformed("the id does not match"));
    }
    Ok(answer)
}

/// The first address of `server` (`host:port`, or an address).
async fn resolve(server: &str) -> Result<SocketAddr, WireError> {
    if let Ok(address) = server.parse::<SocketAddr>() {
        return Ok(address);
    }
    let resolve_error = |reason: String| WireError::Resolve {
        server: server.to_string(),
        reason,
    };
    tokio::net::lookup_host(server)
        .await
        .map_err(|err| resolve_error(err.to_string()))?
        .next()
        .ok_or_else(|| resolve_error("no address".to_string()))
}

/// Asks `server` for the records of `record_type` at `name`, without
/// recursion (an authoritative server answers from its zone) or with it
/// (a resolver). Returns the whole answer message.
pub async fn query(
    server: &str,
    name: &Name,
    record_type: RecordType,
    recursion: bool,
) -> Result<Message, WireError> {
    let mut message = Message::query();
    message.metadata.id = fastrand::u16(..);
    message.metadata.recursion_desired = recursion;
    let mut question = Query::new();
    question
        .set_name(name.clone())
        .set_query_type(record_type)
        .set_query_class(DNSClass::IN);
    message.add_query(question);
    let request = message.to_vec().map_err(|err| WireError::Malformed {
        server: server.to_string(),
        reason: err.to_string(),
    })?;
    let answer = exchange(server, &request).await?;
    Message::from_vec(&answer).map_err(|err| WireError::Malformed {
        server: server.to_string(),
        reason: err.to_string(),
    })
}

/// The TXT strings of the answer records named `name`, each record's
/// character strings joined (RFC 7208 section 3.3 style).
pub fn txt_values(answer: &Message, name: &Name) -> Vec<String> {
    answer
        .answers
        .iter()
        .filter(|record| &record.name == name)
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::TXT;
    use hickory_proto::rr::Record;

    #[test]
    fn txt_values_join_each_records_strings_and_skip_other_names() {
        let name = Name::from_ascii("_acme-challenge.example.test.").unwrap();
        let other = Name::from_ascii("other.example.test.").unwrap();
        let mut answer = Message::query();
        answer.add_answer(Record::from_rdata(
            name.clone(),
            60,
            RData::TXT(TXT::new(vec!["ab".into(), "cd".into()])),
        ));
        answer.add_answer(Record::from_rdata(
            other,
            60,
            RData::TXT(TXT::new(vec!["x".into()])),
        ));
        answer.add_answer(Record::from_rdata(
            name.clone(),
            60,
            RData::TXT(TXT::new(vec!["second".into()])),
        ));
        assert_eq!(txt_values(&answer, &name), vec!["abcd", "second"]);
    }

    #[tokio::test]
    async fn an_answer_with_another_id_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut length = [0u8; 2];
            stream.read_exact(&mut length).await.unwrap();
            let mut request = vec![0u8; usize::from(u16::from_be_bytes(length))];
            stream.read_exact(&mut request).await.unwrap();
            request[0] ^= 0xff;
            stream.write_all(&length).await.unwrap();
            stream.write_all(&request).await.unwrap();
        });
        let name = Name::from_ascii("example.test.").unwrap();
        let err = query(&server, &name, RecordType::TXT, false)
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::Malformed { .. }), "{err}");
    }
}
