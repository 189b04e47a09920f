//! Where each part of a loaded plan was written, for the commands that point
//! back at the user's files after validation (`dispenser export`): the
//! service.toml of each service with the spans of its keys, and where each
//! `[env]` value came from (written, a plain variable, or a secret source:
//! Google Secret Manager, an environment variable or a file). A value from a
//! secret is never kept here, only the variable and its source.

use std::collections::BTreeMap;
use std::fmt;

use dispenser_actors::plan::Service;

use super::diagnostic::{Diagnostic, Severity, SourceFile};
use super::provenance::tag_names;
use super::secrets::SecretRef;
use super::spans::SpanIndex;
use super::vars::Variables;

/// The files of one load and where each service's keys sit in them.
#[derive(Clone, Default)]
pub struct Origins {
    config: Option<Located>,
    services: BTreeMap<String, ServiceOrigin>,
}

/// One service's service.toml and where its `[env]` values came from.
#[derive(Clone)]
pub struct ServiceOrigin {
    located: Located,
    /// By `[env]` key.
    pub env: BTreeMap<String, EnvOrigin>,
}

/// Where an `[env]` value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvOrigin {
    /// Written in the file, or made of plain variables only.
    Plain,
    /// Exactly the value of one secret variable.
    Secret { variable: String, source: SecretRef },
    /// A secret's value mixed with other text, or a template name whose
    /// origin is unknown (a `{% set %}` or loop variable): the value may hold
    /// a secret that no reference can stand for.
    Mixed { variables: Vec<String> },
}

/// Which file a diagnostic points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place<'a> {
    /// dispenser.toml.
    Config,
    /// The service.toml of the named service.
    Service(&'a str),
}

/// A parsed file and the spans of its keys.
#[derive(Clone)]
struct Located {
    file: SourceFile,
    spans: SpanIndex,
}

impl Origins {
    /// Builds the record: `services` are the validated services with their
    /// files, `variables` tell which variables are secrets and their sources.
    pub(super) fn new<'a>(
        config: Option<(&SourceFile, &SpanIndex)>,
        services: impl IntoIterator<Item = (&'a Service, &'a SourceFile, &'a SpanIndex)>,
        variables: &Variables,
    ) -> Self {
        let mut origins = Origins {
            config: config.map(|(file, spans)| Located {
                file: file.clone(),
                spans: spans.clone(),
            }),
            services: BTreeMap::new(),
        };
        for (service, file, spans) in services {
            let env = service
                .container
                .env
                .iter()
                .map(|(key, value)| {
                    let span = spans.value(&format!("env.{key}"));
                    let lines = file.template_lines(&span);
                    (key.clone(), env_origin(value.expose(), &lines, variables))
                })
                .collect();
            origins
                .services
                .entry(service.name.clone())
                .or_insert(ServiceOrigin {
                    located: Located {
                        file: file.clone(),
                        spans: spans.clone(),
                    },
                    env,
                });
        }
        origins
    }

    /// `text` with the value of every secret of the load replaced by its
    /// mask (`<secret NAME>`), and whether one was found.
    pub fn mask_secrets(&self, text: &str) -> (String, bool) {
        match &self.config {
            Some(located) => located.file.mask_secrets(text),
            None => (text.to_string(), false),
        }
    }

    /// The record of one service.
    pub fn service(&self, name: &str) -> Option<&ServiceOrigin> {
        self.services.get(name)
    }

    /// A diagnostic at the key (or, with `at_value`, the value) `path` of
    /// the file `place` names (`depends_on.db`, `dispenser.cron`,
    /// `volume[0].source`); at its nearest written ancestor when the key is
    /// not written, and without a position when the file is unknown.
    pub fn diagnostic(
        &self,
        severity: Severity,
        place: Place<'_>,
        path: &str,
        at_value: bool,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Diagnostic {
        let located = match place {
            Place::Config => self.config.as_ref(),
            Place::Service(name) => self.services.get(name).map(|origin| &origin.located),
        };
        let message = message.into();
        match located {
            Some(located) => {
                let span = match at_value {
                    true => located.spans.value(path),
                    false => located.spans.key(path),
                };
                located.file.at(severity, span, message, label)
            }
            None => Diagnostic {
                severity,
                ..Diagnostic::error(message)
            },
        }
    }
}

impl ServiceOrigin {
    /// The service.toml as the user named it.
    pub fn display(&self) -> &str {
        &self.located.file.display
    }
}

/// Where one rendered `[env]` value came from, by the variables its source
/// lines read and by the secret values it holds.
fn env_origin(value: &str, template_lines: &[&str], variables: &Variables) -> EnvOrigin {
    let mut read: Vec<String> = Vec::new();
    for line in template_lines {
        for name in tag_names(line).unwrap_or_default() {
            if !read.contains(&name) {
                read.push(name);
            }
        }
    }
    let secrets_read: Vec<&String> = read
        .iter()
        .filter(|name| variables.is_secret(name))
        .collect();
    let unknown = read
        .iter()
        .any(|name| !variables.is_secret(name) && !variables.is_plain(name));
    let lowered = value.to_ascii_lowercase();
    let holding: Vec<&str> = variables
        .secret_values()
        .filter(|(_, secret)| !secret.is_empty() && lowered.contains(&secret.to_ascii_lowercase()))
        .map(|(name, _)| name)
        .collect();
    if secrets_read.is_empty() && holding.is_empty() && !unknown {
        return EnvOrigin::Plain;
    }
    if let [variable] = secrets_read.as_slice() {
        let exact = variables
            .secret_values()
            .any(|(name, secret)| name == variable.as_str() && secret == value);
        let only = holding.iter().all(|name| *name == variable.as_str());
        if exact && only && !unknown {
            if let Some(source) = variables.secret_source(variable) {
                return EnvOrigin::Secret {
                    variable: variable.to_string(),
                    source: source.clone(),
                };
            }
        }
    }
    let mut names: Vec<String> = secrets_read.into_iter().cloned().collect();
    for name in holding {
        if !names.iter().any(|known| known == name) {
            names.push(name.to_string());
        }
    }
    if unknown {
        names.extend(
            read.iter()
                .filter(|name| !variables.is_secret(name) && !variables.is_plain(name))
                .cloned(),
        );
    }
    EnvOrigin::Mixed { variables: names }
}

/// Names of services only: the files hold rendered values (maybe secrets).
impl fmt::Debug for Origins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origins")
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for ServiceOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceOrigin")
            .field("file", &self.located.file.display)
            .field("env", &self.env)
            .finish()
    }
}
