//! API version negotiation. bollard asks `/v<client>/version`, which a daemon
//! older than the client refuses ("client version 1.53 is too new. Maximum
//! supported API version is 1.41"); a current daemon refuses versions older
//! than 1.44. So: try bollard's newest version first, and when the daemon says
//! it is too new, reconnect at the daemon's maximum it named.

use bollard::errors::Error as DockerError;
use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};

use crate::engine::EngineError;

/// Where the daemon listens when `DOCKER_HOST` is not set.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The phrase before the daemon's maximum version in a "too new" refusal.
const MAXIMUM_PHRASE: &str = "Maximum supported API version is ";

/// Connects to `host` (default: the local socket) and settles on an API
/// version both sides speak.
pub async fn negotiate(host: Option<&str>, timeout_secs: u64) -> Result<Docker, EngineError> {
    let host = host.filter(|h| !h.is_empty()).unwrap_or(DEFAULT_HOST);
    let first = connect(host, timeout_secs, API_DEFAULT_VERSION)?;
    match first.negotiate_version().await {
        Ok(docker) => Ok(docker),
        Err(DockerError::DockerResponseServerError {
            status_code: 400,
            message,
        }) => {
            let Some(maximum) = maximum_version(&message) else {
                return Err(EngineError::Unreachable(format!(
                    "cannot agree on an api version: {message}"
                )));
            };
            connect(host, timeout_secs, &maximum)?
                .negotiate_version()
                .await
                .map_err(|err| EngineError::Unreachable(err.to_string()))
        }
        Err(err) => Err(EngineError::Unreachable(err.to_string())),
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
    connected.map_err(|err| EngineError::Unreachable(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_maximum_from_a_too_new_refusal() {
        let message = "client version 1.53 is too new. Maximum supported API version is 1.41";
        let version = maximum_version(message).expect("a version");
        assert_eq!((version.major_version, version.minor_version), (1, 41));
    }

    #[test]
    fn ignores_a_trailing_period() {
        let version =
            maximum_version("... Maximum supported API version is 1.47.").expect("a version");
        assert_eq!((version.major_version, version.minor_version), (1, 47));
    }

    #[test]
    fn other_refusals_name_no_version() {
        assert!(maximum_version("client version 1.24 is too old").is_none());
        assert!(maximum_version("Maximum supported API version is x").is_none());
    }
}
