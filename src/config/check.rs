//! Turning one rendered file into its file struct, and reporting problems in
//! it at the right span: TOML syntax, unknown keys (with "did you mean"),
//! missing keys and wrong types, then any semantic error validation finds.

use std::ops::Range;

use serde::de::DeserializeOwned;

use super::diagnostic::{Diagnostic, Diagnostics, Severity, SourceFile};
use super::provenance::Shown;
use super::spans::SpanIndex;
use super::values::did_you_mean;

/// A parsed file: its source, its key spans, and where its problems go.
pub struct FileCheck<'a> {
    pub file: &'a SourceFile,
    pub spans: &'a SpanIndex,
    pub diagnostics: &'a mut Diagnostics,
}

/// Parses a rendered file into `T`; on failure reports why and returns `None`.
pub fn parse_file<T: DeserializeOwned>(
    file: &SourceFile,
    diagnostics: &mut Diagnostics,
) -> Option<(T, SpanIndex)> {
    let spans = SpanIndex::parse(&file.rendered);
    match toml::from_str::<T>(&file.rendered) {
        Ok(value) => Some((value, spans.unwrap_or_default())),
        Err(error) => {
            diagnostics.push(serde_error(file, spans.as_ref(), &error));
            None
        }
    }
}

impl FileCheck<'_> {
    /// An error under the value at `path`.
    pub fn error(
        &mut self,
        path: &str,
        message: impl Into<String>,
        label: &str,
    ) -> &mut Diagnostic {
        let span = self.spans.value(path);
        self.push(Severity::Error, span, message.into(), label)
    }

    /// A warning under the value at `path`.
    pub fn warning(
        &mut self,
        path: &str,
        message: impl Into<String>,
        label: &str,
    ) -> &mut Diagnostic {
        let span = self.spans.value(path);
        self.push(Severity::Warning, span, message.into(), label)
    }

    /// `` `value` `` (after a space) as a diagnostic may print the value at
    /// `path`: masked (`<secret NAME>`) when it came from a secret.
    pub fn shown(&self, path: &str, value: &str) -> String {
        format!(" `{}`", self.masked(path, value))
    }

    /// The value at `path` as a diagnostic may print it.
    pub fn masked(&self, path: &str, value: &str) -> Shown {
        self.file.shown(&self.spans.value(path), value)
    }

    /// The key at `path` (its last segment is `key`) as a diagnostic may print it.
    pub fn masked_key(&self, path: &str, key: &str) -> Shown {
        self.file.shown(&self.spans.key(path), key)
    }

    pub fn error_count(&self) -> usize {
        self.diagnostics.error_count()
    }

    fn push(
        &mut self,
        severity: Severity,
        span: Range<usize>,
        message: String,
        label: &str,
    ) -> &mut Diagnostic {
        let diagnostic = self.file.at(severity, span, message, label);
        self.diagnostics.items.push(diagnostic);
        let last = self.diagnostics.items.len() - 1;
        &mut self.diagnostics.items[last]
    }
}

