//! Secret references in variables files and the resolvers that fetch them.
//! A resolved value is a `Sensitive`; no error here ever holds a value.
//!
//! One load resolves its secrets in batches ([`SecretResolver::resolve_all`]):
//! `env` and `file` are read on the spot, `google` references are fetched
//! concurrently from Secret Manager (see `google.rs`), each distinct secret once.

mod google;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dispenser_actors::plan::Sensitive;

pub use google::{GoogleError, GoogleSecrets};

/// Largest secret file read (a secret is a password or a key, not a dump).
const MAX_SECRET_FILE_BYTES: u64 = 64 << 10;

/// The version of a Google secret used when none is given.
pub const DEFAULT_SECRET_VERSION: &str = "latest";

/// Where a secret variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// Google Secret Manager: `projects/P/secrets/S` at a version.
    Google { name: String, version: String },
    /// An environment variable of the daemon.
    Env { name: String },
    /// A file's content, trailing newline trimmed; relative to the config folder.
    File { path: PathBuf },
}

/// Why a secret cannot be resolved.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable `{name}` is not set")]
    EnvNotSet { name: String },
    #[error("environment variable `{name}` is not valid unicode")]
    EnvNotUnicode { name: String },
    #[error("cannot read secret file `{path}`: {reason}")]
    File { path: String, reason: String },
    #[error("google secret manager is not available to this resolver")]
    GoogleUnavailable,
    #[error("google secret `{name}` (version `{version}`): {cause}")]
    Google {
        name: String,
        version: String,
        cause: GoogleError,
    },
}

/// Resolves secret references to their values.
pub trait SecretResolver {
    /// Resolves one batch of references, fetching remote ones concurrently;
    /// one result per reference, in the same order.
    fn resolve_all(&self, secrets: &[SecretRef]) -> Vec<Result<Sensitive, SecretError>>;
}

/// Resolves `env` and `file` secrets from this host; `file` paths are
/// relative to the config folder. `google` references are refused.
#[derive(Debug, Clone)]
pub struct LocalSecrets {
    config_dir: PathBuf,
}

/// The resolver of the binary: `env` and `file` from this host, `google`
/// from Secret Manager.
#[derive(Debug, Clone)]
pub struct Secrets {
    local: LocalSecrets,
    google: GoogleSecrets,
}

impl SecretError {
    /// What the user can do about it, when there is something to say.
    pub fn help(&self) -> Option<String> {
        match self {
            SecretError::EnvNotSet { name } => Some(format!(
                "set `{name}` in dispenser's environment (systemd: `Environment=` or `EnvironmentFile=`)"
            )),
            SecretError::Google { cause, .. } => cause.help(),
            _ => None,
        }
    }
}

impl LocalSecrets {
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        Self {
            config_dir: config_dir.into(),
        }
    }

    /// Resolves one `env` or `file` reference.
    pub fn resolve(&self, secret: &SecretRef) -> Result<Sensitive, SecretError> {
        match secret {
            SecretRef::Env { name } => match std::env::var(name) {
                Ok(value) => Ok(Sensitive::new(value)),
                Err(std::env::VarError::NotPresent) => {
                    Err(SecretError::EnvNotSet { name: name.clone() })
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(SecretError::EnvNotUnicode { name: name.clone() })
                }
            },
            SecretRef::File { path } => self.read_file(path),
            SecretRef::Google { .. } => Err(SecretError::GoogleUnavailable),
        }
    }

    fn read_file(&self, path: &Path) -> Result<Sensitive, SecretError> {
        let full = self.config_dir.join(path);
        let failed = |reason: String| SecretError::File {
            path: path.display().to_string(),
            reason,
        };
        let bytes = super::read_bounded(&full, MAX_SECRET_FILE_BYTES)
            .map_err(|source| failed(source.to_string()))?
            .ok_or_else(|| failed("the file is larger than 64 KiB".to_string()))?;
        let mut text = String::from_utf8(bytes)
            .map_err(|_| failed("the file is not valid UTF-8".to_string()))?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        Ok(Sensitive::new(text))
    }
}

impl SecretResolver for LocalSecrets {
    fn resolve_all(&self, secrets: &[SecretRef]) -> Vec<Result<Sensitive, SecretError>> {
        secrets.iter().map(|secret| self.resolve(secret)).collect()
    }
}

impl Secrets {
    /// `file` paths relative to `config_dir`; Google settings from the
    /// environment (see [`GoogleSecrets::from_env`]).
    pub fn from_env(config_dir: impl Into<PathBuf>) -> Self {
        Self {
            local: LocalSecrets::new(config_dir),
            google: GoogleSecrets::from_env(),
        }
    }
}

impl SecretResolver for Secrets {
    fn resolve_all(&self, secrets: &[SecretRef]) -> Vec<Result<Sensitive, SecretError>> {
        // Each distinct Google secret is fetched once, all of them at once.
        let mut index: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        let mut wanted: Vec<(String, String)> = Vec::new();
        for secret in secrets {
            if let SecretRef::Google { name, version } = secret {
                index
                    .entry((name.as_str(), version.as_str()))
                    .or_insert_with(|| {
                        wanted.push((name.clone(), version.clone()));
                        wanted.len() - 1
                    });
            }
        }
        let fetched = self.google.fetch_all(&wanted);
        secrets
            .iter()
            .map(|secret| match secret {
                SecretRef::Google { name, version } => {
                    let position = index[&(name.as_str(), version.as_str())];
                    fetched[position]
                        .clone()
                        .map_err(|cause| SecretError::Google {
                            name: name.clone(),
                            version: version.clone(),
                            cause,
                        })
                }
                local => self.local.resolve(local),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
