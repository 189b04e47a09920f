//! Variables files: `dispenser.vars` and `*.dispenser.vars`, TOML `key = value`
//! where a value is text or a secret reference table.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;

use dispenser_actors::plan::Sensitive;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::check::hide_quoted;
use super::diagnostic::{Diagnostic, Diagnostics, SourceFile};
use super::secrets::{SecretRef, SecretResolver, DEFAULT_SECRET_VERSION};

/// The base variables file, next to dispenser.toml; read first, not templated.
pub const BASE_VARS_FILE: &str = "dispenser.vars";
/// Suffix of the variables files read after the base one, in file-name order.
pub const VARS_FILE_SUFFIX: &str = ".dispenser.vars";

/// One variable as written in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarValue {
    Text(String),
    Secret(SecretRef),
}

/// A variable declaration with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarEntry {
    pub name: String,
    pub value: VarValue,
    /// Span of the value in the rendered text.
    pub span: Range<usize>,
}

/// Every variable known so far, with the file that set it.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    values: BTreeMap<String, (Sensitive, String)>,
    /// Variables with no value because of an error already reported: a
    /// secret that could not be resolved, or a declaration in a variables
    /// file that was refused.
    unresolved: BTreeSet<String>,
    /// Variables whose value came from a secret source (masked in
    /// diagnostics), with that source.
    secrets: BTreeMap<String, SecretRef>,
    /// A variables file was unreadable or not TOML: any variable may have
    /// been meant there.
    incomplete: bool,
}

/// A variables file that was refused: its problems, and the variables it
/// declares (`None` when it is not TOML), which then have no value.
#[derive(Debug, Clone)]
pub struct Refused {
    pub diagnostics: Diagnostics,
    names: Option<Vec<String>>,
}

impl Variables {
    /// Sets a variable; returns the file that set it before, if any.
    pub fn set(&mut self, name: String, value: Sensitive, file: String) -> Option<String> {
        self.values
            .insert(name, (value, file))
            .map(|(_, previous)| previous)
    }

    /// True when `name` has no value because of an error already reported
    /// (a secret that failed to resolve, a refused variables file): its
    /// uses are not reported again as undefined.
    pub fn is_unresolved(&self, name: &str) -> bool {
        self.incomplete || self.unresolved.contains(name)
    }

    /// Records that a variables file could not be read (already reported).
    pub fn unreadable(&mut self) {
        self.incomplete = true;
    }

    /// Records a refused variables file; returns its diagnostics.
    pub fn refused(&mut self, refused: Refused) -> Diagnostics {
        match refused.names {
            Some(names) => self.unresolved.extend(names),
            None => self.incomplete = true,
        }
        refused.diagnostics
    }

    /// True when `name`'s value came from a secret source.
    pub fn is_secret(&self, name: &str) -> bool {
        self.secrets.contains_key(name)
    }

    /// Where the secret variable `name` came from; `None` for a plain one.
    pub fn secret_source(&self, name: &str) -> Option<&SecretRef> {
        self.secrets.get(name)
    }

    /// True when `name` is a variable with a value that came from no secret source.
    pub fn is_plain(&self, name: &str) -> bool {
        self.values.contains_key(name) && !self.is_secret(name)
    }

    /// Every secret variable with its value. Never log this.
    pub fn secret_values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values
            .iter()
            .filter(|(name, _)| self.is_secret(name))
            .map(|(name, (value, _))| (name.as_str(), value.expose()))
    }

    /// Exposed values, to render templates with. Never log this map.
    pub fn exposed(&self) -> BTreeMap<String, String> {
        self.values
            .iter()
            .map(|(name, (value, _))| (name.clone(), value.expose().to_string()))
            .collect()
    }
}

/// Parses a variables file (already rendered when it is a template). A
/// file with any error is refused as a whole: none of its variables get a
/// value (see [`Variables::refused`]).
pub fn parse(file: &SourceFile) -> Result<Vec<VarEntry>, Refused> {
    let mut diagnostics = Diagnostics::default();
    let root = match DeTable::parse(&file.rendered) {
        Ok(root) => root,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            let message = error.message().trim_end();
            // An overlay is rendered with the base variables: what toml
            // quotes on a templated line may be a secret.
            let message = if file.is_templated(&span) {
                hide_quoted(message)
            } else {
                message.to_string()
            };
            diagnostics.push(file.error_at(span, format!("invalid TOML: {message}"), "here"));
            return Err(Refused {
                diagnostics,
                names: None,
            });
        }
    };
    let mut entries = Vec::new();
    let mut names = Vec::new();
    for (key, value) in root.get_ref().iter() {
        let name = key.get_ref().to_string();
        names.push(name.clone());
        // A key written with a template may hold a base variable's value
        // (maybe a secret): messages then do not repeat it.
        let shown = if file.is_templated(&key.span()) {
            "…".to_string()
        } else {
            name.clone()
        };
        match to_var_value(file, &shown, value) {
            Ok(var) => entries.push(VarEntry {
                name,
                value: var,
                span: value.span(),
            }),
            Err(diagnostic) => diagnostics.push(diagnostic),
        }
    }
    if diagnostics.has_errors() {
        Err(Refused {
            diagnostics,
            names: Some(names),
        })
    } else {
        Ok(entries)
    }
}

