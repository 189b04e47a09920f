//! Config diagnostics: an error or warning that names the file, the line and
//! the column, shows the source line with a caret under the span, and says what
//! would be right. Lines are always shown from the SOURCE file, never from the
//! rendered text, so a substituted variable (maybe a secret) is never printed.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use super::provenance::{Provenance, Shown};
use super::render::LineMap;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// The file it is about, as the user named it; `None` for a global problem.
    pub path: Option<String>,
    /// Where in the file, when known.
    pub snippet: Option<Box<Snippet>>,
    pub help: Option<String>,
}

/// The lines shown under a diagnostic and where the caret goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The caret's width, in characters (at least 1).
    pub width: usize,
    pub text: String,
    pub before: Option<String>,
    pub after: Option<String>,
    /// A short word or two printed after the carets.
    pub label: String,
}

/// Every diagnostic of one run: errors and warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

/// A config file as read and as rendered, to point at spans in either.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as shown to the user.
    pub display: String,
    pub source: String,
    pub rendered: String,
    lines: LineMap,
    /// The secrets of the load, to mask them in values shown from this file.
    provenance: Arc<Provenance>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            path: None,
            snippet: None,
            help: None,
        }
    }

    /// Attaches a file without a position (for example a missing file).
    pub fn in_file(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|item| item.is_error()).count()
    }

    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|item| !item.is_error())
    }

    /// The closing line of a report: `2 errors found.`
    pub fn summary(&self) -> String {
        match self.error_count() {
            1 => "1 error found.".to_string(),
            count => format!("{count} errors found."),
        }
    }
}

impl SourceFile {
    /// A file used as is (no template).
    pub fn plain(display: impl Into<String>, source: impl Into<String>) -> Self {
        let source = source.into();
        Self::rendered(display, source.clone(), source)
    }

    /// A template and its rendering.
    pub fn rendered(display: impl Into<String>, source: String, rendered: String) -> Self {
        let lines = LineMap::new(&source, &rendered);
        Self {
            display: display.into(),
            source,
            rendered,
            lines,
            provenance: Arc::default(),
        }
    }

    /// The same file, masking the secrets of `provenance` in the values it shows.
    pub fn with_provenance(mut self, provenance: Arc<Provenance>) -> Self {
        self.provenance = provenance;
        self
    }

    /// How `value`, found at `span` of the rendered text, may be printed:
    /// as it is, or masked (`<secret NAME>`) when it came from a secret.
    pub fn shown(&self, span: &Range<usize>, value: &str) -> Shown {
        self.provenance.show(value, &self.template_lines(span))
    }

    /// `text` with every secret value of the load replaced by its mask
    /// (`<secret NAME>`), and whether one was found.
    pub fn mask_secrets(&self, text: &str) -> (String, bool) {
        self.provenance.replace_values(text)
    }

    /// The source lines of the rendered lines `span` covers that the
    /// template changed (none when the span is written literally).
    pub fn template_lines(&self, span: &Range<usize>) -> Vec<&str> {
        let start = span.start.min(self.rendered.len());
        let end = span.end.clamp(start, self.rendered.len());
        let mut lines = Vec::new();
        let mut line_start = self.rendered[..start].rfind('\n').map_or(0, |i| i + 1);
        loop {
            if self.lines.is_templated(&self.rendered, line_start) {
                let (line, _) =
                    self.lines
                        .to_source(&self.source, &self.rendered, line_start..line_start);
                let text = self.source.split('\n').nth(line).unwrap_or_default();
                if !lines.contains(&text) {
                    lines.push(text);
                }
            }
            match self.rendered[line_start..].find('\n') {
                Some(i) if line_start + i + 1 < end => line_start += i + 1,
                _ => break,
            }
        }
        lines
    }

