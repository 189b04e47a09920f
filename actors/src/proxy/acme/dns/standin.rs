//! A tiny HTTP/1.1 server on 127.0.0.1 for the REST providers' tests: it
//! reads one request per connection, hands it to the test's handler (a
//! stand-in of Google Cloud DNS or Cloudflare) and writes its answer.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path, still percent-encoded, without the query.
    pub path: String,
    /// The query's pairs, decoded.
    pub query: Vec<(String, String)>,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON, where it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// The stand-in's answer: a status and a JSON body.
pub struct Response {
    pub status: u16,
    pub body: Value,
}

impl Response {
    pub fn new(status: u16, body: Value) -> Self {
        Self { status, body }
    }
}

/// Serves `handler` on an ephemeral port of 127.0.0.1 until the test's
/// runtime ends; returns the address.
pub async fn serve<H>(handler: H) -> SocketAddr
where
    H: Fn(Request) -> Response + Send + Sync + 'static,
{
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("bind a loopback port");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let _ = answer(stream, handler.as_ref()).await;
            });
        }
    });
    addr
}

async fn answer<H>(mut stream: TcpStream, handler: &H) -> std::io::Result<()>
where
    H: Fn(Request) -> Response,
{
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let (mut request, head_len, body_len) = loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head_len) = parsed
            .parse(&buffer)
            .map_err(|err| std::io::Error::other(err.to_string()))?
        {
            let target = parsed.path.unwrap_or("/");
            let url = Url::parse(&format!("http://standin{target}"))
                .map_err(|err| std::io::Error::other(err.to_string()))?;
            let headers: Vec<(String, String)> = parsed
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let body_len = headers
                .iter()
                .find(|(name, _)| name == "content-length")
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let request = Request {
                method: parsed.method.unwrap_or_default().to_string(),
                path: url.path().to_string(),
                query: url.query_pairs().into_owned().collect(),
                headers,
                body: Vec::new(),
            };
            break (request, head_len, body_len);
        }
    };
    while buffer.len() < head_len + body_len {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    request.body = buffer[head_len..head_len + body_len].to_vec();
    let response = handler(request);
    let body = response.body.to_string();
    let head = format!(
        "HTTP/1.1 {} STANDIN\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        response.status,
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