/// Turns a `toml` error (syntax or serde) into a diagnostic that never echoes a value.
fn serde_error(
    file: &SourceFile,
    spans: Option<&SpanIndex>,
    error: &toml::de::Error,
) -> Diagnostic {
    let span = error.span().unwrap_or(0..0);
    // On a line that came from a template, a name toml quotes may be a
    // variable's value (maybe a secret): it is not echoed.
    let templated = file.is_templated(&span);
    let message = if templated {
        hide_quoted(error.message().trim_end())
    } else {
        error.message().trim_end().to_string()
    };
    let message = message.as_str();
    let Some(spans) = spans else {
        return file
            .error_at(
                span,
                format!("invalid TOML: {}", first_line(message)),
                "here",
            )
            .with_help("see https://toml.io for the syntax");
    };
    let table = || describe_table(&table_path(spans, &span));
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = expected_fields(expected);
        let help = match did_you_mean(key, expected.iter().map(String::as_str)) {
            Some(close) => format!("did you mean `{close}`?"),
            None if expected.is_empty() => format!("{} takes no keys", table()),
            None => format!(
                "{} accepts {}",
                table(),
                expected
                    .iter()
                    .map(|field| format!("`{field}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let where_ = match spans.path_of_key(&span) {
            Some(path) => describe_table(parent(path)),
            None => table(),
        };
        let what = if templated {
            format!("unknown key in {where_} (its name comes from a variable)")
        } else {
            format!("unknown key `{key}` in {where_}")
        };
        return file.error_at(span, what, "unknown key").with_help(help);
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or(rest);
        if span.is_empty() {
            return file
                .error_at(span, format!("missing required table `[{key}]`"), "here")
                .with_help(format!("add a [{key}] table"));
        }
        let table = describe_table(spans.table_at(span.start).unwrap_or_default());
        return file
            .error_at(
                span.clone(),
                format!("missing required key `{key}` in {table}"),
                "in this table",
            )
            .with_help(format!("add `{key} = ...` to {table}"));
    }
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    {
        let found = rest.split([' ', ',']).next().unwrap_or("value");
        let expected = rest.rsplit_once(", expected ").map_or("", |(_, e)| e);
        let found = match found {
            "sequence" => "an array",
            "map" => "a table",
            "string" => "a string",
            "integer" => "an integer",
            "floating" => "a float",
            "boolean" => "a boolean",
            _ => "a value",
        };
        let expected = match expected {
            "u16" => "an integer from 0 to 65535",
            "u32" => "a non-negative integer",
            "u64" => "a non-negative integer",
            "a boolean" | "bool" => "`true` or `false`",
            other => other,
        };
        let what = if message.starts_with("invalid type") {
            format!("wrong type: expected {expected}, found {found}")
        } else {
            format!("invalid value: expected {expected}")
        };
        return file.error_at(span, what, "this value");
    }
    file.error_at(span, first_line(message).to_string(), "here")
}

/// The key path of the table holding `span`.
fn table_path(spans: &SpanIndex, span: &Range<usize>) -> String {
    if let Some(path) = spans.path_of_key(span) {
        return parent(path).to_string();
    }
    spans.table_at(span.start).unwrap_or_default().to_string()
}

fn parent(path: &str) -> &str {
    path.rfind('.').map_or("", |cut| &path[..cut])
}

/// `service` is `[service]`, `port[0]` is `[[port]]`, the root is "the top level".
pub fn describe_table(path: &str) -> String {
    if path.is_empty() {
        return "the top level".to_string();
    }
    match path.strip_suffix(']').and_then(|p| p.rsplit_once('[')) {
        Some((array, _)) => format!("[[{array}]]"),
        None => format!("[{path}]"),
    }
}

/// Field names in serde's "expected one of `a`, `b`" text.
fn expected_fields(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// `message` with every `quoted` part replaced by `…`.
pub fn hide_quoted(message: &str) -> String {
    message
        .split('`')
        .enumerate()
        .map(|(index, part)| if index % 2 == 1 { "…" } else { part })
        .collect::<Vec<_>>()
        .join("`")
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_tables() {
        assert_eq!(describe_table(""), "the top level");
        assert_eq!(describe_table("service"), "[service]");
        assert_eq!(describe_table("port[2]"), "[[port]]");
        assert_eq!(describe_table("daemon.network"), "[daemon.network]");
    }

    #[test]
    fn quoted_names_can_be_hidden() {
        assert_eq!(
            hide_quoted("duplicate key `s3cret` in table `x`"),
            "duplicate key `…` in table `…`"
        );
        assert_eq!(hide_quoted("no quotes"), "no quotes");
    }

    /// Found by the property tests: a key written `${ token } = 1` echoed
    /// the secret in "unknown key `…`".
    #[test]
    fn a_templated_unknown_key_is_not_echoed() {
        let source = "${ token } = 1\n";
        let file = SourceFile::rendered("d.toml", source.into(), "s3cret = 1\n".into());
        let mut diagnostics = Diagnostics::default();
        assert!(
            parse_file::<crate::config::file::DispenserFile>(&file, &mut diagnostics).is_none()
        );
        let text = diagnostics.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("unknown key in the top level"), "{text}");
    }

    #[test]
    fn expected_field_list() {
        assert_eq!(
            expected_fields(", expected one of `name`, `image`"),
            vec!["name".to_string(), "image".to_string()]
        );
    }
}
