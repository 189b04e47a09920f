//! Checks of single fields that several tables share: durations, words
//! chosen among aliases, numbers in a range, listen addresses, time zones,
//! names and subnets. Each reports its error at the field's span.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dispenser_actors::plan::Zone;

use crate::config::check::FileCheck;
use crate::config::paths::normalize;
use crate::config::values::{
    bounded_duration, canonical_names, choose, did_you_mean, parse_duration, Choices,
};

/// A duration: a string such as `1h30m` or a number of seconds, at most
/// `MAX_DURATION`; `None` when absent or invalid (then an error at `path`).
pub(super) fn duration(
    check: &mut FileCheck<'_>,
    path: &str,
    value: Option<&toml::Value>,
) -> Option<Duration> {
    let result = match value? {
        // The reason may quote a part of the value: not when it is a secret.
        toml::Value::String(text) if check.masked(path, text).masked => parse_duration(text)
            .map_err(|_| "expected a duration such as `5s`, `500ms`, `1m` or `1h30m`".to_string()),
        toml::Value::String(text) => parse_duration(text),
        toml::Value::Integer(seconds) if *seconds >= 0 => {
            bounded_duration(Duration::from_secs(*seconds as u64))
        }
        toml::Value::Integer(_) => Err("a duration cannot be negative".to_string()),
        _ => Err("expected a duration such as \"5s\" or a number of seconds".to_string()),
    };
    result
        .map_err(|why| {
            check.error(path, format!("invalid duration: {why}"), "invalid duration");
        })
        .ok()
}

/// A path written in a file, resolved lexically against `folder` (absolute):
/// where validation and the I/O pre-pass both look for it.
pub(super) fn resolve(folder: &Path, written: &str) -> PathBuf {
    normalize(&folder.join(written))
}

/// Looks a word up among its aliases, reporting an error that lists them.
pub(super) fn pick<T: Copy + PartialEq>(
    check: &mut FileCheck<'_>,
    path: &str,
    choices: Choices<T>,
    word: &str,
    what: &str,
) -> Option<T> {
    let chosen = choose(choices, word);
    if chosen.is_none() {
        // A suggestion close to a secret would hint at its value.
        let close = match check.masked(path, word).masked {
            true => None,
            false => did_you_mean(word, choices.iter().map(|(name, _)| *name)),
        };
        let help = match close {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("expected one of {}", canonical_names(choices)),
        };
        check
            .error(
                path,
                format!("unknown {what}{}", check.shown(path, word)),
                &format!("{} {what}", article(what)),
            )
            .help = Some(help);
    }
    chosen
}

/// The challenge chosen at `path`.
pub(super) fn challenge(
    check: &mut FileCheck<'_>,
    path: &str,
    word: &str,
) -> Option<dispenser_actors::plan::Challenge> {
    pick(
        check,
        path,
        crate::config::values::CHALLENGES,
        word,
        "challenge",
    )
}

/// "not a" or "not an", for a label that names what a word is not.
fn article(what: &str) -> &'static str {
    match what.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "not an",
        _ => "not a",
    }
}

/// A whole number that must lie in `range`; out of it, an error at `path`
/// (whose last segment names the key) and `None`.
pub(super) fn in_range(
    check: &mut FileCheck<'_>,
    path: &str,
    value: Option<u64>,
    range: std::ops::RangeInclusive<u64>,
) -> Option<u64> {
    let value = value?;
    if range.contains(&value) {
        return Some(value);
    }
    let key = path.rsplit('.').next().unwrap_or(path);
    check.error(
        path,
        format!(
            "`{key}` must be between {} and {}",
            range.start(),
            range.end()
        ),
        "out of range",
    );
    None
}

/// A listen address with a port; `default` when not set.
pub(super) fn listen(
    check: &mut FileCheck<'_>,
    path: &str,
    text: Option<&str>,
    default: &str,
) -> SocketAddr {
    let fallback = SocketAddr::from(([0, 0, 0, 0], 0));
    match text.unwrap_or(default).parse() {
        Ok(address) => address,
        Err(_) => {
            check
                .error(path, "invalid listen address", "not an address:port")
                .help = Some(format!("write an address and port such as \"{default}\""));
            fallback
        }
    }
}

/// An IANA time zone name; an unknown one is an error with a suggestion.
pub(super) fn zone(check: &mut FileCheck<'_>, path: &str, name: &str) -> Zone {
    if let Some(zone) = Zone::named(name) {
        return zone;
    }
    let close = match check.masked(path, name).masked {
        true => None,
        false => did_you_mean(name, Zone::names()),
    };
    let help = match close {
        Some(close) => format!("did you mean `{close}`?"),
        None => "write an IANA time zone name such as \"Europe/Zurich\" or \"UTC\"".to_string(),
    };
    check
        .error(
            path,
            format!("unknown time zone{}", check.shown(path, name)),
            "not an IANA time zone",
        )
        .help = Some(help);
    Zone::Local
}

/// A Docker container name: a letter or digit, then letters, digits, `_`, `.`, `-`.
pub(super) fn is_container_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// An instance name: letters, digits, `_`, `.` and `-`, not empty.
pub(super) fn is_instance_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Parses `a.b.c.d/n`, returning the network address and prefix length.
pub(super) fn parse_cidr(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    let address: Ipv4Addr = address.parse().ok()?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Some((Ipv4Addr::from(u32::from(address) & mask), prefix))
}

/// Whether `address` lies in the subnet `(base, prefix)`.
pub(super) fn contains((base, prefix): (Ipv4Addr, u8), address: Ipv4Addr) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(address) & mask == u32::from(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_and_gateway() {
        assert_eq!(
            parse_cidr("172.28.0.0/16"),
            Some((Ipv4Addr::new(172, 28, 0, 0), 16))
        );
        assert_eq!(
            parse_cidr("10.1.2.3/8"),
            Some((Ipv4Addr::new(10, 0, 0, 0), 8))
        );
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(parse_cidr("10.0.0.0"), None);
        let subnet = parse_cidr("172.28.0.0/16").unwrap();
        assert!(contains(subnet, Ipv4Addr::new(172, 28, 5, 1)));
        assert!(!contains(subnet, Ipv4Addr::new(172, 29, 0, 1)));
    }

    #[test]
    fn names() {
        assert!(is_container_name("web-1.app_x"));
        assert!(!is_container_name("-web"));
        assert!(!is_container_name("we b"));
        assert!(is_instance_name("prod.eu-1"));
        assert!(!is_instance_name(""));
    }
}
