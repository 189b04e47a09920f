//! The config front-end: files on disk -> rendered -> parsed -> validated
//! [`Plan`]. Every problem of one run is collected, each pointing at its file,
//! line and column. I/O (reading files, resolving secrets) happens here, at
//! the edge: the config files are read here, the files they name are looked
//! at by the pre-pass (`files.rs`) into [`FileFacts`], and validation is pure.

mod check;
mod diagnostic;
mod file;
mod files;
mod hash;
mod origin;
mod paths;
mod provenance;
pub mod render;
mod secrets;
mod spans;
mod validate;
pub mod values;
mod vars;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dispenser_actors::plan::{AcmeSettings, Challenge, Plan, Service, TlsSource};

use check::{parse_file, FileCheck};
pub use diagnostic::{Diagnostic, Diagnostics, Severity, SourceFile};
pub use dispenser_actors::files::read_bounded;
pub use files::{Content, FileFact, FileFacts, FileKind};
pub use origin::{EnvOrigin, Origins, Place, ServiceOrigin};
use provenance::{Provenance, Shown};
use render::Renderer;
pub use secrets::{LocalSecrets, SecretRef, SecretResolver, Secrets};
use spans::SpanIndex;
pub use validate::{NotifySettings, OperatorSettings};
use values::did_you_mean;
use vars::Variables;

/// Name of the file each service folder holds.
pub const SERVICE_FILE: &str = "service.toml";
/// Largest config or variables file read: a bigger one is refused, so a
/// mistaken or hostile file cannot stall a reload or exhaust memory.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// How [`MAX_FILE_BYTES`] is written in messages.
const MAX_FILE_SIZE_TEXT: &str = "1 MiB";

/// A loaded configuration: the plan, the files it came from, and warnings.
#[derive(Debug)]
pub struct Loaded {
    pub plan: Plan,
    /// `[admin]` and `[notify]`: for the binary, not the actors.
    pub operator: validate::OperatorSettings,
    /// Every file read, absolute (to watch them for changes).
    pub files: Vec<PathBuf>,
    pub warnings: Diagnostics,
    /// Where each service's keys were written and where its `[env]` values
    /// came from (no secret value), for `dispenser export`.
    pub origins: Origins,
}

/// A service.toml that validated, kept with its file for cross-service checks.
struct Checked {
    service: Service,
    file: SourceFile,
    spans: SpanIndex,
    /// `cert_file` and `key_file` of `[proxy]` as written.
    tls_files: Option<(String, String)>,
    /// Each name of `[proxy]` (`host`, `redirect_from`) as validation
    /// lower-cased it, with its key path, for diagnostics.
    route_names: Vec<(String, String)>,
}

