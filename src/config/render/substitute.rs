//! A value is always data: after minijinja has rendered a template, each
//! `${ ... }` output is checked, escaped or refused for the TOML token it
//! lands in, so that no value can add, remove or reshape a key, a table, a
//! string or a comment.
//!
//! How: the template's output is split into its raw parts (written by the
//! user) and its expression outputs (values), thanks to minijinja's output
//! spans. The raw parts are joined with a one-letter stand-in for every value
//! (the *skeleton*) and parsed with toml's own lexer and parser
//! (`toml_parser`, the code the config is later parsed with): the token
//! holding each stand-in says where the value lands (a `"..."` string, a
//! `'...'` string, a bare value such as `port = ${ port }`, a key, a
//! comment). Each value is then escaped for that token, or refused with an
//! error that names the expression (never the value). Finally the text with
//! the real values is parsed again, and its events (every key, value,
//! separator, bracket, comment, line end) must be exactly the skeleton's,
//! each at the same place: the values changed what the strings and scalars
//! hold, never the structure.

use std::ops::Range;

use minijinja::{OutputSpan, OutputSpanKind};

use super::EMPTY;
use toml_parser::decoder::Encoding;
use toml_parser::parser::{Event, EventKind, RecursionGuard, ValidateWhitespace};
use toml_parser::{ParseError, Source};

/// What stands for a value in the skeleton: one ASCII letter is content in
/// every token (a string, a bare key, a bare value, a comment) and never
/// starts or ends one.
const STAND_IN: &str = "x";
/// toml's nesting limit for arrays and inline tables (toml::de's `LIMIT`).
const NESTING_LIMIT: u32 = 80;

/// Where a value lands, from the token that holds its stand-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Context {
    /// `"..."`, a value or a quoted key.
    Basic,
    /// `"""..."""`.
    MlBasic,
    /// `'...'`, a value or a quoted key.
    Literal,
    /// `'''...'''`; `at_start`: right after the opening quotes.
    MlLiteral {
        at_start: bool,
    },
    /// A value without quotes: `port = ${ port }`.
    Bare,
    /// A key without quotes: `${ name } = 1`, `[${ table }]`.
    Key,
    Comment,
    /// Between tokens (after a value, around `=`, ...): no value goes there.
    Elsewhere,
}

/// Why a value is refused; never holds the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    /// The expression's byte span in the template source, without `${ }`.
    pub expression: Option<Range<usize>>,
    pub message: String,
    pub label: &'static str,
    pub help: String,
}

/// One expression's output in the rendered text.
struct Slot {
    /// Byte span in the rendered output.
    output: Range<usize>,
    /// The expression's span in the source.
    expression: Option<Range<usize>>,
    /// Where its stand-in is in the skeleton.
    skeleton: usize,
}

