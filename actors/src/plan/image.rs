//! Image references, normalised as Docker does (`nginx` is
//! `docker.io/library/nginx:latest`, served by `registry-1.docker.io`).

use std::fmt;

use serde::{Serialize, Serializer};

/// A parsed image reference. `original` is what the user wrote and what is
/// passed to Docker; the other fields are its normalised parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    pub original: String,
    /// `docker.io` for Docker Hub, else the host (and port) of the registry.
    pub registry: String,
    /// Path in the registry, with `library/` added for Docker Hub official images.
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest is given.
    pub tag: Option<String>,
    /// `sha256:...` when pinned by digest; a pinned image is never polled.
    pub digest: Option<String>,
}

/// Why an image reference does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ImageRefError {
    pub reason: String,
}

impl ImageRef {
    /// Parses a reference as Docker does.
    pub fn parse(text: &str) -> Result<ImageRef, ImageRefError> {
        let _ = text;
        Err(ImageRefError {
            reason: "image reference parsing is not implemented yet".into(),
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.original)
    }
}
