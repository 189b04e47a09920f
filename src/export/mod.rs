//! `dispenser export swarm|kubernetes|nomad`: writes another engine's files
//! from the validated plan (the same load, variables and checks as `--test`).
//! `mapping.rs` holds what every target shares, `findings.rs` the refusals
//! and the summary, one file per target maps the plan, `kubernetes_checks.rs`
//! checks the manifests for what their schema cannot see. This file does the
//! I/O: the load, the files of service folders that become ConfigMaps or
//! configs, and the output. Nothing is written when a finding is an error.
//! Secrets are never written as values: the output is checked for every
//! secret value of the load before it is written.

mod findings;
mod kubernetes;
pub mod kubernetes_checks;
mod mapping;
mod nomad;
mod swarm;
mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dispenser::config::{self, Origins, Secrets};
use dispenser_actors::files::read_bounded;
use dispenser_actors::plan::{MountSource, Plan};

pub use findings::Allow;
use findings::Findings;
use mapping::LocalContent;

/// The largest file of a service folder exported (a ConfigMap holds 1 MiB).
const MAX_LOCAL_BYTES: u64 = 1 << 20;
/// The most files of one folder exported.
const MAX_FOLDER_FILES: usize = 256;

/// The engines `dispenser export` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A Compose v3 stack file for `docker stack deploy`.
    Swarm,
    /// Manifests for `kubectl apply`.
    Kubernetes,
    /// Nomad job files (untested against a real Nomad: checked by golden files).
    Nomad,
}

/// What a target maps: the plan, where its keys were written, and the
/// content of the files and folders of service folders it mounts.
pub struct Input<'a> {
    pub plan: &'a Plan,
    pub origins: &'a Origins,
    pub local: &'a BTreeMap<PathBuf, LocalContent>,
    /// The folder of dispenser.toml, absolute: `file` secrets are relative to it.
    pub config_dir: PathBuf,
    /// Kubernetes: the Gateway that an HTTPRoute per route attaches to.
    pub gateway: Option<String>,
}

/// What the command line asks of an export besides its target.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub allow: Allow,
    /// `--gateway NAME`.
    pub gateway: Option<String>,
}

/// One file an export writes, by name inside the output folder.
pub struct OutputFile {
    pub name: String,
    pub content: Content,
}

/// What an output file holds.
pub enum Content {
    /// YAML documents.
    Yaml(Vec<serde_json::Value>),
    /// Text as it is (HCL).
    Text(String),
}

