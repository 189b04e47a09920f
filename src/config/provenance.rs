//! Where a rendered value came from, so that a diagnostic never prints a
//! secret: a value that holds a secret's value, or sits on a templated line
//! whose expressions read a secret, is shown as `<secret NAME>` (NAME is the
//! variable, never its value). Values written literally, and values from
//! plain variables, are shown as they are.
//!
//! Two checks, each enough on its own to mask:
//! - by value: every occurrence of a secret's value (ASCII case ignored, so a
//!   lowercased host still matches) is replaced by its mask;
//! - by line: the source line of a templated value is scanned for the
//!   variables its `${ }` and `{% %}` tags read. A secret among them masks
//!   the whole value (it may be transformed: `| lower`, a slice); a name
//!   that is no variable (a `{% set %}` or loop variable, whose origin is
//!   unknown) masks it as `<template value>`.
//!
//! A plain variable whose value holds a secret's value (an overlay written
//! `x = "${ token }-a"`) counts as a secret itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What a masked value from an unknown template variable is shown as.
pub const TEMPLATE_MASK: &str = "<template value>";

/// Template words that are not variables: keywords, literals and tests.
const KEYWORDS: &[&str] = &[
    "if",
    "elif",
    "else",
    "endif",
    "for",
    "endfor",
    "in",
    "set",
    "endset",
    "and",
    "or",
    "not",
    "is",
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
    "with",
    "endwith",
    "recursive",
];
/// minijinja's global functions (a name followed by `(`).
const FUNCTIONS: &[&str] = &["range", "dict", "namespace", "debug"];

/// The secrets of one load, to mask them where a value is printed.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// Secret(-derived) variables: (name as shown, value), longest value first.
    secrets: Vec<(String, String)>,
    /// Their names, for the line check.
    secret_names: BTreeMap<String, String>,
    /// Every other variable.
    plain: BTreeSet<String>,
}

/// A user value as a diagnostic may print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub text: String,
    /// True when the text is (or holds) a mask: the value came from a
    /// secret, or from a template variable of unknown origin.
    pub masked: bool,
}

impl Provenance {
    /// From every variable of a load (`values`, exposed) and which of them
    /// were resolved from a secret source.
    pub fn new(values: &BTreeMap<String, String>, is_secret: impl Fn(&str) -> bool) -> Self {
        let secret_values: Vec<&str> = values
            .iter()
            .filter(|(name, _)| is_secret(name))
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
            .collect();
        let holds_secret = |value: &str| {
            secret_values
                .iter()
                .any(|secret| find_ignoring_case(value, secret, 0).is_some())
        };
        let mut provenance = Provenance::default();
        for (name, value) in values {
            if is_secret(name) || holds_secret(value) {
                // A variable name written with a template may itself hold a
                // secret: it is not shown then.
                let shown = if holds_secret(name) {
                    "<secret>".to_string()
                } else {
                    format!("<secret {name}>")
                };
                provenance.secret_names.insert(name.clone(), shown.clone());
                if !value.is_empty() {
                    provenance.secrets.push((shown, value.clone()));
                }
            } else {
                provenance.plain.insert(name.clone());
            }
        }
        provenance
            .secrets
            .sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
        provenance
    }

    /// How `value` may be printed. `template_lines` are the source lines of
    /// the rendered lines the value sits on, for those the template changed
    /// (empty when the value is written literally).
    pub fn show(&self, value: &str, template_lines: &[&str]) -> Shown {
        let (text, replaced) = self.replace_values(value);
        if replaced {
            return Shown { text, masked: true };
        }
        if let Some(mask) = template_lines.iter().find_map(|line| self.line_mask(line)) {
            return Shown {
                text: mask,
                masked: true,
            };
        }
        Shown {
            text: value.to_string(),
            masked: false,
        }
    }

    /// `text` with every occurrence of a secret's value replaced by its mask.
    pub fn replace_values(&self, text: &str) -> (String, bool) {
        let mut out = String::with_capacity(text.len());
        let mut replaced = false;
        let mut at = 0;
        let mut copied = 0;
        while at < text.len() {
            let hit = self
                .secrets
                .iter()
                .find(|(_, value)| starts_with_ignoring_case(&text[at..], value));
            match hit {
                Some((mask, value)) => {
                    out.push_str(&text[copied..at]);
                    out.push_str(mask);
                    at += value.len();
                    copied = at;
                    replaced = true;
                }
                None => {
                    at += text[at..].chars().next().map_or(1, char::len_utf8);
                }
            }
        }
        out.push_str(&text[copied..]);
        (out, replaced)
    }

    /// The mask a templated source line calls for: the first secret its tags
    /// read, else [`TEMPLATE_MASK`] when they read a name that is no
    /// variable, or when the line has no tag at all (its text came from
    /// elsewhere in the template).
    fn line_mask(&self, line: &str) -> Option<String> {
        let names = tag_names(line);
        let Some(names) = names else {
            return Some(TEMPLATE_MASK.to_string());
        };
        if let Some(mask) = names.iter().find_map(|name| self.secret_names.get(name)) {
            return Some(mask.clone());
        }
        names
            .iter()
            .any(|name| !self.plain.contains(name))
            .then(|| TEMPLATE_MASK.to_string())
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The variable names the `${ }` and `{% %}` tags of one line read, or
/// `None` when the line has no tag. A tag left open runs to the end of the line.
pub(super) fn tag_names(line: &str) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let mut found = false;
    let mut rest = line;
    loop {
        let next = [("${", "}"), ("{%", "%}")]
            .iter()
            .filter_map(|(open, close)| rest.find(open).map(|at| (at, *open, *close)))
            .min_by_key(|(at, _, _)| *at);
        let Some((at, open, close)) = next else {
            break;
        };
        found = true;
        let body_start = at + open.len();
        let body_end =
            find_close(&rest[body_start..], close).map_or(rest.len(), |i| body_start + i);
        expression_names(&rest[body_start..body_end], &mut names);
        rest = &rest[(body_end + close.len()).min(rest.len())..];
    }
    found.then_some(names)
}

/// Where `close` ends a tag body, outside string literals.
fn find_close(body: &str, close: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (index, c) in body.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if body[index..].starts_with(close) => return Some(index),
            None => {}
        }
    }
    None
}

