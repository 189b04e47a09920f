//! Nomad job files, one per service (`NAME.nomad.hcl`): a `service` job whose
//! update is a canary that promotes itself once healthy for the soak and
//! reverts on failure (`canary`, `auto_promote`, `auto_revert`,
//! `min_healthy_time` = soak), or a `batch` job, `periodic` for cron. Checks
//! come from `[healthcheck]` (script checks, which need Consul) or the route
//! (http or tcp). Secrets come from Nomad Variables through a `template` with
//! `env = true`; files of the service folder are `template`s too. Built with
//! hcl-rs and written with its formatter. Untested against a real Nomad (none
//! can be installed here): golden files and an HCL round trip check it.
//! hcl-rs's formatter writes `${` and `%{` of a string as `$${` and `%%{`, so
//! no value is read as an HCL template.

use hcl::{Block, Body, Expression};

use dispenser::config::SecretRef;
use dispenser_actors::plan::{Overlap, RestartPolicy, Service, Zone};

use super::findings::{At, Findings};
use super::mapping::{self, EnvValue, LocalContent, Source};
use super::{Content, Input, OutputFile};

/// Where a task's secrets are rendered (`secrets/` is private to the task).
const SECRETS_FILE: &str = "secrets/dispenser.env";

/// The job files of the whole plan.
pub fn export(input: &Input<'_>, findings: &mut Findings<'_>) -> Vec<OutputFile> {
    let ports = mapping::used_ports(input.plan, input.origins);
    let mut files = Vec::new();
    for service in input.plan.services.values() {
        let service_ports: Vec<u16> = ports
            .get(&service.name)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default();
        let job = job(input, service, &service_ports, findings);
        let body = Body::builder().add_block(job).build();
        // Formatting a body as a string cannot fail.
        let text = hcl::format::to_string(&body).unwrap_or_default();
        files.push(OutputFile {
            name: format!("{}.nomad.hcl", service.name),
            content: Content::Text(text),
        });
    }
    findings.not_done("services do not reach each other by name: find them through Consul DNS (`NAME.service.consul`) or `nomadService` templates");
    findings.not_done(
        "a new digest of a tag is not deployed on its own: run `nomad job run` again from CI",
    );
    findings.not_done(
        "these job files are untested against a real Nomad: run `nomad job validate` on each",
    );
    files
}

fn job(input: &Input<'_>, service: &Service, ports: &[u16], findings: &mut Findings<'_>) -> Block {
    let lifecycle = &service.lifecycle;
    let mut job = Block::builder("job")
        .add_label(service.name.as_str())
        .add_attribute((
            "type",
            if mapping::is_job(service) {
                "batch"
            } else {
                "service"
            },
        ))
        .add_block(
            Block::builder("meta")
                .add_attribute(("dispenser_instance", input.plan.settings.instance.as_str()))
                .build(),
        );
    if mapping::is_job(service) {
        if let Some(schedule) = &lifecycle.schedule {
            let fields = mapping::schedule(service, &schedule.expression, findings);
            let mut periodic = Block::builder("periodic")
                .add_attribute(("crons", Expression::Array(vec![fields.into()])))
                .add_attribute(("prohibit_overlap", lifecycle.overlap == Overlap::Skip));
            match lifecycle.timezone {
                Zone::Named(zone) => periodic = periodic.add_attribute(("time_zone", zone.name())),
                Zone::Local => findings.lossy(
                    At::value(&service.name, "dispenser.cron"),
                    format!("cron `{}` runs in this host's local time: a periodic job without `time_zone` runs in UTC", schedule.expression),
                    "local time",
                    "set `timezone` in [dispenser] or `[daemon] timezone` to an IANA zone",
                ),
            }
            if lifecycle.overlap == Overlap::Replace {
                findings.lossy(
                    At::value(&service.name, "dispenser.cron"),
                    "overlap = \"replace\": a periodic job cannot stop the run before it; the new run starts beside it".into(),
                    "overlap",
                    "use overlap = \"skip\" (prohibit_overlap)",
                );
            }
            job = job.add_block(periodic.build());
        }
        if lifecycle.max_runtime.is_some() {
            findings.lossy(
                At::value(&service.name, "dispenser.max_runtime"),
                "a run is not stopped after max_runtime: a Nomad batch job has no deadline".into(),
                "no deadline",
                "make the program stop itself (for example with `timeout`)",
            );
        }
    } else if let Some(schedule) = &lifecycle.schedule {
        findings.lossy(
            At::value(&service.name, "dispenser.cron"),
            format!(
                "cron `{}` restarts a long-running service: a Nomad service job has no schedule",
                schedule.expression
            ),
            "cron restart",
            "make it a job (`restart = \"no\"`)",
        );
    }
    for dependency in service.depends_on.keys() {
        findings.lossy(
            At::key(&service.name, &format!("depends_on.{dependency}")),
            format!("`{}` waits for `{dependency}`: Nomad runs every job on its own", service.name),
            "not enforced",
            "make the service retry until its dependency answers, or put both in one job with a prestart task",
        );
    }
    if lifecycle.watch {
        findings.lossy(
            At::value(&service.name, "dispenser.watch"),
            "the registry is not watched: Nomad deploys a new digest only when the job is run again".into(),
            "not watched",
            "run `nomad job run` from CI on a new digest",
        );
    }
    job.add_block(group(input, service, ports, findings))
        .build()
}

