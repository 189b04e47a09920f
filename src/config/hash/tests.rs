//! The spec hash changes exactly when the container would change.

use std::collections::BTreeMap;
use std::path::Path;

use dispenser_actors::plan::{
    ContainerSpec, ImageRef, Mount, MountSource, PortBinding, RestartPolicy, Sensitive,
};

use super::spec_hash;
use crate::config::files::{FileFact, FileFacts, FileKind};

fn spec(folder: &Path) -> ContainerSpec {
    let mut env = BTreeMap::new();
    env.insert("PASSWORD".to_string(), Sensitive::new("one"));
    ContainerSpec {
        image: ImageRef::parse("nginx:1.27").unwrap(),
        command: None,
        entrypoint: None,
        working_dir: None,
        user: None,
        hostname: None,
        memory_bytes: None,
        nano_cpus: None,
        restart: RestartPolicy::No,
        ports: vec![PortBinding {
            host: 8080,
            container: 80,
        }],
        volumes: vec![
            Mount {
                source: MountSource::Bind(folder.join("nginx.conf")),
                target: "/etc/nginx/nginx.conf".into(),
                readonly: true,
            },
            Mount {
                source: MountSource::Bind(folder.join("data")),
                target: "/data".into(),
                readonly: false,
            },
        ],
        env,
        networks: vec![],
        extra_hosts: vec![],
        healthcheck: None,
        stop_signal: None,
        stop_grace_period: None,
        logging: None,
    }
}

/// The facts of `spec`'s mounts: `nginx.conf` holds `conf`, `data` is a folder.
fn facts(folder: &Path, conf: &str) -> FileFacts {
    let mut facts = FileFacts::default();
    facts.insert(folder.join("nginx.conf"), FileFact::file(conf));
    facts.insert(folder.join("data"), FileFact::of(FileKind::Folder));
    facts
}

#[test]
fn env_image_ports_and_mounted_file_change_the_hash() {
    let folder = Path::new("/srv/web");
    let base = spec(folder);
    let first = facts(folder, "worker_processes 1;");
    let original = spec_hash(&base, &first);
    assert_eq!(original.len(), 64);
    assert_eq!(
        spec_hash(&base, &first),
        original,
        "the hash is deterministic"
    );

    let mut env = base.clone();
    env.env.insert("PASSWORD".into(), Sensitive::new("two"));
    assert_ne!(
        spec_hash(&env, &first),
        original,
        "env values are hashed exposed"
    );

    let mut image = base.clone();
    image.image = ImageRef::parse("nginx:1.28").unwrap();
    assert_ne!(spec_hash(&image, &first), original);

    let mut ports = base.clone();
    ports.ports[0].host = 8081;
    assert_ne!(spec_hash(&ports, &first), original);

    let mut missing = first.clone();
    missing.insert(folder.join("data"), FileFact::of(FileKind::Missing));
    assert_eq!(
        spec_hash(&base, &missing),
        original,
        "a mounted folder adds nothing, like a missing path"
    );

    assert_ne!(
        spec_hash(&base, &facts(folder, "worker_processes 2;")),
        original,
        "a mounted file's content is hashed"
    );
}

#[test]
fn the_pre_pass_hashes_a_mounted_file_from_the_disk() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("nginx.conf"), "worker_processes 1;").unwrap();
    std::fs::create_dir(folder.path().join("data")).unwrap();
    let base = spec(folder.path());
    let mut seen = FileFacts::default();
    seen.look_at(base.volumes.iter().filter_map(|mount| match &mount.source {
        MountSource::Bind(path) => Some((path.clone(), crate::config::files::Want::Digest)),
        MountSource::Volume(_) => None,
    }));
    assert_eq!(
        spec_hash(&base, &seen),
        spec_hash(&base, &facts(folder.path(), "worker_processes 1;")),
        "the disk and the same facts in memory hash alike"
    );
}
