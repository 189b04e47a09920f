//! Templates: renders config files with minijinja (`${ name }` for variables,
//! `{% if %}` blocks, strict undefined), keeps every value data (see
//! `render/substitute.rs`), bounds the work a template may do, and maps lines of the
//! rendered text back to lines of the source so diagnostics point at what
//! the user wrote.

mod substitute;

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};
use similar::{capture_diff_slices_deadline, Algorithm, DiffOp};

use super::diagnostic::byte_span_to_line;

/// How long the line diff of a rendered file may take before it settles
/// for a coarser answer (a huge file must not stall a reload).
const DIFF_DEADLINE: Duration = Duration::from_millis(500);
/// Beyond this many line pairs, a replaced block is paired in order instead
/// of by similarity (quadratic).
const MAX_PAIRED_LINES: usize = 10_000;
/// The work one render may do, in minijinja's fuel: about one unit per
/// instruction and per 64 bytes of data written. A config file renders with a
/// few thousand; a runaway loop stops here within a fraction of a second.
pub const RENDER_FUEL: u64 = 300_000;
/// The largest rendered text: a template whose output would be bigger is
/// refused (a loop that writes too much).
pub const MAX_RENDERED_BYTES: usize = 4 << 20;
/// How [`MAX_RENDERED_BYTES`] is written in messages.
const MAX_RENDERED_TEXT: &str = "4 MiB";
/// What the formatter writes for an expression whose value is empty, so
/// that minijinja records where it is (it records no empty output); never
/// in the text that is parsed. A noncharacter: reserved for internal use.
const EMPTY: &str = "\u{fdd0}";

/// Renders config templates with Dispenser's syntax.
pub struct Renderer {
    environment: Environment<'static>,
}

/// Why a template does not render. Never holds a variable's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    pub message: String,
    /// Byte span in the SOURCE text.
    pub span: Option<Range<usize>>,
    pub label: String,
    pub help: Option<String>,
    /// The variable that is undefined, when that is the problem.
    pub undefined: Option<String>,
}

/// For each line of the rendered text: its source line and whether it is
/// identical to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineMap {
    lines: Vec<(usize, bool)>,
}

impl Renderer {
    pub fn new() -> Self {
        let mut environment = Environment::new();
        let syntax = SyntaxConfig::builder()
            .variable_delimiters("${", "}")
            .block_delimiters("{%", "%}")
            .comment_delimiters("{#", "#}")
            .keep_trailing_newline(true)
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build();
        // The delimiters above are constants that minijinja accepts; keep the
        // default syntax if a future version refuses them, the tests will tell.
        if let Ok(syntax) = syntax {
            environment.set_syntax(syntax);
        }
        environment.set_undefined_behavior(UndefinedBehavior::Strict);
        environment.set_debug(true);
        environment.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        environment.set_fuel(Some(RENDER_FUEL));
        environment.set_formatter(|out, _state, value| {
            // What the default formatter refuses in strict mode.
            if value.is_undefined() {
                return Err(Error::from(ErrorKind::UndefinedError));
            }
            let text = value.to_string();
            if text.contains(EMPTY) {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "a value holds U+FDD0, a character reserved by dispenser",
                ));
            }
            let text = if text.is_empty() { EMPTY } else { &text };
            out.write_str(text).map_err(Error::from)
        });
        Self { environment }
    }

    /// Renders `source` with `variables` (exposed values; never echoed in
    /// errors). Every value is data: escaped for the TOML token it lands in,
    /// or refused (see `render/substitute.rs`).
    pub fn render(
        &self,
        source: &str,
        variables: &BTreeMap<String, String>,
    ) -> Result<String, RenderError> {
        let context: BTreeMap<String, Value> = variables
            .iter()
            .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
            .collect();
        let (output, spans) = self
            .environment
            .template_from_str(source)
            .and_then(|template| template.render_with_spans(Value::from(context)))
            .map_err(|error| RenderError::from_minijinja(source, &error))?;
        if output.len() > MAX_RENDERED_BYTES {
            return Err(RenderError {
                message: format!("the template renders to more than {MAX_RENDERED_TEXT}"),
                span: None,
                label: "here".to_string(),
                help: Some(
                    "a loop writes too much: a rendered config file this large is a mistake"
                        .to_string(),
                ),
                undefined: None,
            });
        }
        substitute::keep_values_data(source, &output, &spans).map_err(|refusal| RenderError {
            message: refusal.message,
            span: refusal
                .expression
                .filter(|range| range.end <= source.len() && range.start <= range.end)
                .map(|range| widen_to_expression(source, range)),
            label: refusal.label.to_string(),
            help: Some(refusal.help),
            undefined: None,
        })
    }
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl RenderError {
    fn from_minijinja(source: &str, error: &minijinja::Error) -> Self {
        let span = error
            .range()
            .filter(|range| range.end <= source.len() && range.start <= range.end)
            .or_else(|| error.line().map(|line| line_span(source, line)));
        match (error.kind(), span) {
            (ErrorKind::UndefinedError, Some(span)) => {
                let name = source[span.clone()].trim().to_string();
                let span = widen_to_expression(source, span);
                let root = name.split(['.', '[', '|', ' ']).next().unwrap_or_default();
                RenderError {
                    message: format!("undefined variable `{name}`"),
                    span: Some(span),
                    label: "undefined value".to_string(),
                    help: Some(format!(
                        "define `{root}` in dispenser.vars or a *.dispenser.vars file"
                    )),
                    undefined: Some(root.to_string()),
                }
            }
            (ErrorKind::OutOfFuel, span) => RenderError {
                message: format!(
                    "template too costly: rendering stopped after its budget of {RENDER_FUEL} steps"
                ),
                span,
                label: "still running here".to_string(),
                help: Some(
                    "a config template needs a few thousand steps (each loop turn, filter and line written costs some): look for a loop that runs too long"
                        .to_string(),
                ),
                undefined: None,
            },
            (ErrorKind::InvalidOperation, Some(span))
                if error.detail().is_some_and(|detail| detail.contains("U+FDD0")) =>
            {
                let span = widen_to_expression(source, span);
                let inner = source[span.clone()]
                    .trim_start_matches("${")
                    .trim_end_matches('}')
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                RenderError {
                    message: format!(
                        "the value of `${{ {inner} }}` holds U+FDD0, a character reserved by dispenser"
                    ),
                    span: Some(span),
                    label: "value".to_string(),
                    help: Some("remove the character U+FDD0 from the value".to_string()),
                    undefined: None,
                }
            }
            (kind, span) => {
                let detail = error.detail().map(|d| format!(": {d}")).unwrap_or_default();
                RenderError {
                    message: format!("template error: {kind}{detail}"),
                    span,
                    label: "here".to_string(),
                    help: Some(
                        "variables are written `${ name }`, blocks `{% if ... %}...{% endif %}`"
                            .to_string(),
                    ),
                    undefined: None,
                }
            }
        }
    }
}

