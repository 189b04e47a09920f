//! The I/O pre-pass of validation: every file a config file names (a
//! certificate, a key, the CA bundle, the notify template, a bind-mount
//! source, a folder beside a named volume) is looked at once, bounded, and
//! what was found is kept in [`FileFacts`]. Validation reads only that value,
//! so it never touches the disk and can run on facts made in memory.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{read_bounded, MAX_FILE_BYTES, MAX_FILE_SIZE_TEXT};

/// How much of a bind-mounted file is read at a time to hash it.
const HASH_CHUNK_BYTES: usize = 64 << 10;

/// What validation needs to know of a file a configuration names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Its metadata only, a link followed: certificates, keys, the CA bundle,
    /// a folder with a named volume's name.
    Metadata,
    /// Its content, at most [`MAX_FILE_BYTES`]: the notify template.
    Content,
    /// The SHA-256 of its content, read in chunks: a bind-mounted file, of any size.
    Digest,
}

/// What was found at each path a configuration names, by the absolute,
/// normalised path validation resolves. A path not recorded is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileFacts {
    found: BTreeMap<PathBuf, FileFact>,
}

/// What was found at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFact {
    pub kind: FileKind,
    /// The content, when it was asked for ([`Want::Content`]).
    pub content: Option<Content>,
    /// The SHA-256 of a regular file's content, when it was asked for
    /// ([`Want::Digest`]) and the whole file could be read.
    pub digest: Option<[u8; 32]>,
}

/// What a path's metadata says, a symbolic link followed to its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// Nothing there (a dangling link included).
    Missing,
    /// The metadata could not be read for another reason: the error's text.
    Unreadable(String),
    Folder,
    /// Neither a regular file nor a folder: a FIFO, a device, a socket.
    Special,
    /// A regular file of `size` bytes.
    File {
        size: u64,
    },
}

/// A file's content, read with [`read_bounded`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// The bytes, at most [`MAX_FILE_BYTES`].
    Bytes(Vec<u8>),
    /// More than [`MAX_FILE_BYTES`]: read no further.
    TooLarge,
    /// Opening or reading failed (a folder, a FIFO or a device is refused
    /// unopened or unread): the error's text.
    Unreadable(String),
}

/// What a path not recorded in [`FileFacts`] is.
static MISSING: FileFact = FileFact {
    kind: FileKind::Missing,
    content: None,
    digest: None,
};

impl FileFacts {
    /// Records what was found at `path` (in memory: for tests and fuzzing).
    pub fn insert(&mut self, path: impl Into<PathBuf>, fact: FileFact) {
        self.found.insert(path.into(), fact);
    }

    /// What was found at `path`; missing when it was never looked at.
    pub fn get(&self, path: &Path) -> &FileFact {
        self.found.get(path).unwrap_or(&MISSING)
    }

    /// Looks at each path as it is wanted (I/O: metadata, a bounded read, a
    /// chunked hash). A path wanted twice is looked at once, with both wants met.
    pub fn look_at(&mut self, wanted: impl IntoIterator<Item = (PathBuf, Want)>) {
        for (path, want) in wanted {
            let fact = self
                .found
                .entry(path.clone())
                .or_insert_with(|| FileFact::of(kind_of(&path)));
            match want {
                Want::Content if fact.content.is_none() => {
                    fact.content = Some(content_of(&path));
                }
                Want::Digest
                    if fact.digest.is_none() && matches!(fact.kind, FileKind::File { .. }) =>
                {
                    fact.digest = file_digest(&path);
                }
                Want::Metadata | Want::Content | Want::Digest => {}
            }
        }
    }
}

impl FileFact {
    /// A regular file holding `bytes`, with its content and digest (in memory).
    pub fn file(bytes: impl Into<Vec<u8>>) -> FileFact {
        let bytes = bytes.into();
        FileFact {
            kind: FileKind::File {
                size: bytes.len() as u64,
            },
            digest: Some(Sha256::digest(&bytes).into()),
            content: Some(Content::Bytes(bytes)),
        }
    }

    /// The content as UTF-8 text, or why there is none (the error's text).
    pub fn text(&self) -> Result<String, String> {
        match (&self.content, &self.kind) {
            (Some(Content::Bytes(bytes)), _) => String::from_utf8(bytes.clone())
                .map_err(|_| "stream did not contain valid UTF-8".to_string()),
            (Some(Content::TooLarge), _) => {
                Err(format!("the file is larger than {MAX_FILE_SIZE_TEXT}"))
            }
            (Some(Content::Unreadable(error)), _) | (None, FileKind::Unreadable(error)) => {
                Err(error.clone())
            }
            (None, FileKind::Missing) => Err("no such file".to_string()),
            (None, FileKind::Folder | FileKind::Special) => Err("not a regular file".to_string()),
            (None, FileKind::File { .. }) => Err("the file was not read".to_string()),
        }
    }

    /// A path of this kind, neither read nor hashed (in memory).
    pub fn of(kind: FileKind) -> FileFact {
        FileFact {
            kind,
            content: None,
            digest: None,
        }
    }
}

/// The path's metadata, a link followed.
fn kind_of(path: &Path) -> FileKind {
    match std::fs::metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => FileKind::Missing,
        Err(error) => FileKind::Unreadable(error.to_string()),
        Ok(meta) if meta.is_file() => FileKind::File { size: meta.len() },
        Ok(meta) if meta.is_dir() => FileKind::Folder,
        Ok(_) => FileKind::Special,
    }
}

/// The file's content, bounded: regular files only.
fn content_of(path: &Path) -> Content {
    match read_bounded(path, MAX_FILE_BYTES) {
        Ok(Some(bytes)) => Content::Bytes(bytes),
        Ok(None) => Content::TooLarge,
        Err(error) => Content::Unreadable(error.to_string()),
    }
}

/// The SHA-256 of a regular file's content, read in chunks: a big
/// bind-mounted file (a database, an archive) must not be held in memory at
/// once. Opened without blocking, so a FIFO put there meanwhile is refused.
fn file_digest(path: &Path) -> Option<[u8; 32]> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut digest = Sha256::new();
    let mut buffer = vec![0u8; HASH_CHUNK_BYTES];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Some(digest.finalize().into()),
            Ok(read) => digest.update(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_hashed_in_chunks_to_its_whole_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let content: Vec<u8> = (0..HASH_CHUNK_BYTES * 3 + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &content).unwrap();
        let digest = file_digest(&path).unwrap();
        assert_eq!(digest.as_slice(), Sha256::digest(&content).as_slice());
    }
}
