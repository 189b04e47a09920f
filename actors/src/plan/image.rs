//! Image references, normalised as Docker does (`nginx` is
//! `docker.io/library/nginx:latest`, served by `registry-1.docker.io`).

use std::fmt;

use serde::{Serialize, Serializer};

/// The registry name Docker uses for Docker Hub.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
/// The tag assumed when neither a tag nor a digest is given.
pub const DEFAULT_TAG: &str = "latest";
/// Docker's limit on the length of a tag.
const MAX_TAG_LENGTH: usize = 128;

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
        if text.is_empty() {
            return Err(ImageRefError::new("the image reference is empty"));
        }
        if text.chars().any(char::is_whitespace) {
            return Err(ImageRefError::new(
                "an image reference cannot contain spaces",
            ));
        }
        let (name_and_tag, digest) = match text.split_once('@') {
            Some((name, digest)) => (name, Some(parse_digest(digest)?)),
            None => (text, None),
        };
        let last_slash = name_and_tag.rfind('/').map_or(0, |index| index + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(colon) => {
                let colon = last_slash + colon;
                let tag = &name_and_tag[colon + 1..];
                check_tag(tag)?;
                (&name_and_tag[..colon], Some(tag.to_string()))
            }
            None => (name_and_tag, None),
        };
        let (registry, path) = split_registry(name)?;
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        for component in repository.split('/') {
            check_path_component(component)?;
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag,
        };
        Ok(ImageRef {
            original: text.to_string(),
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The normalised reference, `registry/repository:tag[@digest]`: two
    /// spellings of one image (`nginx`, `docker.io/library/nginx:latest`)
    /// give the same text.
    pub fn canonical(&self) -> String {
        let mut text = format!("{}/{}", self.registry, self.repository);
        if let Some(tag) = &self.tag {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            text.push('@');
            text.push_str(digest);
        }
        text
    }

    /// The host to send registry API requests to (`registry-1.docker.io` for Docker Hub).
    pub fn registry_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_HOST
        } else {
            &self.registry
        }
    }
}

impl ImageRefError {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Splits `registry/path` when the first component names a registry.
fn split_registry(name: &str) -> Result<(String, &str), ImageRefError> {
    if name.is_empty() {
        return Err(ImageRefError::new("the image reference has no repository"));
    }
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            check_registry(first)?;
            let registry = if first == "index.docker.io" || first == "registry-1.docker.io" {
                DOCKER_HUB.to_string()
            } else {
                first.to_string()
            };
            Ok((registry, rest))
        }
        _ => Ok((DOCKER_HUB.to_string(), name)),
    }
}

fn check_registry(registry: &str) -> Result<(), ImageRefError> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !host_ok {
        return Err(ImageRefError::new(format!(
            "`{registry}` is not a valid registry host"
        )));
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |port| port == 0) {
            return Err(ImageRefError::new(format!(
                "`{port}` is not a valid registry port"
            )));
        }
    }
    Ok(())
}

/// A repository path component: lowercase letters and digits, separated by `.`, `_`, `__` or dashes.
fn check_path_component(component: &str) -> Result<(), ImageRefError> {
    if component.is_empty() {
        return Err(ImageRefError::new(
            "the repository has an empty path component",
        ));
    }
    if component.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ImageRefError::new(format!(
            "the repository must be lowercase, found `{component}`"
        )));
    }
    let allowed =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-');
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !component.chars().all(allowed) || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(ImageRefError::new(format!(
            "`{component}` is not a valid repository name (lowercase letters, digits and separators `.`, `_`, `-`)"
        )));
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), ImageRefError> {
    if tag.is_empty() {
        return Err(ImageRefError::new("the tag after `:` is empty"));
    }
    let first_ok = tag
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || tag.len() > MAX_TAG_LENGTH {
        return Err(ImageRefError::new(format!("`{tag}` is not a valid tag")));
    }
    Ok(())
}

fn parse_digest(digest: &str) -> Result<String, ImageRefError> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| ImageRefError::new("a digest must look like `sha256:<64 hex digits>`"))?;
    let expected_length = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => {
            return Err(ImageRefError::new(format!(
                "unsupported digest algorithm `{algorithm}` (expected sha256)"
            )))
        }
    };
    let hex_ok = hex.len() == expected_length
        && hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    if !hex_ok {
        return Err(ImageRefError::new(format!(
            "a {algorithm} digest must be {expected_length} lowercase hex digits"
        )));
    }
    Ok(digest.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parts(text: &str) -> (String, String, Option<String>, Option<String>) {
        let image = ImageRef::parse(text).unwrap();
        (image.registry, image.repository, image.tag, image.digest)
    }

    #[test]
    fn official_image_gets_library_and_latest() {
        let image = ImageRef::parse("nginx").unwrap();
        assert_eq!(image.registry, "docker.io");
        assert_eq!(image.repository, "library/nginx");
        assert_eq!(image.tag.as_deref(), Some("latest"));
        assert_eq!(image.digest, None);
        assert_eq!(image.registry_host(), "registry-1.docker.io");
        assert_eq!(image.to_string(), "nginx");
        assert_eq!(
            image.canonical(),
            ImageRef::parse("docker.io/library/nginx:latest")
                .unwrap()
                .canonical()
        );
        assert_eq!(image.canonical(), "docker.io/library/nginx:latest");
    }

    #[test]
    fn user_images_and_registries() {
        assert_eq!(
            parts("user/app:1"),
            (
                "docker.io".into(),
                "user/app".into(),
                Some("1".into()),
                None
            )
        );
        assert_eq!(
            parts("ghcr.io/org/app:tag"),
            ("ghcr.io".into(), "org/app".into(), Some("tag".into()), None)
        );
        assert_eq!(
            parts("localhost:5000/app"),
            (
                "localhost:5000".into(),
                "app".into(),
                Some("latest".into()),
                None
            )
        );
        assert_eq!(
            parts("localhost/app"),
            (
                "localhost".into(),
                "app".into(),
                Some("latest".into()),
                None
            )
        );
        assert_eq!(
            parts("127.0.0.1:5000/a/b:t"),
            (
                "127.0.0.1:5000".into(),
                "a/b".into(),
                Some("t".into()),
                None
            )
        );
        assert_eq!(
            ImageRef::parse("ghcr.io/org/app").unwrap().registry_host(),
            "ghcr.io"
        );
    }

    #[test]
    fn digests() {
        assert_eq!(
            parts(&format!("app@{DIGEST}")),
            (
                "docker.io".into(),
                "library/app".into(),
                None,
                Some(DIGEST.into())
            )
        );
        assert_eq!(
            parts(&format!("app:tag@{DIGEST}")),
            (
                "docker.io".into(),
                "library/app".into(),
                Some("tag".into()),
                Some(DIGEST.into())
            )
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Nginx",
            "user/App:1",
            "nginx:",
            "ngi nx",
            "app@sha256:abc",
            "app@md5:0123",
            &format!("app@{}", DIGEST.to_uppercase()),
            "ghcr.io/",
            "-app",
            "localhost:99999/app",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn uppercase_error_names_the_component() {
        let error = ImageRef::parse("ghcr.io/Org/app").unwrap_err();
        assert!(error.reason.contains("lowercase"), "{}", error.reason);
        assert!(error.reason.contains("Org"), "{}", error.reason);
    }
}
