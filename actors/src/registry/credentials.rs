//! Registry credentials from the Docker config of the user Dispenser runs as
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), found as
//! Docker finds them: `credHelpers` for the registry, then `credsStore`, then
//! the `auths` entry (base64 `user:password`, or an `identitytoken`).
//!
//! The file is read again at each lookup, so a `docker login` takes effect
//! without a restart; the client caches what it gets for a short while.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::plan::{Sensitive, DOCKER_HUB};

/// The key Docker uses for Docker Hub in `auths` and for credential helpers.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// Longest a credential helper may take to answer.
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest config file or helper answer read.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;
/// A helper's username meaning "the secret is an identity token".
const TOKEN_USERNAME: &str = "<token>";

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A username and password (or personal access token).
    Basic {
        username: String,
        password: Sensitive,
    },
    /// An OAuth2 refresh token, exchanged at the token realm.
    IdentityToken(Sensitive),
}

/// Where credentials come from: the Docker config file at `path`.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    /// `PATH` for credential helpers; `None` inherits the daemon's.
    helper_path: Option<std::ffi::OsString>,
}

/// Why credentials could not be read. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read the docker config {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the docker config {path} is not valid: {reason}")]
    Invalid { path: String, reason: String },
    #[error("credential helper docker-credential-{helper} failed for {registry}: {reason}")]
    Helper {
        helper: String,
        registry: String,
        reason: String,
    },
}

/// `config.json`, the parts Dispenser reads.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

/// One `auths` entry.
#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// What `docker-credential-<name> get` prints.
#[derive(Debug, Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

impl DockerConfig {
    /// The config of this process's user: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`. `None` when neither variable is set.
    pub fn from_env() -> Option<DockerConfig> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Some(DockerConfig::at(PathBuf::from(dir).join("config.json")));
        }
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
        Some(DockerConfig::at(
            PathBuf::from(home).join(".docker").join("config.json"),
        ))
    }

    pub fn at(path: impl Into<PathBuf>) -> DockerConfig {
        DockerConfig {
            path: path.into(),
            helper_path: None,
        }
    }

    /// Looks credential helpers up in `path` instead of the daemon's `PATH`.
    pub fn with_helper_path(mut self, path: impl Into<std::ffi::OsString>) -> DockerConfig {
        self.helper_path = Some(path.into());
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credentials for `registry` (as in `ImageRef::registry`: `docker.io`
    /// for Docker Hub); `None` when the config has none (or does not exist).
    pub async fn lookup(&self, registry: &str) -> Result<Option<Credential>, CredentialError> {
        let Some(config) = self.read().await? else {
            return Ok(None);
        };
        let key = config_key(registry);
        let wanted = normalise_key(&key);
        let helper = config
            .cred_helpers
            .iter()
            .find(|(name, _)| normalise_key(name) == wanted)
            .map(|(_, helper)| helper.clone());
        if let Some(helper) = helper {
            return self.run_helper(&helper, &key).await;
        }
        if let Some(store) = config.creds_store.as_deref().filter(|s| !s.is_empty()) {
            if let Some(credential) = self.run_helper(store, &key).await? {
                return Ok(Some(credential));
            }
        }
        let entry = config
            .auths
            .iter()
            .find(|(name, _)| normalise_key(name) == wanted)
            .map(|(_, entry)| entry);
        match entry {
            Some(entry) => entry
                .credential()
                .map_err(|reason| CredentialError::Invalid {
                    path: self.path.display().to_string(),
                    reason: format!("auths entry for {key}: {reason}"),
                }),
            None => Ok(None),
        }
    }

    async fn run_helper(
        &self,
        helper: &str,
        key: &str,
    ) -> Result<Option<Credential>, CredentialError> {
        run_helper(helper, key, self.helper_path.as_deref()).await
    }

    async fn read(&self) -> Result<Option<ConfigFile>, CredentialError> {
        let path = self.path.display().to_string();
        let text = match tokio::fs::read(&self.path).await {
            Ok(bytes) if bytes.len() as u64 > MAX_CONFIG_BYTES => {
                return Err(CredentialError::Invalid {
                    path,
                    reason: "the file is too large".into(),
                })
            }
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(CredentialError::Read {
                    path,
                    reason: err.to_string(),
                })
            }
        };
        // serde_json's messages quote no input, so no secret leaks through them.
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|err| CredentialError::Invalid {
                path,
                reason: err.to_string(),
            })
    }
}

