//! What every target needs from the plan, target-neutral: names as DNS labels,
//! cron expressions in the 5-field form, where each mount's content lives,
//! the ports other services and the proxy use, and the secrets the env reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use dispenser::config::{EnvOrigin, Origins, SecretRef};
use dispenser_actors::plan::{Mount, MountSource, Plan, Service};

use super::findings::{At, Findings};

/// Longest DNS-1123 label.
pub const MAX_DNS_LABEL: usize = 63;

/// The content of a bind-mounted source inside a service folder, read at the
/// edge (`export/mod.rs`) before any target maps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalContent {
    /// A regular file.
    File(Vec<u8>),
    /// A folder: its regular files by name; `nested` when it also holds
    /// folders (or anything else), which are not exported.
    Folder {
        files: Vec<(String, Vec<u8>)>,
        nested: bool,
    },
    /// Nothing there yet (Docker creates an empty folder).
    Missing,
}

/// Where one mount's content comes from, as a target sees it.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// A named volume.
    Named(&'a str),
    /// A file or folder of the service folder; `relative` to it.
    Local {
        relative: &'a str,
        content: &'a LocalContent,
    },
    /// An absolute host path outside the service folder.
    Host(&'a Path),
}

/// One `[env]` value as a target writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvValue<'a> {
    /// Written as it is.
    Plain(&'a str),
    /// A reference to the secret variable; never its value.
    Secret {
        variable: &'a str,
        source: &'a SecretRef,
    },
    /// A secret mixed with text: no target can reference it.
    Mixed,
}

/// A cron expression that no target reads as Dispenser does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronProblem {
    /// A seconds field other than `0`; the lossy form runs at second 0.
    Seconds { field: String, lossy: String },
    /// A year field other than `*`; the lossy form runs every year.
    Year { field: String, lossy: String },
    /// Day of week 7 for Sunday; the lossy form writes 0.
    SundaySeven { lossy: String },
}

impl CronProblem {
    /// The 5-field expression an export with `--allow-lossy` writes.
    pub fn lossy(&self) -> &str {
        match self {
            CronProblem::Seconds { lossy, .. }
            | CronProblem::Year { lossy, .. }
            | CronProblem::SundaySeven { lossy } => lossy,
        }
    }

    /// What is wrong, for the message.
    pub fn describe(&self, expression: &str) -> String {
        match self {
            CronProblem::Seconds { field, .. } => format!(
                "cron `{expression}` has a seconds field (`{field}`): targets read 5 fields, to the minute"
            ),
            CronProblem::Year { field, .. } => format!(
                "cron `{expression}` has a year field (`{field}`): targets read 5 fields, every year"
            ),
            CronProblem::SundaySeven { .. } => format!(
                "cron `{expression}` uses 7 for Sunday in day of week: targets read 0-6 only"
            ),
        }
    }
}

/// True when the export writes the service as a job (a run to completion):
/// Dispenser's jobs (`initialize = "on-trigger"` or `restart = "no"`), but
/// never a service behind the proxy, which serves until it is replaced
/// (`restart` defaults to `"no"`, so most routed services would count).
pub fn is_job(service: &Service) -> bool {
    service.is_job() && service.route.is_none()
}

/// The 5-field standard form of a schedule Dispenser accepted, or the
/// problem with its lossy form.
pub fn five_fields(expression: &str) -> Result<String, CronProblem> {
    let trimmed = expression.trim();
    let shortcut = match trimmed.to_ascii_lowercase().as_str() {
        "@hourly" => Some("0 * * * *"),
        "@daily" | "@midnight" => Some("0 0 * * *"),
        "@weekly" => Some("0 0 * * 0"),
        "@monthly" => Some("0 0 1 * *"),
        "@yearly" | "@annually" => Some("0 0 1 1 *"),
        _ => None,
    };
    if let Some(fields) = shortcut {
        return Ok(fields.to_string());
    }
    let mut fields: Vec<String> = trimmed.split_whitespace().map(str::to_string).collect();
    let mut seconds = None;
    let mut year = None;
    if fields.len() >= 6 {
        seconds = Some(fields.remove(0));
    }
    if fields.len() == 6 {
        year = fields.pop();
    }
    let sunday_seven = fields
        .get(4)
        .is_some_and(|field| field.split([',', '-', '/']).any(|part| part == "7"));
    if sunday_seven {
        fields[4] = sunday_as_zero(&fields[4]);
    }
    let lossy = fields.join(" ");
    match (seconds, year) {
        (Some(field), _) if field != "0" && field != "00" => {
            return Err(CronProblem::Seconds { field, lossy });
        }
        (_, Some(field)) if field != "*" => return Err(CronProblem::Year { field, lossy }),
        _ => {}
    }
    match sunday_seven {
        true => Err(CronProblem::SundaySeven { lossy }),
        false => Ok(lossy),
    }
}