/// Resolves the entries of one or more files with ONE batch of secret
/// lookups (remote ones fetched concurrently), then sets them in file order;
/// logs which file wins an override.
pub fn resolve_into(
    variables: &mut Variables,
    parsed: Vec<(SourceFile, Vec<VarEntry>)>,
    secrets: &dyn SecretResolver,
    diagnostics: &mut Diagnostics,
) {
    let wanted: Vec<SecretRef> = parsed
        .iter()
        .flat_map(|(_, entries)| entries.iter())
        .filter_map(|entry| match &entry.value {
            VarValue::Secret(secret) => Some(secret.clone()),
            VarValue::Text(_) => None,
        })
        .collect();
    let mut resolved = secrets.resolve_all(&wanted).into_iter();
    for (file, entries) in parsed {
        for entry in entries {
            let source = match &entry.value {
                VarValue::Secret(secret) => Some(secret.clone()),
                VarValue::Text(_) => None,
            };
            let value = match entry.value {
                VarValue::Text(text) => Sensitive::new(text),
                VarValue::Secret(_) => match resolved.next() {
                    Some(Ok(value)) => value,
                    Some(Err(error)) => {
                        let mut diagnostic = file.error_at(
                            entry.span,
                            format!("cannot resolve secret `{}`: {error}", entry.name),
                            "secret reference",
                        );
                        diagnostic.help = error.help();
                        diagnostics.push(diagnostic);
                        variables.unresolved.insert(entry.name);
                        continue;
                    }
                    None => {
                        diagnostics.push(file.error_at(
                            entry.span,
                            format!("secret `{}` was not resolved", entry.name),
                            "secret reference",
                        ));
                        variables.unresolved.insert(entry.name);
                        continue;
                    }
                },
            };
            if let Some(source) = source {
                variables.secrets.insert(entry.name.clone(), source);
            } else {
                variables.secrets.remove(&entry.name);
            }
            if variables
                .set(entry.name.clone(), value, file.display.clone())
                .is_some()
            {
                tracing::info!(variable = %entry.name, file = %file.display, "variable overridden");
            }
        }
    }
}

fn to_var_value(
    file: &SourceFile,
    name: &str,
    value: &Spanned<DeValue<'_>>,
) -> Result<VarValue, Diagnostic> {
    match value.get_ref() {
        DeValue::String(text) => Ok(VarValue::Text(text.to_string())),
        DeValue::Integer(number) => Ok(VarValue::Text(number.as_str().to_string())),
        DeValue::Float(number) => Ok(VarValue::Text(number.as_str().to_string())),
        DeValue::Boolean(flag) => Ok(VarValue::Text(flag.to_string())),
        DeValue::Table(table) => secret_ref(file, name, value.span(), table),
        _ => Err(file
            .error_at(
                value.span(),
                format!("variable `{name}` must be text, a number, a boolean or a secret table"),
                "unsupported value",
            )
            .with_help(
                "write `name = \"value\"` or `name = { source = \"env\", name = \"VAR\" }`",
            )),
    }
}

