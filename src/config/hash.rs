//! The spec hash: what decides whether a container must be recreated. It
//! covers the container spec with env values exposed, and the content of every
//! single file bind-mounted into the container. Never log its input.

use std::io::Read;
use std::path::Path;

use dispenser_actors::plan::{ContainerSpec, MountSource};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How much of a bind-mounted file is read at a time to hash it.
const HASH_CHUNK_BYTES: usize = 64 << 10;

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
    if let Some(content) = file_digest(path) {
        hasher.update(b"\0file\0");
        hasher.update(path.display().to_string().as_bytes());
        hasher.update(b"\0");
        hasher.update(content);
    }
}

/// The SHA-256 of a file's content, read in chunks: a big bind-mounted file
/// (a database, an archive) must not be held in memory at once.
fn file_digest(path: &Path) -> Option<impl AsRef<[u8]>> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut digest = Sha256::new();
    let mut buffer = vec![0u8; HASH_CHUNK_BYTES];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Some(digest.finalize()),
            Ok(read) => digest.update(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests;
