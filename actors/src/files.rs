//! Reading files that a user names, bounded: only regular files (a link is
//! followed to its target, which must be one), opened without blocking so a
//! FIFO nobody writes to cannot stall the caller, and never more than a limit,
//! so `/dev/zero` or a huge file cannot exhaust memory.

use std::io::Read;
use std::path::Path;

/// A regular file's bytes, or `None` when it holds more than `limit` bytes
/// (read no further). A FIFO, a device or a folder is refused with
/// `InvalidInput` ("not a regular file").
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_only_and_never_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"12345").unwrap();
        assert_eq!(read_bounded(&small, 5).unwrap(), Some(b"12345".to_vec()));
        assert_eq!(read_bounded(&small, 4).unwrap(), None);
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let error = read_bounded(&zero, 5).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
        assert!(read_bounded(dir.path(), 5).is_err());
    }
}