/// Loads and validates the configuration rooted at `config_path`.
pub fn load(config_path: &Path, secrets: &dyn SecretResolver) -> Result<Loaded, Diagnostics> {
    let mut diagnostics = Diagnostics::default();
    let mut files = Vec::new();
    let config_dir_display = config_path.parent().unwrap_or(Path::new("")).to_path_buf();
    let config_dir = paths::absolute(&config_dir_display);
    let renderer = Renderer::new();

    let variables = load_variables(
        &config_dir_display,
        &renderer,
        secrets,
        &mut files,
        &mut diagnostics,
    );
    // Values from secrets are masked wherever a diagnostic prints a value.
    let provenance = Arc::new(Provenance::new(&variables.exposed(), |name| {
        variables.is_secret(name)
    }));
    let config_display = paths::display(config_path);
    let Some(config_text) = read(
        config_path,
        &config_display,
        &mut files,
        &mut diagnostics,
        None,
    ) else {
        return Err(diagnostics);
    };
    let Some(config_file) = render_file(
        &renderer,
        &config_display,
        config_text,
        &variables,
        &provenance,
        &mut diagnostics,
    ) else {
        return Err(diagnostics);
    };
    let Some((dispenser_file, config_spans)) =
        parse_file::<file::DispenserFile>(&config_file, &mut diagnostics)
    else {
        return Err(diagnostics);
    };
    // The pre-pass: what validation needs of the files dispenser.toml names.
    let mut facts = FileFacts::default();
    facts.look_at(validate::global_files(&dispenser_file, &config_dir));
    let global = check_global(
        &config_file,
        &config_spans,
        &dispenser_file,
        &config_dir,
        &facts,
        &mut diagnostics,
    );

    let mut checked = Vec::new();
    for (index, entry) in dispenser_file.services.iter().enumerate() {
        let path_span = config_spans.value(&format!("service[{index}].path"));
        // A folder named by a secret is shown masked, and so are its files.
        let shown_path = config_file.shown(&path_span, &entry.path);
        let service_path = config_dir_display.join(&entry.path).join(SERVICE_FILE);
        let display = paths::display(&config_dir_display.join(&shown_path.text).join(SERVICE_FILE));
        let missing = config_file.error_at(
            path_span.clone(),
            format!("no {SERVICE_FILE} in `{shown_path}`"),
            "service folder",
        );
        if let Some(link) = symlink_in(&config_dir_display, &entry.path) {
            let target = std::fs::read_link(&link)
                .map(|target| format!(" to `{}`", target.display()))
                .unwrap_or_default();
            let link_display = match shown_path.masked {
                true if link.ends_with(SERVICE_FILE) => display.clone(),
                true => paths::display(&config_dir_display.join(&shown_path.text)),
                false => paths::display(&link),
            };
            diagnostics.push(
                config_file
                    .error_at(
                        path_span.clone(),
                        format!(
                            "`{link_display}` is a symbolic link{target}; service folders are not followed through links",
                        ),
                        "symbolic link",
                    )
                    .with_help(
                        "write the real folder in `path` (it may be outside this folder), or copy the folder",
                    ),
            );
            continue;
        }
        let Some(text) = read(
            &service_path,
            &display,
            &mut files,
            &mut diagnostics,
            Some(missing),
        ) else {
            continue;
        };
        let Some(source) = render_file(
            &renderer,
            &display,
            text,
            &variables,
            &provenance,
            &mut diagnostics,
        ) else {
            continue;
        };
        let Some((service_file, spans)) =
            parse_file::<file::ServiceFile>(&source, &mut diagnostics)
        else {
            continue;
        };
        let folder = paths::normalize(&config_dir.join(&entry.path));
        // The pre-pass: what validation needs of the files service.toml names.
        facts.look_at(validate::service_files(&service_file, &folder));
        let service = check_service(
            source,
            spans,
            &service_file,
            &folder,
            global.as_ref(),
            &facts,
            &mut diagnostics,
        );
        checked.extend(service);
    }
    let config = (&config_file, &config_spans);
    finish(global, &checked, files, diagnostics, config, &variables)
}

/// The second stage alone, with no I/O: parses and validates a dispenser.toml
/// and the service.toml of each given folder (absolute), already read and
/// rendered, against `facts` for every file they name. The same checks in the
/// same order as [`load`] runs after its reads; the folders are the ones given,
/// not read from `[[service]]`, and [`Loaded::files`] is empty. For the fuzz
/// targets and the tests.
pub fn validate_rendered(
    config: &SourceFile,
    config_dir: &Path,
    services: &[(PathBuf, SourceFile)],
    facts: &FileFacts,
) -> Result<Loaded, Diagnostics> {
    let mut diagnostics = Diagnostics::default();
    let Some((dispenser_file, spans)) = parse_file::<file::DispenserFile>(config, &mut diagnostics)
    else {
        return Err(diagnostics);
    };
    let global = check_global(
        config,
        &spans,
        &dispenser_file,
        config_dir,
        facts,
        &mut diagnostics,
    );
    let mut checked = Vec::new();
    for (folder, source) in services {
        let Some((service_file, spans)) = parse_file::<file::ServiceFile>(source, &mut diagnostics)
        else {
            continue;
        };
        checked.extend(check_service(
            source.clone(),
            spans,
            &service_file,
            folder,
            global.as_ref(),
            facts,
            &mut diagnostics,
        ));
    }
    let variables = Variables::default();
    finish(
        global,
        &checked,
        Vec::new(),
        diagnostics,
        (config, &spans),
        &variables,
    )
}

