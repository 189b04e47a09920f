//! Kubernetes manifests: a `Deployment` (start-first: `maxSurge: 1`,
//! `maxUnavailable: 0`, `minReadySeconds` = soak, a readiness probe, never a
//! liveness probe) or a `CronJob`/`Job` per service, a `Service` for the ports
//! others use, an `Ingress` per route with cert-manager, `ConfigMap`s for
//! files of the service folder, `PersistentVolumeClaim`s for named volumes,
//! `NetworkPolicy`s for internal networks, and `ExternalSecret`s for Google
//! Secret Manager. One file per service, plus `cluster.yaml` for what services
//! share. Watched images get Keel's annotations.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use dispenser::config::SecretRef;
use dispenser_actors::plan::{Overlap, PullPolicy, RestartPolicy, Service, TlsSource, Zone};

use super::findings::{At, Findings};
use super::mapping::{self, EnvValue, LocalContent, Source, MAX_DNS_LABEL};
use super::{Content, Input, OutputFile};

/// Longest CronJob name: the controller appends 11 characters to its Jobs.
pub const MAX_CRONJOB_NAME: usize = 52;
/// The ClusterIssuer `[certbot]` becomes.
const CLUSTER_ISSUER: &str = "dispenser-acme";
/// The key of the value in every Secret the export references.
const SECRET_KEY: &str = "value";
/// What each PersistentVolumeClaim asks for; the summary says to size it.
const VOLUME_SIZE: &str = "1Gi";
/// The pod template annotation that changes with the ConfigMaps' content.
const CONFIG_HASH: &str = "dispenser.io/config-hash";
/// The label key of the pods on a declared network.
const NETWORK_LABEL: &str = "dispenser.io/network-";

/// The manifests of the whole plan.
pub fn export(input: &Input<'_>, findings: &mut Findings<'_>) -> Vec<OutputFile> {
    let plan = input.plan;
    let names = names(input, findings);
    let ports = mapping::used_ports(plan, input.origins);
    let mut files = Vec::new();
    let mut cluster: Vec<Value> = Vec::new();
    let mut volumes: BTreeMap<String, Value> = BTreeMap::new();
    for service in plan.services.values() {
        let name = &names[&service.name];
        let mut documents = Vec::new();
        let service_ports: Vec<u16> = ports
            .get(&service.name)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default();
        let pod = pod(
            input,
            service,
            name,
            &service_ports,
            &mut documents,
            &mut volumes,
            findings,
        );
        documents.push(workload(input, service, name, pod, findings));
        if !service_ports.is_empty() && !mapping::is_job(service) {
            documents.push(kube_service(input, name, &service_ports));
        }
        if let Some(route) = &service.route {
            documents.push(ingress(input, name, route, findings));
            if let Some(gateway) = &input.gateway {
                documents.push(http_route(input, name, route, gateway));
                findings.install(format!(
                    "the Gateway API's CRDs and the Gateway `{gateway}` the HTTPRoutes attach to"
                ));
            }
        }
        depends_on(service, findings);
        named_without_ports(input, service, &ports, findings);
        files.push(OutputFile {
            name: format!("{name}.yaml"),
            content: Content::Yaml(documents),
        });
    }
    if let Some(acme) = &plan.acme {
        cluster.push(json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "ClusterIssuer",
            "metadata": {"name": CLUSTER_ISSUER, "labels": part_of(input)},
            "spec": {"acme": {
                "email": acme.email,
                "server": acme.directory_url,
                "privateKeySecretRef": {"name": format!("{CLUSTER_ISSUER}-account")},
                "solvers": solvers(plan, acme, findings),
            }},
        }));
        findings.install(
            "cert-manager, for the ClusterIssuer `dispenser-acme` and the Ingress certificates",
        );
        if acme.ca_bundle.is_some() {
            findings.not_done("[certbot] ca_bundle is not exported: give the ClusterIssuer a `caBundle` if the ACME server needs it");
        }
    }
    if !volumes.is_empty() {
        findings.install(format!("storage for the PersistentVolumeClaims (each asks for {VOLUME_SIZE}: size them), and their data copied in"));
    }
    cluster.extend(volumes.into_values());
    cluster.extend(network_policies(input));
    cluster.extend(secrets(input, findings));
    if !cluster.is_empty() {
        files.push(OutputFile {
            name: "cluster.yaml".into(),
            content: Content::Yaml(cluster),
        });
    }
    findings.not_done("a Deployment whose new pods never become ready stops after progressDeadlineSeconds and is not rolled back: run `kubectl rollout undo`");
    findings.not_done("after minReadySeconds nothing watches the new version: a crash later restarts it, it is never rolled back nor quarantined");
    files
}

