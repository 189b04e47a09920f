//! Translates a `CreateRequest` into Docker's create-container body. Pure: no
//! I/O, so every field mapping is unit-tested without a daemon.
//!
//! Mounts: bind sources go into `HostConfig.Binds` (`src:target[:ro]`), where
//! Docker creates a missing source folder, as `docker run -v` does; named
//! volumes go into `HostConfig.Mounts` with type `volume`, so a volume name can
//! never be read as a path. Docker creates a missing named volume, with the
//! container's `dispenser.managed`, `dispenser.instance` and
//! `dispenser.service` labels, so a volume Dispenser caused to exist is told
//! apart from one it found (Dispenser removes neither).

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, HostConfigLogConfig,
    Mount as DockerMount, MountType, MountVolumeOptions, NetworkingConfig,
    PortBinding as DockerPortBinding, RestartPolicy as DockerRestart, RestartPolicyNameEnum,
};

use crate::engine::{labels, CreateRequest, EngineError};
use crate::plan::{ContainerSpec, Healthcheck, MountSource, RestartPolicy};

/// The `/etc/hosts` entry every container gets, so it can reach the host.
pub const HOST_GATEWAY_ENTRY: (&str, &str) = ("host.docker.internal", "host-gateway");

/// Builds the body of `POST /containers/create`. The container joins the
/// default network only; declared networks are connected after creation
/// (API 1.41 accepts a single network at create).
pub fn container_body(request: &CreateRequest<'_>) -> Result<ContainerCreateBody, EngineError> {
    let spec = &request.service.container;
    let alias = request.service.name.clone();

    let endpoints = HashMap::from([(
        request.default_network.name.clone(),
        endpoint_with_alias(&alias),
    )]);

    Ok(ContainerCreateBody {
        image: Some(request.image.original.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        env: Some(
            spec.env
                .iter()
                .map(|(key, value)| format!("{key}={}", value.expose()))
                .collect(),
        ),
        exposed_ports: Some(spec.ports.iter().map(|p| port_key(p.container)).collect()),
        healthcheck: spec.healthcheck.as_ref().map(health_config),
        stop_signal: spec.stop_signal.clone(),
        // Whole seconds, rounded up: Docker's unit. `docker stop` with no
        // timeout of its own (an operator's) then waits as long.
        stop_timeout: spec.stop_grace_period.map(|grace| {
            i64::try_from(grace.as_secs() + u64::from(grace.subsec_nanos() > 0)).unwrap_or(i64::MAX)
        }),
        labels: Some(
            request
                .labels
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        ),
        host_config: Some(host_config(request.name, spec, &volume_labels(request))?),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(endpoints),
        }),
        ..Default::default()
    })
}

/// An endpoint whose only setting is the service name as DNS alias.
pub fn endpoint_with_alias(alias: &str) -> EndpointSettings {
    EndpointSettings {
        aliases: Some(vec![alias.to_owned()]),
        ..Default::default()
    }
}

/// The labels a named volume gets when Docker creates it for this container.
fn volume_labels(request: &CreateRequest<'_>) -> HashMap<String, String> {
    [labels::MANAGED, labels::INSTANCE, labels::SERVICE]
        .into_iter()
        .filter_map(|key| {
            let value = request.labels.get(key)?;
            Some((key.to_owned(), value.clone()))
        })
        .collect()
}

fn host_config(
    container: &str,
    spec: &ContainerSpec,
    volume_labels: &HashMap<String, String>,
) -> Result<HostConfig, EngineError> {
    let mut binds = Vec::new();
    let mut mounts = Vec::new();
    for mount in &spec.volumes {
        match &mount.source {
            MountSource::Bind(path) => {
                let source = path.to_str().filter(|s| !s.contains(':')).ok_or_else(|| {
                    EngineError::Refused {
                        action: "create",
                        what: format!("container {container}"),
                        reason: format!(
                            "bind source {} is not UTF-8 or contains ':'",
                            path.display()
                        ),
                    }
                })?;
                let mode = if mount.readonly { ":ro" } else { "" };
                binds.push(format!("{source}:{}{mode}", mount.target));
            }
            MountSource::Volume(name) => mounts.push(DockerMount {
                target: Some(mount.target.clone()),
                source: Some(name.clone()),
                typ: Some(MountType::VOLUME),
                read_only: Some(mount.readonly),
                volume_options: Some(MountVolumeOptions {
                    labels: Some(volume_labels.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    let port_bindings = spec
        .ports
        .iter()
        .map(|port| {
            (
                port_key(port.container),
                // No HostIp: Docker's default binding, every host address.
                Some(vec![DockerPortBinding {
                    host_ip: None,
                    host_port: Some(port.host.to_string()),
                }]),
            )
        })
        .collect();

    let mut extra_hosts: Vec<String> = spec
        .extra_hosts
        .iter()
        .map(|host| format!("{}:{}", host.hostname, host.address))
        .collect();
    let (gateway_name, gateway_address) = HOST_GATEWAY_ENTRY;
    if !spec.extra_hosts.iter().any(|h| h.hostname == gateway_name) {
        extra_hosts.push(format!("{gateway_name}:{gateway_address}"));
    }

    Ok(HostConfig {
        binds: Some(binds),
        mounts: Some(mounts),
        memory: spec.memory_bytes.map(saturating_i64),
        nano_cpus: spec.nano_cpus.map(saturating_i64),
        restart_policy: Some(DockerRestart {
            name: Some(restart_name(spec.restart)),
            maximum_retry_count: None,
        }),
        port_bindings: Some(port_bindings),
        extra_hosts: Some(extra_hosts),
        log_config: Some(log_config(spec)),
        ..Default::default()
    })
}

/// The service's `[logging]`, or rotated `json-file` logs when it has none.
fn log_config(spec: &ContainerSpec) -> HostConfigLogConfig {
    let config = spec.log_config();
    HostConfigLogConfig {
        typ: Some(config.driver),
        config: Some(config.options.into_iter().collect()),
    }
}

fn health_config(check: &Healthcheck) -> HealthConfig {
    HealthConfig {
        test: Some(check.test.clone()),
        interval: check.interval.map(nanos),
        timeout: check.timeout.map(nanos),
        retries: check.retries.map(i64::from),
        start_period: check.start_period.map(nanos),
        start_interval: None,
    }
}

fn restart_name(policy: RestartPolicy) -> RestartPolicyNameEnum {
    match policy {
        RestartPolicy::No => RestartPolicyNameEnum::NO,
        RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
        RestartPolicy::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
        RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
    }
}

/// Docker's key for a TCP container port.
fn port_key(port: u16) -> String {
    format!("{port}/tcp")
}

fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