fn group(
    input: &Input<'_>,
    service: &Service,
    ports: &[u16],
    findings: &mut Findings<'_>,
) -> Block {
    let deploy = &input.plan.settings.deploy;
    let spec = &service.container;
    let mut group = Block::builder("group")
        .add_label(service.name.as_str())
        .add_attribute(("count", 1));
    if !mapping::is_job(service) {
        let soak = mapping::seconds(deploy.soak, 0);
        let healthy = soak + mapping::seconds(deploy.ready_timeout, 1);
        let health_check = match ports.is_empty() {
            true => "task_states",
            false => "checks",
        };
        group = group.add_block(
            Block::builder("update")
                .add_attribute(("max_parallel", 1))
                .add_attribute(("canary", 1))
                .add_attribute(("auto_promote", true))
                .add_attribute(("auto_revert", true))
                .add_attribute(("health_check", health_check))
                .add_attribute(("min_healthy_time", format!("{soak}s")))
                .add_attribute(("healthy_deadline", format!("{healthy}s")))
                .add_attribute(("progress_deadline", format!("{}s", healthy + 60)))
                .build(),
        );
        if !spec.ports.is_empty() {
            findings.not_done(format!("`{}` publishes a static host port: its canary must run on another client than the old allocation", service.name));
        }
    }
    let (attempts, mode) = match spec.restart {
        RestartPolicy::No => (0, "fail"),
        _ => (3, "delay"),
    };
    group = group.add_block(
        Block::builder("restart")
            .add_attribute(("attempts", attempts))
            .add_attribute(("mode", mode))
            .build(),
    );
    if !ports.is_empty() {
        let mut network = Block::builder("network").add_attribute(("mode", "bridge"));
        for port in ports {
            let mut block = Block::builder("port")
                .add_label(port_label(*port))
                .add_attribute(("to", i64::from(*port)));
            if let Some(published) = spec.ports.iter().find(|binding| binding.container == *port) {
                block = block.add_attribute(("static", i64::from(published.host)));
            }
            network = network.add_block(block.build());
        }
        group = group.add_block(network.build());
        group = group.add_block(nomad_service(input, service, ports, findings));
    }
    for (index, mount) in spec.volumes.iter().enumerate() {
        if let Source::Named(name) = mapping::source(service, mount, input.local) {
            group = group.add_block(
                Block::builder("volume")
                    .add_label(format!("volume-{index}"))
                    .add_attribute(("type", "host"))
                    .add_attribute(("source", name))
                    .add_attribute(("read_only", mount.readonly))
                    .build(),
            );
            findings.install(format!("the host volume `{name}` in the client configuration of each Nomad client that may run it"));
        }
    }
    for (index, network) in spec.networks.iter().enumerate() {
        findings.lossy(
            At::value(&service.name, &format!("network[{index}].name")),
            format!("network `{network}`: Nomad groups share no Docker network; each group has its own bridge"),
            "network",
            "reach other services through their published ports and service discovery",
        );
    }
    group
        .add_block(task(input, service, ports, findings))
        .build()
}