/// The Kubernetes name of every service: its own when it is a DNS label
/// (a DNS-1035 one for a service with a Service), else refused or renamed.
fn names(input: &Input<'_>, findings: &mut Findings<'_>) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for service in input.plan.services.values() {
        let max = match service.lifecycle.schedule.is_some() && mapping::is_job(service) {
            true => MAX_CRONJOB_NAME,
            false => MAX_DNS_LABEL,
        };
        let mut problem = mapping::dns_label_problem(&service.name, max);
        if problem.is_none() && service.name.starts_with(|c: char| c.is_ascii_digit()) {
            problem = Some("it starts with a digit, which a Service name cannot".into());
        }
        let name = match problem {
            None => service.name.clone(),
            Some(problem) => {
                let mut renamed = mapping::to_dns_label(&service.name, max);
                if renamed.starts_with(|c: char| c.is_ascii_digit()) {
                    renamed = mapping::to_dns_label(&format!("s-{renamed}"), max);
                }
                findings.lossy(
                    At::value(&service.name, "service.name"),
                    format!(
                        "service name `{}` is not a Kubernetes name: {problem}",
                        service.name
                    ),
                    "not a DNS label",
                    &format!("rename the service; an export with --allow-lossy names it `{renamed}`, and other services that reach it by `{}` must be changed", service.name),
                );
                renamed
            }
        };
        names.insert(service.name.clone(), name);
    }
    names
}

/// The pod's labels.
fn labels(input: &Input<'_>, name: &str) -> Value {
    json!({
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": input.plan.settings.instance,
    })
}

fn part_of(input: &Input<'_>) -> Value {
    json!({"app.kubernetes.io/part-of": input.plan.settings.instance})
}