/// Turns minijinja's output into the text to parse: the raw parts as
/// written, each value escaped for its context. `Err` when a value cannot
/// be written where it is without changing the structure of the file.
pub(super) fn keep_values_data(
    source: &str,
    output: &str,
    spans: &[OutputSpan],
) -> Result<String, Refusal> {
    let slots = slots(output, spans);
    if slots.is_empty() {
        return Ok(output.to_string());
    }
    let mut skeleton = String::with_capacity(output.len());
    let mut placed = Vec::with_capacity(slots.len());
    let mut cursor = 0;
    for slot in slots {
        skeleton.push_str(&output[cursor..slot.output.start]);
        cursor = slot.output.end;
        let at = skeleton.len();
        skeleton.push_str(STAND_IN);
        placed.push(Slot {
            skeleton: at,
            ..slot
        });
    }
    skeleton.push_str(&output[cursor..]);
    let slots = placed;

    let (skeleton_events, skeleton_errors) = parse(&skeleton);
    if !skeleton_errors.is_empty() {
        // The text the user wrote is not valid TOML whatever the values:
        // give the parser the skeleton, so that its error is about that
        // text and no value reaches a file that does not load anyway.
        return Ok(skeleton);
    }

    // Each value, escaped for the token its stand-in is in.
    let mut text = String::with_capacity(output.len() + output.len() / 8);
    let mut written: Vec<Range<usize>> = Vec::with_capacity(slots.len());
    let mut event_index = 0;
    let mut raw_cursor = 0;
    for slot in &slots {
        while skeleton_events
            .get(event_index)
            .is_some_and(|event| event.span().end() <= slot.skeleton)
        {
            event_index += 1;
        }
        let event = skeleton_events
            .get(event_index)
            .filter(|event| event.span().start() <= slot.skeleton);
        let context = event.map_or(Context::Elsewhere, |event| context_of(event, slot.skeleton));
        let refuse = |message: String, label: &'static str, help: String| Refusal {
            expression: slot.expression.clone(),
            message,
            label,
            help,
        };
        let shown = shown(source, slot.expression.as_ref());
        if matches!(context, Context::Basic | Context::MlBasic)
            && odd_backslashes_before(&skeleton[..slot.skeleton])
        {
            return Err(refuse(
                format!("{shown} follows a `\\`, which would escape the start of its value"),
                "after a backslash",
                format!("write `\\\\` for a backslash before {shown}"),
            ));
        }
        let value = match &output[slot.output.clone()] {
            EMPTY => "",
            value => value,
        };
        let escaped = escape(context, value).map_err(|why| refusal(why, &shown, slot))?;
        // A value that is a whole bare scalar (`port = ${ port }`) must be
        // one: a number, a boolean or a date.
        let whole = event.is_some_and(|event| {
            event.span().start() == slot.skeleton
                && event.span().end() == slot.skeleton + STAND_IN.len()
        });
        if context == Context::Bare && whole && !is_scalar(&escaped) {
            return Err(refusal(Misfit::Bare, &shown, slot));
        }
        text.push_str(&skeleton[raw_cursor..slot.skeleton]);
        let start = text.len();
        text.push_str(&escaped);
        written.push(start..text.len());
        raw_cursor = slot.skeleton + STAND_IN.len();
    }
    text.push_str(&skeleton[raw_cursor..]);

    // The same events at the same places: the values changed only what
    // strings, scalars, keys and comments hold.
    let (events, errors) = parse(&text);
    if let Some(culprit) = first_difference(&skeleton_events, &events, &slots, &written) {
        let slot = &slots[culprit];
        let shown = shown(source, slot.expression.as_ref());
        return Err(Refusal {
            expression: slot.expression.clone(),
            message: format!("the value of {shown} would change the structure of the file"),
            label: "value",
            help: "a variable's value is data: it cannot add or end keys, tables, strings or comments; write it inside a \"...\" string, where every value is escaped".to_string(),
        });
    }
    if !errors.is_empty() {
        let slot = slots.last().expect("at least one slot");
        let shown = shown(source, slot.expression.as_ref());
        return Err(Refusal {
            expression: slot.expression.clone(),
            message: format!("the value of {shown} makes the file invalid TOML"),
            label: "value",
            help: "write the value inside a \"...\" string, where every value is escaped"
                .to_string(),
        });
    }
    Ok(text)
}

/// The expressions' outputs, in order. Output no span accounts for is
/// treated as a value too (minijinja accounts for all of it).
fn slots(output: &str, spans: &[OutputSpan]) -> Vec<Slot> {
    let mut slots = Vec::new();
    let mut cursor = 0;
    for span in spans {
        let range = span.output_range();
        if range.start < cursor || range.end > output.len() {
            continue;
        }
        if range.start > cursor {
            slots.push(Slot {
                output: cursor..range.start,
                expression: None,
                skeleton: 0,
            });
        }
        if span.kind() != OutputSpanKind::Raw {
            slots.push(Slot {
                output: range.clone(),
                expression: Some(span.source_range()),
                skeleton: 0,
            });
        }
        cursor = range.end;
    }
    if cursor < output.len() {
        slots.push(Slot {
            output: cursor..output.len(),
            expression: None,
            skeleton: 0,
        });
    }
    slots
}

/// The events of toml's parser for `text`, and its errors, exactly as toml
/// parses a document (the same nesting limit and checks).
fn parse(text: &str) -> (Vec<Event>, Vec<ParseError>) {
    let source = Source::new(text);
    let tokens = source.lex().into_vec();
    let mut events = Vec::with_capacity(tokens.len());
    let mut errors = Vec::new();
    {
        let mut validate = ValidateWhitespace::new(&mut events, source);
        let mut guard = RecursionGuard::new(&mut validate, NESTING_LIMIT);
        toml_parser::parser::parse_document(&tokens, &mut guard, &mut errors);
    }
    (events, errors)
}