    /// `path:line:column` of a span of the rendered text, as diagnostics show it.
    pub fn location(&self, span: Range<usize>) -> String {
        match self.error_at(span, "", "").snippet {
            Some(snippet) => format!("{}:{}:{}", self.display, snippet.line, snippet.column),
            None => self.display.clone(),
        }
    }

    /// A diagnostic at a byte span of the rendered text.
    pub fn at(
        &self,
        severity: Severity,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Diagnostic {
        let (source_line, columns) = self.lines.to_source(&self.source, &self.rendered, span);
        self.diagnostic(severity, source_line, columns, message.into(), label.into())
    }

    /// An error at a byte span of the rendered text.
    pub fn error_at(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Diagnostic {
        self.at(Severity::Error, span, message, label)
    }

    /// An error at a byte span of the source text (template errors).
    pub fn error_at_source(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Diagnostic {
        let (line, columns) = byte_span_to_line(&self.source, span);
        self.diagnostic(Severity::Error, line, columns, message.into(), label.into())
    }

    /// True when the rendered line holding `span` differs from its source
    /// line: a value there came from a variable and must not be echoed.
    pub fn is_templated(&self, span: &Range<usize>) -> bool {
        self.lines.is_templated(&self.rendered, span.start)
    }

    fn diagnostic(
        &self,
        severity: Severity,
        line: usize,
        columns: Range<usize>,
        message: String,
        label: String,
    ) -> Diagnostic {
        let lines: Vec<&str> = self.source.split('\n').collect();
        let text_of = |index: usize| lines.get(index).map(|line| line.trim_end_matches('\r'));
        let text = text_of(line).unwrap_or_default().to_string();
        let length = text.chars().count();
        // The caret stays under real text: a span at or past the end of the
        // line (a missing quote, the end of the file) marks its last character.
        let start = columns.start.min(length.saturating_sub(1));
        let width = columns.end.min(length).saturating_sub(start).max(1);
        Diagnostic {
            severity,
            message,
            path: Some(self.display.clone()),
            snippet: Some(Box::new(Snippet {
                line: line + 1,
                column: start + 1,
                width,
                text,
                before: line.checked_sub(1).and_then(text_of).map(str::to_string),
                after: text_of(line + 1)
                    .filter(|next| !(next.is_empty() && line + 2 >= lines.len()))
                    .map(str::to_string),
                label,
            })),
            help: None,
        }
    }
}

/// The 0-based line of a byte span and its columns, in characters, on that line.
pub fn byte_span_to_line(text: &str, span: Range<usize>) -> (usize, Range<usize>) {
    let start = floor_char_boundary(text, span.start.min(text.len()));
    let end = floor_char_boundary(text, span.end.clamp(start, text.len()));
    let line_start = text[..start].rfind('\n').map_or(0, |index| index + 1);
    let line = text[..start].matches('\n').count();
    let line_end = text[start..]
        .find('\n')
        .map_or(text.len(), |index| start + index);
    let column = text[line_start..start].chars().count();
    let end_column = column + text[start..end.min(line_end)].chars().count();
    (line, column..end_column)
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while index > 0 && !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{word}: {}", self.message)?;
        match (&self.path, &self.snippet) {
            (Some(path), Some(snippet)) => {
                writeln!(f, "  --> {path}:{}:{}", snippet.line, snippet.column)?;
                if let Some(before) = &snippet.before {
                    write_context(f, snippet.line - 1, before)?;
                }
                writeln!(f, "{:>4} > {}", snippet.line, snippet.text)?;
                let carets = format!(
                    "{}{}",
                    " ".repeat(snippet.column - 1),
                    "^".repeat(snippet.width)
                );
                if snippet.label.is_empty() {
                    writeln!(f, "     i {carets}")?;
                } else {
                    writeln!(f, "     i {carets} {}", snippet.label)?;
                }
                if let Some(after) = &snippet.after {
                    write_context(f, snippet.line + 1, after)?;
                }
            }
            (Some(path), None) => writeln!(f, "  --> {path}")?,
            _ => {}
        }
        if let Some(help) = &self.help {
            writeln!(f, "help: {help}")?;
        }
        Ok(())
    }
}

/// A context line: `  12 | text`, without trailing spaces when empty.
fn write_context(f: &mut fmt::Formatter<'_>, line: usize, text: &str) -> fmt::Result {
    if text.is_empty() {
        writeln!(f, "{line:>4} |")
    } else {
        writeln!(f, "{line:>4} | {text}")
    }
}

impl fmt::Display for Diagnostics {
    /// Every diagnostic, separated by blank lines, then the summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for diagnostic in &self.items {
            writeln!(f, "{diagnostic}")?;
        }
        if self.has_errors() {
            writeln!(f, "{}", self.summary())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_layout() {
        let source =
            "[service]\nname = \"nginx\"\nimage = \"${missing}/nginx:latest\"\nmemory = \"1g\"\n";
        let file = SourceFile::plain("web/service.toml", source);
        let start = source.find("${").unwrap();
        let diagnostic = file
            .error_at_source(
                start..start + 10,
                "undefined variable `missing`",
                "undefined value",
            )
            .with_help("define `missing` in dispenser.vars");
        let expected = "error: undefined variable `missing`\n  --> web/service.toml:3:10\n   2 | name = \"nginx\"\n   3 > image = \"${missing}/nginx:latest\"\n     i          ^^^^^^^^^^ undefined value\n   4 | memory = \"1g\"\nhelp: define `missing` in dispenser.vars\n";
        assert_eq!(diagnostic.to_string(), expected);
    }

    #[test]
    fn templated_lines_show_the_source_and_underline_the_expression() {
        let source = "a = 1\nimage = \"${registry}/app\"\nb = 2\n";
        let rendered = "a = 1\nimage = \"secret-host.example/app\"\nb = 2\n";
        let file = SourceFile::rendered("f.toml", source.into(), rendered.into());
        let value_start = rendered.find('"').unwrap();
        let value_end = rendered.rfind('"').unwrap() + 1;
        let span = value_start..value_end;
        assert!(file.is_templated(&span));
        let text = file.error_at(span, "bad", "here").to_string();
        assert!(!text.contains("secret-host"), "{text}");
        assert!(
            text.contains("   2 > image = \"${registry}/app\"\n"),
            "{text}"
        );
        assert!(
            text.contains("     i         ^^^^^^^^^^^^^^^^^ here\n"),
            "{text}"
        );
        assert!(!file.is_templated(&(0..1)));
    }

    /// Found by the property tests: an error at the end of a line (an
    /// unclosed string, the end of the file) put its caret past the text.
    #[test]
    fn a_span_at_the_end_of_a_line_marks_its_last_character() {
        let file = SourceFile::plain("v", "a = \"x\nb = 1\n");
        let snippet = file.error_at_source(6..7, "m", "l").snippet.unwrap();
        assert_eq!((snippet.line, snippet.column, snippet.width), (1, 6, 1));
        let snippet = file.error_at_source(100..100, "m", "l").snippet.unwrap();
        assert_eq!((snippet.line, snippet.column, snippet.width), (3, 1, 1));
        assert_eq!(snippet.text, "");
        let file = SourceFile::plain("t", "\t");
        let snippet = file.error_at_source(1..1, "m", "l").snippet.unwrap();
        assert_eq!((snippet.column, snippet.width), (1, 1));
    }

    #[test]
    fn file_level_error_and_summary() {
        let mut all = Diagnostics::default();
        all.push(
            Diagnostic::error("missing file")
                .in_file("x/service.toml")
                .with_help("create it"),
        );
        all.push(Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error("odd").in_file("y")
        });
        assert_eq!(
            all.to_string(),
            "error: missing file\n  --> x/service.toml\nhelp: create it\n\nwarning: odd\n  --> y\n\n1 error found.\n"
        );
    }
}
