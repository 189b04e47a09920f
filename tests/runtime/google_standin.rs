//! A local stand-in of Google's OAuth2 token endpoint, of Secret
//! Manager's `versions/V:access` REST call and of Cloud DNS's record sets
//! (`rrsets/NAME/TXT` and `changes`, kept in a real named through nsupdate),
//! on 127.0.0.1, for the secrets and DNS-01 tests. It checks what the real services check: a bearer token that is
//! either one it issued (refresh-token or JWT-bearer grant) or a self-signed
//! JWT of the test's service account (RS256, verified with its public key).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};

/// The service account of the generated key files.
pub const CLIENT_EMAIL: &str = "dispenser-test@dtest-project.iam.gserviceaccount.com";
/// What the token endpoint hands out.
const ACCESS_TOKEN: &str = "standin-access-token";
/// The refresh token of the generated gcloud user file.
const REFRESH_TOKEN: &str = "standin-refresh-token";

/// How the stand-in answers one `name/versions/version`.
#[derive(Clone, Debug)]
pub enum Answer {
    Value(Vec<u8>),
    NotFound,
    PermissionDenied,
    ApiDisabled,
    /// 503 on the first request, then the value.
    FailOnceThen(Vec<u8>),
    /// 503 on every request: the service is down.
    Unavailable,
}