/// The byte span of a 1-based line.
fn line_span(source: &str, line: usize) -> Range<usize> {
    let mut start = 0;
    for _ in 1..line {
        match source[start..].find('\n') {
            Some(index) => start += index + 1,
            None => break,
        }
    }
    let end = source[start..]
        .find('\n')
        .map_or(source.len(), |index| start + index);
    start..end
}

/// Widens an expression's span to its `${` and `}` on the same line.
fn widen_to_expression(source: &str, span: Range<usize>) -> Range<usize> {
    let line_start = source[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[span.end..]
        .find('\n')
        .map_or(source.len(), |i| span.end + i);
    let start = source[line_start..span.start]
        .rfind("${")
        .map_or(span.start, |i| line_start + i);
    let end = source[span.end..line_end]
        .find('}')
        .map_or(span.end, |i| span.end + i + 1);
    start..end
}

impl LineMap {
    pub fn new(source: &str, rendered: &str) -> Self {
        // Lines split exactly as diagnostics count them (on `\n` only: a
        // lone `\r` is not a line end), so indices agree with `nth_line`.
        let source_lines: Vec<&str> = source.split('\n').collect();
        let rendered_lines: Vec<&str> = rendered.split('\n').collect();
        let mut lines = vec![(0, false); rendered_lines.len()];
        let deadline = Instant::now().checked_add(DIFF_DEADLINE);
        let ops = capture_diff_slices_deadline(
            Algorithm::Myers,
            &source_lines,
            &rendered_lines,
            deadline,
        );
        let last_source = source_lines.len().saturating_sub(1);
        for op in &ops {
            match *op {
                DiffOp::Equal {
                    old_index,
                    new_index,
                    len,
                } => {
                    for k in 0..len {
                        if let Some(slot) = lines.get_mut(new_index + k) {
                            *slot = (old_index + k, true);
                        }
                    }
                }
                DiffOp::Delete { .. } => {}
                DiffOp::Insert {
                    old_index,
                    new_index,
                    new_len,
                } => {
                    for k in 0..new_len {
                        if let Some(slot) = lines.get_mut(new_index + k) {
                            *slot = (old_index.min(last_source), false);
                        }
                    }
                }
                DiffOp::Replace {
                    old_index,
                    old_len,
                    new_index,
                    new_len,
                } => {
                    // Pair each rendered line with the most similar source
                    // line of the block, keeping the order; a huge block is
                    // paired in order, to keep a hostile file's cost bounded.
                    if old_len.saturating_mul(new_len) > MAX_PAIRED_LINES {
                        for k in 0..new_len {
                            if let Some(slot) = lines.get_mut(new_index + k) {
                                *slot = (old_index + k.min(old_len - 1), false);
                            }
                        }
                        continue;
                    }
                    let mut cursor = old_index;
                    for k in 0..new_len {
                        let rendered_line = nth_line(rendered, new_index + k);
                        let best = (cursor..old_index + old_len)
                            .max_by(|a, b| {
                                let score = |index: usize| {
                                    strsim::normalized_levenshtein(
                                        nth_line(source, index),
                                        rendered_line,
                                    )
                                };
                                score(*a).total_cmp(&score(*b)).then(b.cmp(a))
                            })
                            .unwrap_or(cursor);
                        cursor = best;
                        if let Some(slot) = lines.get_mut(new_index + k) {
                            *slot = (best, false);
                        }
                    }
                }
            }
        }
        Self { lines }
    }

    /// The 0-based source line of a rendered span and the columns (in
    /// characters) to underline on it.
    pub fn to_source(
        &self,
        source: &str,
        rendered: &str,
        span: Range<usize>,
    ) -> (usize, Range<usize>) {
        let (rendered_line, columns) = byte_span_to_line(rendered, span);
        let last_source = source.matches('\n').count();
        let (source_line, same) = self
            .lines
            .get(rendered_line)
            .copied()
            .unwrap_or((rendered_line, false));
        let source_line = source_line.min(last_source);
        if same {
            return (source_line, columns);
        }
        let source_text: Vec<char> = nth_line(source, source_line).chars().collect();
        let rendered_text: Vec<char> = nth_line(rendered, rendered_line).chars().collect();
        let shortest = source_text.len().min(rendered_text.len());
        let prefix = source_text
            .iter()
            .zip(&rendered_text)
            .take_while(|(a, b)| a == b)
            .count();
        let suffix = source_text
            .iter()
            .rev()
            .zip(rendered_text.iter().rev())
            .take_while(|(a, b)| a == b)
            .count()
            .min(shortest - prefix);
        let rendered_changed_end = rendered_text.len() - suffix;
        let source_changed_end = source_text.len() - suffix;
        let shift = |column: usize| column - rendered_changed_end + source_changed_end;
        let start = if columns.start < prefix {
            columns.start
        } else if columns.start >= rendered_changed_end {
            shift(columns.start)
        } else {
            prefix
        };
        let end = if columns.end <= prefix {
            columns.end
        } else if columns.end >= rendered_changed_end {
            shift(columns.end)
        } else {
            source_changed_end
        };
        let end = end.max(start + 1);
        (source_line, start..end)
    }

    /// True when the rendered line holding byte `offset` differs from its source line.
    pub fn is_templated(&self, rendered: &str, offset: usize) -> bool {
        let end = offset.min(rendered.len());
        let line = rendered.as_bytes()[..end]
            .iter()
            .filter(|byte| **byte == b'\n')
            .count();
        self.lines.get(line).is_none_or(|(_, same)| !same)
    }
}

fn nth_line(text: &str, index: usize) -> &str {
    text.split('\n')
        .nth(index)
        .unwrap_or_default()
        .trim_end_matches('\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_dollar_brace_variables_and_blocks() {
        let renderer = Renderer::new();
        let source = "a = \"${ x }\"\nb = \"${x}\"\n{% if env == \"prod\" %}\nc = 1\n{% else %}\nc = 2\n{% endif %}\nd = \"{{ not a variable }}\"\n";
        let rendered = renderer
            .render(source, &vars(&[("x", "1"), ("env", "prod")]))
            .unwrap();
        assert_eq!(
            rendered,
            "a = \"1\"\nb = \"1\"\nc = 1\nd = \"{{ not a variable }}\"\n"
        );
    }

    #[test]
    fn undefined_variable_points_at_the_expression() {
        let renderer = Renderer::new();
        let source = "name = \"web\"\nimage = \"${missing}/nginx\"\n";
        let error = renderer.render(source, &vars(&[])).unwrap_err();
        assert_eq!(error.message, "undefined variable `missing`");
        assert_eq!(&source[error.span.unwrap()], "${missing}");
    }

    /// Found by the property tests: a lone `\r` counted as a line end in
    /// the diff but not in diagnostics, so a span mapped to a line past the
    /// end of the source.
    #[test]
    fn a_lone_carriage_return_is_not_a_line_end() {
        // (A value can no longer add a line end there: the map is built
        // from the texts directly.)
        let source = "\r${ mode }";
        let rendered = "\r\n".to_string();
        let map = LineMap::new(source, &rendered);
        for offset in 0..=rendered.len() {
            let (line, _) = map.to_source(source, &rendered, offset..rendered.len());
            assert_eq!(line, 0, "offset {offset}");
        }
    }

    #[test]
    fn line_map_follows_removed_and_substituted_lines() {
        let source = "a = 1\n{% if x %}\nb = \"${v}\"\n{% endif %}\nc = 3\n";
        let rendered = "a = 1\nb = \"value\"\nc = 3\n";
        let map = LineMap::new(source, rendered);
        assert_eq!(map.lines[0], (0, true));
        assert_eq!(map.lines[1].0, 2);
        assert!(!map.lines[1].1);
        assert_eq!(map.lines[2], (4, true));
        let start = rendered.find("\"value").unwrap();
        let (line, columns) = map.to_source(source, rendered, start..start + 7);
        assert_eq!(line, 2);
        assert_eq!(columns, 4..10);
        let c = rendered.find("c =").unwrap();
        assert_eq!(map.to_source(source, rendered, c..c + 1), (4, 0..1));
    }
}

#[cfg(test)]
mod data_tests;
