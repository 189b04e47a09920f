//! Pure parsers for the scalar values of config files: memory sizes, CPU
//! counts, durations, command lines and the enum-like words with their aliases.

use std::time::Duration;

use dispenser_actors::plan::{
    Challenge, DependsOn, Initialize, NetworkDriver, Overlap, ProxyStrategy, PullPolicy,
    RestartPolicy,
};

/// The longest duration accepted: longer is surely a mistake, and a bound
/// keeps `now + duration` from overflowing wherever a timer is set.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Billionths of a CPU in one CPU.
const NANO_CPUS_PER_CPU: f64 = 1e9;

/// Parses `512m`, `2g`, `256mb`, `1gb`, `1024k`, `100b` or plain bytes
/// (case-insensitive, binary units) into bytes. Zero is refused.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        "t" | "tb" => 1 << 40,
        _ => return Err("expected a size such as `512m`, `2g`, `256mb` or bytes".into()),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| "expected a whole number followed by b, k, m, g or t".to_string())?;
    if number == 0 {
        return Err("a memory limit must be greater than zero".into());
    }
    number
        .checked_mul(multiplier)
        .ok_or_else(|| "the memory limit is too large".to_string())
}

/// Parses a CPU count (`0.5`, `2`) into Docker's nano CPUs. Must be > 0.
pub fn parse_cpus(cpus: f64) -> Result<u64, String> {
    if !cpus.is_finite() || cpus <= 0.0 {
        return Err("cpus must be a number greater than zero".into());
    }
    let nano = (cpus * NANO_CPUS_PER_CPU).round();
    if nano < 1.0 || nano > u64::MAX as f64 {
        return Err("cpus is out of range".into());
    }
    Ok(nano as u64)
}

/// Parses `5s`, `500ms`, `1m`, `1h30m` (units ms, s, m, h, d; combinable).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a duration cannot be empty".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err("expected a duration such as `5s`, `500ms`, `1m` or `1h30m`".into());
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| "the duration is too large".to_string())?;
        rest = &rest[digits..];
        let unit_length = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_length];
        rest = &rest[unit_length..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86400)),
            "" => return Err("a duration needs a unit: ms, s, m, h or d".into()),
            _ => {
                return Err(format!(
                    "unknown duration unit `{}` (ms, s, m, h or d)",
                    unit.trim()
                ))
            }
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| "the duration is too large".to_string())?;
    }
    bounded_duration(total)
}

/// `duration` when it is at most [`MAX_DURATION`].
pub fn bounded_duration(duration: Duration) -> Result<Duration, String> {
    if duration > MAX_DURATION {
        return Err("a duration cannot be longer than 365 days".into());
    }
    Ok(duration)
}

/// Splits a command line on whitespace; single or double quotes group words
/// (no escapes, no variables: this is not a shell).
pub fn split_command(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => current.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            None => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".into());
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

/// A word and the aliases that mean it.
pub type Choices<T> = &'static [(&'static str, T)];

pub const RESTART_POLICIES: Choices<RestartPolicy> = &[
    ("no", RestartPolicy::No),
    ("never", RestartPolicy::No),
    ("No", RestartPolicy::No),
    ("always", RestartPolicy::Always),
    ("Always", RestartPolicy::Always),
    ("on-failure", RestartPolicy::OnFailure),
    ("on_failure", RestartPolicy::OnFailure),
    ("onfailure", RestartPolicy::OnFailure),
    ("OnFailure", RestartPolicy::OnFailure),
    ("unless-stopped", RestartPolicy::UnlessStopped),
    ("unless_stopped", RestartPolicy::UnlessStopped),
    ("unlessstopped", RestartPolicy::UnlessStopped),
    ("UnlessStopped", RestartPolicy::UnlessStopped),
];

pub const INITIALIZE: Choices<Initialize> = &[
    ("immediately", Initialize::Immediately),
    ("Immediately", Initialize::Immediately),
    ("on-trigger", Initialize::OnTrigger),
    ("on_trigger", Initialize::OnTrigger),
    ("OnTrigger", Initialize::OnTrigger),
    ("on trigger", Initialize::OnTrigger),
];

pub const PULL_POLICIES: Choices<PullPolicy> = &[
    ("always", PullPolicy::Always),
    ("Always", PullPolicy::Always),
    ("on-startup", PullPolicy::OnStartup),
    ("on_startup", PullPolicy::OnStartup),
    ("onstartup", PullPolicy::OnStartup),
    ("OnStartup", PullPolicy::OnStartup),
];

pub const DEPENDS_ON: Choices<DependsOn> = &[
    ("started", DependsOn::Started),
    ("service-started", DependsOn::Started),
    ("service_started", DependsOn::Started),
    ("healthy", DependsOn::Healthy),
    ("service-healthy", DependsOn::Healthy),
    ("service_healthy", DependsOn::Healthy),
    ("completed", DependsOn::Completed),
    ("service-completed", DependsOn::Completed),
    ("service_completed", DependsOn::Completed),
    // ixpantia/dispenser's spellings (its enum's variant names).
    ("Started", DependsOn::Started),
    ("Healthy", DependsOn::Healthy),
    ("Completed", DependsOn::Completed),
];

pub const NETWORK_DRIVERS: Choices<NetworkDriver> = &[
    ("bridge", NetworkDriver::Bridge),
    ("Bridge", NetworkDriver::Bridge),
    ("host", NetworkDriver::Host),
    ("Host", NetworkDriver::Host),
    ("overlay", NetworkDriver::Overlay),
    ("Overlay", NetworkDriver::Overlay),
    ("macvlan", NetworkDriver::Macvlan),
    ("Macvlan", NetworkDriver::Macvlan),
    ("none", NetworkDriver::None),
    ("None", NetworkDriver::None),
];

