//! The Compose mapping: a parsed `compose.yaml` becomes the text of
//! `dispenser.toml`, one `service.toml` per service and `dispenser.vars`.
//! Pure: the caller reads the env files (`Inputs::env_files`) and writes the
//! result. Every key it cannot map is a [`Dropped`] with its line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use super::template::{interpolate, looks_secret, toml_string, var_name, Templ, VarDef, Vars};
use super::yaml::{Node, Value};

/// A key the import cannot carry over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The key's path, such as `services.web.build`.
    pub key: String,
    pub line: usize,
    pub reason: String,
}

/// What the mapping needs besides the document.
pub struct Inputs<'a> {
    /// The Compose file as messages name it.
    pub compose_name: &'a str,
    /// The folder the Compose file is in (absolute).
    pub compose_dir: &'a Path,
    /// The folder the output goes to (absolute).
    pub out_dir: &'a Path,
    /// Reads an env file named by `env_file` or `.env` (path relative to
    /// `compose_dir`); `None` when it does not exist.
    pub read_env_file: &'a dyn Fn(&Path) -> Result<Option<String>, String>,
}

/// The imported configuration.
#[derive(Debug, Default)]
pub struct Imported {
    pub dispenser_toml: String,
    pub vars: String,
    /// Each service's folder name and `service.toml`.
    pub services: Vec<(String, String)>,
    pub dropped: Vec<Dropped>,
    /// Things the user must know that lose nothing (secrets moved to the
    /// environment, for example).
    pub notes: Vec<String>,
}

/// An error that stops the import whatever the flags say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    pub key: String,
    pub line: usize,
    pub message: String,
}

/// Service keys that are mapped (or, like `expose`, need nothing).
const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "networks",
    "depends_on",
    "healthcheck",
    "restart",
    "user",
    "working_dir",
    "hostname",
    "mem_limit",
    "cpus",
    "deploy",
    "extra_hosts",
    "stop_grace_period",
    "stop_signal",
    "logging",
];

/// Why a well-known key cannot be mapped; other keys get a generic reason.
fn reason_for(key: &str) -> &'static str {
    match key {
        "build" => "dispenser runs images and does not build them; build and push the image, then set `image`",
        "profiles" => "dispenser has no profiles: every declared service runs",
        "container_name" => "the container is named after the service",
        "labels" => "dispenser sets its own container labels",
        "secrets" | "configs" => "mount the file with a volume instead",
        _ => "dispenser has no equivalent",
    }
}

/// Maps the document: the files' text, or the first error that stops the
/// import whatever the flags (no `image`, a missing required env file).
pub fn import(root: &Node, inputs: &Inputs) -> Result<Imported, Fatal> {
    let mut state = State {
        inputs,
        vars: Vars::new(),
        dropped: Vec::new(),
        notes: Vec::new(),
        dot_env: BTreeMap::new(),
    };
    if let Some(text) = (inputs.read_env_file)(Path::new(".env")).map_err(|message| Fatal {
        key: ".env".into(),
        line: 0,
        message,
    })? {
        state.dot_env = parse_env_file(&text)
            .into_iter()
            .filter_map(|(_, key, value)| value.map(|value| (key, value.text)))
            .collect();
    }
    let Some(entries) = root.entries() else {
        return Err(fatal("", root, "a Compose file is a mapping"));
    };
    let mut networks = BTreeMap::new();
    let mut volumes = BTreeMap::new();
    for (key, key_node, value) in &entries {
        match *key {
            "services" => {}
            "version" | "name" => {}
            "networks" => networks = state.top_networks(value)?,
            "volumes" => volumes = state.top_volumes(value),
            extension if extension.starts_with("x-") => {}
            other => state.drop(other, key_node, reason_for(other)),
        }
    }
    let services = root
        .get("services")
        .ok_or_else(|| fatal("services", root, "the file has no `services`"))?;
    let Some(service_entries) = services.entries() else {
        return Err(fatal("services", services, "`services` is a mapping"));
    };
    let mut imported = Imported::default();
    let mut toml = String::from("# Imported from a Compose file by `dispenser import compose`.\n");
    for (name, _, _) in &service_entries {
        let _ = write!(toml, "\n[[service]]\npath = {}\n", toml_string(name));
    }
    for network in networks.values() {
        toml.push_str(&network.toml);
    }
    for (name, _, service) in &service_entries {
        let text = state.service(name, service, &networks, &volumes)?;
        imported.services.push((name.to_string(), text));
    }
    imported.dispenser_toml = toml;
    imported.vars = state.vars_file();
    imported.dropped = state.dropped;
    imported.dropped.sort_by_key(|dropped| dropped.line);
    imported.notes = state.notes;
    Ok(imported)
}