/// Validates dispenser.toml (pure).
fn check_global(
    file: &SourceFile,
    spans: &SpanIndex,
    dispenser_file: &file::DispenserFile,
    config_dir: &Path,
    facts: &FileFacts,
    diagnostics: &mut Diagnostics,
) -> Option<validate::Global> {
    let mut check = FileCheck {
        file,
        spans,
        diagnostics,
    };
    validate::global(&mut check, dispenser_file, config_dir, facts)
}

/// Validates one service.toml (pure), against the networks and time zone of
/// dispenser.toml when it validated.
fn check_service(
    source: SourceFile,
    spans: SpanIndex,
    service_file: &file::ServiceFile,
    folder: &Path,
    global: Option<&validate::Global>,
    facts: &FileFacts,
    diagnostics: &mut Diagnostics,
) -> Option<Checked> {
    let declared_networks = global.map(|g| g.networks.clone()).unwrap_or_default();
    let default_zone = global.map(|g| g.settings.timezone).unwrap_or_default();
    let service = validate::service(
        &mut FileCheck {
            file: &source,
            spans: &spans,
            diagnostics,
        },
        service_file,
        folder,
        &declared_networks,
        default_zone,
        facts,
    )?;
    let tls_files = service_file
        .proxy
        .as_ref()
        .and_then(|route| Some((route.cert_file.clone()?, route.key_file.clone()?)));
    let route_names = service_file
        .proxy
        .as_ref()
        .map(validate::route_name_paths)
        .unwrap_or_default();
    Some(Checked {
        service,
        file: source,
        spans,
        tls_files,
        route_names,
    })
}

/// The cross-service checks, then the plan when nothing was an error (pure).
fn finish(
    global: Option<validate::Global>,
    checked: &[Checked],
    files: Vec<PathBuf>,
    mut diagnostics: Diagnostics,
    config: (&SourceFile, &SpanIndex),
    variables: &Variables,
) -> Result<Loaded, Diagnostics> {
    let services = cross_check(checked, &mut diagnostics);
    if let Some(acme) = global.as_ref().and_then(|global| global.acme.as_ref()) {
        acme_check(acme, checked, &mut diagnostics);
    }
    match global {
        Some(global) if !diagnostics.has_errors() => Ok(Loaded {
            origins: Origins::new(
                Some(config),
                checked
                    .iter()
                    .map(|item| (&item.service, &item.file, &item.spans)),
                variables,
            ),
            plan: Plan {
                settings: global.settings,
                networks: global.networks,
                services,
                proxy: global.proxy,
                acme: global.acme,
            },
            operator: global.operator,
            files,
            warnings: diagnostics,
        }),
        _ => Err(diagnostics),
    }
}

/// Reads `dispenser.vars`, then every `*.dispenser.vars` rendered with it.
fn load_variables(
    config_dir: &Path,
    renderer: &Renderer,
    secrets: &dyn SecretResolver,
    files: &mut Vec<PathBuf>,
    diagnostics: &mut Diagnostics,
) -> Variables {
    let mut variables = Variables::default();
    let base_path = config_dir.join(vars::BASE_VARS_FILE);
    // Whatever is there is read: a folder, a FIFO, a device or a dangling
    // link is refused by `read`, not skipped.
    if std::fs::symlink_metadata(&base_path).is_ok() {
        let display = paths::display(&base_path);
        if let Some(text) = read(&base_path, &display, files, diagnostics, None) {
            let file = SourceFile::plain(paths::display(&base_path), text);
            match vars::parse(&file) {
                Ok(entries) => {
                    vars::resolve_into(&mut variables, vec![(file, entries)], secrets, diagnostics)
                }
                Err(refused) => diagnostics.extend(variables.refused(refused)),
            }
        } else {
            variables.unreadable();
        }
    }
    let base = variables.exposed();
    let base_unresolved = variables.clone();
    let mut overlay_paths: Vec<PathBuf> = std::fs::read_dir(if config_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        config_dir
    })
    .map(|entries| {
        entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(vars::VARS_FILE_SUFFIX) && name != vars::BASE_VARS_FILE)
            .map(|name| config_dir.join(name))
            .collect()
    })
    .unwrap_or_default();
    overlay_paths.sort();
    // Overlays are rendered with the base variables only, so all of them can
    // be parsed first and their secrets fetched in one batch.
    let mut parsed = Vec::new();
    for path in overlay_paths {
        let display = paths::display(&path);
        let Some(text) = read(&path, &display, files, diagnostics, None) else {
            variables.unreadable();
            continue;
        };
        let Some(file) = render_with(
            renderer,
            &display,
            text,
            &base,
            &|name| base_unresolved.is_unresolved(name),
            diagnostics,
        ) else {
            continue;
        };
        match vars::parse(&file) {
            Ok(entries) => parsed.push((file, entries)),
            Err(refused) => diagnostics.extend(variables.refused(refused)),
        }
    }
    vars::resolve_into(&mut variables, parsed, secrets, diagnostics);
    variables
}

