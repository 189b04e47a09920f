//! API version negotiation and pinning.
//!
//! Docker 20.10 (Debian 12) speaks at most API 1.41; current engines refuse
//! clients older than 1.44. bollard 0.21 negotiates (`GET /version`, then
//! lowers its version to the daemon's when that is older) but then sends every
//! request without a `/v1.xx` prefix, so the daemon reads it with whatever
//! version it defaults to. We pin the negotiated version into each request
//! path, so the daemon always reads our bodies with the version bollard's
//! models and our code were written for (or the daemon's own, if older), then
//! verify the daemon accepts it before anything else happens.
//!
//! Should a later bollard send its version itself, a daemon older than the
//! client refuses with "Maximum supported API version is X": we reconnect at X.

use bollard::errors::Error as DockerError;
use bollard::{BollardRequest, ClientVersion, Docker, API_DEFAULT_VERSION};

use crate::engine::EngineError;

/// Where the daemon listens when `DOCKER_HOST` is not set.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The phrase before the daemon's maximum version in a "too new" refusal.
const MAXIMUM_PHRASE: &str = "Maximum supported API version is ";

/// Connects to `host` (default: the local socket), settles on an API version
/// both sides speak, and pins it into every request.
pub async fn negotiate(host: Option<&str>, timeout_secs: u64) -> Result<Docker, EngineError> {
    let host = host.filter(|h| !h.is_empty()).unwrap_or(DEFAULT_HOST);
    let first = connect(host, timeout_secs, API_DEFAULT_VERSION)?;
    let negotiated = match first.negotiate_version().await {
        Ok(docker) => docker,
        Err(DockerError::DockerResponseServerError {
            status_code: 400,
            message,
        }) => {
            let maximum = maximum_version(&message).ok_or_else(|| no_common_version(&message))?;
            connect(host, timeout_secs, &maximum)?
                .negotiate_version()
                .await
                .map_err(unreachable)?
        }
        Err(err) => return Err(unreachable(err)),
    };
    let pinned = pin(negotiated);
    match pinned.version().await {
        Ok(_) => Ok(pinned),
        Err(DockerError::DockerResponseServerError {
            status_code: 400,
            message,
        }) => Err(no_common_version(&message)),
        Err(err) => Err(unreachable(err)),
    }
}

/// The version the daemon names in a "too new" refusal.
pub fn maximum_version(message: &str) -> Option<ClientVersion> {
    let start = message.find(MAXIMUM_PHRASE)? + MAXIMUM_PHRASE.len();
    let version: String = message[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let (major, minor) = version.trim_end_matches('.').split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

/// Makes every request of `docker` name its negotiated API version.
fn pin(docker: Docker) -> Docker {
    let version = docker.client_version().to_string();
    docker.with_request_modifier(move |request| with_version_prefix(request, &version))
}

/// Rewrites `scheme://host/path` into `scheme://host/v<version>/path`,
/// unless the path already names a version.
fn with_version_prefix(mut request: BollardRequest, version: &str) -> BollardRequest {
    let uri = request.uri();
    let path = uri.path();
    let versioned = path
        .strip_prefix("/v")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    if versioned {
        return request;
    }
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return request;
    };
    let path_and_query = uri.path_and_query().map_or(path, |pq| pq.as_str());
    let rewritten = format!("{scheme}://{authority}/v{version}{path_and_query}");
    if let Ok(pinned) = rewritten.parse() {
        *request.uri_mut() = pinned;
    }
    request
}

fn connect(host: &str, timeout_secs: u64, version: &ClientVersion) -> Result<Docker, EngineError> {
    let connected = if host.starts_with("unix://") {
        Docker::connect_with_unix(host, timeout_secs, version)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, timeout_secs, version)
    } else {
        return Err(EngineError::Unreachable(format!(
            "unsupported DOCKER_HOST {host}: use unix://, tcp:// or http://"
        )));
    };
    connected.map_err(unreachable)
}

fn no_common_version(message: &str) -> EngineError {
    EngineError::Unreachable(format!("cannot agree on an api version: {message}"))
}

fn unreachable(err: DockerError) -> EngineError {
    EngineError::Unreachable(err.to_string())
}

#[cfg(test)]
mod tests;
