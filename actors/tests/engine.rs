//! `DockerEngine` against the real Docker Engine. Every object is named
//! `dtest-<pid>-<n>`, labelled `dispenser-test=1` and removed by a guard;
//! results are checked with the `docker` CLI, independently of bollard.

mod harness;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use dispenser_actors::engine::{labels, ContainerState, Engine, EngineError, Health};
use dispenser_actors::plan::{
    ExtraHost, Healthcheck, Mount, MountSource, Network, NetworkDriver, PortBinding, RestartPolicy,
    Sensitive,
};
use harness::{Cleanup, BUSYBOX_IMAGE, WEB_IMAGE};
use serde_json::Value;

/// Longest wait for a container to become healthy or answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn declared_network(cleanup: &Cleanup, instance: &str) -> Network {
    let name = harness::unique_name();
    cleanup.network(&name);
    Network {
        name,
        driver: NetworkDriver::Bridge,
        external: false,
        internal: false,
        attachable: true,
        labels: harness::labels(instance),
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn connect_negotiates_the_daemons_api_version() {
    let engine = harness::engine().await;
    let server = harness::docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    let server = server.trim();
    let parse = |v: &str| -> (u32, u32) {
        let (major, minor) = v.split_once('.').expect("major.minor");
        (major.parse().expect("major"), minor.parse().expect("minor"))
    };
    let negotiated = engine.api_version();
    // The client speaks the daemon's version, or its own newest when the daemon is newer.
    assert!(
        parse(&negotiated) <= parse(server),
        "{negotiated} > {server}"
    );
    if parse(server) <= (1, 53) {
        assert_eq!(negotiated, server);
    }
}

#[tokio::test]
async fn create_applies_every_container_field() {
    let harness::World {
        engine,
        cleanup,
        instance,
        default_network,
    } = harness::world().await;
    let backend = declared_network(&cleanup, &instance);
    engine
        .ensure_network(&backend, &harness::labels(&instance))
        .await
        .expect("declared network");

    let bind_source = tempfile::tempdir().expect("temp dir");
    std::fs::write(bind_source.path().join("app.conf"), "conf\n").expect("write conf");
    let volume = harness::unique_name();
    cleanup.volume(&volume);
    let host_port = free_port();

    let mut service = harness::service("webapp", WEB_IMAGE, &[]);
    let spec = &mut service.container;
    spec.entrypoint = Some(vec!["/bin/env".into()]);
    spec.command = Some(
        ["httpd", "-f", "-p", "8080", "-h", "/www"]
            .map(String::from)
            .to_vec(),
    );
    spec.working_dir = Some("/www".into());
    spec.user = Some("65534:65534".into());
    spec.hostname = Some("dtest-host".into());
    spec.memory_bytes = Some(64 * 1024 * 1024);
    spec.nano_cpus = Some(500_000_000);
    spec.restart = RestartPolicy::UnlessStopped;
    spec.ports = vec![PortBinding {
        host: host_port,
        container: 8080,
    }];
    spec.volumes = vec![
        Mount {
            source: MountSource::Bind(bind_source.path().to_path_buf()),
            target: "/conf".into(),
            readonly: true,
        },
        Mount {
            source: MountSource::Volume(volume.clone()),
            target: "/data".into(),
            readonly: false,
        },
    ];
    spec.env = BTreeMap::from([
        ("GREETING".into(), Sensitive::new("hello")),
        ("TOKEN".into(), Sensitive::new("s3cret")),
    ]);
    spec.networks = vec![backend.name.clone()];
    spec.extra_hosts = vec![ExtraHost {
        hostname: "db.internal".into(),
        address: "10.9.8.7".into(),
    }];
    spec.healthcheck = Some(Healthcheck {
        test: ["CMD", "wget", "-qO-", "http://127.0.0.1:8080/"]
            .map(String::from)
            .to_vec(),
        interval: Some(Duration::from_secs(1)),
        timeout: Some(Duration::from_secs(2)),
        retries: Some(3),
        start_period: Some(Duration::from_millis(1500)),
    });

    let (name, id) =
        harness::create(&engine, &cleanup, &service, &default_network, &instance).await;
    engine.start(&id).await.expect("started");

    let json = harness::inspect("container", &name);
    let config = &json["Config"];
    let host = &json["HostConfig"];
    assert_eq!(config["Image"], WEB_IMAGE);
    assert_eq!(strings(&config["Entrypoint"]), vec!["/bin/env"]);
    assert_eq!(
        strings(&config["Cmd"]),
        vec!["httpd", "-f", "-p", "8080", "-h", "/www"]
    );
    assert_eq!(config["WorkingDir"], "/www");
    assert_eq!(config["User"], "65534:65534");
    assert_eq!(config["Hostname"], "dtest-host");
    assert_eq!(host["Memory"], 64 * 1024 * 1024);
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(host["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(
        host["PortBindings"]["8080/tcp"][0]["HostPort"],
        host_port.to_string()
    );
    let binds = strings(&host["Binds"]);
    assert_eq!(
        binds,
        vec![format!("{}:/conf:ro", bind_source.path().display())]
    );
    let mounts = json["Mounts"].as_array().expect("mounts");
    let conf = mounts
        .iter()
        .find(|m| m["Destination"] == "/conf")
        .expect("bind mount");
    assert_eq!(
        (conf["Type"].as_str(), conf["RW"].as_bool()),
        (Some("bind"), Some(false))
    );
    let data = mounts
        .iter()
        .find(|m| m["Destination"] == "/data")
        .expect("volume mount");
    assert_eq!(data["Type"], "volume");
    assert_eq!(data["Name"], volume.as_str());
    assert_eq!(data["RW"], true);
    let env = strings(&config["Env"]);
    assert!(env.contains(&"GREETING=hello".to_owned()), "{env:?}");
    assert!(env.contains(&"TOKEN=s3cret".to_owned()), "{env:?}");
    assert_eq!(
        strings(&host["ExtraHosts"]),
        vec!["db.internal:10.9.8.7", "host.docker.internal:host-gateway"]
    );
    let health = &config["Healthcheck"];
    assert_eq!(
        strings(&health["Test"]),
        vec!["CMD", "wget", "-qO-", "http://127.0.0.1:8080/"]
    );
    assert_eq!(health["Interval"], 1_000_000_000_u64);
    assert_eq!(health["Timeout"], 2_000_000_000_u64);
    assert_eq!(health["Retries"], 3);
    assert_eq!(health["StartPeriod"], 1_500_000_000_u64);
    for (key, value) in harness::labels(&instance) {
        assert_eq!(config["Labels"][&key], value.as_str(), "label {key}");
    }
    let networks = &json["NetworkSettings"]["Networks"];
    for network in [&default_network.name, &backend.name] {
        let aliases = strings(&networks[network]["Aliases"]);
        assert!(
            aliases.contains(&"webapp".to_owned()),
            "{network}: {aliases:?}"
        );
    }

    // The container behaves as configured, not only looks so.
    let (wrote, _) = harness::try_docker(&["exec", &name, "sh", "-c", "echo x > /conf/new"]);
    assert!(!wrote, "the bind mount is read-only");
    let (_, hosts) = harness::try_docker(&["exec", &name, "cat", "/etc/hosts"]);
    assert!(hosts.contains("db.internal"), "{hosts}");
    assert!(hosts.contains("host.docker.internal"), "{hosts}");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let container = engine.inspect(&id).await.expect("inspect").expect("exists");
        if container.health == Some(Health::Healthy) {
            assert_eq!(container.state, ContainerState::Running);
            assert_eq!(container.name, name);
            assert!(container.image_id.starts_with("sha256:"));
            assert!(!container.started_at.is_empty());
            break;
        }
        assert!(Instant::now() < deadline, "not healthy: {container:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let page = harness::docker(&[
        "exec",
        &name,
        "wget",
        "-qO-",
        &format!("http://{}:{host_port}/", default_network.gateway),
    ]);
    assert_eq!(page.trim(), "v1");
}

#[tokio::test]
async fn containers_on_a_network_reach_each_other_by_service_name() {
    let engine = harness::engine().await;
    let cleanup = Cleanup::default();
    let instance = harness::unique_name();
    let default_network = harness::default_network(&cleanup);
    let labels = harness::labels(&instance);
    engine
        .ensure_default_network(&default_network, &labels)
        .await
        .expect("default network");
    let shared = declared_network(&cleanup, &instance);
    engine
        .ensure_network(&shared, &labels)
        .await
        .expect("network");

    let mut client = harness::service("client", BUSYBOX_IMAGE, &[]);
    client.container.networks = vec![shared.name.clone()];
    let mut server = harness::service("server", WEB_IMAGE, &[]);
    server.container.networks = vec![shared.name.clone()];
    let (client_name, client_id) =
        harness::create(&engine, &cleanup, &client, &default_network, &instance).await;
    let (_, server_id) =
        harness::create(&engine, &cleanup, &server, &default_network, &instance).await;
    engine.start(&server_id).await.expect("server started");
    engine.start(&client_id).await.expect("client started");

    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let (ok, page) =
            harness::try_docker(&["exec", &client_name, "wget", "-qO-", "http://server/"]);
        if ok {
            assert_eq!(page.trim(), "v1");
            break;
        }
        assert!(Instant::now() < deadline, "server never answered by name");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn inspect_of_a_missing_container_is_none() {
    let engine = harness::engine().await;
    let missing = harness::unique_name();
    assert_eq!(engine.inspect(&missing).await.expect("inspect"), None);
}

#[tokio::test]
async fn list_managed_returns_only_this_instances_containers() {
    let engine = harness::engine().await;
    let cleanup = Cleanup::default();
    let mine = harness::unique_name();
    let theirs = harness::unique_name();
    let default_network = harness::default_network(&cleanup);
    engine
        .ensure_default_network(&default_network, &harness::labels(&mine))
        .await
        .expect("default network");
    let service = harness::service("app", BUSYBOX_IMAGE, &[]);
    let (mine_a, _) = harness::create(&engine, &cleanup, &service, &default_network, &mine).await;
    let (mine_b, id_b) =
        harness::create(&engine, &cleanup, &service, &default_network, &mine).await;
    let (theirs_a, _) =
        harness::create(&engine, &cleanup, &service, &default_network, &theirs).await;
    engine.start(&id_b).await.expect("started");

    let mut names: Vec<String> = engine
        .list_managed(&mine)
        .await
        .expect("list")
        .into_iter()
        .map(|container| container.name)
        .collect();
    names.sort();
    let mut expected = vec![mine_a, mine_b];
    expected.sort();
    assert_eq!(names, expected, "not {theirs_a}");
    let theirs_listed = engine.list_managed(&theirs).await.expect("list");
    assert_eq!(theirs_listed.len(), 1);
    assert_eq!(theirs_listed[0].name, theirs_a);
    assert_eq!(theirs_listed[0].state, ContainerState::Created);
}

#[tokio::test]
async fn list_service_returns_only_that_services_containers_of_this_instance() {
    let engine = harness::engine().await;
    let cleanup = Cleanup::default();
    let mine = harness::unique_name();
    let theirs = harness::unique_name();
    let default_network = harness::default_network(&cleanup);
    engine
        .ensure_default_network(&default_network, &harness::labels(&mine))
        .await
        .expect("default network");
    let service = harness::service("app", BUSYBOX_IMAGE, &[]);
    // (instance, value of dispenser.service): two of `app` in this instance
    // (its container and a leftover under another name), one of another
    // service, one of `app` in another instance.
    let mut created = Vec::new();
    for (instance, of_service) in [
        (&mine, "app"),
        (&mine, "app"),
        (&mine, "other"),
        (&theirs, "app"),
    ] {
        let name = harness::unique_name();
        cleanup.container(&name);
        let mut container_labels = harness::labels(instance);
        container_labels.insert(labels::SERVICE.to_owned(), of_service.to_owned());
        let request = dispenser_actors::engine::CreateRequest {
            name: &name,
            service: &service,
            image: &service.container.image,
            default_network: &default_network,
            labels: container_labels,
        };
        engine.create(&request).await.expect("container created");
        created.push(name);
    }

    let mut names: Vec<String> = engine
        .list_service(&mine, "app")
        .await
        .expect("list")
        .into_iter()
        .map(|container| container.name)
        .collect();
    names.sort();
    let mut expected = created[..2].to_vec();
    expected.sort();
    assert_eq!(names, expected, "not {} nor {}", created[2], created[3]);
    assert!(engine
        .list_service(&mine, "absent")
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn wait_exit_returns_the_code_and_logs_tail_the_last_lines() {
    let harness::World {
        engine,
        cleanup,
        instance,
        default_network,
    } = harness::world().await;

    let failing = harness::service(
        "job",
        BUSYBOX_IMAGE,
        // Pauses keep the order across stdout and stderr deterministic.
        &[
            "sh",
            "-c",
            "echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three; exit 3",
        ],
    );
    let (_, id) = harness::create(&engine, &cleanup, &failing, &default_network, &instance).await;
    engine.start(&id).await.expect("started");
    assert_eq!(engine.wait_exit(&id).await.expect("wait"), 3);
    let container = engine.inspect(&id).await.expect("inspect").expect("exists");
    assert_eq!(container.state, ContainerState::Exited { code: 3 });
    assert_eq!(
        engine.logs_tail(&id, 2).await.expect("logs"),
        vec!["two", "three"]
    );
    assert_eq!(engine.logs_tail(&id, 10).await.expect("logs").len(), 3);

    let succeeding = harness::service("job", BUSYBOX_IMAGE, &["true"]);
    let (_, id) =
        harness::create(&engine, &cleanup, &succeeding, &default_network, &instance).await;
    engine.start(&id).await.expect("started");
    assert_eq!(engine.wait_exit(&id).await.expect("wait"), 0);
}

#[tokio::test]
async fn stop_rename_and_remove() {
    let harness::World {
        engine,
        cleanup,
        instance,
        default_network,
    } = harness::world().await;
    let service = harness::service("app", BUSYBOX_IMAGE, &[]);
    let (name, id) =
        harness::create(&engine, &cleanup, &service, &default_network, &instance).await;

    // A second container with the same name is a conflict.
    let duplicate = dispenser_actors::engine::CreateRequest {
        name: &name,
        service: &service,
        image: &service.container.image,
        default_network: &default_network,
        labels: harness::labels(&instance),
    };
    assert!(matches!(
        engine.create(&duplicate).await,
        Err(EngineError::Conflict { .. })
    ));

    engine.start(&id).await.expect("started");
    let started = Instant::now();
    engine
        .stop(&id, Duration::from_secs(1))
        .await
        .expect("stopped");
    assert!(started.elapsed() < Duration::from_secs(20));
    let stopped = engine.inspect(&id).await.expect("inspect").expect("exists");
    assert!(
        matches!(stopped.state, ContainerState::Exited { .. }),
        "{stopped:?}"
    );
    engine
        .stop(&id, Duration::from_secs(1))
        .await
        .expect("stopping a stopped container is fine");

    let renamed = harness::unique_name();
    cleanup.container(&renamed);
    engine.rename(&id, &renamed).await.expect("renamed");
    assert_eq!(engine.inspect(&name).await.expect("inspect"), None);
    let after = engine
        .inspect(&renamed)
        .await
        .expect("inspect")
        .expect("exists");
    assert_eq!(after.id, id);
    assert_eq!(after.name, renamed);

    engine.remove(&id).await.expect("removed");
    assert_eq!(engine.inspect(&id).await.expect("inspect"), None);
    engine
        .remove(&id)
        .await
        .expect("removing a missing container is fine");
    assert!(matches!(
        engine.start(&id).await,
        Err(EngineError::NotFound { .. })
    ));
}

#[tokio::test]
async fn images_are_inspected_and_a_failed_pull_is_a_pull_error() {
    let engine = harness::engine().await;
    let local = harness::image_ref("docker.io", "dispenser-test/busybox", "latest");
    let image = engine
        .image(&local)
        .await
        .expect("inspect")
        .expect("exists");
    let expected = harness::docker(&["image", "inspect", "--format", "{{.Id}}", BUSYBOX_IMAGE]);
    assert_eq!(image.id, expected.trim());
    assert!(image.repo_digests.is_empty(), "imported, never pushed");

    let unreachable = harness::image_ref("127.0.0.1:1", "none", "latest");
    assert_eq!(engine.image(&unreachable).await.expect("inspect"), None);
    match engine.pull(&unreachable).await {
        Err(EngineError::Pull { image, reason }) => {
            assert_eq!(image, "127.0.0.1:1/none:latest");
            // The daemon's own message, naming the registry it could not reach.
            assert!(reason.contains("127.0.0.1:1"), "{reason}");
        }
        other => panic!("expected a pull error, got {other:?}"),
    }
}

#[tokio::test]
async fn tag_points_a_reference_at_a_local_image() {
    let engine = harness::engine().await;
    let source = harness::image_ref("docker.io", "dispenser-test/busybox", "latest");
    let repository = format!("dispenser-test/{}", harness::unique_name());
    let target = harness::image_ref("docker.io", &repository, "watched");
    engine.tag(&source, &target).await.expect("tagged");
    let tagged = harness::docker(&["image", "inspect", "--format", "{{.Id}}", &target.original]);
    let _ = std::process::Command::new("docker")
        .args(["rmi", &target.original])
        .output();
    let expected = harness::docker(&["image", "inspect", "--format", "{{.Id}}", BUSYBOX_IMAGE]);
    assert_eq!(tagged.trim(), expected.trim());

    let missing = harness::image_ref("docker.io", "dispenser-test/absent", "none");
    assert!(matches!(
        engine.tag(&missing, &target).await,
        Err(EngineError::NotFound { .. })
    ));
}

#[tokio::test]
async fn networks_are_ensured_idempotently_listed_and_removed() {
    let engine = harness::engine().await;
    let cleanup = Cleanup::default();
    let instance = harness::unique_name();
    let labels = harness::labels(&instance);

    let default_network = harness::default_network(&cleanup);
    engine
        .ensure_default_network(&default_network, &labels)
        .await
        .expect("created");
    engine
        .ensure_default_network(&default_network, &labels)
        .await
        .expect("used as it is");
    let json = harness::inspect("network", &default_network.name);
    assert_eq!(json["Driver"], "bridge");
    assert_eq!(json["IPAM"]["Config"][0]["Subnet"], default_network.subnet);
    assert_eq!(
        json["IPAM"]["Config"][0]["Gateway"],
        default_network.gateway.to_string()
    );

    let mut internal = declared_network(&cleanup, &instance);
    internal.internal = true;
    internal
        .labels
        .insert("example.role".into(), "backend".into());
    engine
        .ensure_network(&internal, &labels)
        .await
        .expect("created");
    engine
        .ensure_network(&internal, &labels)
        .await
        .expect("left as it is");
    let filter = format!("name=^{}$", internal.name);
    let listed = harness::docker(&["network", "ls", "-q", "--filter", &filter]);
    assert_eq!(listed.lines().count(), 1, "one network, not two");
    let json = harness::inspect("network", &internal.name);
    assert_eq!(json["Internal"], true);
    assert_eq!(json["Attachable"], true);
    assert_eq!(json["Labels"]["example.role"], "backend");
    assert_eq!(json["Labels"]["dispenser.instance"], instance.as_str());

    let mut managed = engine.list_managed_networks(&instance).await.expect("list");
    managed.sort();
    let mut expected = vec![default_network.name.clone(), internal.name.clone()];
    expected.sort();
    assert_eq!(managed, expected);

    engine
        .remove_network(&internal.name)
        .await
        .expect("removed");
    engine
        .remove_network(&internal.name)
        .await
        .expect("removing a missing network is fine");
    let (exists, _) = harness::try_docker(&["network", "inspect", &internal.name]);
    assert!(!exists);
}

#[tokio::test]
async fn a_missing_external_network_is_not_found_and_never_created() {
    let engine = harness::engine().await;
    let cleanup = Cleanup::default();
    let instance = harness::unique_name();
    let mut external = declared_network(&cleanup, &instance);
    external.external = true;
    match engine
        .ensure_network(&external, &harness::labels(&instance))
        .await
    {
        Err(EngineError::NotFound { what }) => assert!(what.contains(&external.name)),
        other => panic!("expected not found, got {other:?}"),
    }
    let (exists, _) = harness::try_docker(&["network", "inspect", &external.name]);
    assert!(!exists, "an external network is never created");

    // Once someone else made it, it is used.
    harness::docker(&[
        "network",
        "create",
        "--label",
        "dispenser-test=1",
        "--label",
        &format!("dispenser-test.pid={}", std::process::id()),
        &external.name,
    ]);
    engine
        .ensure_network(&external, &harness::labels(&instance))
        .await
        .expect("an existing external network is fine");
}

#[tokio::test]
async fn a_failed_create_leaves_no_container_behind() {
    let harness::World {
        engine,
        cleanup,
        instance,
        default_network,
    } = harness::world().await;

    let missing_image = harness::service("app", "dispenser-test/missing:none", &[]);
    let name = harness::unique_name();
    cleanup.container(&name);
    let request = dispenser_actors::engine::CreateRequest {
        name: &name,
        service: &missing_image,
        image: &missing_image.container.image,
        default_network: &default_network,
        labels: harness::labels(&instance),
    };
    match engine.create(&request).await {
        Err(EngineError::NotFound { what }) => assert!(what.contains("missing"), "{what}"),
        other => panic!("expected image not found, got {other:?}"),
    }

    // A declared network that does not exist: the half-made container goes.
    let mut service = harness::service("app", BUSYBOX_IMAGE, &[]);
    let missing_network = harness::unique_name();
    service.container.networks = vec![missing_network.clone()];
    let request = dispenser_actors::engine::CreateRequest {
        name: &name,
        service: &service,
        image: &service.container.image,
        default_network: &default_network,
        labels: harness::labels(&instance),
    };
    match engine.create(&request).await {
        Err(EngineError::NotFound { what }) => assert!(what.contains(&missing_network), "{what}"),
        other => panic!("expected network not found, got {other:?}"),
    }
    assert_eq!(engine.inspect(&name).await.expect("inspect"), None);
    assert!(engine
        .list_managed(&instance)
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn events_follow_this_instances_containers_only() {
    use dispenser_actors::engine::{labels, CreateRequest, EventKind};
    use futures_util::StreamExt;

    let harness::World {
        engine,
        cleanup,
        instance,
        default_network,
    } = harness::world().await;
    let mut events = engine.events(&instance).await.expect("events");

    // Another instance's container comes and goes first: never reported.
    let other = harness::service("other", BUSYBOX_IMAGE, &["true"]);
    let (_, other_id) = harness::create(
        &engine,
        &cleanup,
        &other,
        &default_network,
        &harness::unique_name(),
    )
    .await;
    engine.start(&other_id).await.expect("started");

    let service = harness::service("app", BUSYBOX_IMAGE, &["sh", "-c", "sleep 0.5; exit 7"]);
    let name = harness::unique_name();
    cleanup.container(&name);
    let mut container_labels = harness::labels(&instance);
    container_labels.insert(labels::SERVICE.to_owned(), "app".to_owned());
    let request = CreateRequest {
        name: &name,
        service: &service,
        image: &service.container.image,
        default_network: &default_network,
        labels: container_labels,
    };
    let id = engine.create(&request).await.expect("created");
    engine.start(&id).await.expect("started");
    assert_eq!(engine.wait_exit(&id).await.expect("wait"), 7);
    engine.remove(&id).await.expect("removed");

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(READY_TIMEOUT, events.next())
            .await
            .expect("an event in time")
            .expect("the stream goes on")
            .expect("an event, not an error");
        assert_eq!(event.id, id, "only this instance's container: {event:?}");
        assert_eq!(event.name, name);
        assert_eq!(event.service.as_deref(), Some("app"));
        seen.push(event.kind);
    }
    assert_eq!(
        seen,
        vec![
            EventKind::Start,
            EventKind::Die { exit_code: Some(7) },
            EventKind::Destroy
        ]
    );
}