/// The pod template: its spec, labels and annotations. ConfigMaps go to
/// `documents`, PersistentVolumeClaims to `volumes` (shared by name).
fn pod(
    input: &Input<'_>,
    service: &Service,
    name: &str,
    ports: &[u16],
    documents: &mut Vec<Value>,
    volumes: &mut BTreeMap<String, Value>,
    findings: &mut Findings<'_>,
) -> Value {
    let spec = &service.container;
    let mut container = Map::new();
    container.insert("name".into(), json!(name));
    container.insert("image".into(), json!(spec.image.original));
    let pull = match (service.lifecycle.watch, service.lifecycle.pull) {
        (true, _) | (_, PullPolicy::Always) => "Always",
        (false, PullPolicy::OnStartup) => "IfNotPresent",
    };
    container.insert("imagePullPolicy".into(), json!(pull));
    if let Some(entrypoint) = &spec.entrypoint {
        container.insert("command".into(), json!(entrypoint));
    }
    if let Some(command) = &spec.command {
        container.insert("args".into(), json!(command));
    }
    if let Some(dir) = &spec.working_dir {
        container.insert("workingDir".into(), json!(dir));
    }
    let env = env(service, input, findings);
    if !env.is_empty() {
        container.insert("env".into(), Value::Array(env));
    }
    if !ports.is_empty() {
        let ports: Vec<Value> = ports
            .iter()
            .map(|port| json!({"containerPort": port, "protocol": "TCP"}))
            .collect();
        container.insert("ports".into(), Value::Array(ports));
    }
    let mut limits = Map::new();
    if let Some(bytes) = spec.memory_bytes {
        limits.insert("memory".into(), json!(quantity(bytes)));
    }
    if let Some(nano) = spec.nano_cpus {
        limits.insert(
            "cpu".into(),
            json!(format!("{}m", nano.div_ceil(1_000_000))),
        );
    }
    if !limits.is_empty() {
        container.insert("resources".into(), json!({"limits": limits}));
    }
    if let Some(probe) = readiness(service) {
        container.insert("readinessProbe".into(), probe);
    }
    if let Some(user) = &spec.user {
        match numeric_user(user) {
            Some((uid, gid)) => {
                let mut context = Map::new();
                context.insert("runAsUser".into(), json!(uid));
                if let Some(gid) = gid {
                    context.insert("runAsGroup".into(), json!(gid));
                }
                container.insert("securityContext".into(), Value::Object(context));
            }
            None => findings.lossy(
                At::value(&service.name, "service.user"),
                format!("user `{user}` is a name: Kubernetes takes numeric ids only"),
                "not numeric",
                "write the numeric uid (and gid) the image gives that user",
            ),
        }
    }
    for (index, port) in spec.ports.iter().enumerate() {
        findings.lossy(
            At::value(&service.name, &format!("port[{index}].host")),
            format!(
                "host port {} is not published on the nodes: Kubernetes reaches port {} through the Service `{name}`",
                port.host, port.container
            ),
            "host port",
            "expose it with a Service of type LoadBalancer or NodePort, or route it through [proxy]",
        );
    }
    if spec.logging.is_some() {
        findings.not_done(format!(
            "`{}`'s [logging] is not exported: the cluster's logging takes the container's output",
            service.name
        ));
    }
    if spec.stop_signal.is_some() {
        findings.lossy(
            At::value(&service.name, "service.stop_signal"),
            "a stop signal other than SIGTERM: Kubernetes sends SIGTERM".into(),
            "stop signal",
            "handle SIGTERM in the container, or add a preStop hook",
        );
    }
    let mut pod = Map::new();
    let mut mounts = Vec::new();
    let mut pod_volumes = Vec::new();
    let mut hash = Sha256::new();
    for (index, mount) in spec.volumes.iter().enumerate() {
        let key = format!("volume[{index}].source");
        let volume_name = format!("volume-{index}");
        let mut volume_mount = json!({"name": volume_name, "mountPath": mount.target});
        if mount.readonly {
            volume_mount["readOnly"] = json!(true);
        }
        match mapping::source(service, mount, input.local) {
            Source::Named(volume) => {
                let claim = mapping::to_dns_label(volume, MAX_DNS_LABEL);
                volumes
                    .entry(claim.clone())
                    .or_insert_with(|| self::claim(input, &claim));
                pod_volumes.push(
                    json!({"name": volume_name, "persistentVolumeClaim": {"claimName": claim}}),
                );
            }
            Source::Local { relative, content } => {
                let map_name = mapping::to_dns_label(&format!("{name}-{relative}"), MAX_DNS_LABEL);
                match content {
                    LocalContent::File(bytes) => {
                        if !mount.readonly {
                            findings.lossy(
                                At::value(&service.name, &key),
                                format!("`{relative}` is a writable file of the service folder: a ConfigMap is read-only"),
                                "writable bind mount",
                                "mount it read-only, or keep the data the container writes in a named volume",
                            );
                        }
                        let file_name = file_key(relative);
                        hash.update(bytes);
                        documents.push(config_map(
                            input,
                            &map_name,
                            &[(file_name.clone(), bytes.clone())],
                        ));
                        volume_mount["subPath"] = json!(file_name);
                        volume_mount["readOnly"] = json!(true);
                        pod_volumes
                            .push(json!({"name": volume_name, "configMap": {"name": map_name}}));
                    }
                    LocalContent::Folder { .. } if !mount.readonly => {
                        findings.lossy(
                            At::value(&service.name, &key),
                            format!("`{relative}` is a writable folder of the service folder: it becomes a PersistentVolumeClaim that starts empty"),
                            "writable bind mount",
                            "copy its files into the claim once, or use a named volume",
                        );
                        volumes
                            .entry(map_name.clone())
                            .or_insert_with(|| claim(input, &map_name));
                        pod_volumes.push(json!({"name": volume_name, "persistentVolumeClaim": {"claimName": map_name}}));
                    }
                    LocalContent::Folder { files, nested } => {
                        if *nested {
                            findings.lossy(
                                At::value(&service.name, &key),
                                format!("`{relative}` holds folders: a ConfigMap holds only the files at its top"),
                                "nested folder",
                                "flatten the folder, or build its content into the image",
                            );
                        }
                        let mut kept = Vec::new();
                        for (file, bytes) in files {
                            if file_key(file) != *file {
                                findings.lossy(
                                    At::value(&service.name, &key),
                                    format!("`{relative}/{file}` has a name no ConfigMap key can hold (letters, digits, `-`, `_` and `.` only): it is left out"),
                                    "file name",
                                    "rename the file",
                                );
                                continue;
                            }
                            hash.update(file.as_bytes());
                            hash.update(bytes);
                            kept.push((file.clone(), bytes.clone()));
                        }
                        documents.push(config_map(input, &map_name, &kept));
                        volume_mount["readOnly"] = json!(true);
                        pod_volumes
                            .push(json!({"name": volume_name, "configMap": {"name": map_name}}));
                    }
                    LocalContent::Missing => {
                        findings.lossy(
                            At::value(&service.name, &key),
                            format!("`{relative}` does not exist yet: it becomes an empty folder that lives as long as the pod"),
                            "missing folder",
                            "create it, or use a named volume",
                        );
                        pod_volumes.push(json!({"name": volume_name, "emptyDir": {}}));
                    }
                }
            }
            Source::Host(path) => {
                findings.host_path(
                    At::value(&service.name, &key),
                    format!("`{}` is a path on this host: on Kubernetes it is a path on whichever node runs the pod", path.display()),
                    "move the content into the service folder, a named volume or the image",
                );
                pod_volumes.push(
                    json!({"name": volume_name, "hostPath": {"path": path.display().to_string()}}),
                );
            }
        }
        mounts.push(volume_mount);
    }
    if !mounts.is_empty() {
        container.insert("volumeMounts".into(), Value::Array(mounts));
        pod.insert("volumes".into(), Value::Array(pod_volumes));
    }
    pod.insert("containers".into(), json!([container]));
    if let Some(hostname) = &spec.hostname {
        pod.insert("hostname".into(), json!(hostname));
    }
    if let Some(grace) = spec.stop_grace_period {
        pod.insert(
            "terminationGracePeriodSeconds".into(),
            json!(mapping::seconds(grace, 0)),
        );
    }
    let mut aliases: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (index, host) in spec.extra_hosts.iter().enumerate() {
        if host.address == "host-gateway" {
            findings.lossy(
                At::value(&service.name, &format!("extra_host[{index}].ipv4")),
                format!(
                    "`{}` points at host-gateway: a pod has no such address",
                    host.hostname
                ),
                "host-gateway",
                "reach the host's service through a Service of type ExternalName or its address",
            );
            continue;
        }
        aliases
            .entry(&host.address)
            .or_default()
            .push(&host.hostname);
    }
    if !aliases.is_empty() {
        let aliases: Vec<Value> = aliases
            .into_iter()
            .map(|(ip, hostnames)| json!({"ip": ip, "hostnames": hostnames}))
            .collect();
        pod.insert("hostAliases".into(), Value::Array(aliases));
    }
    let mut template_labels = labels(input, name);
    for network in &spec.networks {
        template_labels[format!("{NETWORK_LABEL}{}", label_part(network))] = json!("true");
    }
    let mut template = json!({"metadata": {"labels": template_labels}, "spec": pod});
    if documents.iter().any(|doc| doc["kind"] == "ConfigMap") {
        template["metadata"]["annotations"] = json!({CONFIG_HASH: hex::encode(hash.finalize())});
    }
    template
}