/// The running stand-in; stops when dropped.
pub struct StandIn {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

/// A generated RSA key: PKCS#8 PEM and the PKCS#1 DER public key.
struct TestKey {
    private_pem: String,
    public_der: Vec<u8>,
}

/// A Cloud DNS managed zone the stand-in serves; its records live in a real
/// named, written with nsupdate (TSIG) and read with dig.
#[derive(Clone, Debug)]
pub struct CloudDnsZone {
    pub project: String,
    pub managed_zone: String,
    /// The zone's DNS name with its trailing dot.
    pub dns_name: String,
    /// named's `127.0.0.1:port`, its key's name and base64 secret.
    pub server: String,
    pub key_name: String,
    pub secret: String,
}

#[derive(Default)]
struct State {
    zone: Option<CloudDnsZone>,
    /// Every Cloud DNS change applied, as received.
    dns_changes: Vec<Value>,
    answers: BTreeMap<String, Answer>,
    failed_once: BTreeSet<String>,
    /// Every request line received, in order.
    requests: Vec<String>,
    token_grants: Vec<String>,
    in_flight: usize,
    max_in_flight: usize,
    delay: Duration,
}

impl StandIn {
    pub fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stand-in");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (state_for_loop, stop_for_loop) = (Arc::clone(&state), Arc::clone(&stop));
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_for_loop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = Arc::clone(&state_for_loop);
                thread::spawn(move || serve(stream, &state));
            }
        });
        StandIn { addr, state, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the answer for `projects/P/secrets/S` at `version`.
    pub fn set(&self, name: &str, version: &str, answer: Answer) {
        self.state
            .lock()
            .unwrap()
            .answers
            .insert(format!("{name}/versions/{version}"), answer);
    }

    /// Each `:access` answer waits this long (to see concurrency).
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Request lines (`GET /v1/...:access`) received so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Grant types the token endpoint accepted.
    pub fn token_grants(&self) -> Vec<String> {
        self.state.lock().unwrap().token_grants.clone()
    }

    /// Serves `zone` under `/dns/v1/`.
    pub fn serve_zone(&self, zone: CloudDnsZone) {
        self.state.lock().unwrap().zone = Some(zone);
    }

    /// The Cloud DNS endpoint (`DISPENSER_CLOUDDNS_ENDPOINT`).
    pub fn clouddns_url(&self) -> String {
        format!("{}/dns/v1/", self.url())
    }

    /// The Cloud DNS changes applied so far.
    pub fn dns_changes(&self) -> Vec<Value> {
        self.state.lock().unwrap().dns_changes.clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    /// Writes a service-account key file (a fresh RSA key of this test run)
    /// whose `token_uri` is this stand-in.
    pub fn write_service_account(&self, path: &Path) {
        let key = test_key();
        let json = json!({
            "type": "service_account",
            "project_id": "dtest-project",
            "private_key_id": "dtest-key-1",
            "private_key": key.private_pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "1234567890",
            "token_uri": format!("{}/token", self.url()),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    }

    /// Writes gcloud user credentials (`authorized_user`) whose `token_uri`
    /// is this stand-in.
    pub fn write_authorized_user(&self, path: &Path) {
        let json = json!({
            "type": "authorized_user",
            "client_id": "dtest-client-id",
            "client_secret": "dtest-client-secret",
            "refresh_token": REFRESH_TOKEN,
            "token_uri": format!("{}/token", self.url()),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// One RSA key per test process (key generation is slow-ish).
fn test_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("key.pem");
        let der = dir.path().join("public.der");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let pem_path = pem.to_str().unwrap();
        run(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            pem_path,
        ]);
        run(&[
            "rsa",
            "-in",
            pem_path,
            "-RSAPublicKey_out",
            "-outform",
            "DER",
            "-out",
            der.to_str().unwrap(),
        ]);
        TestKey {
            private_pem: std::fs::read_to_string(&pem).unwrap(),
            public_der: std::fs::read(&der).unwrap(),
        }
    })
}

/// Handles one connection: one request, one answer, then close.
fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return;
    }
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once(':') {
            headers.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (status, answer) = if method == "POST" && target == "/token" {
        token(&body, state)
    } else if target.starts_with("/dns/v1/") {
        state
            .lock()
            .unwrap()
            .requests
            .push(format!("{method} {target}"));
        cloud_dns(&method, &target, &headers, &body, state)
    } else if method == "GET" && target.starts_with("/v1/") && target.ends_with(":access") {
        state
            .lock()
            .unwrap()
            .requests
            .push(format!("{method} {target}"));
        access(&target, headers.get("authorization"), state)
    } else {
        (
            404,
            json!({"error": {"code": 404, "message": "no such route"}}),
        )
    };
    let text = answer.to_string();
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Service Unavailable",
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// The token endpoint: a refresh-token grant (gcloud user) or a JWT-bearer
/// grant (service account) gets an access token.
fn token(body: &[u8], state: &Mutex<State>) -> (u16, Value) {
    let fields: BTreeMap<String, String> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .filter_map(|(key, value)| value.as_str().map(|text| (key, text.to_string())))
            .collect(),
        _ => String::from_utf8_lossy(body)
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (key.to_string(), value.replace("%3A", ":")))
            .collect(),
    };
    let grant = fields.get("grant_type").cloned().unwrap_or_default();
    let accepted = match grant.as_str() {
        "refresh_token" => fields.get("refresh_token").map(String::as_str) == Some(REFRESH_TOKEN),
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => fields
            .get("assertion")
            .is_some_and(|assertion| verify_jwt(assertion)),
        _ => false,
    };
    if !accepted {
        return (400, json!({"error": "invalid_grant"}));
    }
    state.lock().unwrap().token_grants.push(grant);
    (
        200,
        json!({"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600}),
    )
}

/// `GET /v1/{name}/versions/{version}:access`.
fn access(target: &str, authorization: Option<&String>, state: &Mutex<State>) -> (u16, Value) {
    let bearer = authorization
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    if bearer != ACCESS_TOKEN && !verify_jwt(bearer) {
        return (
            401,
            json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
        );
    }
    let key = target
        .trim_start_matches("/v1/")
        .trim_end_matches(":access")
        .to_string();
    let delay = {
        let mut state = state.lock().unwrap();
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
        state.delay
    };
    thread::sleep(delay);
    let mut state = state.lock().unwrap();
    state.in_flight -= 1;
    let answer = state.answers.get(&key).cloned().unwrap_or(Answer::NotFound);
    let project = key.split('/').nth(1).unwrap_or("").to_string();
    match answer {
        Answer::Value(bytes) => (200, payload(&key, &bytes)),
        Answer::FailOnceThen(bytes) => {
            if state.failed_once.insert(key.clone()) {
                (
                    503,
                    json!({"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}),
                )
            } else {
                (200, payload(&key, &bytes))
            }
        }
        Answer::Unavailable => (
            503,
            json!({"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}),
        ),
        Answer::NotFound => (
            404,
            json!({"error": {"code": 404, "message": format!("Secret Version [{key}] not found."), "status": "NOT_FOUND"}}),
        ),
        Answer::PermissionDenied => (
            403,
            json!({"error": {"code": 403, "message": format!("Permission 'secretmanager.versions.access' denied for resource '{key}' (or it may not exist)."), "status": "PERMISSION_DENIED"}}),
        ),
        Answer::ApiDisabled => (
            403,
            json!({"error": {
                "code": 403,
                "message": format!("Secret Manager API has not been used in project {project} before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/secretmanager.googleapis.com/overview?project={project} then retry."),
                "status": "PERMISSION_DENIED",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "SERVICE_DISABLED",
                    "domain": "googleapis.com",
                    "metadata": {
                        "consumer": format!("projects/{project}"),
                        "service": "secretmanager.googleapis.com",
                        "activationUrl": format!("https://console.developers.google.com/apis/api/secretmanager.googleapis.com/overview?project={project}")
                    }
                }]
            }}),
        ),
    }
}

/// Cloud DNS: `GET .../rrsets/NAME/TXT` and `POST .../changes` of the
/// served zone, with a bearer token the stand-in issued.
fn cloud_dns(
    method: &str,
    target: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    state: &Mutex<State>,
) -> (u16, Value) {
    let error =
        |code: u16, message: String| (code, json!({"error": {"code": code, "message": message}}));
    let bearer = headers
        .get("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    if bearer != ACCESS_TOKEN && !verify_jwt(bearer) {
        return error(
            401,
            "Request had invalid authentication credentials.".to_string(),
        );
    }
    let Some(zone) = state.lock().unwrap().zone.clone() else {
        return error(404, "no zone is served".to_string());
    };
    let path: Vec<&str> = target.trim_start_matches("/dns/v1/").split('/').collect();
    match path.as_slice() {
        ["projects", project, "managedZones", managed, rest @ ..]
            if *project == zone.project && *managed == zone.managed_zone =>
        {
            match (method, rest) {
                ("GET", ["rrsets", name, "TXT"]) => {
                    let rrdatas = dig_txt(&zone, name);
                    if rrdatas.is_empty() {
                        return error(
                            404,
                            format!(
                                "The 'parameters.name' resource named '{name}' does not exist."
                            ),
                        );
                    }
                    (
                        200,
                        json!({"kind": "dns#resourceRecordSet", "name": name, "type": "TXT", "ttl": 60, "rrdatas": rrdatas}),
                    )
                }
                ("POST", ["changes"]) => {
                    if headers.get("content-type").map(String::as_str) != Some("application/json") {
                        return error(400, "the body must be json".to_string());
                    }
                    let Ok(change) = serde_json::from_slice::<Value>(body) else {
                        return error(400, "the body is not json".to_string());
                    };
                    match apply_change(&zone, &change) {
                        Ok(()) => {
                            state.lock().unwrap().dns_changes.push(change.clone());
                            (
                                200,
                                json!({"kind": "dns#change", "id": "1", "status": "done"}),
                            )
                        }
                        Err(message) => error(400, message),
                    }
                }
                _ => error(404, format!("no such cloud dns call: {method} {target}")),
            }
        }
        _ => error(
            404,
            format!("The 'parameters.managedZone' resource named '{target}' does not exist."),
        ),
    }
}

/// The TXT rrdatas (quoted, as Cloud DNS writes them) at `name`.
fn dig_txt(zone: &CloudDnsZone, name: &str) -> Vec<String> {
    crate::bind::dig_short(&zone.server, name, "TXT")
}

/// Applies a change's deletions, then its additions, in named with nsupdate;
/// every record set must be a TXT set in the zone, and a deletion must match
/// the current set exactly (Cloud DNS's precondition).
fn apply_change(zone: &CloudDnsZone, change: &Value) -> Result<(), String> {
    let sets = |key: &str| change[key].as_array().cloned().unwrap_or_default();
    let (deletions, additions) = (sets("deletions"), sets("additions"));
    if deletions.is_empty() && additions.is_empty() {
        return Err("the change is empty".to_string());
    }
    let (host, port) = zone.server.split_once(':').unwrap();
    let mut script = format!("server {host} {port}\nzone {}\n", zone.dns_name);
    for (set, verb) in deletions
        .iter()
        .map(|s| (s, "delete"))
        .chain(additions.iter().map(|s| (s, "add")))
    {
        let name = set["name"].as_str().ok_or("a record set without a name")?;
        if set["type"] != "TXT" || !name.ends_with(&zone.dns_name) {
            return Err(format!("not a txt set of the zone: {set}"));
        }
        let rrdatas: Vec<String> = set["rrdatas"]
            .as_array()
            .ok_or("a record set without rrdatas")?
            .iter()
            .filter_map(|data| data.as_str().map(str::to_string))
            .collect();
        if verb == "delete" {
            let mut current = dig_txt(zone, name);
            let mut wanted = rrdatas.clone();
            current.sort();
            wanted.sort();
            if current != wanted {
                return Err(format!(
                    "the set to delete is not the current one: {current:?}"
                ));
            }
        }
        let ttl = set["ttl"].as_u64().unwrap_or(60);
        for data in rrdatas {
            match verb {
                "delete" => script.push_str(&format!("update delete {name} TXT {data}\n")),
                _ => script.push_str(&format!("update add {name} {ttl} TXT {data}\n")),
            }
        }
    }
    script.push_str("send\n");
    let mut child = Command::new("nsupdate")
        .arg("-y")
        .arg(format!(
            "hmac-sha256:{}:{}",
            zone.key_name.trim_end_matches('.'),
            zone.secret
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nsupdate runs (apt-get install bind9-dnsutils)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(format!(
            "nsupdate: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn payload(key: &str, bytes: &[u8]) -> Value {
    json!({
        "name": key,
        "payload": {"data": base64::engine::general_purpose::STANDARD.encode(bytes)}
    })
}

/// An RS256 JWT signed by the test key, issued by the test service account,
/// not expired.
fn verify_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return false;
    }
    let decode = |part: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part);
    let (Ok(claims), Ok(signature)) = (decode(parts[1]), decode(parts[2])) else {
        return false;
    };
    let signed = format!("{}.{}", parts[0], parts[1]);
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &test_key().public_der,
    );
    if key.verify(signed.as_bytes(), &signature).is_err() {
        return false;
    }
    let Ok(claims) = serde_json::from_slice::<Value>(&claims) else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    claims["iss"] == CLIENT_EMAIL && claims["exp"].as_u64().is_some_and(|exp| exp > now)
}