/// Pushes the names an expression reads: identifiers outside string
/// literals, except attributes (after `.`), filters (after `|`), tests
/// (after `is`), keywords and global functions.
fn expression_names(expression: &str, names: &mut Vec<String>) {
    let chars: Vec<(usize, char)> = expression.char_indices().collect();
    let mut index = 0;
    let mut previous: Option<char> = None;
    let mut previous_word = String::new();
    while index < chars.len() {
        let (start, c) = chars[index];
        if c == '"' || c == '\'' {
            index += 1;
            while index < chars.len() && chars[index].1 != c {
                index += 1;
            }
            index += 1;
            previous = Some(c);
            previous_word.clear();
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let mut end = index;
            while end < chars.len() && (chars[end].1.is_ascii_alphanumeric() || chars[end].1 == '_')
            {
                end += 1;
            }
            let stop = chars.get(end).map_or(expression.len(), |(at, _)| *at);
            let word = &expression[start..stop];
            let called = chars[end..]
                .iter()
                .find(|(_, c)| !c.is_whitespace())
                .is_some_and(|(_, c)| *c == '(');
            let skipped = matches!(previous, Some('.') | Some('|'))
                || previous_word == "is"
                || KEYWORDS.contains(&word)
                || (called && FUNCTIONS.contains(&word));
            if !skipped && !names.iter().any(|name| name == word) {
                names.push(word.to_string());
            }
            previous = Some('a');
            previous_word = word.to_string();
            index = end;
            continue;
        }
        if c.is_ascii_digit() {
            while index < chars.len()
                && (chars[index].1.is_ascii_alphanumeric() || chars[index].1 == '.')
            {
                index += 1;
            }
            previous = Some('0');
            previous_word.clear();
            continue;
        }
        if !c.is_whitespace() {
            previous = Some(c);
            previous_word.clear();
        }
        index += 1;
    }
}

fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.is_char_boundary(prefix.len())
        && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn find_ignoring_case(text: &str, needle: &str, from: usize) -> Option<usize> {
    (from..text.len())
        .filter(|at| text.is_char_boundary(*at))
        .find(|at| starts_with_ignoring_case(&text[*at..], needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provenance() -> Provenance {
        let values: BTreeMap<String, String> = [
            ("db_name", "Prod-DB"),
            ("env", "staging"),
            ("derived", "x-Prod-DB-y"),
            ("empty", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Provenance::new(&values, |name| name == "db_name" || name == "empty")
    }

    #[test]
    fn a_secret_value_is_masked_wherever_it_appears() {
        let p = provenance();
        assert_eq!(
            p.show("prod-db-web", &[]),
            Shown {
                text: "<secret db_name>-web".into(),
                masked: true
            }
        );
        // The longest secret-derived value wins.
        assert_eq!(p.show("x-prod-db-y", &[]).text, "<secret derived>");
        assert_eq!(p.show("web", &[]).text, "web");
        assert!(!p.show("web", &[]).masked);
    }

    #[test]
    fn a_templated_line_that_reads_a_secret_masks_the_whole_value() {
        let p = provenance();
        let shown = p.show(
            "PRODDB",
            &["name = \"${ db_name | upper | replace('-', '') }\""],
        );
        assert_eq!(shown.text, "<secret db_name>");
        let shown = p.show("", &["name = \"${ empty }\""]);
        assert_eq!(shown.text, "<secret empty>");
        // A plain variable is shown; filters, attributes and strings are not names.
        let shown = p.show(
            "staging-web",
            &["name = \"${ env | lower }-${ \"db_name\" }\""],
        );
        assert_eq!(shown.text, "staging-web");
        assert!(!shown.masked);
    }

    #[test]
    fn unknown_names_and_lines_without_tags_are_masked() {
        let p = provenance();
        assert_eq!(p.show("a", &["name = \"${ n }\""]).text, TEMPLATE_MASK);
        assert_eq!(p.show("a", &["name = \"a\""]).text, TEMPLATE_MASK);
        assert_eq!(
            p.show("a", &["{% if x is defined %}name = \"${ env }\""])
                .text,
            TEMPLATE_MASK
        );
        assert!(
            !p.show("a", &["{% if env is defined %}name = \"a\"{% endif %}"])
                .masked
        );
        assert!(!p.show("1", &["n = ${ range(3) | length }"]).masked);
    }

    #[test]
    fn tag_names_skip_strings_and_keywords() {
        assert_eq!(
            tag_names("a = \"${ x if y == \"}\" else z.w }\" {% for i in v %}"),
            Some(vec![
                "x".into(),
                "y".into(),
                "z".into(),
                "i".into(),
                "v".into()
            ])
        );
        assert_eq!(tag_names("plain = 1"), None);
        assert_eq!(tag_names("open = ${ a"), Some(vec!["a".into()]));
    }
}
