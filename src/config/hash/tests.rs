//! The spec hash changes exactly when the container would change.

use std::collections::BTreeMap;
use std::path::Path;

use dispenser_actors::plan::{
    ContainerSpec, ImageRef, Mount, MountSource, PortBinding, RestartPolicy, Sensitive,
};

use sha2::Digest;

use super::spec_hash;

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
    }
}

#[test]
fn env_image_ports_and_mounted_file_change_the_hash() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("nginx.conf"), "worker_processes 1;").unwrap();
    std::fs::create_dir(folder.path().join("data")).unwrap();
    let base = spec(folder.path());
    let original = spec_hash(&base);
    assert_eq!(original.len(), 64);
    assert_eq!(spec_hash(&base), original, "the hash is deterministic");

    let mut env = base.clone();
    env.env.insert("PASSWORD".into(), Sensitive::new("two"));
    assert_ne!(spec_hash(&env), original, "env values are hashed exposed");

    let mut image = base.clone();
    image.image = ImageRef::parse("nginx:1.28").unwrap();
    assert_ne!(spec_hash(&image), original);

    let mut ports = base.clone();
    ports.ports[0].host = 8081;
    assert_ne!(spec_hash(&ports), original);

    std::fs::write(folder.path().join("data/inside.txt"), "folder content").unwrap();
    assert_eq!(
        spec_hash(&base),
        original,
        "a mounted folder's content is not hashed"
    );

    std::fs::write(folder.path().join("nginx.conf"), "worker_processes 2;").unwrap();
    assert_ne!(
        spec_hash(&base),
        original,
        "a mounted file's content is hashed"
    );
}

#[test]
fn a_file_is_hashed_in_chunks_to_its_whole_digest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let content: Vec<u8> = (0..super::HASH_CHUNK_BYTES * 3 + 17)
        .map(|i| (i % 251) as u8)
        .collect();
    std::fs::write(&path, &content).unwrap();
    let digest = super::file_digest(&path).unwrap();
    assert_eq!(digest.as_ref(), sha2::Sha256::digest(&content).as_slice());
}