/// The 5-field form of a service's schedule; each problem is a lossy
/// finding at `dispenser.cron`, and the lossy form is returned.
pub fn schedule(service: &Service, expression: &str, findings: &mut Findings<'_>) -> String {
    let problem = match five_fields(expression) {
        Ok(fields) => return fields,
        Err(problem) => problem,
    };
    let at = At::value(&service.name, "dispenser.cron");
    let lossy = problem.lossy().to_string();
    let seven = CronProblem::SundaySeven {
        lossy: lossy.clone(),
    };
    if problem != seven {
        findings.lossy(
            at,
            problem.describe(expression),
            "not 5 standard fields",
            &format!("write the standard 5 fields: minute hour day-of-month month day-of-week (an export with --allow-lossy writes `{lossy}`)"),
        );
    }
    if has_sunday_seven(expression) {
        findings.lossy(
            at,
            seven.describe(expression),
            "Sunday as 7",
            &format!("write 0 for Sunday (an export with --allow-lossy writes `{lossy}`)"),
        );
    }
    lossy
}

/// True when the day-of-week field of a 5-, 6- or 7-field expression uses 7.
pub fn has_sunday_seven(expression: &str) -> bool {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let index = match fields.len() {
        5 => 4,
        6 | 7 => 5,
        _ => return false,
    };
    fields[index].split([',', '-', '/']).any(|part| part == "7")
}

/// A day-of-week field with 7 written as 0 (a range ending at 7 ends at 6
/// and adds 0).
fn sunday_as_zero(field: &str) -> String {
    let parts: Vec<String> = field
        .split(',')
        .map(|part| match part.split_once('-') {
            Some(("0", "7")) => "*".to_string(),
            Some((start, "7")) => format!("0,{start}-6"),
            _ if part == "7" => "0".to_string(),
            _ => part.to_string(),
        })
        .collect();
    parts.join(",")
}

/// Why `name` is no DNS-1123 label of at most `max` characters.
pub fn dns_label_problem(name: &str, max: usize) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    if name.len() > max {
        return Some(format!(
            "it is {} characters long, more than {max}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!(
            "`{bad}` is not allowed: only lowercase letters, digits and `-`"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("it starts or ends with `-`".into());
    }
    None
}

/// The DNS-1123 label an export with `--allow-lossy` uses for `name`:
/// lowercase, other characters as `-`, trimmed, at most `max` characters.
pub fn to_dns_label(name: &str, max: usize) -> String {
    let mapped: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let cut: String = mapped.chars().take(max).collect();
    let trimmed = cut.trim_matches('-');
    match trimmed.is_empty() {
        true => "service".to_string(),
        false => trimmed.to_string(),
    }
}

/// Where each mount of `service` comes from.
pub fn source<'a>(
    service: &Service,
    mount: &'a Mount,
    local: &'a BTreeMap<std::path::PathBuf, LocalContent>,
) -> Source<'a> {
    match &mount.source {
        MountSource::Volume(name) => Source::Named(name),
        MountSource::Bind(path) => match (path.strip_prefix(&service.folder), local.get(path)) {
            (Ok(relative), Some(content)) => Source::Local {
                relative: relative.to_str().unwrap_or_default(),
                content,
            },
            _ => Source::Host(path),
        },
    }
}

/// Every `[env]` value of `service` as a target writes it, by key.
pub fn env<'a>(service: &'a Service, origins: &'a Origins) -> Vec<(&'a str, EnvValue<'a>)> {
    let origin = origins.service(&service.name);
    service
        .container
        .env
        .iter()
        .map(|(key, value)| {
            let kind = match origin.and_then(|origin| origin.env.get(key)) {
                None | Some(EnvOrigin::Plain) => EnvValue::Plain(value.expose()),
                Some(EnvOrigin::Secret { variable, source }) => EnvValue::Secret {
                    variable: variable.as_str(),
                    source,
                },
                Some(EnvOrigin::Mixed { .. }) => EnvValue::Mixed,
            };
            (key.as_str(), kind)
        })
        .collect()
}

/// Every secret variable the plan's env reads, with its source, by variable.
pub fn secrets<'a>(plan: &'a Plan, origins: &'a Origins) -> BTreeMap<&'a str, &'a SecretRef> {
    let mut all = BTreeMap::new();
    for service in plan.services.values() {
        for (_, value) in env(service, origins) {
            if let EnvValue::Secret { variable, source } = value {
                all.insert(variable, source);
            }
        }
    }
    all
}

/// The container ports of each service that the proxy, the host or another
/// service uses: the route's `service_port`, published ports, and every
/// `NAME:PORT` that another service's plain env values or command name.
pub fn used_ports(plan: &Plan, origins: &Origins) -> BTreeMap<String, BTreeSet<u16>> {
    let mut ports: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for service in plan.services.values() {
        let entry = ports.entry(service.name.clone()).or_default();
        if let Some(route) = &service.route {
            entry.insert(route.service_port);
        }
        entry.extend(service.container.ports.iter().map(|port| port.container));
    }
    for user in plan.services.values() {
        for text in plain_texts(user, origins) {
            for target in plan.services.keys() {
                if target == &user.name {
                    continue;
                }
                for port in ports_after(text, target) {
                    ports.entry(target.clone()).or_default().insert(port);
                }
            }
        }
    }
    ports
}