/// `dispenser export TARGET [-c dispenser.toml] -o PATH`.
pub fn run(config_path: &Path, target: Target, output: &Path, options: Options) -> ExitCode {
    let secrets = Secrets::from_env(config_path.parent().unwrap_or(Path::new(".")));
    let loaded = match config::load(config_path, &secrets) {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            eprint!("{diagnostics}");
            return ExitCode::FAILURE;
        }
    };
    for warning in loaded.warnings.warnings() {
        eprintln!("{warning}");
    }
    let local = match read_local(&loaded.plan) {
        Ok(local) => local,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let input = Input {
        plan: &loaded.plan,
        origins: &loaded.origins,
        local: &local,
        config_dir: absolute(config_path.parent().unwrap_or(Path::new("."))),
        gateway: options.gateway,
    };
    let mut findings = Findings::new(&loaded.origins, options.allow);
    secrets_outside_env(&input, &mut findings);
    dispenser_only(&input, &mut findings);
    let files = match export(&input, target, &mut findings) {
        Ok(files) => files,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    for item in &findings.items {
        eprintln!("{item}");
    }
    if findings.refused() {
        let count = findings.items.iter().filter(|item| item.is_error()).count();
        eprintln!(
            "export refused: {count} {} (nothing was written)",
            if count == 1 { "error" } else { "errors" }
        );
        return ExitCode::FAILURE;
    }
    let rendered: Vec<(String, String)> = files
        .iter()
        .map(|file| (file.name.clone(), render(file)))
        .collect();
    for (name, text) in &rendered {
        let (masked, found) = loaded.origins.mask_secrets(text);
        if found {
            let names: Vec<&str> = masked
                .match_indices("<secret")
                .filter_map(|(at, _)| masked[at..].find('>').map(|end| &masked[at..=at + end]))
                .collect();
            eprintln!(
                "error: `{name}` would hold the value of {}: only whole [env] values can reference a secret\nexport refused (nothing was written)",
                names.first().copied().unwrap_or("a secret")
            );
            return ExitCode::FAILURE;
        }
    }
    if let Err(message) = write(output, &rendered) {
        eprintln!("error: {message}");
        return ExitCode::FAILURE;
    }
    for (name, _) in &rendered {
        println!("wrote {}", output.join(name).display());
    }
    print!("{}", summary(target, &findings));
    ExitCode::SUCCESS
}

/// The files of one target.
pub fn export(
    input: &Input<'_>,
    target: Target,
    findings: &mut Findings<'_>,
) -> Result<Vec<OutputFile>, String> {
    match target {
        Target::Kubernetes => {
            let files = kubernetes::export(input, findings);
            let documents: Vec<&serde_json::Value> = files
                .iter()
                .flat_map(|file| match &file.content {
                    Content::Yaml(documents) => documents.iter().collect(),
                    Content::Text(_) => Vec::new(),
                })
                .collect();
            // The mapping must pass the checks the schema cannot make: a
            // failure is a bug of the export, reported rather than written.
            kubernetes_checks::check(&documents).map_err(|problems| {
                format!(
                    "the manifests fail their own checks (a bug of the export): {}",
                    problems.join("; ")
                )
            })?;
            Ok(files)
        }
        Target::Swarm => Ok(swarm::export(input, findings)),
        Target::Nomad => Ok(nomad::export(input, findings)),
    }
}

/// A secret's value anywhere but a whole `[env]` value would be written as
/// it is: refused, at the key that holds it (the output is searched again
/// before it is written).
/// What Dispenser's own proxy and watcher do that no exported file says:
/// a route's aliases, redirects, prefix stripping, guards and error pages,
/// and a `track` range. Each is lossy, at its key.
fn dispenser_only(input: &Input<'_>, findings: &mut Findings<'_>) {
    const PROXY: &str = "configure it in the target's ingress, gateway or proxy";
    for service in input.plan.services.values() {
        let name = &service.name;
        if let Some(route) = &service.route {
            let rules = &route.rules;
            let used = [
                (
                    "proxy.host",
                    !rules.aliases.is_empty(),
                    "more than one host name",
                ),
                (
                    "proxy.redirect_from",
                    !rules.redirect_from.is_empty(),
                    "redirects from other names",
                ),
                ("proxy.strip_prefix", rules.strip_prefix, "prefix stripping"),
                (
                    "proxy.basic_auth",
                    rules.basic_auth.is_some(),
                    "basic authentication",
                ),
                (
                    "proxy.allow",
                    rules.allow.is_some(),
                    "an allow-list of client networks",
                ),
                (
                    "proxy.error_pages",
                    rules.error_pages != Default::default(),
                    "error pages",
                ),
            ];
            for (path, _, what) in used.into_iter().filter(|(_, set, _)| *set) {
                findings.lossy(
                    findings::At::key(name, path),
                    format!("the route of `{name}` has {what}, which Dispenser's proxy applies: the exported route does not"),
                    "not exported",
                    PROXY,
                );
            }
        }
        if service.lifecycle.track.is_some() {
            findings.lossy(
                findings::At::key(name, "dispenser.track"),
                format!("`{name}` follows a semver range of tags: the export follows the image's own tag only"),
                "not exported",
                "use the registry-watch tool's semver policy (Keel: `keel.sh/policy: minor`)",
            );
        }
    }
}

fn secrets_outside_env(input: &Input<'_>, findings: &mut Findings<'_>) {
    for service in input.plan.services.values() {
        let spec = &service.container;
        let mut fields: Vec<(String, String)> = vec![
            ("service.image".into(), spec.image.original.clone()),
            (
                "service.command".into(),
                spec.command
                    .iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            (
                "service.entrypoint".into(),
                spec.entrypoint
                    .iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        ];
        for (key, value) in [
            ("working_dir", &spec.working_dir),
            ("user", &spec.user),
            ("hostname", &spec.hostname),
        ] {
            fields.push((format!("service.{key}"), value.clone().unwrap_or_default()));
        }
        if let Some(check) = &spec.healthcheck {
            fields.push(("healthcheck.test".into(), check.test.join(" ")));
        }
        for (index, mount) in spec.volumes.iter().enumerate() {
            let source = match &mount.source {
                MountSource::Bind(path) => path.display().to_string(),
                MountSource::Volume(name) => name.clone(),
            };
            fields.push((format!("volume[{index}].source"), source));
            fields.push((format!("volume[{index}].target"), mount.target.clone()));
        }
        for (index, host) in spec.extra_hosts.iter().enumerate() {
            fields.push((
                format!("extra_host[{index}].hostname"),
                host.hostname.clone(),
            ));
        }
        if let Some(logging) = &spec.logging {
            fields.push(("logging.driver".into(), logging.driver.clone()));
            for (key, value) in &logging.options {
                fields.push((format!("logging.options.{key}"), value.clone()));
            }
        }
        if let Some(route) = &service.route {
            fields.push(("proxy.host".into(), route.host.clone()));
            fields.push(("proxy.path".into(), route.path.clone()));
        }
        for (path, value) in fields {
            let (masked, found) = input.origins.mask_secrets(&value);
            if found {
                findings.refuse(
                    findings::At::value(&service.name, &path),
                    format!("`{path}` holds a secret's value ({masked}): an export writes it as it is"),
                    "secret value",
                    "only a whole [env] value can reference a secret: pass it to the program through the environment",
                );
            }
        }
    }
}

fn render(file: &OutputFile) -> String {
    match &file.content {
        Content::Yaml(documents) => yaml::documents(documents),
        Content::Text(text) => text.clone(),
    }
}

/// The summary printed after every export.
fn summary(target: Target, findings: &Findings<'_>) -> String {
    let mut out = String::new();
    let name = match target {
        Target::Swarm => "Docker Swarm",
        Target::Kubernetes => "Kubernetes",
        Target::Nomad => "Nomad",
    };
    let lossy = findings.items.len();
    if lossy > 0 {
        out.push_str(&format!(
            "\n{lossy} lossy {} listed above.\n",
            if lossy == 1 {
                "mapping is"
            } else {
                "mappings are"
            }
        ));
    }
    out.push_str(&format!("\nWhat {name} will not do that Dispenser did:\n"));
    for line in &findings.not_done {
        out.push_str(&format!("  - {line}\n"));
    }
    if !findings.install.is_empty() {
        out.push_str("\nWhat to install or create first:\n");
        for line in &findings.install {
            out.push_str(&format!("  - {line}\n"));
        }
    }
    out
}

fn absolute(path: &Path) -> PathBuf {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The content of every bind-mounted source inside a service folder.
fn read_local(plan: &Plan) -> Result<BTreeMap<PathBuf, LocalContent>, String> {
    let mut local = BTreeMap::new();
    for service in plan.services.values() {
        for mount in &service.container.volumes {
            let MountSource::Bind(path) = &mount.source else {
                continue;
            };
            if !path.starts_with(&service.folder) || local.contains_key(path) {
                continue;
            }
            local.insert(path.clone(), read_content(path)?);
        }
    }
    Ok(local)
}

fn read_content(path: &Path) -> Result<LocalContent, String> {
    let shown = path.display();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LocalContent::Missing)
        }
        Err(error) => return Err(format!("cannot read `{shown}`: {error}")),
    };
    if metadata.is_file() {
        return Ok(LocalContent::File(read_file(path)?));
    }
    let mut files = Vec::new();
    let mut nested = false;
    let entries =
        std::fs::read_dir(path).map_err(|error| format!("cannot read `{shown}`: {error}"))?;
    let mut names: Vec<(String, PathBuf, bool)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| format!("cannot read `{shown}`: {error}"))?;
        let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
        names.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
            is_file,
        ));
    }
    names.sort();
    for (name, entry_path, is_file) in names {
        if !is_file {
            nested = true;
            continue;
        }
        if files.len() == MAX_FOLDER_FILES {
            return Err(format!(
                "`{shown}` holds more than {MAX_FOLDER_FILES} files: build them into the image"
            ));
        }
        files.push((name, read_file(&entry_path)?));
    }
    Ok(LocalContent::Folder { files, nested })
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    match read_bounded(path, MAX_LOCAL_BYTES) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(format!(
            "`{}` is larger than 1 MiB: build it into the image or use a volume",
            path.display()
        )),
        Err(error) => Err(format!("cannot read `{}`: {error}", path.display())),
    }
}

/// Writes every file into `output` (created when missing), each atomically
/// (a temporary file renamed); a file of the same name is replaced.
fn write(output: &Path, files: &[(String, String)]) -> Result<(), String> {
    std::fs::create_dir_all(output)
        .map_err(|error| format!("cannot create `{}`: {error}", output.display()))?;
    for (name, text) in files {
        let path = output.join(name);
        let temporary = output.join(format!(".{name}.tmp"));
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|error| format!("cannot write `{}`: {error}", path.display()))?;
    }
    Ok(())
}
