//! Fuzzes the whole config loader: the input is
//! `dispenser.toml NUL service.toml NUL dispenser.vars` as raw bytes (so
//! non-UTF-8 too), written to a temporary tree with a file secret. Loading
//! never panics, every diagnostic points into its file, and none shows the
//! secret.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use dispenser::config::{load, LocalSecrets};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "Zq7-secret-VALUE-4x";

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder").keep();
        std::fs::create_dir_all(dir.join("web")).expect("mkdir");
        std::fs::write(dir.join("secret.txt"), SECRET).expect("write");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    if data.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()) {
        return;
    }
    let mut parts = data.splitn(3, |byte| *byte == 0);
    let dispenser = parts.next().unwrap_or_default();
    let service = parts.next().unwrap_or_default();
    let vars = parts.next().unwrap_or_default();
    let root = root();
    std::fs::write(root.join("dispenser.toml"), dispenser).expect("write");
    std::fs::write(root.join("web/service.toml"), service).expect("write");
    std::fs::write(root.join("dispenser.vars"), vars).expect("write");
    let diagnostics = match load(&root.join("dispenser.toml"), &LocalSecrets::new(root)) {
        Ok(loaded) => loaded.warnings,
        Err(diagnostics) => diagnostics,
    };
    for diagnostic in &diagnostics.items {
        let (Some(path), Some(snippet)) = (&diagnostic.path, &diagnostic.snippet) else {
            continue;
        };
        let bytes = std::fs::read(path).expect("a diagnostic names a file that exists");
        // A file that is not UTF-8 is shown with its bad bytes replaced.
        let source = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = source.split('\n').collect();
        assert!(
            snippet.line >= 1 && snippet.line <= lines.len(),
            "{diagnostic}"
        );
        let line = lines[snippet.line - 1].trim_end_matches('\r');
        assert_eq!(snippet.text, line);
        let length = line.chars().count().max(1);
        assert!(
            snippet.column >= 1 && snippet.column - 1 + snippet.width <= length,
            "{diagnostic}"
        );
    }
    assert!(!diagnostics.to_string().contains(SECRET));
});