/// Reads a file, or reports it missing (with `missing` when given, which
/// points at the reference to the file); `display` names it in diagnostics.
fn read(
    path: &Path,
    display: &str,
    files: &mut Vec<PathBuf>,
    diagnostics: &mut Diagnostics,
    missing: Option<Diagnostic>,
) -> Option<String> {
    match read_bounded(path, MAX_FILE_BYTES) {
        Ok(Some(bytes)) => {
            files.push(paths::absolute(path));
            match String::from_utf8(bytes) {
                Ok(text) => Some(text),
                Err(error) => {
                    diagnostics.push(not_utf8(display, &error));
                    None
                }
            }
        }
        Ok(None) => {
            diagnostics.push(
                Diagnostic::error(format!("the file is larger than {MAX_FILE_SIZE_TEXT}"))
                    .in_file(display)
                    .with_help("a configuration file this large is a mistake: check what was written there"),
            );
            None
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let diagnostic =
                missing.unwrap_or_else(|| Diagnostic::error("file not found").in_file(display));
            diagnostics.push(diagnostic.with_help(format!("create {display} or fix the path")));
            None
        }
        Err(error) => {
            diagnostics
                .push(Diagnostic::error(format!("cannot read the file: {error}")).in_file(display));
            None
        }
    }
}

/// A file that is not UTF-8: the first bad byte's line and column, shown on
/// the line with the bad bytes replaced.
fn not_utf8(display: &str, error: &std::string::FromUtf8Error) -> Diagnostic {
    let offset = error.utf8_error().valid_up_to();
    let text = String::from_utf8_lossy(error.as_bytes()).into_owned();
    let file = SourceFile::plain(display, text);
    file.error_at_source(
        offset..offset + char::REPLACEMENT_CHARACTER.len_utf8(),
        "the file is not valid UTF-8",
        "invalid byte",
    )
    .with_help("configuration files are UTF-8 text: re-save the file as UTF-8")
}

/// The first symbolic link among the folders `relative` names below
/// `config_dir` (every one of them when `relative` is relative, the last one
/// when it is absolute) and its service.toml.
fn symlink_in(config_dir: &Path, relative: &str) -> Option<PathBuf> {
    let relative = Path::new(relative);
    let is_link = |path: &Path| {
        std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink())
    };
    let folder = config_dir.join(relative);
    let mut candidates = Vec::new();
    if relative.is_absolute() {
        candidates.push(folder.clone());
    } else {
        let mut current = config_dir.to_path_buf();
        for component in relative.components() {
            current.push(component);
            if matches!(component, std::path::Component::Normal(_)) {
                candidates.push(current.clone());
            }
        }
    }
    candidates.push(folder.join(SERVICE_FILE));
    candidates.into_iter().find(|path| is_link(path))
}

fn render_file(
    renderer: &Renderer,
    display: &str,
    text: String,
    variables: &Variables,
    provenance: &Arc<Provenance>,
    diagnostics: &mut Diagnostics,
) -> Option<SourceFile> {
    // An unresolved secret was reported where it is declared; its uses would
    // only repeat that as "undefined variable".
    let already_reported = |name: &str| variables.is_unresolved(name);
    render_with(
        renderer,
        display,
        text,
        &variables.exposed(),
        &already_reported,
        diagnostics,
    )
    .map(|file| file.with_provenance(provenance.clone()))
}