/// The first plain env key or command of `user` that names service `target`
/// as a host (`db`, `http://db/`, `user@db`), when it names no port.
pub fn named_without_port(user: &Service, target: &str, origins: &Origins) -> Option<String> {
    let env = env(user, origins);
    env.iter().find_map(|(key, value)| match value {
        EnvValue::Plain(text) if names_host(text, target) => Some(format!("env.{key}")),
        _ => None,
    })
}

/// The `gcloud` command that prints a Google secret (`projects/P/secrets/S`).
pub fn gcloud_access(name: &str, version: &str) -> String {
    let parts: Vec<&str> = name.split('/').collect();
    let (project, secret) = match parts.as_slice() {
        [_, project, _, secret] => (*project, *secret),
        _ => ("", name),
    };
    format!("gcloud secrets versions access {version} --secret={secret} --project={project}")
}

/// Seconds of a duration, rounded up, at least `min`.
pub fn seconds(duration: Duration, min: u64) -> u64 {
    let whole = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    whole.max(min)
}

/// Docker's duration form (`90s`, `1500ms`).
pub fn docker_duration(duration: Duration) -> String {
    match duration.subsec_millis() {
        0 => format!("{}s", duration.as_secs()),
        _ => format!("{}ms", duration.as_millis()),
    }
}

/// The plain texts of a service other services' names may appear in.
fn plain_texts<'a>(service: &'a Service, origins: &'a Origins) -> Vec<&'a str> {
    let mut texts: Vec<&str> = env(service, origins)
        .into_iter()
        .filter_map(|(_, value)| match value {
            EnvValue::Plain(text) => Some(text),
            _ => None,
        })
        .collect();
    for list in [&service.container.command, &service.container.entrypoint]
        .into_iter()
        .flatten()
    {
        texts.extend(list.iter().map(String::as_str));
    }
    texts
}

/// Ports written right after `host:` in `text`, where `host` stands alone.
fn ports_after(text: &str, host: &str) -> Vec<u16> {
    let mut found = Vec::new();
    let pattern = format!("{host}:");
    let mut from = 0;
    while let Some(at) = text[from..].find(&pattern) {
        let start = from + at;
        let end = start + pattern.len();
        let alone = text[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !is_host_char(c));
        let digits: String = text[end..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if alone {
            if let Ok(port) = digits.parse::<u16>() {
                found.push(port);
            }
        }
        from = end;
    }
    found
}

/// True when `text` is `host`, or holds it as a host name.
fn names_host(text: &str, host: &str) -> bool {
    text == host
        || text.match_indices(host).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + host.len()..].chars().next();
            matches!(before, Some('/') | Some('@'))
                && after.is_none_or(|c| !is_host_char(c) && c != ':')
        })
}

fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_forms_become_five_fields_or_say_why_not() {
        assert_eq!(five_fields("0 3 * * *").unwrap(), "0 3 * * *");
        assert_eq!(five_fields("@daily").unwrap(), "0 0 * * *");
        assert_eq!(five_fields("0 */5 * * * *").unwrap(), "*/5 * * * *");
        assert_eq!(five_fields("0 0 1 * * * *").unwrap(), "0 1 * * *");
        assert_eq!(
            five_fields("30 */5 * * * *"),
            Err(CronProblem::Seconds {
                field: "30".into(),
                lossy: "*/5 * * * *".into()
            })
        );
        assert!(matches!(
            five_fields("0 0 1 * * * 2030"),
            Err(CronProblem::Year { .. })
        ));
        assert_eq!(five_fields("0 3 * * 7").unwrap_err().lossy(), "0 3 * * 0");
        assert_eq!(
            five_fields("0 3 * * 5-7").unwrap_err().lossy(),
            "0 3 * * 0,5-6"
        );
        assert_eq!(
            five_fields("0 3 * * 1,7").unwrap_err().lossy(),
            "0 3 * * 1,0"
        );
        assert_eq!(five_fields("0 3 * * 0-7").unwrap_err().lossy(), "0 3 * * *");
        assert_eq!(five_fields("0 3 * * 1-5").unwrap(), "0 3 * * 1-5");
    }

    #[test]
    fn dns_labels() {
        assert_eq!(dns_label_problem("web-1", 63), None);
        assert!(dns_label_problem("Web", 63).is_some());
        assert!(dns_label_problem("my_app", 63).is_some());
        assert!(dns_label_problem("-a", 63).is_some());
        assert!(dns_label_problem(&"a".repeat(53), 52).is_some());
        assert_eq!(to_dns_label("My_App.", 63), "my-app");
        assert_eq!(to_dns_label(&"a".repeat(60), 52).len(), 52);
    }

    #[test]
    fn ports_and_hosts_are_found_where_names_stand_alone() {
        assert_eq!(ports_after("http://api:8000/x", "api"), vec![8000]);
        assert_eq!(ports_after("myapi:8000", "api"), Vec::<u16>::new());
        assert_eq!(ports_after("db:5432,db:5433", "db"), vec![5432, 5433]);
        assert!(names_host("db", "db"));
        assert!(names_host("postgres://u@db/x", "db"));
        assert!(!names_host("dbx", "db"));
        assert!(!names_host("http://db:5432", "db"));
    }
}
