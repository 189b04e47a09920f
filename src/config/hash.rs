//! The spec hash: what decides whether a container must be recreated. It
//! covers the container spec with env values exposed, and the content of every
//! single file bind-mounted into the container, as the I/O pre-pass
//! (`files.rs`) found it: pure. Never log its input.

use dispenser_actors::plan::{ContainerSpec, MountSource};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::files::FileFacts;

/// Hex SHA-256 of the container spec and of the bind-mounted files. A
/// regular file adds its path and the digest of its content; a folder or a
/// missing path adds nothing (a folder's content is the application's
/// business, not the spec's).
pub fn spec_hash(spec: &ContainerSpec, facts: &FileFacts) -> String {
    let mut hasher = Sha256::new();
    hasher.update(canonical_spec(spec).as_bytes());
    for mount in &spec.volumes {
        if let MountSource::Bind(path) = &mount.source {
            if let Some(content) = facts.get(path).digest {
                hasher.update(b"\0file\0");
                hasher.update(path.display().to_string().as_bytes());
                hasher.update(b"\0");
                hasher.update(content);
            }
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

#[cfg(test)]
mod tests;