/// A PersistentVolumeClaim of [`VOLUME_SIZE`].
fn claim(input: &Input<'_>, name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": part_of(input)},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": VOLUME_SIZE}}},
    })
}

/// A ConfigMap of files: text in `data`, anything else in `binaryData`.
fn config_map(input: &Input<'_>, name: &str, files: &[(String, Vec<u8>)]) -> Value {
    let mut data = Map::new();
    let mut binary = Map::new();
    for (file, bytes) in files {
        match std::str::from_utf8(bytes) {
            Ok(text) => data.insert(file.clone(), json!(text)),
            Err(_) => binary.insert(file.clone(), json!(base64_encode(bytes))),
        };
    }
    let mut map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": part_of(input)},
    });
    if !data.is_empty() {
        map["data"] = Value::Object(data);
    }
    if !binary.is_empty() {
        map["binaryData"] = Value::Object(binary);
    }
    map
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The env list: plain values, and `secretKeyRef`s for secrets.
fn env(service: &Service, input: &Input<'_>, findings: &mut Findings<'_>) -> Vec<Value> {
    let mut list = Vec::new();
    for (key, value) in mapping::env(service, input.origins) {
        match value {
            EnvValue::Plain(text) => list.push(json!({"name": key, "value": text})),
            EnvValue::Secret { variable, .. } => list.push(json!({
                "name": key,
                "valueFrom": {"secretKeyRef": {"name": secret_name(variable), "key": SECRET_KEY}},
            })),
            EnvValue::Mixed => findings.lossy(
                At::value(&service.name, &format!("env.{key}")),
                format!("env `{key}` mixes a secret with other text: an export references whole secrets only, so it is left out"),
                "secret in text",
                "make the whole value one secret variable (`\"${ name }\"`)",
            ),
        }
    }
    list
}

