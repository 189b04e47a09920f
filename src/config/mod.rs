//! The config front-end: files on disk -> rendered -> parsed -> validated
//! [`Plan`]. Every problem of one run is collected, each pointing at its file,
//! line and column. I/O (reading files, resolving secrets) happens here, at
//! the edge; the modules below are pure.

mod check;
mod diagnostic;
mod file;
mod hash;
mod paths;
pub mod render;
mod secrets;
mod spans;
mod validate;
pub mod values;
mod vars;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use dispenser_actors::plan::{Plan, Service};

use check::{parse_file, FileCheck};
pub use diagnostic::{Diagnostic, Diagnostics, SourceFile};
use render::Renderer;
pub use secrets::{LocalSecrets, SecretResolver, Secrets};
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
}

/// A service.toml that validated, kept with its file for cross-service checks.
struct Checked {
    service: Service,
    file: SourceFile,
    spans: SpanIndex,
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
    let Some(config_text) = read(config_path, &mut files, &mut diagnostics, None) else {
        return Err(diagnostics);
    };
    let Some(config_file) = render_file(
        &renderer,
        config_path,
        config_text,
        &variables,
        &mut diagnostics,
    ) else {
        return Err(diagnostics);
    };
    let Some((dispenser_file, config_spans)) =
        parse_file::<file::DispenserFile>(&config_file, &mut diagnostics)
    else {
        return Err(diagnostics);
    };
    let global = validate::global(
        &mut FileCheck {
            file: &config_file,
            spans: &config_spans,
            diagnostics: &mut diagnostics,
        },
        &dispenser_file,
        &config_dir,
    );
    let declared_networks = global
        .as_ref()
        .map(|g| g.networks.clone())
        .unwrap_or_default();
    let default_zone = global
        .as_ref()
        .map(|g| g.settings.timezone)
        .unwrap_or_default();

    let mut checked = Vec::new();
    for (index, entry) in dispenser_file.services.iter().enumerate() {
        let display = config_dir_display.join(&entry.path).join(SERVICE_FILE);
        let missing = config_file.error_at(
            config_spans.value(&format!("service[{index}].path")),
            format!("no {SERVICE_FILE} in `{}`", entry.path),
            "service folder",
        );
        if let Some(link) = symlink_in(&config_dir_display, &entry.path) {
            let target = std::fs::read_link(&link)
                .map(|target| format!(" to `{}`", target.display()))
                .unwrap_or_default();
            diagnostics.push(
                config_file
                    .error_at(
                        config_spans.value(&format!("service[{index}].path")),
                        format!(
                            "`{}` is a symbolic link{target}; service folders are not followed through links",
                            paths::display(&link)
                        ),
                        "symbolic link",
                    )
                    .with_help(
                        "write the real folder in `path` (it may be outside this folder), or copy the folder",
                    ),
            );
            continue;
        }
        let Some(text) = read(&display, &mut files, &mut diagnostics, Some(missing)) else {
            continue;
        };
        let Some(source) = render_file(&renderer, &display, text, &variables, &mut diagnostics)
        else {
            continue;
        };
        let Some((service_file, spans)) =
            parse_file::<file::ServiceFile>(&source, &mut diagnostics)
        else {
            continue;
        };
        let folder = paths::normalize(&config_dir.join(&entry.path));
        let service = validate::service(
            &mut FileCheck {
                file: &source,
                spans: &spans,
                diagnostics: &mut diagnostics,
            },
            &service_file,
            &folder,
            &declared_networks,
            default_zone,
        );
        if let Some(service) = service {
            checked.push(Checked {
                service,
                file: source,
                spans,
            });
        }
    }
    let services = cross_check(&checked, dispenser_file.services.len(), &mut diagnostics);

    match global {
        Some(global) if !diagnostics.has_errors() => Ok(Loaded {
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
    if base_path.is_file() {
        if let Some(text) = read(&base_path, files, diagnostics, None) {
            let file = SourceFile::plain(paths::display(&base_path), text);
            match vars::parse(&file) {
                Ok(entries) => {
                    vars::resolve_into(&mut variables, vec![(file, entries)], secrets, diagnostics)
                }
                Err(errors) => diagnostics.extend(errors),
            }
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
        let Some(text) = read(&path, files, diagnostics, None) else {
            continue;
        };
        let Some(file) = render_with(
            renderer,
            &path,
            text,
            &base,
            &|name| base_unresolved.is_unresolved(name),
            diagnostics,
        ) else {
            continue;
        };
        match vars::parse(&file) {
            Ok(entries) => parsed.push((file, entries)),
            Err(errors) => diagnostics.extend(errors),
        }
    }
    vars::resolve_into(&mut variables, parsed, secrets, diagnostics);
    variables
}

/// Reads a file, or reports it missing (with `missing` when given, which
/// points at the reference to the file).
fn read(
    path: &Path,
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
                    diagnostics.push(not_utf8(path, &error));
                    None
                }
            }
        }
        Ok(None) => {
            diagnostics.push(
                Diagnostic::error(format!("the file is larger than {MAX_FILE_SIZE_TEXT}"))
                    .in_file(paths::display(path))
                    .with_help("a configuration file this large is a mistake: check what was written there"),
            );
            None
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let diagnostic = missing.unwrap_or_else(|| {
                Diagnostic::error("file not found").in_file(paths::display(path))
            });
            diagnostics.push(
                diagnostic.with_help(format!("create {} or fix the path", paths::display(path))),
            );
            None
        }
        Err(error) => {
            diagnostics.push(
                Diagnostic::error(format!("cannot read the file: {error}"))
                    .in_file(paths::display(path)),
            );
            None
        }
    }
}

