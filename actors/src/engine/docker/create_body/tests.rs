//! Tests of the ContainerSpec to create-body translation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::models::{MountType, RestartPolicyNameEnum};

use super::*;
use crate::plan::{
    DefaultNetwork, ExtraHost, ImageRef, Initialize, Lifecycle, Mount, PortBinding, PullPolicy,
    Sensitive, Service, DEFAULT_NETWORK_GATEWAY,
};

fn spec() -> ContainerSpec {
    ContainerSpec {
        image: ImageRef {
            original: "example/app:1".into(),
            registry: "docker.io".into(),
            repository: "example/app".into(),
            tag: Some("1".into()),
            digest: None,
        },
        command: Some(vec!["run".into()]),
        entrypoint: Some(vec!["/bin/app".into()]),
        working_dir: Some("/srv".into()),
        user: Some("65534".into()),
        hostname: Some("apphost".into()),
        memory_bytes: Some(64 * 1024 * 1024),
        nano_cpus: Some(500_000_000),
        restart: RestartPolicy::UnlessStopped,
        ports: vec![PortBinding {
            host: 8080,
            container: 80,
        }],
        volumes: vec![
            Mount {
                source: MountSource::Bind(PathBuf::from("/srv/conf")),
                target: "/conf".into(),
                readonly: true,
            },
            Mount {
                source: MountSource::Volume("data".into()),
                target: "/data".into(),
                readonly: false,
            },
        ],
        env: BTreeMap::from([("TOKEN".into(), Sensitive::new("s3cret"))]),
        networks: vec!["backend".into()],
        extra_hosts: vec![ExtraHost {
            hostname: "db".into(),
            address: "10.0.0.5".into(),
        }],
        healthcheck: Some(Healthcheck {
            test: vec!["CMD".into(), "true".into()],
            interval: Some(Duration::from_secs(2)),
            timeout: Some(Duration::from_millis(1500)),
            retries: Some(3),
            start_period: None,
        }),
        stop_signal: Some("SIGQUIT".into()),
        stop_grace_period: Some(Duration::from_millis(2500)),
        logging: None,
    }
}

fn service(container: ContainerSpec) -> Service {
    Service {
        name: "app".into(),
        folder: PathBuf::from("/srv"),
        container,
        lifecycle: Lifecycle {
            watch: false,
            initialize: Initialize::Immediately,
            schedule: None,
            pull: PullPolicy::OnStartup,
            timezone: crate::plan::Zone::Local,
            overlap: crate::plan::Overlap::Skip,
            max_runtime: None,
        },
        depends_on: BTreeMap::new(),
        route: None,
        spec_hash: "hash".into(),
    }
}

fn network() -> DefaultNetwork {
    DefaultNetwork {
        name: "dispenser".into(),
        subnet: "172.28.0.0/16".into(),
        gateway: DEFAULT_NETWORK_GATEWAY,
    }
}

fn body_for(service: &Service) -> ContainerCreateBody {
    let network = network();
    let request = CreateRequest {
        name: "app-next",
        service,
        image: &service.container.image,
        default_network: &network,
        labels: BTreeMap::from([("dispenser.service".into(), "app".into())]),
    };
    container_body(&request).expect("a body")
}