fn context_of(event: &Event, at: usize) -> Context {
    match (event.kind(), event.encoding()) {
        (EventKind::SimpleKey | EventKind::Scalar, Some(Encoding::BasicString)) => Context::Basic,
        (EventKind::Scalar, Some(Encoding::MlBasicString)) => Context::MlBasic,
        (EventKind::SimpleKey | EventKind::Scalar, Some(Encoding::LiteralString)) => {
            Context::Literal
        }
        (EventKind::Scalar, Some(Encoding::MlLiteralString)) => Context::MlLiteral {
            at_start: at == event.span().start() + 3,
        },
        (EventKind::Scalar, None) => Context::Bare,
        (EventKind::SimpleKey, None) => Context::Key,
        (EventKind::Comment, _) => Context::Comment,
        _ => Context::Elsewhere,
    }
}

/// True when `text` is a TOML number, boolean or date-time.
fn is_scalar(text: &str) -> bool {
    toml::from_str::<toml::Table>(&format!("v = {text}")).is_ok_and(|table| {
        table.len() == 1
            && table.get("v").is_some_and(|value| {
                value.is_integer() || value.is_float() || value.is_bool() || value.is_datetime()
            })
    })
}

/// True when `text` ends with an odd number of backslashes.
fn odd_backslashes_before(text: &str) -> bool {
    text.bytes().rev().take_while(|byte| *byte == b'\\').count() % 2 == 1
}

/// Why a value does not fit its context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misfit {
    Literal,
    MlLiteral,
    MlLiteralStart,
    Bare,
    BareEmpty,
    Key,
    Elsewhere,
}

/// The value written for `context`, or why it cannot be.
fn escape(context: Context, value: &str) -> Result<String, Misfit> {
    match context {
        Context::Basic => Ok(escape_basic(value, false)),
        Context::MlBasic => Ok(escape_basic(value, true)),
        // A comment holds anything but a line end or a control character.
        Context::Comment => Ok(escape_basic(value, false)),
        Context::Literal => {
            if value
                .chars()
                .any(|c| c == '\'' || (c.is_control() && c != '\t'))
            {
                Err(Misfit::Literal)
            } else {
                Ok(value.to_string())
            }
        }
        Context::MlLiteral { at_start } => {
            if value.contains("'''")
                || value
                    .chars()
                    .any(|c| c.is_control() && c != '\t' && c != '\n')
            {
                Err(Misfit::MlLiteral)
            } else if at_start && value.starts_with('\n') {
                // The line end right after `'''` is dropped by TOML.
                Err(Misfit::MlLiteralStart)
            } else {
                Ok(value.to_string())
            }
        }
        Context::Bare => {
            if value.is_empty() {
                Err(Misfit::BareEmpty)
            } else if value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.' | ':'))
            {
                Ok(value.to_string())
            } else {
                Err(Misfit::Bare)
            }
        }
        Context::Key => {
            if !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            {
                Ok(value.to_string())
            } else {
                Err(Misfit::Key)
            }
        }
        Context::Elsewhere => Err(Misfit::Elsewhere),
    }
}

/// `value` as the content of a `"..."` (or `"""..."""`) string: quotes,
/// backslashes and control characters escaped, line ends as `\n`. In a
/// multi-line string, leading spaces are escaped too (after a line-ending
/// backslash TOML would drop them).
fn escape_basic(value: &str, multiline: bool) -> String {
    let mut escaped = String::with_capacity(value.len() + 2);
    let mut leading = multiline;
    for c in value.chars() {
        leading &= c == ' ';
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\t' => escaped.push_str("\\t"),
            '\r' => escaped.push_str("\\r"),
            ' ' if leading => escaped.push_str("\\u0020"),
            c if c.is_control() => escaped.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => escaped.push(c),
        }
    }
    escaped
}

/// `${ name }` as written in the source (the expression, never its value).
fn shown(source: &str, expression: Option<&Range<usize>>) -> String {
    match expression.and_then(|range| source.get(range.clone())) {
        Some(text) if !text.trim().is_empty() => {
            let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("`${{ {text} }}`")
        }
        _ => "a template expression".to_string(),
    }
}

