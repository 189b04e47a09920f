//! Docker Swarm: one Compose v3 stack file (`stack.yml`) for `docker stack
//! deploy`. Each service updates start-first (stop-first when it publishes a
//! host port, which two tasks cannot share on one node), rolls back when the
//! new task fails (`failure_action: rollback`, `monitor` = soak), resolves by
//! DNS round robin (`endpoint_mode: dnsrr`) and publishes host ports in host
//! mode: no virtual IP, no routing mesh. Networks are overlays (`internal`
//! where declared). Jobs are `replicated-job`s, scheduled by swarm-cronjob's
//! labels. A secret is a Swarm secret mounted as a file under /run/secrets,
//! and the env gets `KEY_FILE` with its path (Swarm has no env form).

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use dispenser::config::SecretRef;
use dispenser_actors::plan::{Overlap, RestartPolicy, Service, Zone};

use super::findings::{At, Findings};
use super::mapping::{self, EnvValue, LocalContent, Source};
use super::{Content, Input, OutputFile};

/// The stack file's name.
pub const STACK_FILE: &str = "stack.yml";
/// Where Swarm mounts secrets.
const SECRETS_DIR: &str = "/run/secrets";

/// The stack file of the whole plan.
pub fn export(input: &Input<'_>, findings: &mut Findings<'_>) -> Vec<OutputFile> {
    let plan = input.plan;
    let default_network = plan.settings.default_network.name.clone();
    let mut services = Map::new();
    let mut volumes = Map::new();
    let mut configs = Map::new();
    let mut secrets = Map::new();
    for service in plan.services.values() {
        let entry = stack_service(
            input,
            service,
            &default_network,
            &mut volumes,
            &mut configs,
            &mut secrets,
            findings,
        );
        services.insert(service.name.clone(), entry);
    }
    let mut networks = Map::new();
    networks.insert(
        default_network,
        json!({"driver": "overlay", "attachable": true}),
    );
    for network in plan.networks.values() {
        if network.external {
            networks.insert(
                network.name.clone(),
                json!({"external": true, "name": network.name}),
            );
            continue;
        }
        networks.insert(
            network.name.clone(),
            json!({"driver": "overlay", "internal": network.internal, "attachable": true}),
        );
    }
    let mut stack = json!({"version": "3.8", "services": services, "networks": networks});
    if !volumes.is_empty() {
        stack["volumes"] = Value::Object(volumes);
    }
    if !configs.is_empty() {
        stack["configs"] = Value::Object(configs);
    }
    if !secrets.is_empty() {
        stack["secrets"] = Value::Object(secrets);
    }
    escape_dollars(&mut stack);
    findings.not_done("a new digest of a tag is not deployed on its own: run `docker stack deploy` again (or a tool such as Shepherd)");
    findings.not_done("after `monitor` (the soak) nothing watches the new version: a crash later restarts it, it is never rolled back nor quarantined");
    vec![OutputFile {
        name: STACK_FILE.into(),
        content: Content::Yaml(vec![stack]),
    }]
}