pub const OVERLAPS: Choices<Overlap> = &[("skip", Overlap::Skip), ("replace", Overlap::Replace)];

/// `[certbot] challenge` and a route's `challenge`.
pub const CHALLENGES: Choices<Challenge> = &[
    ("http-01", Challenge::Http01),
    ("dns-01", Challenge::Dns01),
    ("tls-alpn-01", Challenge::TlsAlpn01),
];

/// `[certbot.dns] provider`.
pub const DNS_PROVIDERS: Choices<&'static str> = &[
    ("rfc2136", "rfc2136"),
    ("google", "google"),
    ("cloudflare", "cloudflare"),
];

/// `[certbot.dns] algorithm`, as BIND's `tsig-keygen -a` names them.
pub const TSIG_ALGORITHMS: Choices<dispenser_actors::plan::TsigAlgorithm> = &[
    (
        "hmac-sha256",
        dispenser_actors::plan::TsigAlgorithm::HmacSha256,
    ),
    (
        "hmac-sha384",
        dispenser_actors::plan::TsigAlgorithm::HmacSha384,
    ),
    (
        "hmac-sha512",
        dispenser_actors::plan::TsigAlgorithm::HmacSha512,
    ),
];

pub const PROXY_STRATEGIES: Choices<ProxyStrategy> = &[
    ("https-only", ProxyStrategy::HttpsOnly),
    ("HttpsOnly", ProxyStrategy::HttpsOnly),
    ("http-only", ProxyStrategy::HttpOnly),
    ("HttpOnly", ProxyStrategy::HttpOnly),
    ("both", ProxyStrategy::Both),
    ("Both", ProxyStrategy::Both),
];

/// Looks a word up among its choices.
pub fn choose<T: Copy>(choices: Choices<T>, word: &str) -> Option<T> {
    choices
        .iter()
        .find(|(name, _)| *name == word)
        .map(|(_, value)| *value)
}

/// The canonical spellings (first of each value), for help messages.
pub fn canonical_names<T: Copy + PartialEq>(choices: Choices<T>) -> String {
    let mut names: Vec<&str> = Vec::new();
    let mut seen: Vec<T> = Vec::new();
    for (name, value) in choices {
        if !seen.contains(value) {
            seen.push(*value);
            names.push(name);
        }
    }
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closest candidate to `word`, when it is close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| {
            (
                candidate,
                strsim::jaro_winkler(word, candidate),
                strsim::levenshtein(word, candidate),
            )
        })
        .filter(|(_, similarity, distance)| *similarity >= 0.8 || *distance <= 2)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(candidate, _, _)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512m"), Ok(512 << 20));
        assert_eq!(parse_memory("2g"), Ok(2 << 30));
        assert_eq!(parse_memory("256MB"), Ok(256 << 20));
        assert_eq!(parse_memory("1gb"), Ok(1 << 30));
        assert_eq!(parse_memory("1024k"), Ok(1 << 20));
        assert_eq!(parse_memory("100b"), Ok(100));
        assert_eq!(parse_memory("4096"), Ok(4096));
        for bad in ["", "12x", "1.5g", "g", "0", "-1m", "unlimited"] {
            assert!(parse_memory(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus(0.5), Ok(500_000_000));
        assert_eq!(parse_cpus(2.0), Ok(2_000_000_000));
        assert!(parse_cpus(0.0).is_err());
        assert!(parse_cpus(-1.0).is_err());
        assert!(parse_cpus(f64::NAN).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in ["", "5", "s", "5x", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
    }

    /// Found by fuzzing: two huge parts overflowed the sum and panicked.
    #[test]
    fn a_duration_too_large_to_add_up_is_an_error() {
        let huge = format!("{}d{}d", u64::MAX, u64::MAX);
        assert_eq!(
            parse_duration(&huge),
            Err("the duration is too large".to_string())
        );
        assert!(parse_duration(&format!("{}s1s", u64::MAX)).is_err());
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
        assert_eq!(
            parse_duration("365d1ms"),
            Err("a duration cannot be longer than 365 days".to_string())
        );
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            split_command("sh -c 'echo hello world' \"a b\"c"),
            Ok(vec![
                "sh".into(),
                "-c".into(),
                "echo hello world".into(),
                "a bc".into()
            ])
        );
        assert_eq!(split_command("  a   b "), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(split_command("''"), Ok(vec![String::new()]));
        assert!(split_command("echo 'oops").is_err());
    }

    #[test]
    fn aliases_and_suggestions() {
        assert_eq!(
            choose(RESTART_POLICIES, "unlessstopped"),
            Some(RestartPolicy::UnlessStopped)
        );
        assert_eq!(choose(RESTART_POLICIES, "sometimes"), None);
        assert_eq!(
            choose(INITIALIZE, "on trigger"),
            Some(Initialize::OnTrigger)
        );
        assert_eq!(
            choose(DEPENDS_ON, "service_healthy"),
            Some(DependsOn::Healthy)
        );
        assert_eq!(canonical_names(PULL_POLICIES), "`always`, `on-startup`");
        assert_eq!(
            did_you_mean("restrat", ["name", "restart", "image"]),
            Some("restart")
        );
        assert_eq!(did_you_mean("zzz", ["name", "restart"]), None);
    }
}
