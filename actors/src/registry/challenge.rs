//! `WWW-Authenticate` challenges as registries send them (RFC 7235):
//! `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
//! The header comes from the network: parsing is strict and never panics.

use std::collections::BTreeMap;

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Ask `realm` for a token (the Docker token protocol).
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// Send `Authorization: Basic` with the user's credentials.
    Basic,
}

impl Challenge {
    /// The first challenge of a supported scheme in a header value; `None`
    /// when there is none (or the header does not parse).
    pub fn parse(header: &str) -> Option<Challenge> {
        let mut rest = header.trim();
        while !rest.is_empty() {
            let (scheme, after) = split_token(rest);
            if scheme.is_empty() {
                return None;
            }
            let (params, after) = parse_params(after)?;
            match scheme.to_ascii_lowercase().as_str() {
                "bearer" => {
                    let realm = params.get("realm")?.clone();
                    return Some(Challenge::Bearer {
                        realm,
                        service: params.get("service").cloned(),
                        scope: params.get("scope").cloned(),
                    });
                }
                "basic" => return Some(Challenge::Basic),
                _ => rest = after.trim_start_matches([',', ' ']),
            }
        }
        None
    }
}

/// Splits a leading token (letters, digits and `!#$%&'*+-.^_`|~`) off `text`.
fn split_token(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
        .unwrap_or(text.len());
    (&text[..end], &text[end..])
}

/// Reads `key=value` pairs (values quoted or bare) up to the next scheme.
/// Returns the parameters (keys lowercased) and what follows them.
fn parse_params(text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut params = BTreeMap::new();
    let mut rest = text.trim_start();
    loop {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        let (key, after_key) = split_token(rest);
        if key.is_empty() {
            return Some((params, rest));
        }
        let after_key = after_key.trim_start();
        let Some(after_equals) = after_key.strip_prefix('=') else {
            // A bare token: the next challenge's scheme starts here.
            return Some((params, rest));
        };
        let after_equals = after_equals.trim_start();
        let (value, after_value) = match after_equals.strip_prefix('"') {
            Some(quoted) => parse_quoted(quoted)?,
            None => {
                let (value, after) = split_token(after_equals);
                (value.to_string(), after)
            }
        };
        params.insert(key.to_ascii_lowercase(), value);
        rest = after_value;
    }
}

/// Reads a quoted string after its opening quote, with `\` escapes.
fn parse_quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[index + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer_challenge() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#;
        assert_eq!(
            Challenge::parse(header),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
    }

    #[test]
    fn basic_and_case_and_spacing() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse(r#"bearer  Realm = "http://127.0.0.1:1/t" , service=reg"#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: Some("reg".into()),
                scope: None,
            })
        );
    }

    #[test]
    fn escapes_and_unknown_schemes_first() {
        let header = r#"Negotiate, Bearer realm="https://a/\"t\"",scope="x""#;
        assert_eq!(
            Challenge::parse(header),
            Some(Challenge::Bearer {
                realm: "https://a/\"t\"".into(),
                service: None,
                scope: Some("x".into()),
            })
        );
    }

    #[test]
    fn malformed_headers_give_none() {
        for header in [
            "",
            "Bearer",
            r#"Bearer realm="unterminated"#,
            r#"Bearer service="x""#,
            "Digest nonce=1",
            "=",
        ] {
            assert_eq!(Challenge::parse(header), None, "{header:?}");
        }
    }
}
