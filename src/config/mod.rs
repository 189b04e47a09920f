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
use std::path::{Path, PathBuf};

use dispenser_actors::plan::{Plan, Service};

use check::{parse_file, FileCheck};
pub use diagnostic::{Diagnostic, Diagnostics, SourceFile};
use render::Renderer;
pub use secrets::{LocalSecrets, SecretResolver, Secrets};
use spans::SpanIndex;
use values::did_you_mean;
use vars::Variables;

/// Name of the file each service folder holds.
pub const SERVICE_FILE: &str = "service.toml";

/// A loaded configuration: the plan, the files it came from, and warnings.
#[derive(Debug)]
pub struct Loaded {
    pub plan: Plan,
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
    match std::fs::read_to_string(path) {
        Ok(text) => {
            files.push(paths::absolute(path));
            Some(text)
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