/// The Secret a secret variable is read from.
fn secret_name(variable: &str) -> String {
    mapping::to_dns_label(variable, MAX_DNS_LABEL)
}

/// ExternalSecrets (and their stores) for Google secrets; the summary names
/// the Secrets to create for env and file ones.
fn secrets(input: &Input<'_>, findings: &mut Findings<'_>) -> Vec<Value> {
    let mut documents = Vec::new();
    let mut stores = BTreeMap::new();
    for (variable, source) in mapping::secrets(input.plan, input.origins) {
        let name = secret_name(variable);
        match source {
            SecretRef::Google { name: secret, version } => {
                let mut parts = secret.split('/');
                let project = parts.nth(1).unwrap_or_default().to_string();
                let id = parts.nth(1).unwrap_or_default().to_string();
                let store = format!("gcp-{}", mapping::to_dns_label(&project, 59));
                stores.insert(store.clone(), project);
                documents.push(json!({
                    "apiVersion": "external-secrets.io/v1",
                    "kind": "ExternalSecret",
                    "metadata": {"name": name, "labels": part_of(input)},
                    "spec": {
                        "refreshInterval": "1h",
                        "secretStoreRef": {"kind": "ClusterSecretStore", "name": store},
                        "target": {"name": name},
                        "data": [{"secretKey": SECRET_KEY, "remoteRef": {"key": id, "version": version}}],
                    },
                }));
                findings.install("external-secrets, with access to Google Secret Manager for the ClusterSecretStores (Workload Identity or a key in `auth`)");
            }
            SecretRef::Env { name: env } => findings.install(format!(
                "the Secret `{name}` (from `{env}` of Dispenser's environment): kubectl create secret generic {name} --from-literal={SECRET_KEY}=\"${env}\""
            )),
            SecretRef::File { path } => findings.install(format!(
                "the Secret `{name}` (from the file `{}`): kubectl create secret generic {name} --from-file={SECRET_KEY}={}",
                path.display(),
                path.display()
            )),
        }
    }
    for (store, project) in stores {
        documents.insert(
            0,
            json!({
                "apiVersion": "external-secrets.io/v1",
                "kind": "ClusterSecretStore",
                "metadata": {"name": store, "labels": part_of(input)},
                "spec": {"provider": {"gcpsm": {"projectID": project}}},
            }),
        );
    }
    documents
}

