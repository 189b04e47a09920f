//! Compose's `${VAR}` interpolation turned into Dispenser's variables: a
//! string becomes literal parts and variable parts, written back as a TOML
//! string whose variables are `${ name }` and whose literal text cannot be
//! read as a template.

use std::collections::BTreeMap;

/// A string with Compose variables in it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Templ {
    pub parts: Vec<Part>,
}

/// A piece of a [`Templ`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    /// A Dispenser variable's name (see [`var_name`]).
    Var(String),
}

/// A variable the import declares in dispenser.vars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarDef {
    /// The environment variable Compose would read.
    pub env_name: String,
    /// `${VAR:-default}`'s default, or the value from `.env`.
    pub default: Option<String>,
}

/// The variables met so far, by Dispenser name.
pub type Vars = BTreeMap<String, VarDef>;

impl Templ {
    pub fn literal(text: &str) -> Self {
        Self {
            parts: vec![Part::Lit(text.to_string())],
        }
    }

    /// The text when it holds no variable.
    pub fn as_literal(&self) -> Option<String> {
        let mut text = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(lit) => text.push_str(lit),
                Part::Var(_) => return None,
            }
        }
        Some(text)
    }

    /// The variable when the string is exactly one.
    pub fn as_single_var(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Var(name)] => Some(name),
            _ => None,
        }
    }

    /// The TOML basic string, variables as `${ name }`.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("\"");
        for part in &self.parts {
            match part {
                Part::Lit(lit) => out.push_str(&escape_literal(lit)),
                Part::Var(name) => {
                    out.push_str("${ ");
                    out.push_str(name);
                    out.push_str(" }");
                }
            }
        }
        out.push('"');
        out
    }
}

/// True for a Compose variable whose value must never be written down.
pub fn looks_secret(env_name: &str) -> bool {
    let upper = env_name.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "TOKEN", "SECRET", "KEY"]
        .iter()
        .any(|word| upper.contains(word))
}

/// The Dispenser variable for a Compose variable: lower case.
pub fn var_name(env_name: &str) -> String {
    env_name.to_ascii_lowercase()
}

/// Splits `text` at Compose's `$VAR`, `${VAR}`, `${VAR:-default}`,
/// `${VAR-default}`, `${VAR:?message}` and `${VAR?message}`; `$$` is a `$`.
/// Each variable is recorded in `vars`. An unsupported form is an error
/// naming it.
pub fn interpolate(text: &str, vars: &mut Vars) -> Result<Templ, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        literal.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            literal.push('$');
            rest = tail;
            continue;
        }
        let (name, default, tail) = if let Some(inner) = after.strip_prefix('{') {
            let close = inner
                .find('}')
                .ok_or_else(|| format!("`${{` without a closing `}}` in `{text}`"))?;
            let body = &inner[..close];
            if body.contains("${") || body.contains('$') {
                return Err(format!(
                    "a variable inside a default (`{text}`) has no equivalent"
                ));
            }
            let name_end = body
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(body.len());
            let (name, modifier) = body.split_at(name_end);
            let default = if modifier.is_empty() {
                None
            } else if let Some(value) = modifier
                .strip_prefix(":-")
                .or_else(|| modifier.strip_prefix('-'))
            {
                Some(value.to_string())
            } else if modifier.starts_with(":?") || modifier.starts_with('?') {
                None
            } else {
                return Err(format!(
                    "`${{{body}}}`: only `${{VAR}}`, `${{VAR:-default}}` and `${{VAR:?message}}` have a meaning in dispenser"
                ));
            };
            (name, default, &inner[close + 1..])
        } else {
            let name_end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..name_end], None, &after[name_end..])
        };
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "`$` not followed by a variable name in `{text}` (write `$$` for a `$`)"
            ));
        }
        if !literal.is_empty() {
            parts.push(Part::Lit(std::mem::take(&mut literal)));
        }
        let dispenser_name = var_name(name);
        let entry = vars.entry(dispenser_name.clone()).or_insert(VarDef {
            env_name: name.to_string(),
            default: None,
        });
        if entry.default.is_none() {
            entry.default = default;
        }
        parts.push(Part::Var(dispenser_name));
        rest = tail;
    }
    literal.push_str(rest);
    if !literal.is_empty() || parts.is_empty() {
        parts.push(Part::Lit(literal));
    }
    Ok(Templ { parts })
}

/// Escapes `text` for a TOML basic string and hides the template delimiters
/// (`${`, `{%`, `{#`) by writing each as a string expression.
fn escape_literal(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('$', Some('{')) | ('{', Some('%')) | ('{', Some('#')) => {
                let next = chars.next().unwrap_or_default();
                // The template renders before TOML reads the line: no TOML escapes here.
                out.push_str(&format!("${{ \"{c}{next}\" }}"));
            }
            ('"', _) => out.push_str("\\\""),
            ('\\', _) => out.push_str("\\\\"),
            ('\n', _) => out.push_str("\\n"),
            ('\t', _) => out.push_str("\\t"),
            ('\r', _) => out.push_str("\\r"),
            (c, _) if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            (c, _) => out.push(c),
        }
    }
    out
}

/// A plain TOML string for text that holds no variable.
pub fn toml_string(text: &str) -> String {
    Templ::literal(text).to_toml()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_defaults_and_dollars() {
        let mut vars = Vars::new();
        let templ =
            interpolate("postgres://${DB_USER:-app}:$DB_PASSWORD@db/$$x", &mut vars).unwrap();
        assert_eq!(
            templ.to_toml(),
            "\"postgres://${ db_user }:${ db_password }@db/$x\""
        );
        assert_eq!(vars["db_user"].default.as_deref(), Some("app"));
        assert_eq!(vars["db_password"].env_name, "DB_PASSWORD");
        assert!(
            looks_secret("DB_PASSWORD") && looks_secret("api_token") && !looks_secret("DB_USER")
        );
    }

    #[test]
    fn required_and_unsupported_forms() {
        let mut vars = Vars::new();
        assert!(interpolate("${A:?set A}", &mut vars).is_ok());
        assert!(interpolate("${A:+x}", &mut vars).is_err());
        assert!(interpolate("${A:-${B}}", &mut vars).is_err());
        assert!(interpolate("cost $5", &mut vars).is_err());
    }

    #[test]
    fn literal_template_delimiters_are_hidden() {
        // `$${X}` is the literal text `${X}`, which Dispenser must not render.
        let mut vars = Vars::new();
        let templ = interpolate("echo $${X} {{.State}} {%raw", &mut vars).unwrap();
        assert!(vars.is_empty());
        assert_eq!(
            templ.to_toml(),
            "\"echo ${ \"${\" }X} {{.State}} ${ \"{%\" }raw\""
        );
    }
}