fn render_with(
    renderer: &Renderer,
    display: &str,
    text: String,
    variables: &BTreeMap<String, String>,
    already_reported: &dyn Fn(&str) -> bool,
    diagnostics: &mut Diagnostics,
) -> Option<SourceFile> {
    let display = display.to_string();
    match renderer.render(&text, variables) {
        Ok(rendered) => Some(SourceFile::rendered(display, text, rendered)),
        Err(error) if error.undefined.as_deref().is_some_and(already_reported) => None,
        Err(error) => {
            let file = SourceFile::plain(display.clone(), text);
            let mut diagnostic = match error.span {
                Some(span) => file.error_at_source(span, error.message, error.label),
                None => Diagnostic::error(error.message).in_file(display),
            };
            diagnostic.help = error.help;
            diagnostics.push(diagnostic);
            None
        }
    }
}

/// Checks across services: unique names, host ports, proxy routes, one
/// certificate per host, known dependencies and no dependency cycle. Every
/// name, host and path is printed as [`Shown`]: masked when it came from a
/// secret in any of the files that name it.
fn cross_check(checked: &[Checked], diagnostics: &mut Diagnostics) -> BTreeMap<String, Service> {
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    let mut owners: BTreeMap<&str, &Checked> = BTreeMap::new();
    let mut host_ports: BTreeMap<u16, &Checked> = BTreeMap::new();
    let mut routes: BTreeMap<(&str, &str), (&Checked, String)> = BTreeMap::new();
    let mut certificates: BTreeMap<&str, &Checked> = BTreeMap::new();
    for item in checked {
        let name = item.service.name.as_str();
        if let Some(first) = owners.get(name) {
            let shown = either(first.name_shown(), item.name_shown());
            diagnostics.push(
                item.file
                    .error_at(
                        item.spans.value("service.name"),
                        format!("service name `{shown}` is used twice"),
                        "duplicate name",
                    )
                    .with_help(format!(
                        "`{shown}` is also the name in {}",
                        first.file.display
                    )),
            );
            continue;
        }
        owners.insert(name, item);
        for (index, port) in item.service.container.ports.iter().enumerate() {
            let path = format!("port[{index}].host");
            if let Some(other) = host_ports.insert(port.host, item) {
                let number = either(
                    other.value_shown(&host_port_path(other, port.host), &port.host.to_string()),
                    item.value_shown(&path, &port.host.to_string()),
                );
                diagnostics.push(
                    item.file
                        .error_at(
                            item.spans.value(&path),
                            format!(
                                "host port {number} is already bound by service `{}`",
                                other.name_shown()
                            ),
                            "port in use",
                        )
                        .with_help(
                            "give each service its own host port, or route it through [proxy]",
                        ),
                );
            }
        }
        if let Some(route) = &item.service.route {
            for host in route.names() {
                let host_path = item.name_path(host);
                if let Some((other, other_path)) =
                    routes.insert((host, &route.path), (item, host_path.clone()))
                {
                    let host = either(
                        other.value_shown(&other_path, host),
                        item.value_shown(&host_path, host),
                    );
                    let path = either(
                        other.value_shown("proxy.path", &route.path),
                        item.value_shown("proxy.path", &route.path),
                    );
                    diagnostics.push(
                        item.file
                            .error_at(
                                item.spans.value(&host_path),
                                format!(
                                    "proxy host `{host}` with path `{path}` is already claimed by service `{}`",
                                    other.name_shown()
                                ),
                                "duplicate route",
                            )
                            .with_help("give each service its own host, or a different `path`"),
                    );
                }
            }
            if let TlsSource::Manual {
                cert_file,
                key_file,
            } = &route.tls
            {
                for host in route.names() {
                    match certificates.get(host) {
                        None => {
                            certificates.insert(host, item);
                        }
                        Some(first) => {
                            if let Some(diagnostic) =
                                certificate_conflict(first, item, host, cert_file, key_file)
                            {
                                diagnostics.push(diagnostic);
                            }
                        }
                    }
                }
            }
        }
        services.insert(name.to_string(), item.service.clone());
    }

    for item in owners.values() {
        for dependency in item.service.depends_on.keys() {
            if owners.contains_key(dependency.as_str()) {
                continue;
            }
            let path = format!("depends_on.{dependency}");
            let shown = item.file.shown(&item.spans.key(&path), dependency);
            // A suggestion close to a secret, or itself a secret, is not made.
            let close = match shown.masked {
                true => None,
                false => did_you_mean(dependency, owners.keys().copied())
                    .filter(|close| owners.get(close).is_some_and(|o| !o.name_shown().masked)),
            };
            let help = match close {
                Some(close) => format!("did you mean `{close}`?"),
                None => "a dependency is the `name` of another service".to_string(),
            };
            diagnostics.push(
                item.file
                    .error_at(
                        item.spans.key(&path),
                        format!(
                            "service `{}` depends on unknown service `{shown}`",
                            item.name_shown()
                        ),
                        "unknown service",
                    )
                    .with_help(help),
            );
        }
    }
    for cycle in find_cycles(&services) {
        let first = &cycle[0];
        if let Some(item) = owners.get(first.as_str()) {
            // Each member is named by its own file and by the `depends_on`
            // key that leads to it: masked when either is a secret.
            let members: Vec<String> = cycle
                .iter()
                .enumerate()
                .map(|(index, member)| {
                    let own = owners.get(member.as_str()).map(|owner| owner.name_shown());
                    let via = index
                        .checked_sub(1)
                        .or((index == 0).then(|| cycle.len() - 2))
                        .and_then(|previous| owners.get(cycle[previous].as_str()))
                        .map(|previous| {
                            previous
                                .file
                                .shown(&previous.spans.key(&format!("depends_on.{member}")), member)
                        });
                    match (own, via) {
                        (Some(own), Some(via)) => either(own, via).text,
                        (Some(shown), None) | (None, Some(shown)) => shown.text,
                        (None, None) => member.clone(),
                    }
                })
                .collect();
            diagnostics.push(
                item.file
                    .error_at(
                        item.spans.key(&format!("depends_on.{}", cycle[1])),
                        format!("dependency cycle: {}", members.join(" -> ")),
                        "part of the cycle",
                    )
                    .with_help("remove one of these `depends_on` entries"),
            );
        }
    }
    services
}