#[allow(clippy::too_many_arguments)] // reason: one service's part of each top-level table
fn stack_service(
    input: &Input<'_>,
    service: &Service,
    default_network: &str,
    volumes: &mut Map<String, Value>,
    configs: &mut Map<String, Value>,
    secrets: &mut Map<String, Value>,
    findings: &mut Findings<'_>,
) -> Value {
    let spec = &service.container;
    let mut entry = Map::new();
    entry.insert("image".into(), json!(spec.image.original));
    if let Some(entrypoint) = &spec.entrypoint {
        entry.insert("entrypoint".into(), json!(entrypoint));
    }
    if let Some(command) = &spec.command {
        entry.insert("command".into(), json!(command));
    }
    for (key, value) in [
        ("working_dir", &spec.working_dir),
        ("user", &spec.user),
        ("hostname", &spec.hostname),
        ("stop_signal", &spec.stop_signal),
    ] {
        if let Some(value) = value {
            entry.insert(key.into(), json!(value));
        }
    }
    if let Some(grace) = spec.stop_grace_period {
        entry.insert(
            "stop_grace_period".into(),
            json!(mapping::docker_duration(grace)),
        );
    }
    let mut environment = Map::new();
    let mut service_secrets = Vec::new();
    for (key, value) in mapping::env(service, input.origins) {
        match value {
            EnvValue::Plain(text) => {
                environment.insert(key.into(), json!(text));
            }
            EnvValue::Secret { variable, source } => {
                let path = format!("{SECRETS_DIR}/{variable}");
                environment.insert(format!("{key}_FILE"), json!(path));
                service_secrets.push(json!({"source": variable, "target": variable}));
                secrets.entry(variable.to_string()).or_insert_with(|| secret(input, variable, source, findings));
                findings.not_done(format!(
                    "env `{key}` of `{}` holds no secret: Swarm has none in env, so `{key}_FILE` names the file {path}, which the program must read",
                    service.name
                ));
            }
            EnvValue::Mixed => findings.lossy(
                At::value(&service.name, &format!("env.{key}")),
                format!("env `{key}` mixes a secret with other text: an export references whole secrets only, so it is left out"),
                "secret in text",
                "make the whole value one secret variable (`\"${ name }\"`)",
            ),
        }
    }
    if !environment.is_empty() {
        entry.insert("environment".into(), Value::Object(environment));
    }
    if !service_secrets.is_empty() {
        entry.insert("secrets".into(), Value::Array(service_secrets));
    }
    if let Some(check) = &spec.healthcheck {
        let mut healthcheck = json!({"test": check.test});
        for (key, value) in [
            ("interval", check.interval),
            ("timeout", check.timeout),
            ("start_period", check.start_period),
        ] {
            if let Some(value) = value {
                healthcheck[key] = json!(mapping::docker_duration(value));
            }
        }
        if let Some(retries) = check.retries {
            healthcheck["retries"] = json!(retries);
        }
        entry.insert("healthcheck".into(), healthcheck);
    }
    let mut networks = vec![json!(default_network)];
    networks.extend(spec.networks.iter().map(|name| json!(name)));
    entry.insert("networks".into(), Value::Array(networks));
    if !spec.ports.is_empty() {
        let ports: Vec<Value> = spec
            .ports
            .iter()
            .map(|port| json!({"target": port.container, "published": port.host, "protocol": "tcp", "mode": "host"}))
            .collect();
        entry.insert("ports".into(), Value::Array(ports));
    }
    if !spec.extra_hosts.is_empty() {
        let hosts: Vec<Value> = spec
            .extra_hosts
            .iter()
            .map(|host| json!(format!("{}:{}", host.hostname, host.address)))
            .collect();
        entry.insert("extra_hosts".into(), Value::Array(hosts));
    }
    let mut mounts = Vec::new();
    let mut service_configs = Vec::new();
    for (index, mount) in spec.volumes.iter().enumerate() {
        let key = format!("volume[{index}].source");
        match mapping::source(service, mount, input.local) {
            Source::Named(name) => {
                volumes.insert(name.to_string(), json!({"name": name}));
                mounts.push(json!({"type": "volume", "source": name, "target": mount.target, "read_only": mount.readonly}));
            }
            Source::Local {
                relative,
                content: LocalContent::File(bytes),
            } if mount.readonly => {
                let name = config(configs, service, relative, bytes);
                service_configs.push(json!({"source": name, "target": mount.target}));
            }
            Source::Local {
                relative,
                content:
                    LocalContent::Folder {
                        files,
                        nested: false,
                    },
            } if mount.readonly => {
                // A read-only folder: one config per file, under its target.
                for (file, bytes) in files {
                    let name = config(configs, service, &format!("{relative}/{file}"), bytes);
                    let target = format!("{}/{file}", mount.target.trim_end_matches('/'));
                    service_configs.push(json!({"source": name, "target": target}));
                }
            }
            Source::Local { relative, .. } => {
                findings.lossy(
                    At::value(&service.name, &key),
                    format!("`{relative}` of the service folder is bind-mounted from this path on whichever node runs the task: it must exist on every node"),
                    "bind mount",
                    "mount files and flat folders read-only (their files become configs), keep data in a named volume, or build the content into the image",
                );
                let path = service.folder.join(relative);
                mounts.push(json!({"type": "bind", "source": path.display().to_string(), "target": mount.target, "read_only": mount.readonly}));
            }
            Source::Host(path) => {
                findings.host_path(
                    At::value(&service.name, &key),
                    format!("`{}` is a path on this host: on Swarm it is a path on whichever node runs the task", path.display()),
                    "move the content into the service folder, a named volume or the image",
                );
                mounts.push(json!({"type": "bind", "source": path.display().to_string(), "target": mount.target, "read_only": mount.readonly}));
            }
        }
    }
    if !mounts.is_empty() {
        entry.insert("volumes".into(), Value::Array(mounts));
    }
    if !service_configs.is_empty() {
        entry.insert("configs".into(), Value::Array(service_configs));
    }
    let logging = spec.log_config();
    entry.insert(
        "logging".into(),
        json!({"driver": logging.driver, "options": logging.options}),
    );
    entry.insert("deploy".into(), deploy(input, service, findings));
    if let Some(route) = &service.route {
        findings.lossy(
            At::value(&service.name, "proxy.host"),
            format!(
                "the route for `{}{}` is not served: a Swarm stack has no proxy",
                route.host, route.path
            ),
            "no proxy",
            &format!(
                "run a proxy service (Traefik, Caddy) in the stack that forwards `{}` to `{}:{}`",
                route.host, service.name, route.service_port
            ),
        );
    }
    if service.lifecycle.watch {
        findings.lossy(
            At::value(&service.name, "dispenser.watch"),
            "the registry is not watched: Swarm deploys a new digest only when told".into(),
            "not watched",
            "run `docker service update --image` from CI on a new digest, or a tool such as Shepherd",
        );
    }
    for dependency in service.depends_on.keys() {
        findings.lossy(
            At::key(&service.name, &format!("depends_on.{dependency}")),
            format!("`{}` waits for `{dependency}`: `docker stack deploy` ignores depends_on and starts every service at once", service.name),
            "not enforced",
            "make the service retry until its dependency answers (its healthcheck keeps it out of DNS meanwhile)",
        );
    }
    Value::Object(entry)
}