/// A top-level network: its Docker name and its `[[network]]` table.
struct Network {
    name: String,
    toml: String,
}

struct State<'a> {
    inputs: &'a Inputs<'a>,
    vars: Vars,
    dropped: Vec<Dropped>,
    notes: Vec<String>,
    dot_env: BTreeMap<String, String>,
}

fn fatal(key: &str, node: &Node, message: &str) -> Fatal {
    Fatal {
        key: key.to_string(),
        line: node.line,
        message: message.to_string(),
    }
}

/// One value of an env file (`KEY=value`); `interpolated` is false for a
/// single-quoted value, which Compose takes literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvValue {
    pub text: String,
    pub interpolated: bool,
}

/// Parses an env file as Compose reads one: blank lines and `#` comments
/// skipped, `export ` allowed, quotes removed, ` #` comments after an
/// unquoted value cut. A `KEY` line without `=` has no value (`None`).
pub fn parse_env_file(text: &str) -> Vec<(usize, String, Option<EnvValue>)> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, raw)) = line.split_once('=') else {
            entries.push((number, line.to_string(), None));
            continue;
        };
        let raw = raw.trim();
        let value = if let Some(inner) = raw.strip_prefix('"') {
            let inner = inner.rfind('"').map_or(inner, |end| &inner[..end]);
            EnvValue {
                text: inner.replace("\\n", "\n").replace("\\\"", "\""),
                interpolated: true,
            }
        } else if let Some(inner) = raw.strip_prefix('\'') {
            EnvValue {
                text: inner
                    .rfind('\'')
                    .map_or(inner, |end| &inner[..end])
                    .to_string(),
                interpolated: false,
            }
        } else {
            let cut = raw.find(" #").map_or(raw, |at| &raw[..at]);
            EnvValue {
                text: cut.trim_end().to_string(),
                interpolated: true,
            }
        };
        entries.push((number, key.trim().to_string(), Some(value)));
    }
    entries
}