/// The group's `service` block with its check and, for a route, Traefik's tags.
fn nomad_service(
    input: &Input<'_>,
    service: &Service,
    ports: &[u16],
    findings: &mut Findings<'_>,
) -> Block {
    let port = service
        .route
        .as_ref()
        .map_or(ports[0], |route| route.service_port);
    let mut block = Block::builder("service")
        .add_attribute(("name", service.name.as_str()))
        .add_attribute(("port", port_label(port)));
    let mut provider = "nomad";
    let check = match (&service.container.healthcheck, &service.route) {
        (Some(check), _) if check.test.first().map(String::as_str) == Some("NONE") => None,
        (Some(check), _) => {
            provider = "consul";
            findings.install("Consul, for the script checks made from [healthcheck] (Nomad's own service provider has http and tcp checks only)");
            let (command, args): (String, Vec<String>) =
                match check.test.first().map(String::as_str) {
                    Some("CMD-SHELL") => (
                        "/bin/sh".into(),
                        vec!["-c".into(), check.test[1..].join(" ")],
                    ),
                    _ => (
                        check.test.get(1).cloned().unwrap_or_default(),
                        check.test.iter().skip(2).cloned().collect(),
                    ),
                };
            let args: Vec<Expression> = args.into_iter().map(Expression::String).collect();
            Some(
                Block::builder("check")
                    .add_attribute(("type", "script"))
                    .add_attribute(("task", service.name.as_str()))
                    .add_attribute(("command", command.as_str()))
                    .add_attribute(("args", Expression::Array(args)))
                    .add_attribute((
                        "interval",
                        mapping::docker_duration(
                            check.interval.unwrap_or(std::time::Duration::from_secs(30)),
                        ),
                    ))
                    .add_attribute((
                        "timeout",
                        mapping::docker_duration(
                            check.timeout.unwrap_or(std::time::Duration::from_secs(30)),
                        ),
                    ))
                    .build(),
            )
        }
        (None, Some(route)) => {
            let mut check = Block::builder("check")
                .add_attribute(("interval", "2s"))
                .add_attribute(("timeout", "2s"));
            check = match &route.health_path {
                Some(path) => check
                    .add_attribute(("type", "http"))
                    .add_attribute(("path", path.as_str())),
                None => check.add_attribute(("type", "tcp")),
            };
            Some(check.build())
        }
        (None, None) => None,
    };
    block = block.add_attribute(("provider", provider));
    if let Some(route) = &service.route {
        let router = format!("traefik.http.routers.{}", service.name);
        let mut tags = vec![
            "traefik.enable=true".to_string(),
            format!(
                "{router}.rule={} && PathPrefix(`{}`)",
                traefik_host(&route.host),
                route.path
            ),
        ];
        if input.plan.acme.is_some() {
            tags.push(format!("{router}.tls.certresolver=dispenser"));
        }
        let tags: Vec<Expression> = tags
            .iter()
            .map(|tag| Expression::String(tag.clone()))
            .collect();
        block = block.add_attribute(("tags", Expression::Array(tags)));
        findings.install("Traefik with its Nomad (or Consul) provider, for the routes (tags on each service; a `dispenser` certificate resolver for ACME)");
    }
    if let Some(check) = check {
        block = block.add_block(check);
    }
    block.build()
}

