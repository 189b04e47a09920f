//! Secret references in variables files and the resolvers that fetch them.
//! A resolved value is a `Sensitive`; no error here ever holds a value.

use std::path::{Path, PathBuf};

use dispenser_actors::plan::Sensitive;

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
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable `{name}` is not set")]
    EnvNotSet { name: String },
    #[error("environment variable `{name}` is not valid unicode")]
    EnvNotUnicode { name: String },
    #[error("cannot read secret file `{path}`: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("google secret manager support is not available in this build yet")]
    GoogleUnavailable,
}

/// Resolves secret references to their values.
pub trait SecretResolver {
    fn resolve(&self, secret: &SecretRef) -> Result<Sensitive, SecretError>;
}

/// Resolves `env` and `file` secrets from this host; `file` paths are
/// relative to the config folder.
#[derive(Debug, Clone)]
pub struct LocalSecrets {
    config_dir: PathBuf,
}

impl LocalSecrets {
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        Self {
            config_dir: config_dir.into(),
        }
    }

    fn read_file(&self, path: &Path) -> Result<Sensitive, SecretError> {
        let full = self.config_dir.join(path);
        let mut text = std::fs::read_to_string(&full).map_err(|source| SecretError::File {
            path: path.display().to_string(),
            source,
        })?;
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
    fn resolve(&self, secret: &SecretRef) -> Result<Sensitive, SecretError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_secret_trims_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n\n").unwrap();
        let secrets = LocalSecrets::new(dir.path());
        let value = secrets
            .resolve(&SecretRef::File {
                path: "token".into(),
            })
            .unwrap();
        assert_eq!(value.expose(), "s3cret\n");
    }

    #[test]
    fn missing_sources_are_errors_without_values() {
        let secrets = LocalSecrets::new("/nonexistent");
        let env = secrets.resolve(&SecretRef::Env {
            name: "DISPENSER_TEST_SURELY_UNSET_VARIABLE".into(),
        });
        assert!(matches!(env, Err(SecretError::EnvNotSet { .. })));
        let google = secrets.resolve(&SecretRef::Google {
            name: "projects/p/secrets/s".into(),
            version: DEFAULT_SECRET_VERSION.into(),
        });
        assert_eq!(
            google.unwrap_err().to_string(),
            "google secret manager support is not available in this build yet"
        );
    }
}