/// A regular file's bytes, or `None` when it holds more than `limit` bytes
/// (read no further). A FIFO, a device or a folder is refused: opened without
/// blocking, so a FIFO nobody writes to cannot stall the load.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// A file that is not UTF-8: the first bad byte's line and column, shown on
/// the line with the bad bytes replaced.
fn not_utf8(path: &Path, error: &std::string::FromUtf8Error) -> Diagnostic {
    let offset = error.utf8_error().valid_up_to();
    let text = String::from_utf8_lossy(error.as_bytes()).into_owned();
    let file = SourceFile::plain(paths::display(path), text);
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
    path: &Path,
    text: String,
    variables: &Variables,
    diagnostics: &mut Diagnostics,
) -> Option<SourceFile> {
    // An unresolved secret was reported where it is declared; its uses would
    // only repeat that as "undefined variable".
    let already_reported = |name: &str| variables.is_unresolved(name);
    render_with(
        renderer,
        path,
        text,
        &variables.exposed(),
        &already_reported,
        diagnostics,
    )
}

fn render_with(
    renderer: &Renderer,
    path: &Path,
    text: String,
    variables: &BTreeMap<String, String>,
    already_reported: &dyn Fn(&str) -> bool,
    diagnostics: &mut Diagnostics,
) -> Option<SourceFile> {
    let display = paths::display(path);
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

/// Checks across services: unique names, host ports, proxy routes, known
/// dependencies and no dependency cycle.
fn cross_check(
    checked: &[Checked],
    declared: usize,
    diagnostics: &mut Diagnostics,
) -> BTreeMap<String, Service> {
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    let mut owners: BTreeMap<&str, &Checked> = BTreeMap::new();
    let mut host_ports: BTreeMap<u16, &str> = BTreeMap::new();
    let mut routes: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for item in checked {
        let name = item.service.name.as_str();
        if let Some(first) = owners.get(name) {
            diagnostics.push(
                item.file
                    .error_at(
                        item.spans.value("service.name"),
                        format!("service name `{name}` is used twice"),
                        "duplicate name",
                    )
                    .with_help(format!(
                        "`{name}` is also the name in {}",
                        first.file.display
                    )),
            );
            continue;
        }
        owners.insert(name, item);
        for (index, port) in item.service.container.ports.iter().enumerate() {
            if let Some(other) = host_ports.insert(port.host, name) {
                diagnostics.push(
                    item.file
                        .error_at(
                            item.spans.value(&format!("port[{index}].host")),
                            format!(
                                "host port {} is already bound by service `{other}`",
                                port.host
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
            if let Some(other) = routes.insert((&route.host, &route.path), name) {
                diagnostics.push(
                    item.file
                        .error_at(
                            item.spans.value("proxy.host"),
                            format!(
                                "proxy host `{}` with path `{}` is already claimed by service `{other}`",
                                route.host, route.path
                            ),
                            "duplicate route",
                        )
                        .with_help("give each service its own host, or a different `path`"),
                );
            }
        }
        services.insert(name.to_string(), item.service.clone());
    }
    let _ = declared;

    for (name, item) in &owners {
        for dependency in item.service.depends_on.keys() {
            if !owners.contains_key(dependency.as_str()) {
                let help = match did_you_mean(dependency, owners.keys().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => "a dependency is the `name` of another service".to_string(),
                };
                diagnostics.push(
                    item.file
                        .error_at(
                            item.spans.key(&format!("depends_on.{dependency}")),
                            format!("service `{name}` depends on unknown service `{dependency}`"),
                            "unknown service",
                        )
                        .with_help(help),
                );
            }
        }
    }
    for cycle in find_cycles(&services) {
        let first = &cycle[0];
        if let Some(item) = owners.get(first.as_str()) {
            diagnostics.push(
                item.file
                    .error_at(
                        item.spans.key(&format!("depends_on.{}", cycle[1])),
                        format!("dependency cycle: {}", cycle.join(" -> ")),
                        "part of the cycle",
                    )
                    .with_help("remove one of these `depends_on` entries"),
            );
        }
    }
    services
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
