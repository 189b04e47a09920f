//! The spec hash: what decides whether a container must be recreated. It
//! covers the container spec with env values exposed, and the content of every
//! single file bind-mounted into the container. Never log its input.

use std::path::Path;

use dispenser_actors::plan::{ContainerSpec, MountSource};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Hex SHA-256 of the container spec and of the bind-mounted files.
pub fn spec_hash(spec: &ContainerSpec) -> String {
    let mut hasher = Sha256::new();
    hasher.update(canonical_spec(spec).as_bytes());
    for mount in &spec.volumes {
        if let MountSource::Bind(path) = &mount.source {
            hash_file(&mut hasher, path);
        }
    }
    hex::encode(hasher.finalize())
}

/// The spec as JSON with sorted keys and exposed env values.
fn canonical_spec(spec: &ContainerSpec) -> String {
    let mut value = serde_json::to_value(spec).unwrap_or(Value::Null);
    if let Value::Object(object) = &mut value {
        let env = spec
            .env
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.expose().to_string())))
            .collect();
        object.insert("env".to_string(), Value::Object(env));
    }
    value.to_string()
}

/// Adds a regular file's path and content; folders and missing paths add nothing
/// (a folder's content is the application's business, not the spec's).
fn hash_file(hasher: &mut Sha256, path: &Path) {
    let is_file = std::fs::metadata(path).is_ok_and(|meta| meta.is_file());
    if !is_file {
        return;
    }
    if let Ok(content) = std::fs::read(path) {
        hasher.update(b"\0file\0");
        hasher.update(path.display().to_string().as_bytes());
        hasher.update(b"\0");
        hasher.update(Sha256::digest(&content));
    }
}

#[cfg(test)]
mod tests;