#[test]
fn maps_every_container_field() {
    let service = service(spec());
    let body = body_for(&service);
    assert_eq!(body.image.as_deref(), Some("example/app:1"));
    assert_eq!(body.cmd, Some(vec!["run".to_owned()]));
    assert_eq!(body.entrypoint, Some(vec!["/bin/app".to_owned()]));
    assert_eq!(body.working_dir.as_deref(), Some("/srv"));
    assert_eq!(body.user.as_deref(), Some("65534"));
    assert_eq!(body.hostname.as_deref(), Some("apphost"));
    assert_eq!(body.env, Some(vec!["TOKEN=s3cret".to_owned()]));
    assert_eq!(body.exposed_ports, Some(vec!["80/tcp".to_owned()]));
    let labels = body.labels.expect("labels");
    assert_eq!(
        labels.get("dispenser.service").map(String::as_str),
        Some("app")
    );

    let health = body.healthcheck.expect("healthcheck");
    assert_eq!(health.interval, Some(2_000_000_000));
    assert_eq!(health.timeout, Some(1_500_000_000));
    assert_eq!(health.retries, Some(3));
    assert_eq!(health.start_period, None);
    assert_eq!(body.stop_signal.as_deref(), Some("SIGQUIT"));
    // 2.5 s rounds up to Docker's whole seconds.
    assert_eq!(body.stop_timeout, Some(3));

    let host = body.host_config.expect("host config");
    assert_eq!(host.memory, Some(64 * 1024 * 1024));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(
        host.restart_policy.and_then(|p| p.name),
        Some(RestartPolicyNameEnum::UNLESS_STOPPED)
    );
    assert_eq!(host.binds, Some(vec!["/srv/conf:/conf:ro".to_owned()]));
    let mounts = host.mounts.expect("mounts");
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
    assert_eq!(mounts[0].source.as_deref(), Some("data"));
    assert_eq!(mounts[0].read_only, Some(false));
    // A volume Docker creates for it carries the service's labels (only those).
    let volume_labels = mounts[0]
        .volume_options
        .as_ref()
        .and_then(|options| options.labels.clone())
        .expect("volume labels");
    assert_eq!(
        volume_labels,
        HashMap::from([("dispenser.service".to_owned(), "app".to_owned())])
    );
    let ports = host.port_bindings.expect("ports");
    let binding = ports["80/tcp"].as_ref().expect("binding");
    assert_eq!(binding[0].host_port.as_deref(), Some("8080"));
    assert_eq!(binding[0].host_ip, None);
    assert_eq!(
        host.extra_hosts,
        Some(vec![
            "db:10.0.0.5".to_owned(),
            "host.docker.internal:host-gateway".to_owned()
        ])
    );
}

#[test]
fn joins_only_the_default_network_at_create_with_the_service_alias() {
    let service = service(spec());
    let body = body_for(&service);
    let endpoints = body
        .networking_config
        .and_then(|n| n.endpoints_config)
        .expect("endpoints");
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints["dispenser"].aliases, Some(vec!["app".to_owned()]));
}

#[test]
fn a_declared_host_gateway_entry_is_not_doubled() {
    let mut container = spec();
    container.extra_hosts = vec![ExtraHost {
        hostname: "host.docker.internal".into(),
        address: "10.1.1.1".into(),
    }];
    let service = service(container);
    let host = body_for(&service).host_config.expect("host config");
    assert_eq!(
        host.extra_hosts,
        Some(vec!["host.docker.internal:10.1.1.1".to_owned()])
    );
}

#[test]
fn maps_each_restart_policy() {
    let cases = [
        (RestartPolicy::No, RestartPolicyNameEnum::NO),
        (RestartPolicy::Always, RestartPolicyNameEnum::ALWAYS),
        (RestartPolicy::OnFailure, RestartPolicyNameEnum::ON_FAILURE),
        (
            RestartPolicy::UnlessStopped,
            RestartPolicyNameEnum::UNLESS_STOPPED,
        ),
    ];
    for (policy, expected) in cases {
        assert_eq!(restart_name(policy), expected);
    }
}

#[test]
fn a_bind_source_with_a_colon_is_refused() {
    let mut container = spec();
    container.volumes = vec![Mount {
        source: MountSource::Bind(PathBuf::from("/srv/a:b")),
        target: "/x".into(),
        readonly: false,
    }];
    let service = service(container);
    let network = network();
    let request = CreateRequest {
        name: "app",
        service: &service,
        image: &service.container.image,
        default_network: &network,
        labels: BTreeMap::new(),
    };
    assert!(matches!(
        container_body(&request),
        Err(EngineError::Refused { .. })
    ));
}

#[test]
fn logs_are_rotated_unless_the_service_sets_its_own_driver() {
    let rotated = body_for(&service(spec()))
        .host_config
        .and_then(|host| host.log_config)
        .expect("log config");
    assert_eq!(rotated.typ.as_deref(), Some("json-file"));
    let options = rotated.config.expect("options");
    assert_eq!(options.get("max-size").map(String::as_str), Some("10m"));
    assert_eq!(options.get("max-file").map(String::as_str), Some("3"));

    let mut container = spec();
    container.logging = Some(crate::plan::LogConfig {
        driver: "local".into(),
        options: [("max-size".to_string(), "1m".to_string())].into(),
    });
    let own = body_for(&service(container))
        .host_config
        .and_then(|host| host.log_config)
        .expect("log config");
    assert_eq!(own.typ.as_deref(), Some("local"));
    assert_eq!(
        own.config,
        Some([("max-size".to_string(), "1m".to_string())].into())
    );
}