fn task(input: &Input<'_>, service: &Service, ports: &[u16], findings: &mut Findings<'_>) -> Block {
    let spec = &service.container;
    let mut config =
        Block::builder("config").add_attribute(("image", spec.image.original.as_str()));
    if let Some(entrypoint) = &spec.entrypoint {
        config = config.add_attribute(("entrypoint", strings(entrypoint)));
    }
    if let Some(command) = &spec.command {
        config = config.add_attribute(("args", strings(command)));
    }
    if let Some(dir) = &spec.working_dir {
        config = config.add_attribute(("work_dir", dir.as_str()));
    }
    if let Some(hostname) = &spec.hostname {
        config = config.add_attribute(("hostname", hostname.as_str()));
    }
    if !ports.is_empty() {
        let labels: Vec<Expression> = ports.iter().map(|port| port_label(*port).into()).collect();
        config = config.add_attribute(("ports", Expression::Array(labels)));
    }
    if !spec.extra_hosts.is_empty() {
        let hosts: Vec<Expression> = spec
            .extra_hosts
            .iter()
            .map(|host| Expression::String(format!("{}:{}", host.hostname, host.address)))
            .collect();
        config = config.add_attribute(("extra_hosts", Expression::Array(hosts)));
    }
    let logging = spec.log_config();
    let mut options = Block::builder("config");
    for (key, value) in &logging.options {
        match hcl::Identifier::new(key.as_str()) {
            Ok(identifier) => options = options.add_attribute((identifier, value.as_str())),
            Err(_) => findings.lossy(
                At::key(&service.name, &format!("logging.options.{key}")),
                format!(
                    "log option `{key}` is no HCL identifier: Nomad's logging block cannot hold it"
                ),
                "log option",
                "set it in the Nomad client's Docker plugin configuration",
            ),
        }
    }
    config = config.add_block(
        Block::builder("logging")
            .add_attribute(("type", logging.driver.as_str()))
            .add_block(options.build())
            .build(),
    );
    let mut task = Block::builder("task")
        .add_label(service.name.as_str())
        .add_attribute(("driver", "docker"));
    if let Some(user) = &spec.user {
        task = task.add_attribute(("user", user.as_str()));
    }
    if let Some(signal) = &spec.stop_signal {
        task = task.add_attribute(("kill_signal", signal.as_str()));
    }
    if let Some(grace) = spec.stop_grace_period {
        task = task.add_attribute(("kill_timeout", mapping::docker_duration(grace)));
    }
    let mut templates = Vec::new();
    let mut volume_mounts = Vec::new();
    for (index, mount) in spec.volumes.iter().enumerate() {
        let key = format!("volume[{index}].source");
        match mapping::source(service, mount, input.local) {
            Source::Named(_) => volume_mounts.push(
                Block::builder("volume_mount")
                    .add_attribute(("volume", format!("volume-{index}")))
                    .add_attribute(("destination", mount.target.as_str()))
                    .add_attribute(("read_only", mount.readonly))
                    .build(),
            ),
            Source::Local { relative, content } => {
                let files: Vec<(String, &[u8])> = match content {
                    LocalContent::File(bytes) => vec![(String::new(), bytes.as_slice())],
                    LocalContent::Folder { files, nested } => {
                        if *nested {
                            findings.lossy(At::value(&service.name, &key), format!("`{relative}` holds folders: only the files at its top become templates"), "nested folder", "flatten the folder, or build its content into the image");
                        }
                        files
                            .iter()
                            .map(|(name, bytes)| (format!("/{name}"), bytes.as_slice()))
                            .collect()
                    }
                    LocalContent::Missing => Vec::new(),
                };
                if !mount.readonly {
                    findings.lossy(At::value(&service.name, &key), format!("`{relative}` is writable: a template is rendered anew on each allocation, and what the task writes is lost with it"), "writable bind mount", "mount it read-only, or keep the data in a host volume");
                }
                let local = format!("local/{relative}");
                for (suffix, bytes) in files {
                    match std::str::from_utf8(bytes) {
                        Ok(text) => templates.push(
                            Block::builder("template")
                                .add_attribute(("data", text))
                                .add_attribute(("destination", format!("{local}{suffix}").as_str()))
                                .add_attribute(("left_delimiter", "[[dispenser-none[["))
                                .add_attribute(("right_delimiter", "]]dispenser-none]]"))
                                .build(),
                        ),
                        Err(_) => findings.lossy(
                            At::value(&service.name, &key),
                            format!("`{relative}{suffix}` is not text: a template holds text only"),
                            "binary file",
                            "build it into the image, or fetch it with an `artifact` block",
                        ),
                    }
                }
                config = config.add_block(
                    Block::builder("mount")
                        .add_attribute(("type", "bind"))
                        .add_attribute(("source", local.as_str()))
                        .add_attribute(("target", mount.target.as_str()))
                        .add_attribute(("readonly", mount.readonly))
                        .build(),
                );
            }
            Source::Host(path) => {
                findings.host_path(
                    At::value(&service.name, &key),
                    format!("`{}` is a path on this host: on Nomad it is a path on whichever client runs the task", path.display()),
                    "move the content into the service folder, a host volume or the image",
                );
                config = config.add_block(
                    Block::builder("mount")
                        .add_attribute(("type", "bind"))
                        .add_attribute(("source", path.display().to_string()))
                        .add_attribute(("target", mount.target.as_str()))
                        .add_attribute(("readonly", mount.readonly))
                        .build(),
                );
            }
        }
    }
    task = task.add_block(config.build());
    let mut env = Block::builder("env");
    let mut plain = 0;
    let mut secret_lines = String::new();
    for (key, value) in mapping::env(service, input.origins) {
        let identifier = hcl::Identifier::new(key);
        match (value, identifier) {
            (_, Err(_)) => findings.lossy(At::key(&service.name, &format!("env.{key}")), format!("env `{key}` is no HCL identifier: Nomad's env block cannot hold it"), "env key", "rename the variable (letters, digits, `_` and `-`)"),
            (EnvValue::Plain(text), Ok(identifier)) => {
                env = env.add_attribute((identifier, text));
                plain += 1;
            }
            (EnvValue::Secret { variable, source }, Ok(_)) => {
                secret_lines.push_str(&format!("{key}={{{{ .{variable} }}}}\n"));
                let how = match source {
                    SecretRef::Env { name } => format!("{variable}=\"${name}\""),
                    SecretRef::File { path } => format!("{variable}=@{}", input.config_dir.join(path).display()),
                    SecretRef::Google { name, version } => format!("{variable}=\"$({})\"", mapping::gcloud_access(name, version)),
                };
                findings.install(format!("the Nomad Variable `{variable}` of job `{}`: nomad var put -force nomad/jobs/{} {how}", service.name, service.name));
            }
            (EnvValue::Mixed, Ok(_)) => findings.lossy(
                At::value(&service.name, &format!("env.{key}")),
                format!("env `{key}` mixes a secret with other text: an export references whole secrets only, so it is left out"),
                "secret in text",
                "make the whole value one secret variable (`\"${ name }\"`)",
            ),
        }
    }
    if plain > 0 {
        task = task.add_block(env.build());
    }
    if !secret_lines.is_empty() {
        let data = format!(
            "{{{{ with nomadVar \"nomad/jobs/{}\" }}}}\n{secret_lines}{{{{ end }}}}\n",
            service.name
        );
        templates.push(
            Block::builder("template")
                .add_attribute(("data", data.as_str()))
                .add_attribute(("destination", SECRETS_FILE))
                .add_attribute(("env", true))
                .build(),
        );
    }
    task = task.add_blocks(templates).add_blocks(volume_mounts);
    let mut resources = Block::builder("resources");
    let mut any = false;
    if let Some(bytes) = spec.memory_bytes {
        resources = resources.add_attribute(("memory", (bytes.div_ceil(1 << 20)) as i64));
        any = true;
    }
    if let Some(nano) = spec.nano_cpus {
        // Nomad counts CPU in MHz; 1000 MHz stands for one CPU here.
        resources = resources.add_attribute(("cpu", (nano / 1_000_000).max(1) as i64));
        findings.not_done(format!("`{}`'s cpus become MHz (1 CPU = 1000 MHz): Nomad shares CPU by MHz, it does not cap it like Docker", service.name));
        any = true;
    }
    if any {
        task = task.add_block(resources.build());
    }
    task.build()
}

/// A port's label in `network` and `ports`.
fn port_label(port: u16) -> String {
    format!("p{port}")
}

fn strings(list: &[String]) -> Expression {
    Expression::Array(
        list.iter()
            .map(|item| Expression::String(item.clone()))
            .collect(),
    )
}

/// Traefik's rule for a route host: `Host` for a name, `HostRegexp` (Traefik
/// v3 syntax) for a wildcard, which stands for one label.
fn traefik_host(host: &str) -> String {
    match host.strip_prefix("*.") {
        Some(parent) => format!(
            "HostRegexp(`^[a-z0-9-]+\\.{}$`)",
            parent.replace('.', "\\.")
        ),
        None => format!("Host(`{host}`)"),
    }
}
