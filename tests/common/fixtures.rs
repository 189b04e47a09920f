//! What the test binaries that run `dispenser` on fixture trees share
//! (`config_files`, `import`, `export`): the repository root, one run of the
//! binary, the case folders of a snapshot suite and the files a command wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root, where the fixtures live.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the dispenser binary in `current_dir` with `args`, without the
/// caller's `RUST_LOG` and with `environment` set.
pub fn dispenser(current_dir: &Path, args: &[&str], environment: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dispenser"))
        .current_dir(current_dir)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(environment.iter().copied())
        .output()
        .expect("the dispenser binary runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The sub-folders of `folder` (relative to the repository root), each
/// relative to the root as well, sorted: one snapshot case each.
pub fn case_folders(folder: &Path) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(repo().join(folder))
        .unwrap_or_else(|err| panic!("the fixtures folder {} exists: {err}", folder.display()))
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir())
        .map(|entry| folder.join(entry.file_name()))
        .collect();
    folders.sort();
    folders
}

/// Every file under `out`, sub-folders included, with its text, by its path
/// relative to `out`, sorted; nothing when `out` does not exist.
pub fn files_under(out: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut folders = vec![out.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let content = std::fs::read_to_string(&path)
                    .unwrap_or_else(|err| panic!("{} is text: {err}", path.display()));
                let relative = path.strip_prefix(out).unwrap_or(&path).to_path_buf();
                files.push((relative, content));
            }
        }
    }
    files.sort();
    files
}