/// The readiness probe: `[healthcheck]`, else the route's `health_path`,
/// else a TCP connect to the route's port, as Dispenser's gate does.
fn readiness(service: &Service) -> Option<Value> {
    let mut probe = match (&service.container.healthcheck, &service.route) {
        (Some(check), _) if check.test.first().map(String::as_str) == Some("NONE") => return None,
        (Some(check), _) => {
            let command: Vec<String> = match check.test.first().map(String::as_str) {
                Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), check.test[1..].join(" ")],
                Some("CMD") => check.test[1..].to_vec(),
                _ => check.test.clone(),
            };
            let mut probe = json!({"exec": {"command": command}});
            if let Some(interval) = check.interval {
                probe["periodSeconds"] = json!(mapping::seconds(interval, 1));
            }
            if let Some(timeout) = check.timeout {
                probe["timeoutSeconds"] = json!(mapping::seconds(timeout, 1));
            }
            if let Some(retries) = check.retries {
                probe["failureThreshold"] = json!(retries.max(1));
            }
            if let Some(start) = check.start_period {
                probe["initialDelaySeconds"] = json!(mapping::seconds(start, 0));
            }
            probe
        }
        (None, Some(route)) => match &route.health_path {
            Some(path) => json!({"httpGet": {"path": path, "port": route.service_port}}),
            None => json!({"tcpSocket": {"port": route.service_port}}),
        },
        (None, None) => return None,
    };
    if probe.get("periodSeconds").is_none() {
        probe["periodSeconds"] = json!(2);
    }
    Some(probe)
}

/// The Deployment, CronJob or Job.
fn workload(
    input: &Input<'_>,
    service: &Service,
    name: &str,
    pod: Value,
    findings: &mut Findings<'_>,
) -> Value {
    let deploy = &input.plan.settings.deploy;
    let lifecycle = &service.lifecycle;
    if mapping::is_job(service) {
        let mut pod = pod;
        let restart = match service.container.restart {
            RestartPolicy::OnFailure => "OnFailure",
            _ => "Never",
        };
        pod["spec"]["restartPolicy"] = json!(restart);
        let mut job = json!({"backoffLimit": 0, "template": pod});
        if let Some(limit) = lifecycle.max_runtime {
            job["activeDeadlineSeconds"] = json!(mapping::seconds(limit, 1));
        }
        let Some(schedule) = &lifecycle.schedule else {
            findings.not_done(format!(
                "the Job `{name}` runs once when applied, not again on each new image"
            ));
            return json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": name, "labels": labels(input, name)},
                "spec": job,
            });
        };
        let mut spec = json!({
            "schedule": mapping::schedule(service, &schedule.expression, findings),
            "concurrencyPolicy": match lifecycle.overlap { Overlap::Skip => "Forbid", Overlap::Replace => "Replace" },
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": job},
        });
        match lifecycle.timezone {
            Zone::Named(zone) => spec["timeZone"] = json!(zone.name()),
            Zone::Local => findings.lossy(
                At::value(&service.name, "dispenser.cron"),
                format!("cron `{}` runs in this host's local time: a CronJob without `timeZone` runs in the controller's zone (usually UTC)", schedule.expression),
                "local time",
                "set `timezone` in [dispenser] or `[daemon] timezone` to an IANA zone",
            ),
        }
        return json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": name, "labels": labels(input, name)},
            "spec": spec,
        });
    }
    if let Some(schedule) = &lifecycle.schedule {
        findings.lossy(
            At::value(&service.name, "dispenser.cron"),
            format!(
                "cron `{}` restarts a long-running service: a Deployment has no schedule",
                schedule.expression
            ),
            "cron restart",
            "make it a job (`restart = \"no\"`), or restart it with a CronJob of your own",
        );
    }
    let soak = mapping::seconds(deploy.soak, 0);
    let mut metadata = json!({"name": name, "labels": labels(input, name)});
    if lifecycle.watch {
        metadata["annotations"] = json!({
            "keel.sh/policy": "force",
            "keel.sh/match-tag": "true",
            "keel.sh/trigger": "poll",
            "keel.sh/pollSchedule": format!("@every {}s", input.plan.settings.poll_delay.as_secs().max(1)),
        });
        findings
            .install("Keel (keel.sh), to redeploy watched services on a new digest of their tag");
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "minReadySeconds": soak,
            "progressDeadlineSeconds": soak + mapping::seconds(deploy.ready_timeout, 1),
            "selector": {"matchLabels": labels(input, name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": pod,
        },
    })
}

fn kube_service(input: &Input<'_>, name: &str, ports: &[u16]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|port| json!({"name": format!("tcp-{port}"), "port": port, "targetPort": port, "protocol": "TCP"}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(input, name)},
        "spec": {"selector": labels(input, name), "ports": ports},
    })
}