impl State<'_> {
    fn drop(&mut self, key: &str, node: &Node, reason: &str) {
        self.dropped.push(Dropped {
            key: key.to_string(),
            line: node.line,
            reason: reason.to_string(),
        });
    }

    /// A scalar's text with its variables, or a drop.
    fn templ(&mut self, key: &str, node: &Node) -> Option<Templ> {
        match node.text() {
            Some(text) => match interpolate(text, &mut self.vars) {
                Ok(templ) => Some(templ),
                Err(reason) => {
                    self.drop(key, node, &reason);
                    None
                }
            },
            None => {
                self.drop(key, node, "expected a single value");
                None
            }
        }
    }

    /// The text of a scalar that must hold no variable.
    fn literal(&mut self, key: &str, node: &Node) -> Option<String> {
        let templ = self.templ(key, node)?;
        match templ.as_literal() {
            Some(text) => Some(text),
            None => {
                self.drop(key, node, "a variable cannot be imported here");
                None
            }
        }
    }

    fn top_networks(&mut self, node: &Node) -> Result<BTreeMap<String, Network>, Fatal> {
        let mut networks = BTreeMap::new();
        let Some(entries) = node.entries() else {
            return Err(fatal("networks", node, "`networks` is a mapping"));
        };
        for (key, _, value) in entries {
            let path = format!("networks.{key}");
            let mut name = key.to_string();
            let mut lines = Vec::new();
            for (option, option_node, option_value) in value.entries().unwrap_or_default() {
                let option_path = format!("{path}.{option}");
                match option {
                    "name" => {
                        if let Some(text) = self.literal(&option_path, option_value) {
                            name = text;
                        }
                    }
                    "driver" => {
                        if let Some(text) = self.literal(&option_path, option_value) {
                            lines.push(format!("driver = {}\n", toml_string(&text)));
                        }
                    }
                    "internal" | "attachable" | "external" => match option_value.text() {
                        Some(flag @ ("true" | "false")) => {
                            lines.push(format!("{option} = {flag}\n"))
                        }
                        _ => self.drop(&option_path, option_value, "expected true or false"),
                    },
                    "labels" => {
                        let labels = self.string_map(&option_path, option_value);
                        if !labels.is_empty() {
                            let body: Vec<String> = labels
                                .iter()
                                .map(|(label, (value, _))| {
                                    format!("{} = {}", toml_string(label), value.to_toml())
                                })
                                .collect();
                            lines.push(format!("labels = {{ {} }}\n", body.join(", ")));
                        }
                    }
                    other => self.drop(
                        &option_path,
                        option_node,
                        &format!("network option `{other}` has no equivalent"),
                    ),
                }
            }
            if key == "default" {
                // Every service joins Dispenser's default network.
                if !lines.is_empty() {
                    self.drop(
                        &path,
                        value,
                        "the default network is `[daemon.network]`; set it there",
                    );
                }
                continue;
            }
            let mut toml = format!("\n[[network]]\nname = {}\n", toml_string(&name));
            for line in lines {
                toml.push_str(&line);
            }
            networks.insert(key.to_string(), Network { name, toml });
        }
        Ok(networks)
    }

    /// Top-level volumes: the Docker name of each (its `name:`, or the key).
    fn top_volumes(&mut self, node: &Node) -> BTreeMap<String, String> {
        let mut volumes = BTreeMap::new();
        for (key, _, value) in node.entries().unwrap_or_default() {
            let mut name = key.to_string();
            for (option, option_node, option_value) in value.entries().unwrap_or_default() {
                let path = format!("volumes.{key}.{option}");
                match option {
                    "name" => {
                        if let Some(text) = self.literal(&path, option_value) {
                            name = text;
                        }
                    }
                    // An existing volume is used as it is.
                    "external" => {}
                    other => self.drop(&path, option_node, &format!("volume option `{other}` has no equivalent: dispenser's named volumes use the local driver")),
                }
            }
            volumes.insert(key.to_string(), name);
        }
        volumes
    }

    /// A `KEY=value` list or a mapping, as templated strings.
    fn string_map(&mut self, path: &str, node: &Node) -> BTreeMap<String, (Templ, usize)> {
        let mut map = BTreeMap::new();
        if let Some(items) = node.items() {
            for item in items {
                let Some(text) = item.text() else {
                    self.drop(path, item, "expected `KEY=value`");
                    continue;
                };
                let (key, value) = text.split_once('=').unwrap_or((text, ""));
                let node = Node {
                    line: item.line,
                    value: Value::Scalar {
                        text: value.to_string(),
                        quoted: true,
                    },
                };
                if let Some(templ) = self.templ(&format!("{path}.{key}"), &node) {
                    map.insert(key.to_string(), (templ, item.line));
                }
            }
        } else if let Some(entries) = node.entries() {
            for (key, _, value) in entries {
                let templ = if value.is_null() {
                    Some(Templ::literal(""))
                } else {
                    self.templ(&format!("{path}.{key}"), value)
                };
                if let Some(templ) = templ {
                    map.insert(key.to_string(), (templ, value.line));
                }
            }
        } else {
            self.drop(path, node, "expected a list or a mapping");
        }
        map
    }

    fn service(
        &mut self,
        name: &str,
        node: &Node,
        networks: &BTreeMap<String, Network>,
        volumes: &BTreeMap<String, String>,
    ) -> Result<String, Fatal> {
        let base = format!("services.{name}");
        let Some(entries) = node.entries() else {
            return Err(fatal(&base, node, "a service is a mapping"));
        };
        for (key, key_node, _) in &entries {
            if !SERVICE_KEYS.contains(key) && !key.starts_with("x-") {
                self.drop(&format!("{base}.{key}"), key_node, reason_for(key));
            }
        }
        let service_dir = self.inputs.out_dir.join(name);
        let mut out = String::new();
        let _ = write!(out, "[service]\nname = {}\n", toml_string(name));
        let Some(image) = node.get("image") else {
            let message = if node.get("build").is_some() {
                "the service has no `image`: dispenser runs images and does not build them; build and push the image, then set `image`"
            } else {
                "the service has no `image`"
            };
            return Err(fatal(&base, node, message));
        };
        if let Some(image) = self.templ(&format!("{base}.image"), image) {
            let _ = writeln!(out, "image = {}", image.to_toml());
        }
        for key in ["command", "entrypoint"] {
            if let Some(value) = node.get(key) {
                if let Some(text) = self.command(&format!("{base}.{key}"), value) {
                    let _ = writeln!(out, "{key} = {text}");
                }
            }
        }
        for key in [
            "working_dir",
            "user",
            "hostname",
            "stop_signal",
            "stop_grace_period",
        ] {
            if let Some(value) = node.get(key) {
                if let Some(templ) = self.templ(&format!("{base}.{key}"), value) {
                    let _ = writeln!(out, "{key} = {}", templ.to_toml());
                }
            }
        }
        self.resources(&base, node, &mut out);
        if let Some(value) = node.get("restart") {
            if let Some(text) = self.literal(&format!("{base}.restart"), value) {
                let policy = match text.split_once(':') {
                    Some((policy, _)) => {
                        self.drop(&format!("{base}.restart"), value, "a maximum retry count has no equivalent; restarted on failure without limit");
                        policy.to_string()
                    }
                    None => text,
                };
                let _ = writeln!(out, "restart = {}", toml_string(&policy));
            }
        }
        if let Some(value) = node.get("ports") {
            self.ports(&format!("{base}.ports"), value, &mut out);
        }
        if let Some(value) = node.get("volumes") {
            self.volumes(
                &format!("{base}.volumes"),
                value,
                volumes,
                &service_dir,
                &mut out,
            );
        }
        self.environment(&base, node, &mut out)?;
        if let Some(value) = node.get("networks") {
            self.service_networks(&format!("{base}.networks"), value, networks, &mut out);
        }
        if let Some(value) = node.get("extra_hosts") {
            self.extra_hosts(&format!("{base}.extra_hosts"), value, &mut out);
        }
        if let Some(value) = node.get("depends_on") {
            self.depends_on(&format!("{base}.depends_on"), value, &mut out);
        }
        if let Some(value) = node.get("healthcheck") {
            self.healthcheck(&format!("{base}.healthcheck"), value, &mut out);
        }
        if let Some(value) = node.get("logging") {
            self.logging(&format!("{base}.logging"), value, &mut out);
        }
        Ok(out)
    }

    /// A command or entrypoint: a string (split by Dispenser as a shell
    /// would) or a list.
    fn command(&mut self, path: &str, node: &Node) -> Option<String> {
        if let Some(items) = node.items() {
            let mut words = Vec::new();
            for item in items {
                words.push(self.templ(path, item)?.to_toml());
            }
            Some(format!("[{}]", words.join(", ")))
        } else {
            Some(self.templ(path, node)?.to_toml())
        }
    }

    fn resources(&mut self, base: &str, node: &Node, out: &mut String) {
        let mut memory = node
            .get("mem_limit")
            .map(|value| (format!("{base}.mem_limit"), value));
        let mut cpus = node
            .get("cpus")
            .map(|value| (format!("{base}.cpus"), value));
        if let Some(deploy) = node.get("deploy") {
            for (key, key_node, value) in deploy.entries().unwrap_or_default() {
                let path = format!("{base}.deploy.{key}");
                match key {
                    "replicas" if value.text() == Some("1") => {}
                    "resources" => {
                        for (kind, kind_node, limits) in value.entries().unwrap_or_default() {
                            if kind != "limits" {
                                self.drop(&format!("{path}.{kind}"), kind_node, "only resource limits have an equivalent");
                                continue;
                            }
                            for (limit, limit_node, limit_value) in limits.entries().unwrap_or_default() {
                                let limit_path = format!("{path}.limits.{limit}");
                                match limit {
                                    "memory" => {
                                        memory.get_or_insert((limit_path, limit_value));
                                    }
                                    "cpus" => {
                                        cpus.get_or_insert((limit_path, limit_value));
                                    }
                                    _ => self.drop(&limit_path, limit_node, "only `memory` and `cpus` limits have an equivalent"),
                                }
                            }
                        }
                    }
                    "replicas" => self.drop(&path, key_node, "a service runs one container"),
                    _ => self.drop(&path, key_node, "dispenser is not a swarm: only `deploy.resources.limits` has an equivalent"),
                }
            }
        }
        if let Some((path, value)) = memory {
            if let Some(templ) = self.templ(&path, value) {
                let _ = writeln!(out, "memory = {}", templ.to_toml());
            }
        }
        if let Some((path, value)) = cpus {
            if let Some(templ) = self.templ(&path, value) {
                let _ = writeln!(out, "cpus = {}", templ.to_toml());
            }
        }
    }

    /// A port number, or a variable that holds one (written unquoted).
    fn port_number(&mut self, path: &str, node: &Node, text: &str) -> Option<String> {
        let templ = match interpolate(text, &mut self.vars) {
            Ok(templ) => templ,
            Err(reason) => {
                self.drop(path, node, &reason);
                return None;
            }
        };
        if let Some(var) = templ.as_single_var() {
            return Some(format!("${{ {var} }}"));
        }
        match templ.as_literal() {
            Some(literal) => match literal.parse::<u16>() {
                Ok(port) if port > 0 => Some(port.to_string()),
                _ => {
                    self.drop(path, node, &format!("`{literal}` is not a port number"));
                    None
                }
            },
            None => {
                self.drop(path, node, "a port is a number or one variable");
                None
            }
        }
    }

    fn ports(&mut self, path: &str, node: &Node, out: &mut String) {
        let Some(items) = node.items() else {
            self.drop(path, node, "expected a list");
            return;
        };
        for item in items {
            let (host, container) = if let Some(entries) = item.entries() {
                let mut host = None;
                let mut container = None;
                for (key, key_node, value) in entries {
                    let key_path = format!("{path}.{key}");
                    match key {
                        "target" => container = value.text().map(str::to_string),
                        "published" => host = value.text().map(str::to_string),
                        "protocol" if value.text() == Some("tcp") => {}
                        "mode" if value.text() == Some("host") => {}
                        "name" | "app_protocol" => {}
                        "protocol" => {
                            self.drop(&key_path, value, "only TCP ports can be published")
                        }
                        "host_ip" => {
                            self.drop(&key_path, key_node, "ports are published on every address")
                        }
                        _ => self.drop(&key_path, key_node, "no equivalent"),
                    }
                }
                (host, container)
            } else if let Some(text) = item.text() {
                let (spec, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
                if protocol != "tcp" {
                    self.drop(
                        path,
                        item,
                        &format!("`{text}`: only TCP ports can be published"),
                    );
                    continue;
                }
                let fields: Vec<&str> = spec.rsplitn(3, ':').collect();
                match fields.as_slice() {
                    [container] => (None, Some(container.to_string())),
                    [container, host] => (Some(host.to_string()), Some(container.to_string())),
                    [_, _, _] => {
                        self.drop(path, item, &format!("`{text}`: a host address (host_ip) has no equivalent: ports are published on every address"));
                        continue;
                    }
                    _ => (None, None),
                }
            } else {
                self.drop(path, item, "expected a port");
                continue;
            };
            let Some(container) = container else {
                self.drop(path, item, "a port without `target`");
                continue;
            };
            let Some(host) = host else {
                self.drop(
                    path,
                    item,
                    "a port published on a random host port has no equivalent: give the host port",
                );
                continue;
            };
            if [&host, &container]
                .iter()
                .any(|part| !part.contains('$') && part.contains('-'))
            {
                self.drop(
                    path,
                    item,
                    "port ranges have no equivalent: publish each port",
                );
                continue;
            }
            let host = self.port_number(path, item, &host);
            let container = self.port_number(path, item, &container);
            if let (Some(host), Some(container)) = (host, container) {
                let _ = write!(out, "\n[[port]]\nhost = {host}\ncontainer = {container}\n");
            }
        }
    }

    fn volumes(
        &mut self,
        path: &str,
        node: &Node,
        declared: &BTreeMap<String, String>,
        service_dir: &Path,
        out: &mut String,
    ) {
        let Some(items) = node.items() else {
            self.drop(path, node, "expected a list");
            return;
        };
        for item in items {
            if let Some(kind) = item.get("type") {
                let kind = kind.text().unwrap_or_default();
                if !matches!(kind, "bind" | "volume") {
                    self.drop(
                        &format!("{path}.type"),
                        item,
                        &format!("a `{kind}` mount has no equivalent: dispenser mounts bind mounts and named volumes"),
                    );
                    continue;
                }
            }
            let (source, target, readonly) = if let Some(entries) = item.entries() {
                let (mut source, mut target, mut readonly) = (None, None, false);
                for (key, key_node, value) in entries {
                    match (key, value.text()) {
                        ("type", _) => {}
                        ("source", Some(text)) => source = Some(text.to_string()),
                        ("target", Some(text)) => target = Some(text.to_string()),
                        ("read_only", Some(flag)) => readonly = flag == "true",
                        ("bind", _)
                            if value.get("create_host_path").is_some()
                                && value.entries().is_some_and(|e| e.len() == 1) => {}
                        _ => self.drop(
                            &format!("{path}.{key}"),
                            key_node,
                            "no equivalent: dispenser mounts bind mounts and named volumes",
                        ),
                    }
                }
                (source, target, readonly)
            } else if let Some(text) = item.text() {
                let fields: Vec<&str> = text.split(':').collect();
                match fields.as_slice() {
                    [source, target] => (Some(source.to_string()), Some(target.to_string()), false),
                    [source, target, mode] => {
                        let mut readonly = false;
                        for option in mode.split(',') {
                            match option {
                                "ro" => readonly = true,
                                "rw" => {}
                                other => self.drop(
                                    path,
                                    item,
                                    &format!("mount option `{other}` has no equivalent"),
                                ),
                            }
                        }
                        (Some(source.to_string()), Some(target.to_string()), readonly)
                    }
                    _ => (None, None, false),
                }
            } else {
                (None, None, false)
            };
            let (Some(source), Some(target)) = (source, target) else {
                self.drop(
                    path,
                    item,
                    "an anonymous volume or a tmpfs has no equivalent: name the volume",
                );
                continue;
            };
            let source_node = Node {
                line: item.line,
                value: Value::Scalar {
                    text: source,
                    quoted: true,
                },
            };
            let Some(source) = self.literal(path, &source_node) else {
                continue;
            };
            let source = if source.starts_with('.') {
                relative_to(
                    &normalize(&self.inputs.compose_dir.join(&source)),
                    service_dir,
                )
            } else if source.starts_with('/') {
                source
            } else if source.starts_with('~') {
                self.drop(
                    path,
                    item,
                    "a path under `~` depends on the user: write it in full",
                );
                continue;
            } else {
                declared.get(&source).cloned().unwrap_or(source)
            };
            let target_node = Node {
                line: item.line,
                value: Value::Scalar {
                    text: target,
                    quoted: true,
                },
            };
            let Some(target) = self.templ(path, &target_node) else {
                continue;
            };
            let _ = write!(
                out,
                "\n[[volume]]\nsource = {}\ntarget = {}\n",
                toml_string(&source),
                target.to_toml()
            );
            if readonly {
                out.push_str("readonly = true\n");
            }
        }
    }

    fn environment(&mut self, base: &str, node: &Node, out: &mut String) -> Result<(), Fatal> {
        // env files first: `environment` wins, as in Compose.
        // Each value with where it was written (`file:line`).
        let mut env: BTreeMap<String, (Templ, String, String)> = BTreeMap::new();
        let compose_name = self.inputs.compose_name;
        if let Some(files) = node.get("env_file") {
            let list: Vec<&Node> = match files.items() {
                Some(items) => items.iter().collect(),
                None => vec![files],
            };
            for file in list {
                let (file_path, required) = match file.entries() {
                    Some(_) => (
                        file.get("path").and_then(Node::text),
                        file.get("required").and_then(Node::text) != Some("false"),
                    ),
                    None => (file.text(), true),
                };
                let Some(file_path) = file_path else {
                    self.drop(&format!("{base}.env_file"), file, "expected a path");
                    continue;
                };
                let text = (self.inputs.read_env_file)(Path::new(file_path))
                    .map_err(|message| fatal(&format!("{base}.env_file"), file, &message))?;
                let Some(text) = text else {
                    if required {
                        return Err(fatal(
                            &format!("{base}.env_file"),
                            file,
                            &format!("env file `{file_path}` does not exist"),
                        ));
                    }
                    continue;
                };
                for (number, key, value) in parse_env_file(&text) {
                    let templ = match value {
                        None => self.environment_var(&key),
                        Some(value) if value.interpolated => {
                            match interpolate(&value.text, &mut self.vars) {
                                Ok(templ) => templ,
                                Err(reason) => {
                                    self.drop(
                                        &format!("{base}.env_file ({file_path}: {key})"),
                                        file,
                                        &reason,
                                    );
                                    continue;
                                }
                            }
                        }
                        Some(value) => Templ::literal(&value.text),
                    };
                    let place = format!("{file_path}:{number}");
                    env.insert(key, (templ, format!("{base}.env_file"), place));
                }
            }
        }
        if let Some(environment) = node.get("environment") {
            let path = format!("{base}.environment");
            if let Some(items) = environment.items() {
                for item in items {
                    match item.text() {
                        Some(text) if !text.contains('=') => {
                            let templ = self.environment_var(text);
                            let place = format!("{compose_name}:{}", item.line);
                            let key_path = format!("{path}.{text}");
                            env.insert(text.to_string(), (templ, key_path, place));
                        }
                        _ => {
                            let single = Node {
                                line: item.line,
                                value: Value::Seq(vec![item.clone()]),
                            };
                            env.extend(self.placed(&path, &single));
                        }
                    }
                }
            } else {
                env.extend(self.placed(&path, environment));
            }
        }
        if env.is_empty() {
            return Ok(());
        }
        out.push_str("\n[env]\n");
        for (key, (templ, key_path, place)) in env {
            let templ = match templ.as_literal() {
                Some(literal) if looks_secret(&key) && !literal.is_empty() => {
                    self.notes.push(format!("`{key_path}` ({place}): the value of `{key}` is not written: dispenser.vars reads it from the environment variable `{key}`"));
                    self.environment_var(&key)
                }
                _ => templ,
            };
            let _ = writeln!(out, "{} = {}", toml_string(&key), templ.to_toml());
        }
        Ok(())
    }

    /// [`Self::string_map`] with each entry's key path and `file:line`.
    fn placed(&mut self, path: &str, node: &Node) -> BTreeMap<String, (Templ, String, String)> {
        let compose_name = self.inputs.compose_name;
        self.string_map(path, node)
            .into_iter()
            .map(|(key, (templ, line))| {
                let key_path = format!("{path}.{key}");
                (key, (templ, key_path, format!("{compose_name}:{line}")))
            })
            .collect()
    }

    /// A variable read from the daemon's environment (Compose passes the
    /// shell's value).
    fn environment_var(&mut self, env_name: &str) -> Templ {
        let name = var_name(env_name);
        self.vars.entry(name.clone()).or_insert(VarDef {
            env_name: env_name.to_string(),
            default: None,
        });
        Templ {
            parts: vec![super::template::Part::Var(name)],
        }
    }

    fn service_networks(
        &mut self,
        path: &str,
        node: &Node,
        declared: &BTreeMap<String, Network>,
        out: &mut String,
    ) {
        let mut names: Vec<(String, &Node)> = Vec::new();
        if let Some(items) = node.items() {
            names.extend(
                items
                    .iter()
                    .filter_map(|item| item.text().map(|t| (t.to_string(), item))),
            );
        } else if let Some(entries) = node.entries() {
            for (name, key_node, options) in entries {
                for (option, option_node, _) in options.entries().unwrap_or_default() {
                    self.drop(&format!("{path}.{name}.{option}"), option_node, "per-network options have no equivalent: other containers reach the service by its name");
                }
                names.push((name.to_string(), key_node));
            }
        }
        for (name, item) in names {
            if name == "default" {
                continue;
            }
            match declared.get(&name) {
                Some(network) => {
                    let _ = write!(
                        out,
                        "\n[[network]]\nname = {}\n",
                        toml_string(&network.name)
                    );
                }
                None => self.drop(
                    path,
                    item,
                    &format!("network `{name}` is not declared under `networks`"),
                ),
            }
        }
    }

    fn extra_hosts(&mut self, path: &str, node: &Node, out: &mut String) {
        let mut pairs = Vec::new();
        if let Some(items) = node.items() {
            for item in items {
                let text = item.text().unwrap_or_default();
                match text.split_once('=').or_else(|| text.split_once(':')) {
                    Some((host, address)) => {
                        pairs.push((host.to_string(), address.to_string(), item))
                    }
                    None => self.drop(path, item, "expected `host:address`"),
                }
            }
        } else if let Some(entries) = node.entries() {
            for (host, _, value) in entries {
                pairs.push((
                    host.to_string(),
                    value.text().unwrap_or_default().to_string(),
                    value,
                ));
            }
        }
        for (host, address, item) in pairs {
            if address.contains(':') {
                self.drop(
                    path,
                    item,
                    &format!("`{host}`: IPv6 addresses have no equivalent"),
                );
                continue;
            }
            let _ = write!(
                out,
                "\n[[extra_host]]\nhostname = {}\nipv4 = {}\n",
                toml_string(&host),
                toml_string(&address)
            );
        }
    }

    fn depends_on(&mut self, path: &str, node: &Node, out: &mut String) {
        let mut lines = Vec::new();
        if let Some(items) = node.items() {
            for item in items {
                if let Some(name) = item.text() {
                    lines.push(format!("{} = \"started\"\n", toml_string(name)));
                }
            }
        } else if let Some(entries) = node.entries() {
            for (name, _, options) in entries {
                let mut condition = "started";
                for (option, option_node, value) in options.entries().unwrap_or_default() {
                    match (option, value.text()) {
                        ("condition", Some("service_started")) => condition = "started",
                        ("condition", Some("service_healthy")) => condition = "healthy",
                        ("condition", Some("service_completed_successfully")) => {
                            condition = "completed"
                        }
                        ("required", Some("true")) => {}
                        _ => self.drop(
                            &format!("{path}.{name}.{option}"),
                            option_node,
                            "no equivalent",
                        ),
                    }
                }
                lines.push(format!("{} = \"{condition}\"\n", toml_string(name)));
            }
        }
        if !lines.is_empty() {
            out.push_str("\n[depends_on]\n");
            for line in lines {
                out.push_str(&line);
            }
        }
    }

    fn healthcheck(&mut self, path: &str, node: &Node, out: &mut String) {
        let mut lines = Vec::new();
        for (key, key_node, value) in node.entries().unwrap_or_default() {
            let key_path = format!("{path}.{key}");
            match key {
                "test" => {
                    if let Some(text) = self.command(&key_path, value) {
                        lines.push(format!("test = {text}\n"));
                    }
                }
                "interval" | "timeout" | "start_period" => {
                    if let Some(templ) = self.templ(&key_path, value) {
                        lines.push(format!("{key} = {}\n", templ.to_toml()));
                    }
                }
                "retries" => {
                    if let Some(text) = self.literal(&key_path, value) {
                        match text.parse::<u32>() {
                            Ok(retries) => lines.push(format!("retries = {retries}\n")),
                            Err(_) => self.drop(&key_path, value, "expected a number"),
                        }
                    }
                }
                "disable" if value.text() == Some("true") => {
                    lines = vec!["test = [\"NONE\"]\n".to_string()]
                }
                "disable" => {}
                _ => self.drop(&key_path, key_node, "no equivalent"),
            }
        }
        if !lines.is_empty() {
            out.push_str("\n[healthcheck]\n");
            for line in lines {
                out.push_str(&line);
            }
        }
    }

    /// `logging`: its `driver` and `options` become `[logging]`, the same keys.
    fn logging(&mut self, path: &str, node: &Node, out: &mut String) {
        let mut driver = None;
        let mut options = Vec::new();
        for (key, key_node, value) in node.entries().unwrap_or_default() {
            let key_path = format!("{path}.{key}");
            match key {
                "driver" => driver = self.templ(&key_path, value).map(|templ| templ.to_toml()),
                "options" => {
                    for (option, _, option_value) in value.entries().unwrap_or_default() {
                        let option_path = format!("{key_path}.{option}");
                        if let Some(templ) = self.templ(&option_path, option_value) {
                            options.push(format!(
                                "{} = {}\n",
                                toml_string(option),
                                templ.to_toml()
                            ));
                        }
                    }
                }
                _ => self.drop(&key_path, key_node, "no equivalent"),
            }
        }
        if driver.is_none() && options.is_empty() {
            return;
        }
        out.push_str("\n[logging]\n");
        if let Some(driver) = driver {
            out.push_str(&format!("driver = {driver}\n"));
        }
        if !options.is_empty() {
            out.push_str("\n[logging.options]\n");
            for line in options {
                out.push_str(&line);
            }
        }
    }

    /// dispenser.vars: `.env` values or defaults as text (numbers unquoted, so a port can use
    /// one), secrets and variables without a value read from the environment.
    fn vars_file(&mut self) -> String {
        let mut out = String::from("# Variables of the Compose file. `source = \"env\"` reads the dispenser\n# process's environment (systemd Environment= or EnvironmentFile=).\n");
        let vars = std::mem::take(&mut self.vars);
        for (name, def) in &vars {
            // Compose takes `.env`'s value first, then the default.
            let value = self
                .dot_env
                .get(&def.env_name)
                .cloned()
                .or_else(|| def.default.clone());
            let line = match value {
                Some(_) if looks_secret(&def.env_name) => {
                    self.notes.push(format!("`{}` looks like a secret: its value (from `.env` or its default) is not written; dispenser.vars reads it from the environment variable `{}`", def.env_name, def.env_name));
                    env_reference(name, &def.env_name)
                }
                Some(value)
                    if !value.is_empty()
                        && value.len() < 10
                        && value.bytes().all(|b| b.is_ascii_digit())
                        && !value.starts_with('0') =>
                {
                    format!("{name} = {value}\n")
                }
                Some(value) => format!("{name} = {}\n", toml_string(&value)),
                None => env_reference(name, &def.env_name),
            };
            out.push_str(&line);
        }
        self.vars = vars;
        out
    }
}

fn env_reference(name: &str, env_name: &str) -> String {
    format!(
        "{name} = {{ source = \"env\", name = {} }}\n",
        toml_string(env_name)
    )
}

/// `path` with `.` and `..` resolved without the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `path` relative to the folder `from` (both absolute and normalized),
/// written with `/` and starting with `.`; absolute when they share only `/`.
fn relative_to(path: &Path, from: &Path) -> String {
    let path_parts: Vec<_> = path.components().collect();
    let from = normalize(from);
    let from_parts: Vec<_> = from.components().collect();
    let common = path_parts
        .iter()
        .zip(&from_parts)
        .take_while(|(a, b)| a == b)
        .count();
    if common <= 1 {
        // Nothing shared but the root: the absolute path says more.
        return path.to_string_lossy().into_owned();
    }
    let mut parts: Vec<String> = vec!["..".to_string(); from_parts.len() - common];
    parts.extend(
        path_parts[common..]
            .iter()
            .map(|part| part.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".to_string()
    } else if parts[0] == ".." {
        parts.join("/")
    } else {
        format!("./{}", parts.join("/"))
    }
}

#[cfg(test)]
#[path = "compose_tests.rs"]
mod tests;