/// The `deploy` table: mode, update and rollback, restarts, limits, cron labels.
fn deploy(input: &Input<'_>, service: &Service, findings: &mut Findings<'_>) -> Value {
    let spec = &service.container;
    let soak = mapping::docker_duration(input.plan.settings.deploy.soak);
    let condition = match spec.restart {
        RestartPolicy::No => "none",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Always | RestartPolicy::UnlessStopped => "any",
    };
    let mut deploy = json!({
        "endpoint_mode": "dnsrr",
        "restart_policy": {"condition": condition},
    });
    let mut limits = Map::new();
    if let Some(bytes) = spec.memory_bytes {
        limits.insert("memory".into(), json!(bytes.to_string()));
    }
    if let Some(nano) = spec.nano_cpus {
        limits.insert("cpus".into(), json!(format!("{}", nano as f64 / 1e9)));
    }
    if !limits.is_empty() {
        deploy["resources"] = json!({"limits": limits});
    }
    if mapping::is_job(service) {
        deploy["mode"] = json!("replicated-job");
        if let Some(schedule) = &service.lifecycle.schedule {
            let fields = mapping::schedule(service, &schedule.expression, findings);
            let skip = service.lifecycle.overlap == Overlap::Skip;
            deploy["labels"] = json!({
                "swarm.cronjob.enable": "true",
                "swarm.cronjob.schedule": fields,
                "swarm.cronjob.skip-running": skip.to_string(),
            });
            findings.install("swarm-cronjob (crazymax/swarm-cronjob), which starts the scheduled jobs by their labels");
            findings.not_done(format!(
                "the job `{}` also runs once when the stack is deployed",
                service.name
            ));
            if let Zone::Named(zone) = service.lifecycle.timezone {
                findings.not_done(format!(
                    "`{}` runs at `{fields}` in swarm-cronjob's zone: give swarm-cronjob TZ={}",
                    service.name,
                    zone.name()
                ));
            }
        }
        if service.lifecycle.max_runtime.is_some() {
            findings.lossy(
                At::value(&service.name, "dispenser.max_runtime"),
                "a run is not stopped after max_runtime: Swarm jobs have no deadline".into(),
                "no deadline",
                "make the program stop itself (for example with `timeout`)",
            );
        }
        return deploy;
    }
    deploy["mode"] = json!("replicated");
    deploy["replicas"] = json!(1);
    // Two tasks cannot publish one host port on a node: those start after the old one stops.
    let order = match spec.ports.is_empty() {
        true => "start-first",
        false => {
            findings.not_done(format!(
                "`{}` publishes a host port, so its updates are stop-first (a short outage)",
                service.name
            ));
            "stop-first"
        }
    };
    deploy["update_config"] = json!({
        "parallelism": 1,
        "order": order,
        "failure_action": "rollback",
        "monitor": soak,
    });
    deploy["rollback_config"] = json!({"parallelism": 1, "order": order});
    if service.lifecycle.schedule.is_some() {
        findings.lossy(
            At::value(&service.name, "dispenser.cron"),
            "cron restarts a long-running service: a Swarm service has no schedule".into(),
            "cron restart",
            "make it a job (`restart = \"no\"`), or restart it with swarm-cronjob's labels yourself",
        );
    }
    deploy
}