/// The routes' names against `[certbot]`: a wildcard name needs DNS-01, a
/// DNS-01 name needs `[certbot.dns]` and must lie in its zone.
fn acme_check(acme: &AcmeSettings, checked: &[Checked], diagnostics: &mut Diagnostics) {
    for item in checked {
        let Some(route) = &item.service.route else {
            continue;
        };
        if route.tls != TlsSource::Automatic {
            continue;
        }
        let challenge = route.challenge_or(acme.challenge);
        let challenge_path = match route.challenge {
            Some(_) => "proxy.challenge",
            None => "proxy.host",
        };
        if challenge == Challenge::Dns01 && acme.dns.is_none() && route.challenge.is_some() {
            diagnostics.push(
                item.file
                    .error_at(
                        item.spans.value(challenge_path),
                        "the `dns-01` challenge needs a DNS provider in [certbot.dns] of dispenser.toml",
                        "no [certbot.dns]",
                    )
                    .with_help("add [certbot.dns] with `provider`, `zone` and the provider's keys (docs/certificates.md)"),
            );
        }
        for name in route.names() {
            let path = item.name_path(name);
            let shown = item.value_shown(&path, name);
            if name.starts_with("*.") && challenge != Challenge::Dns01 {
                diagnostics.push(
                    item.file
                        .error_at(
                            item.spans.value(&path),
                            format!("the wildcard name `{shown}` can only be proven by the `dns-01` challenge"),
                            "needs dns-01",
                        )
                        .with_help("set `challenge = \"dns-01\"` in [proxy] or in [certbot], with a DNS provider in [certbot.dns]"),
                );
                continue;
            }
            let Some(dns) = &acme.dns else {
                continue;
            };
            let bare = name.trim_start_matches("*.");
            let zone = dns.zone.trim_end_matches('.');
            let in_zone = bare == zone || bare.ends_with(&format!(".{zone}"));
            if challenge == Challenge::Dns01 && !in_zone {
                diagnostics.push(
                    item.file
                        .error_at(
                            item.spans.value(&path),
                            format!("`{shown}` is not in the zone `{zone}` of [certbot.dns]"),
                            "outside the dns zone",
                        )
                        .with_help("dns-01 records are written in that zone only: route a name under it, or use another challenge for this route"),
                );
            }
        }
    }
}