fn ingress(
    input: &Input<'_>,
    name: &str,
    route: &dispenser_actors::plan::Route,
    findings: &mut Findings<'_>,
) -> Value {
    let mut ingress = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "labels": labels(input, name)},
        "spec": {"rules": [{"host": route.host, "http": {"paths": [{
            "path": route.path,
            "pathType": "Prefix",
            "backend": {"service": {"name": name, "port": {"number": route.service_port}}},
        }]}}]},
    });
    let http_only = input
        .plan
        .proxy
        .as_ref()
        .is_some_and(|proxy| proxy.strategy == dispenser_actors::plan::ProxyStrategy::HttpOnly);
    findings.install("an ingress controller (ingress-nginx, Traefik, ...) for the Ingresses");
    if http_only {
        return ingress;
    }
    // `*.example.com` and `example.com` each get their own Secret.
    let label = match route.host.strip_prefix("*.") {
        Some(parent) => format!("wildcard-{parent}"),
        None => route.host.clone(),
    };
    let secret = format!("{}-tls", mapping::to_dns_label(&label, 59));
    ingress["spec"]["tls"] = json!([{"hosts": [route.host], "secretName": secret}]);
    match &route.tls {
        TlsSource::Automatic if input.plan.acme.is_some() => {
            ingress["metadata"]["annotations"] = json!({"cert-manager.io/cluster-issuer": CLUSTER_ISSUER});
        }
        TlsSource::Automatic => findings.not_done(format!(
            "no certificate is issued for `{}`: Dispenser served a self-signed one; the ingress controller serves its default",
            route.host
        )),
        TlsSource::Manual { cert_file, key_file } => findings.install(format!(
            "the TLS Secret `{secret}` for `{}`: kubectl create secret tls {secret} --cert={} --key={}",
            route.host,
            cert_file.display(),
            key_file.display()
        )),
    }
    ingress
}

/// An HTTPRoute for the route, attached to `gateway` (`--gateway`).
fn http_route(
    input: &Input<'_>,
    name: &str,
    route: &dispenser_actors::plan::Route,
    gateway: &str,
) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "labels": labels(input, name)},
        "spec": {
            "parentRefs": [{"name": gateway}],
            "hostnames": [route.host],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": route.path}}],
                "backendRefs": [{"name": name, "port": route.service_port}],
            }],
        },
    })
}

/// One NetworkPolicy per internal network: its members admit traffic from
/// members only.
fn network_policies(input: &Input<'_>) -> Vec<Value> {
    input
        .plan
        .networks
        .values()
        .filter(|network| network.internal)
        .map(|network| {
            let label = format!("{NETWORK_LABEL}{}", label_part(&network.name));
            json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": mapping::to_dns_label(&network.name, MAX_DNS_LABEL), "labels": part_of(input)},
                "spec": {
                    "podSelector": {"matchLabels": {label.clone(): "true"}},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {label: "true"}}}]}],
                },
            })
        })
        .collect()
}

/// `depends_on`: no target waits for a dependency.
fn depends_on(service: &Service, findings: &mut Findings<'_>) {
    for (dependency, condition) in &service.depends_on {
        findings.lossy(
            At::key(&service.name, &format!("depends_on.{dependency}")),
            format!(
                "`{}` waits for `{dependency}` ({}): Kubernetes starts every workload at once",
                service.name,
                serde_json::to_value(condition).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            ),
            "not enforced",
            "make the service retry until its dependency answers (the readiness probe keeps traffic away meanwhile), or add an init container that waits",
        );
    }
}

/// A service that another names as a host but that has no known port gets
/// no Service, so the name does not resolve.
fn named_without_ports(
    input: &Input<'_>,
    service: &Service,
    ports: &BTreeMap<String, std::collections::BTreeSet<u16>>,
    findings: &mut Findings<'_>,
) {
    for target in input.plan.services.values() {
        if target.name == service.name || ports.get(&target.name).is_some_and(|set| !set.is_empty())
        {
            continue;
        }
        if let Some(key) = mapping::named_without_port(service, &target.name, input.origins) {
            findings.lossy(
                At::value(&service.name, &key),
                format!("`{}` reaches `{}` by name, but no port of `{}` is known: no Service is written, so the name does not resolve", service.name, target.name, target.name),
                "no port known",
                &format!("write the port where the name is used (`{}:PORT`), or publish it", target.name),
            );
        }
    }
}

