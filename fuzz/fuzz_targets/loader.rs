//! Fuzzes the whole config loader: the input is
//! `dispenser.toml NUL service.toml NUL dispenser.vars` as raw bytes (so
//! non-UTF-8 too), written to a temporary tree with a file secret. Loading
//! never panics, every diagnostic points into its file, and none shows the
//! secret. The same two files then go through validation alone
//! (`validate_rendered`), with no file system: every file they may name is
//! in memory, its kind chosen by the input's last byte. Validation never
//! panics, gives the same result twice, and points into its files.
#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dispenser::config::render::Renderer;
use dispenser::config::{
    load, validate_rendered, Diagnostics, FileFact, FileFacts, FileKind, Loaded, LocalSecrets,
    SourceFile,
};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "Zq7-secret-VALUE-4x";
/// The root of the in-memory tree: nothing is read under it.
const MEMORY_ROOT: &str = "/dispenser-fuzz-memory";
/// Files a config may name, relative to the root, that the in-memory tree holds.
const NAMED: [&str; 7] = [
    "ca.pem",
    "notify.hbs",
    "web/cert.pem",
    "web/key.pem",
    "web/nginx.conf",
    "web/data",
    "web/conf/app.ini",
];

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder").keep();
        std::fs::create_dir_all(dir.join("web")).expect("mkdir");
        std::fs::write(dir.join("secret.txt"), SECRET).expect("write");
        dir
    })
}

/// One fact per [`NAMED`] file, each of a kind that `seed` and its index choose.
fn facts(seed: u8) -> FileFacts {
    let mut facts = FileFacts::default();
    for (index, name) in NAMED.iter().enumerate() {
        let fact = match (usize::from(seed) + index) % 8 {
            0 => continue,
            1 => FileFact::of(FileKind::Folder),
            2 => FileFact::of(FileKind::Special),
            3 => FileFact::of(FileKind::Unreadable(
                "Permission denied (os error 13)".into(),
            )),
            4 => FileFact::of(FileKind::File { size: 1 << 21 }),
            5 => FileFact::file(*b"{{ \xff }}"),
            6 => FileFact::file("{{#if}}"),
            _ => FileFact::file("-----BEGIN CERTIFICATE-----\n{{ event }}\n"),
        };
        facts.insert(Path::new(MEMORY_ROOT).join(name), fact);
    }
    facts
}

/// Each diagnostic that names one of `files` points at a line of its source.
fn points_into(diagnostics: &Diagnostics, files: &[&SourceFile]) {
    for diagnostic in &diagnostics.items {
        let (Some(path), Some(snippet)) = (&diagnostic.path, &diagnostic.snippet) else {
            continue;
        };
        let file = files
            .iter()
            .find(|file| &file.display == path)
            .expect("a diagnostic names a file it was given");
        let lines: Vec<&str> = file.source.split('\n').collect();
        assert!(
            snippet.line >= 1 && snippet.line <= lines.len(),
            "{diagnostic}"
        );
        assert_eq!(snippet.text, lines[snippet.line - 1].trim_end_matches('\r'));
    }
}

/// What validation gave: the services' spec hashes and the diagnostics.
fn outcome(result: Result<Loaded, Diagnostics>) -> (Vec<String>, Diagnostics) {
    match result {
        Ok(loaded) => {
            let hashes = loaded
                .plan
                .services
                .values()
                .map(|service| service.spec_hash.clone())
                .collect();
            (hashes, loaded.warnings)
        }
        Err(diagnostics) => (Vec::new(), diagnostics),
    }
}

/// Validation alone on the two files, rendered with fixed variables, against
/// in-memory facts.
fn validate_in_memory(dispenser: &[u8], service: &[u8], seed: u8) {
    let (Ok(dispenser), Ok(service)) =
        (std::str::from_utf8(dispenser), std::str::from_utf8(service))
    else {
        return;
    };
    let variables: BTreeMap<String, String> = [
        ("mode".to_string(), "a".to_string()),
        ("token".to_string(), "t".to_string()),
    ]
    .into();
    let renderer = Renderer::new();
    let render = |display: String, text: &str| {
        let rendered = renderer.render(text, &variables).ok()?;
        Some(SourceFile::rendered(display, text.to_string(), rendered))
    };
    let root = Path::new(MEMORY_ROOT);
    let Some(config) = render(format!("{MEMORY_ROOT}/dispenser.toml"), dispenser) else {
        return;
    };
    let Some(web) = render(format!("{MEMORY_ROOT}/web/service.toml"), service) else {
        return;
    };
    let facts = facts(seed);
    let services = [(root.join("web"), web.clone())];
    let first = outcome(validate_rendered(&config, root, &services, &facts));
    let second = outcome(validate_rendered(&config, root, &services, &facts));
    assert_eq!(first, second, "validation is deterministic");
    points_into(&first.1, &[&config, &web]);
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
    validate_in_memory(dispenser, service, data.last().copied().unwrap_or_default());
});