impl Checked {
    /// The service's name as diagnostics may print it.
    fn name_shown(&self) -> Shown {
        self.value_shown("service.name", &self.service.name)
    }

    /// The key path of the route's name `host` (`proxy.host` when not found).
    fn name_path(&self, host: &str) -> String {
        self.route_names
            .iter()
            .find(|(name, _)| name == host)
            .map_or_else(|| "proxy.host".to_string(), |(_, path)| path.clone())
    }

    /// The value at `path` of this file as diagnostics may print it.
    fn value_shown(&self, path: &str, value: &str) -> Shown {
        self.file.shown(&self.spans.value(path), value)
    }

    /// A file named in `[proxy]` as diagnostics show it: next to its
    /// service.toml, masked when it came from a secret.
    fn tls_file_shown(&self, key: &str, written: &str) -> String {
        let shown = self.value_shown(&format!("proxy.{key}"), written);
        let folder = Path::new(&self.file.display)
            .parent()
            .unwrap_or(Path::new(""));
        paths::display(&folder.join(shown.text))
    }
}

/// The mask when either side is masked (`b` first), else `b`.
fn either(a: Shown, b: Shown) -> Shown {
    if b.masked || !a.masked {
        b
    } else {
        a
    }
}

/// The key path of the first `[[port]]` of `item` binding host port `number`.
fn host_port_path(item: &Checked, number: u16) -> String {
    let index = item
        .service
        .container
        .ports
        .iter()
        .position(|port| port.host == number)
        .unwrap_or_default();
    format!("port[{index}].host")
}

/// Two routes of one host naming different certificate or key files: a host
/// has one certificate, which covers all its routes.
fn certificate_conflict(
    first: &Checked,
    item: &Checked,
    host: &str,
    cert_file: &Path,
    key_file: &Path,
) -> Option<Diagnostic> {
    let Some(TlsSource::Manual {
        cert_file: first_cert,
        key_file: first_key,
    }) = first.service.route.as_ref().map(|route| &route.tls)
    else {
        return None;
    };
    let key = if first_cert != cert_file {
        "cert_file"
    } else if first_key != key_file {
        "key_file"
    } else {
        return None;
    };
    let written = |checked: &Checked| {
        let (cert, key_text) = checked.tls_files.clone().unwrap_or_default();
        let text = if key == "cert_file" { cert } else { key_text };
        checked.tls_file_shown(key, &text)
    };
    let host = either(
        first.value_shown("proxy.host", host),
        item.value_shown("proxy.host", host),
    );
    let (what, label) = if key == "cert_file" {
        ("certificates", "a second certificate")
    } else {
        ("private keys", "a second key")
    };
    Some(
        item.file
            .error_at(
                item.spans.value(&format!("proxy.{key}")),
                format!(
                    "proxy host `{host}` is given two {what}: `{}` here and `{}` at {}",
                    written(item),
                    written(first),
                    first.file.location(first.spans.value(&format!("proxy.{key}")))
                ),
                label,
            )
            .with_help(format!(
                "a host has one certificate, which covers all its routes: give every route of `{host}` the same `cert_file` and `key_file`, or set them on one route only"
            )),
    )
}

/// Every elementary dependency cycle, once, starting at its smallest name
/// (`[a, b, a]`).
fn find_cycles(services: &BTreeMap<String, Service>) -> Vec<Vec<String>> {
    let mut cycles: Vec<Vec<String>> = Vec::new();
    for start in services.keys() {
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((current, trail)) = stack.pop() {
            let Some(service) = services.get(&current) else {
                continue;
            };
            for next in service.depends_on.keys() {
                if next == start {
                    let mut cycle = trail.clone();
                    cycle.push(start.clone());
                    if trail.iter().all(|name| name >= start) {
                        cycles.push(cycle);
                    }
                } else if !trail.contains(next) && next > start {
                    let mut longer = trail.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    cycles.sort();
    cycles
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;

#[cfg(test)]
mod hostile_tests;

#[cfg(test)]
mod masking_tests;

#[cfg(test)]
mod facts_tests;
