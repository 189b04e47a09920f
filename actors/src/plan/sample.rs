//! Small, valid plans built in code, for unit tests and the engine's
//! integration tests. Nothing in the daemon uses them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;

/// A service with defaults everywhere: runs `image` under `name`, no ports,
/// no volumes, restart `no`, initialize immediately, pull on start-up.
pub fn service(name: &str, image: &str) -> Service {
    Service {
        name: name.to_string(),
        folder: PathBuf::from("/nonexistent").join(name),
        container: ContainerSpec {
            image: image_ref(image),
            command: None,
            entrypoint: None,
            working_dir: None,
            user: None,
            hostname: None,
            memory_bytes: None,
            nano_cpus: None,
            restart: RestartPolicy::No,
            ports: Vec::new(),
            volumes: Vec::new(),
            env: BTreeMap::new(),
            networks: Vec::new(),
            extra_hosts: Vec::new(),
            healthcheck: None,
            stop_signal: None,
            stop_grace_period: None,
            logging: None,
        },
        lifecycle: Lifecycle {
            watch: false,
            initialize: Initialize::Immediately,
            schedule: None,
            pull: PullPolicy::OnStartup,
            timezone: Zone::Local,
            overlap: DEFAULT_OVERLAP,
            max_runtime: None,
        },
        depends_on: BTreeMap::new(),
        route: None,
        spec_hash: format!("hash-{name}-{image}"),
    }
}

/// A plan of these services with default settings for `instance`.
pub fn plan(instance: &str, services: Vec<Service>) -> Plan {
    Plan {
        settings: Settings {
            poll_delay: DEFAULT_POLL_DELAY,
            instance: instance.to_string(),
            default_network: DefaultNetwork {
                name: format!("{instance}-net"),
                subnet: "10.250.0.0/24".to_string(),
                gateway: std::net::Ipv4Addr::new(10, 250, 0, 1),
            },
            stop_on_shutdown: false,
            state_dir: PathBuf::from("/nonexistent/.dispenser"),
            dependency_timeout: std::time::Duration::from_secs(5),
            docker_check_interval: crate::plan::DEFAULT_DOCKER_CHECK_INTERVAL,
            timezone: Zone::Local,
            deploy: crate::plan::DeploySettings::default(),
        },
        networks: BTreeMap::new(),
        services: services
            .into_iter()
            .map(|service| (service.name.clone(), service))
            .collect(),
        proxy: None,
        acme: None,
    }
}

/// An image reference split by hand (no registry, tag after the last `:`).
pub fn image_ref(image: &str) -> ImageRef {
    let (repository, tag) = match image.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (image, "latest"),
    };
    ImageRef {
        original: image.to_string(),
        registry: "docker.io".to_string(),
        repository: repository.to_string(),
        tag: Some(tag.to_string()),
        digest: None,
    }
}