impl AuthEntry {
    fn credential(&self) -> Result<Option<Credential>, String> {
        if let Some(token) = self.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::IdentityToken(Sensitive::new(token))));
        }
        if let Some(auth) = self.auth.as_deref().filter(|a| !a.is_empty()) {
            return decode_auth(auth).map(Some);
        }
        match (&self.username, &self.password) {
            (Some(username), Some(password)) if !username.is_empty() => {
                Ok(Some(Credential::Basic {
                    username: username.clone(),
                    password: Sensitive::new(password.clone()),
                }))
            }
            _ => Ok(None),
        }
    }
}

/// Decodes an `auth` value: base64 of `user:password`; the password may
/// itself contain `:`, so only the first `:` splits.
pub fn decode_auth(auth: &str) -> Result<Credential, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| "`auth` is not valid base64".to_string())?;
    let text = String::from_utf8(bytes).map_err(|_| "`auth` is not UTF-8".to_string())?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| "`auth` does not hold `user:password`".to_string())?;
    if username.is_empty() {
        return Err("`auth` has an empty user name".into());
    }
    Ok(Credential::Basic {
        username: username.to_string(),
        password: Sensitive::new(password),
    })
}

/// The key Docker files a registry's credentials under.
fn config_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// A key reduced to its host (and port), as Docker compares them:
/// `https://index.docker.io/v1/` and `index.docker.io` are the same.
fn normalise_key(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme.split('/').next().unwrap_or_default();
    match host {
        "docker.io" | "registry-1.docker.io" => "index.docker.io".to_string(),
        host => host.to_ascii_lowercase(),
    }
}

/// Runs `docker-credential-<helper> get` with the registry key on stdin
/// (`PATH` from `helper_path` when set). `Ok(None)` when the helper knows no
/// credentials for it.
async fn run_helper(
    helper: &str,
    key: &str,
    helper_path: Option<&std::ffi::OsStr>,
) -> Result<Option<Credential>, CredentialError> {
    let error = |reason: String| CredentialError::Helper {
        helper: helper.to_string(),
        registry: key.to_string(),
        reason,
    };
    let name_ok = !helper.is_empty()
        && helper
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(error("the helper name is not valid".into()));
    }
    let mut command = tokio::process::Command::new(format!("docker-credential-{helper}"));
    if let Some(path) = helper_path {
        command.env("PATH", path);
    }
    let mut child = command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| error(err.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(key.as_bytes())
            .await
            .map_err(|err| error(err.to_string()))?;
    }
    let output = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| error(format!("no answer within {}s", HELPER_TIMEOUT.as_secs())))?
        .map_err(|err| error(err.to_string()))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).to_lowercase();
        if said.contains("credentials not found") {
            return Ok(None);
        }
        // stderr is the helper's own message; stdout could hold a secret.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first_line = stderr.lines().next().unwrap_or_default();
        return Err(error(format!("{}: {first_line}", output.status)));
    }
    if output.stdout.len() as u64 > MAX_CONFIG_BYTES {
        return Err(error("the answer is too large".into()));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|_| error("the answer is not the expected JSON".into()))?;
    if answer.username == TOKEN_USERNAME {
        return Ok(Some(Credential::IdentityToken(Sensitive::new(
            answer.secret,
        ))));
    }
    Ok(Some(Credential::Basic {
        username: answer.username,
        password: Sensitive::new(answer.secret),
    }))
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