/// A top-level secret: the file a `file` secret reads, else an external
/// secret to create.
fn secret(
    input: &Input<'_>,
    variable: &str,
    source: &SecretRef,
    findings: &mut Findings<'_>,
) -> Value {
    match source {
        SecretRef::File { path } => {
            json!({"file": input.config_dir.join(path).display().to_string()})
        }
        SecretRef::Env { name } => {
            findings.install(format!("the Swarm secret `{variable}` (from `{name}` of Dispenser's environment): printf %s \"${name}\" | docker secret create {variable} -"));
            json!({"external": true, "name": variable})
        }
        SecretRef::Google { name, version } => {
            findings.install(format!("the Swarm secret `{variable}` (Google secret `{name}`, version `{version}`): {} | docker secret create {variable} -", mapping::gcloud_access(name, version)));
            json!({"external": true, "name": variable})
        }
    }
}

/// `docker stack deploy` interpolates `$NAME` and `${NAME}` in every string
/// of the file: each `$` of a value is written `$$`, which it reads as `$`.
fn escape_dollars(value: &mut Value) {
    match value {
        Value::String(text) if text.contains('$') => *text = text.replace('$', "$$"),
        Value::Array(items) => items.iter_mut().for_each(escape_dollars),
        Value::Object(map) => map.values_mut().for_each(escape_dollars),
        _ => {}
    }
}

/// Adds the config of one file of the service folder; returns its name. A
/// config is immutable: its name carries its content's hash, so a changed
/// file is a new config and rolls the service.
fn config(
    configs: &mut Map<String, Value>,
    service: &Service,
    relative: &str,
    bytes: &[u8],
) -> String {
    let digest = hex::encode(Sha256::digest(bytes));
    let name = format!(
        "{}-{}-{}",
        service.name,
        config_part(relative),
        &digest[..12]
    );
    let path = service.folder.join(relative);
    configs.insert(name.clone(), json!({"file": path.display().to_string()}));
    name
}

/// A config name's part for a file: letters, digits, `-`, `_` and `.`.
fn config_part(relative: &str) -> String {
    relative
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}