fn refusal(why: Misfit, shown: &str, slot: &Slot) -> Refusal {
    let (message, label, help) = match why {
        Misfit::Literal => (
            format!("the value of {shown} cannot go in a '...' string: it holds a `'`, a line end or a control character"),
            "in a '...' string",
            format!("write the string with double quotes, \"{shown_bare}\": a value is escaped there", shown_bare = bare(shown)),
        ),
        Misfit::MlLiteral => (
            format!("the value of {shown} cannot go in a '''...''' string: it holds `'''` or a control character"),
            "in a '''...''' string",
            format!("write the string with double quotes, \"\"\"{}\"\"\": a value is escaped there", bare(shown)),
        ),
        Misfit::MlLiteralStart => (
            format!("the value of {shown} starts with a line end, which TOML drops right after `'''`"),
            "in a '''...''' string",
            format!("write the string with double quotes, \"\"\"{}\"\"\": a value is escaped there", bare(shown)),
        ),
        Misfit::Bare => (
            format!("the value of {shown} is written without quotes, so it must be a number, a boolean or a date"),
            "value without quotes",
            format!("put it in a string: \"{}\"", bare(shown)),
        ),
        Misfit::BareEmpty => (
            format!("the value of {shown} is empty, where a value without quotes is expected"),
            "value without quotes",
            format!("put it in a string: \"{}\"", bare(shown)),
        ),
        Misfit::Key => (
            format!("the value of {shown} is used as a key, so it may hold only letters, digits, `_` and `-`"),
            "key",
            format!("quote the key: \"{}\" = ...", bare(shown)),
        ),
        Misfit::Elsewhere => (
            format!("{shown} is not inside a string, a value, a key or a comment"),
            "outside any value",
            format!("a variable's value is data: write it inside a value, for example `key = \"{}\"`", bare(shown)),
        ),
    };
    Refusal {
        expression: slot.expression.clone(),
        message,
        label,
        help,
    }
}

/// `${ name }` without the backticks of [`shown`].
fn bare(shown: &str) -> &str {
    shown.trim_matches('`')
}

/// The index of the slot to blame when `events` differ from the
/// skeleton's (`skeleton`), each skeleton offset shifted by what the values
/// written before it added; `None` when they are the same.
fn first_difference(
    skeleton: &[Event],
    events: &[Event],
    slots: &[Slot],
    written: &[Range<usize>],
) -> Option<usize> {
    // A skeleton offset in the text: + (value length - stand-in length) of
    // every slot whose stand-in ends at or before it.
    let mut passed = 0;
    let mut shift: isize = 0;
    let mut map = |offset: usize| -> usize {
        while passed < slots.len() && slots[passed].skeleton + STAND_IN.len() <= offset {
            shift += written[passed].len() as isize - STAND_IN.len() as isize;
            passed += 1;
        }
        offset.saturating_add_signed(shift)
    };
    let mut differs_at = None;
    for (index, expected) in skeleton.iter().enumerate() {
        let start = map(expected.span().start());
        let end = map(expected.span().end());
        let same = events.get(index).is_some_and(|event| {
            event.kind() == expected.kind()
                && event.encoding() == expected.encoding()
                && event.span().start() == start
                && event.span().end() == end
        });
        if !same {
            differs_at = Some(expected.span().end());
            break;
        }
    }
    if differs_at.is_none() && events.len() != skeleton.len() {
        differs_at = Some(usize::MAX);
    }
    let at = differs_at?;
    let culprit = slots
        .iter()
        .rposition(|slot| slot.skeleton < at)
        .unwrap_or(0);
    Some(culprit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_escaping_reads_back() {
        for value in [
            "plain",
            "a\"b",
            "c:\\path",
            "line\nbreak",
            "tab\there",
            "\u{0}\u{7f}\u{1b}",
            "é😀",
            "  lead",
        ] {
            let text = format!(
                "a = \"{}\"\nb = \"\"\"{}\"\"\"\n",
                escape_basic(value, false),
                escape_basic(value, true)
            );
            let table: toml::Table =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(table["a"].as_str(), Some(value), "{text}");
            assert_eq!(table["b"].as_str(), Some(value), "{text}");
        }
    }

    #[test]
    fn contexts_come_from_the_token_holding_the_stand_in() {
        let cases = [
            ("a = \"x\"", Context::Basic),
            ("a = \"\"\"x\"\"\"", Context::MlBasic),
            ("a = 'x'", Context::Literal),
            ("a = '''x'''", Context::MlLiteral { at_start: true }),
            ("a = '''yx'''", Context::MlLiteral { at_start: false }),
            ("a = x", Context::Bare),
            ("a = [1, x]", Context::Bare),
            ("x = 1", Context::Key),
            ("[t.x]", Context::Key),
            ("\"x\" = 1", Context::Basic),
            ("a = 1 # x", Context::Comment),
            ("a = { x = 1 }", Context::Key),
        ];
        for (text, expected) in cases {
            let (events, errors) = parse(text);
            assert!(errors.is_empty(), "{text}");
            let at = text.rfind('x').unwrap();
            let event = events
                .iter()
                .find(|event| event.span().start() <= at && at < event.span().end())
                .unwrap();
            assert_eq!(context_of(event, at), expected, "{text}");
        }
    }
}