fn secret_ref(
    file: &SourceFile,
    name: &str,
    span: Range<usize>,
    table: &DeTable<'_>,
) -> Result<VarValue, Diagnostic> {
    let field = |key: &str| -> Result<Option<String>, Diagnostic> {
        match table.get(key) {
            None => Ok(None),
            Some(value) => match value.get_ref() {
                DeValue::String(text) => Ok(Some(text.to_string())),
                _ => Err(file.error_at(
                    value.span(),
                    format!("`{key}` of secret `{name}` must be a string"),
                    "expected a string",
                )),
            },
        }
    };
    let required = |key: &str, value: Option<String>| {
        value.ok_or_else(|| {
            file.error_at(
                span.clone(),
                format!("secret `{name}` needs a `{key}` key"),
                "incomplete secret reference",
            )
        })
    };
    let source = required("source", field("source")?)?;
    let allowed: &[&str] = match source.as_str() {
        "google" => &["source", "name", "version"],
        "env" => &["source", "name"],
        "file" => &["source", "path"],
        _ => {
            let value_span = table.get("source").map_or(span.clone(), |v| v.span());
            return Err(file
                .error_at(
                    value_span,
                    format!("unknown secret source for `{name}`"),
                    "unknown source",
                )
                .with_help("`source` is one of \"env\", \"file\" or \"google\""));
        }
    };
    for (key, _) in table.iter() {
        if !allowed.contains(&key.get_ref().as_ref()) {
            return Err(file
                .error_at(
                    key.span(),
                    format!("unknown key `{}` in secret `{name}`", key.get_ref()),
                    "unknown key",
                )
                .with_help(format!(
                    "a `{source}` secret has the keys {}",
                    allowed
                        .iter()
                        .map(|key| format!("`{key}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
        }
    }
    let secret = match source.as_str() {
        "google" => {
            let secret_name = required("name", field("name")?)?;
            let version = field("version")?.unwrap_or_else(|| DEFAULT_SECRET_VERSION.to_string());
            let at = |key: &str| table.get(key).map_or(span.clone(), |value| value.span());
            if !is_google_secret_name(&secret_name) {
                return Err(file
                    .error_at(
                        at("name"),
                        format!("`name` of secret `{name}` is not a secret manager name"),
                        "expected projects/PROJECT/secrets/SECRET",
                    )
                    .with_help("write the full name, for example `projects/my-project/secrets/db-password`; give the version in `version`"));
            }
            if !is_path_segment(&version) {
                return Err(file
                    .error_at(
                        at("version"),
                        format!("`version` of secret `{name}` is not a version"),
                        "expected a number, `latest` or an alias",
                    )
                    .with_help("`version` is a version number such as \"3\", \"latest\" (the default) or an alias"));
            }
            SecretRef::Google {
                name: secret_name,
                version,
            }
        }
        "env" => SecretRef::Env {
            name: required("name", field("name")?)?,
        },
        _ => SecretRef::File {
            path: PathBuf::from(required("path", field("path")?)?),
        },
    };
    Ok(VarValue::Secret(secret))
}

/// `projects/P/secrets/S`, each part a plain path segment.
fn is_google_secret_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() == 4
        && parts[0] == "projects"
        && parts[2] == "secrets"
        && is_path_segment(parts[1])
        && is_path_segment(parts[3])
}

/// Letters, digits and `-_.:` only: safe in a URL path without escaping.
fn is_path_segment(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_numbers_and_secrets() {
        let text = "env = \"prod\"\nreplicas = 3\nratio = 0.5\ndebug = false\ntoken = { source = \"env\", name = \"TOKEN\" }\nkey = { source = \"file\", path = \"key.txt\" }\ng = { source = \"google\", name = \"projects/p/secrets/s\" }\n";
        let entries = parse(&SourceFile::plain("dispenser.vars", text)).unwrap();
        let values: Vec<(&str, &VarValue)> = entries
            .iter()
            .map(|e| (e.name.as_str(), &e.value))
            .collect();
        assert!(values.contains(&("env", &VarValue::Text("prod".into()))));
        assert!(values.contains(&("replicas", &VarValue::Text("3".into()))));
        assert!(values.contains(&("ratio", &VarValue::Text("0.5".into()))));
        assert!(values.contains(&("debug", &VarValue::Text("false".into()))));
        assert!(values.contains(&(
            "token",
            &VarValue::Secret(SecretRef::Env {
                name: "TOKEN".into()
            })
        )));
        assert!(values.contains(&(
            "key",
            &VarValue::Secret(SecretRef::File {
                path: "key.txt".into()
            })
        )));
        assert!(values.contains(&(
            "g",
            &VarValue::Secret(SecretRef::Google {
                name: "projects/p/secrets/s".into(),
                version: "latest".into()
            })
        )));
    }

    #[test]
    fn rejects_arrays_and_unknown_sources() {
        let text = "a = [1]\nb = { source = \"vault\", name = \"x\" }\nc = { source = \"env\", nmae = \"x\" }\n";
        let errors = parse(&SourceFile::plain("dispenser.vars", text))
            .unwrap_err()
            .diagnostics;
        assert_eq!(errors.error_count(), 3);
    }

    #[test]
    fn google_names_and_versions_are_checked() {
        let text = "a = { source = \"google\", name = \"db-password\" }\nb = { source = \"google\", name = \"projects/p/secrets/s\", version = \"../x\" }\nc = { source = \"google\", name = \"projects/example.com:p/secrets/s_1\", version = \"3\" }\n";
        let errors = parse(&SourceFile::plain("dispenser.vars", text))
            .unwrap_err()
            .diagnostics;
        assert_eq!(errors.error_count(), 2);
        let messages: Vec<&str> = errors.items.iter().map(|d| d.message.as_str()).collect();
        assert!(
            messages[0].contains("not a secret manager name"),
            "{messages:?}"
        );
        assert!(messages[1].contains("not a version"), "{messages:?}");
    }
}