/// `1000` or `1000:1000`.
fn numeric_user(user: &str) -> Option<(u32, Option<u32>)> {
    match user.split_once(':') {
        Some((uid, gid)) => Some((uid.parse().ok()?, Some(gid.parse().ok()?))),
        None => Some((user.parse().ok()?, None)),
    }
}

/// Bytes as a Kubernetes quantity (`64Mi` when exact).
fn quantity(bytes: u64) -> String {
    for (unit, size) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// A ConfigMap key for a file: its name, other characters as `-`.
fn file_key(relative: &str) -> String {
    let name = relative.rsplit('/').next().unwrap_or(relative);
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A label key's name part: letters, digits, `-`, `_`, `.`, at most 40.
fn label_part(name: &str) -> String {
    let part: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    part.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The Secret, in cert-manager's namespace, that the DNS-01 solver reads its
/// credential from; the credential itself is never exported.
const DNS_CREDENTIALS_SECRET: &str = "dispenser-acme-dns";

/// The ClusterIssuer's solvers: HTTP-01 through the Ingress by default, and
/// with `[certbot.dns]` a DNS-01 solver of the same provider for the names
/// that use DNS-01 (all of them when no route uses another challenge).
fn solvers(
    plan: &dispenser_actors::plan::Plan,
    acme: &dispenser_actors::plan::AcmeSettings,
    findings: &mut Findings<'_>,
) -> Value {
    use dispenser_actors::plan::{Challenge, DnsProviderSettings, TsigAlgorithm};
    let http01 = json!({"http01": {"ingress": {}}});
    let Some(dns) = &acme.dns else {
        return json!([http01]);
    };
    let automatic = || {
        plan.services
            .values()
            .filter_map(|service| service.route.as_ref())
            .filter(|route| route.tls == TlsSource::Automatic)
    };
    let dns_names: Vec<&str> = automatic()
        .filter(|route| route.challenge_or(acme.challenge) == Challenge::Dns01)
        .flat_map(|route| route.names())
        .collect();
    let others = automatic().any(|route| route.challenge_or(acme.challenge) != Challenge::Dns01);
    let provider = match &dns.provider {
        DnsProviderSettings::Rfc2136 {
            server,
            key_name,
            algorithm,
            ..
        } => json!({"rfc2136": {
            "nameserver": server,
            "tsigKeyName": key_name.trim_end_matches('.'),
            "tsigAlgorithm": match algorithm {
                TsigAlgorithm::HmacSha256 => "HMACSHA256",
                TsigAlgorithm::HmacSha384 => "HMACSHA384",
                TsigAlgorithm::HmacSha512 => "HMACSHA512",
            },
            "tsigSecretSecretRef": dns_credential(findings, "secret"),
        }}),
        DnsProviderSettings::Google { project, .. } => {
            findings.not_done("cert-manager's Cloud DNS solver needs credentials of its own (Workload Identity, or a `serviceAccountSecretRef`): the daemon's Application Default Credentials are not exported");
            json!({"cloudDNS": {"project": project}})
        }
        DnsProviderSettings::Cloudflare { .. } => {
            json!({"cloudflare": {"apiTokenSecretRef": dns_credential(findings, "api-token")}})
        }
    };
    let mut dns01 = json!({"dns01": provider});
    if !others {
        return json!([dns01]);
    }
    dns01["selector"] = json!({"dnsNames": dns_names});
    json!([http01, dns01])
}

/// A reference to the DNS-01 credential's Secret, and the finding that says
/// to create it.
fn dns_credential(findings: &mut Findings<'_>, key: &str) -> Value {
    findings.not_done(format!(
        "create the Secret `{DNS_CREDENTIALS_SECRET}` (key `{key}`) in cert-manager's namespace for the DNS-01 solver: the credential is not exported"
    ));
    json!({"name": DNS_CREDENTIALS_SECRET, "key": key})
}
