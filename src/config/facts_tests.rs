//! Validation runs without the file system: [`validate_rendered`] is given
//! the files a config names as [`FileFacts`] made in memory, under a root
//! that does not exist on disk, and its diagnostics follow those facts alone.
//! It agrees with [`load`], whose pre-pass looks at the real files.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::secrets::LocalSecrets;
use super::*;

/// A root no test creates: nothing under it can be found on disk.
const ROOT: &str = "/nonexistent-dispenser-facts";

const MAIN: &str = "[[service]]\npath = \"web\"\n";
const WEB_TLS: &str = "[service]\nname = \"web\"\nimage = \"nginx:1.27\"\n\n[proxy]\nhost = \"app.example.com\"\nservice_port = 80\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n";

fn root() -> PathBuf {
    assert!(!Path::new(ROOT).exists(), "{ROOT} must not exist");
    PathBuf::from(ROOT)
}

/// Validates `main` and `web` (the service.toml of `web/`) under [`ROOT`].
fn validate(main: &str, web: &str, facts: &FileFacts) -> Result<Loaded, Diagnostics> {
    let root = root();
    let config = SourceFile::plain(format!("{ROOT}/dispenser.toml"), main);
    let service = SourceFile::plain(format!("{ROOT}/web/service.toml"), web);
    validate_rendered(&config, &root, &[(root.join("web"), service)], facts)
}

fn errors(main: &str, web: &str, facts: &FileFacts) -> String {
    match validate(main, web, facts) {
        Ok(_) => panic!("the files should not validate"),
        Err(diagnostics) => diagnostics.to_string(),
    }
}

/// Facts where `key.pem` is a small file and `cert.pem` is `cert`.
fn tls_facts(cert: Option<FileFact>) -> FileFacts {
    let mut facts = FileFacts::default();
    facts.insert(format!("{ROOT}/web/key.pem"), FileFact::file("key"));
    if let Some(cert) = cert {
        facts.insert(format!("{ROOT}/web/cert.pem"), cert);
    }
    facts
}

#[test]
fn a_certificate_is_checked_from_its_facts_alone() {
    let large = FileKind::File {
        size: crate::config::MAX_FILE_BYTES + 1,
    };
    let denied = FileKind::Unreadable("Permission denied (os error 13)".into());
    let cases = [
        (None, "error: file `cert.pem` does not exist"),
        (
            Some(FileFact::of(FileKind::Folder)),
            "error: file `cert.pem` is not a regular file",
        ),
        (
            Some(FileFact::of(FileKind::Special)),
            "error: file `cert.pem` is not a regular file",
        ),
        (
            Some(FileFact::of(denied)),
            "error: cannot read file `cert.pem`: Permission denied (os error 13)",
        ),
        (
            Some(FileFact::of(large)),
            "error: file `cert.pem` is larger than 1 MiB",
        ),
    ];
    for (cert, expected) in cases {
        let text = errors(MAIN, WEB_TLS, &tls_facts(cert));
        assert!(text.starts_with(expected), "{text}");
        assert!(
            text.contains(&format!("--> {ROOT}/web/service.toml:8:13")),
            "{text}"
        );
        assert!(text.contains("1 error found"), "{text}");
    }
    // A file there, by the facts only: nothing exists under ROOT on disk.
    let loaded = validate(MAIN, WEB_TLS, &tls_facts(Some(FileFact::file("cert"))))
        .expect("a certificate and a key that the facts hold");
    let route = loaded.plan.services["web"].route.clone().expect("a route");
    assert_eq!(
        route.tls,
        TlsSource::Manual {
            cert_file: PathBuf::from(format!("{ROOT}/web/cert.pem")),
            key_file: PathBuf::from(format!("{ROOT}/web/key.pem")),
        }
    );
}

#[test]
fn the_notify_template_is_read_from_its_facts() {
    let main = format!(
        "{MAIN}\n[notify]\nwebhook = \"https://hooks.example.test/x\"\ntemplate = \"t.hbs\"\n"
    );
    let web = "[service]\nname = \"web\"\nimage = \"nginx:1.27\"\n";
    let with = |fact: Option<FileFact>| {
        let mut facts = FileFacts::default();
        if let Some(fact) = fact {
            facts.insert(format!("{ROOT}/t.hbs"), fact);
        }
        facts
    };
    let text = errors(&main, web, &with(Some(FileFact::file(*b"{{ \xff }}"))));
    assert!(
        text.starts_with(
            "error: cannot read the template `t.hbs`: stream did not contain valid UTF-8"
        ),
        "{text}"
    );
    assert!(text.contains("dispenser.toml:6:12"), "{text}");
    let text = errors(&main, web, &with(Some(FileFact::file("{{#if}}"))));
    assert!(
        text.starts_with("error: the template does not compile"),
        "{text}"
    );
    let text = errors(&main, web, &with(None));
    assert!(
        text.starts_with("error: cannot read the template `t.hbs`: no such file"),
        "{text}"
    );
    let loaded = validate(&main, web, &with(Some(FileFact::file("{{ event }}"))))
        .expect("a template that compiles");
    let notify = loaded.operator.notify.expect("[notify]");
    assert_eq!(notify.template.as_deref(), Some("{{ event }}"));
}

#[test]
fn mounts_follow_their_facts() {
    let web = "[service]\nname = \"web\"\nimage = \"nginx:1.27\"\n\n[[volume]]\nsource = \"./nginx.conf\"\ntarget = \"/etc/nginx/nginx.conf\"\n\n[[volume]]\nsource = \"data\"\ntarget = \"/data\"\n";
    let hash = |conf: FileFact, data: FileKind| {
        let mut facts = FileFacts::default();
        facts.insert(format!("{ROOT}/web/nginx.conf"), conf);
        facts.insert(format!("{ROOT}/web/data"), FileFact::of(data));
        let loaded = validate(MAIN, web, &facts).expect("the mounts validate");
        let warnings = loaded.warnings.to_string();
        (loaded.plan.services["web"].spec_hash.clone(), warnings)
    };
    let (one, quiet) = hash(FileFact::file("worker_processes 1;"), FileKind::Missing);
    let (two, _) = hash(FileFact::file("worker_processes 2;"), FileKind::Missing);
    let (folder, _) = hash(FileFact::of(FileKind::Folder), FileKind::Missing);
    let (missing, _) = hash(FileFact::of(FileKind::Missing), FileKind::Missing);
    assert_ne!(one, two, "a mounted file's content is in the hash");
    assert_eq!(folder, missing, "a mounted folder adds nothing");
    assert_ne!(one, missing);
    assert!(quiet.is_empty(), "{quiet}");
    let (_, warned) = hash(FileFact::file("worker_processes 1;"), FileKind::Folder);
    assert!(
        warned.contains(
            "`data` is a named volume, but the service folder has a folder with that name"
        ),
        "{warned}"
    );
}

#[test]
fn load_and_validate_rendered_agree() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let root = paths::absolute(dir.path());
    std::fs::write(root.join("dispenser.toml"), MAIN).expect("write");
    std::fs::create_dir(root.join("web")).expect("mkdir");
    std::fs::write(root.join("web/service.toml"), WEB_TLS).expect("write");
    std::fs::write(root.join("web/key.pem"), "key").expect("write");
    let loaded = load(&root.join("dispenser.toml"), &LocalSecrets::new(&root));
    let config = SourceFile::plain(paths::display(&root.join("dispenser.toml")), MAIN);
    let service = SourceFile::plain(paths::display(&root.join("web/service.toml")), WEB_TLS);
    let mut facts = FileFacts::default();
    facts.insert(root.join("web/key.pem"), FileFact::file("key"));
    let pure = validate_rendered(&config, &root, &[(root.join("web"), service)], &facts);
    let (loaded, pure) = (loaded.unwrap_err(), pure.unwrap_err());
    assert!(loaded.to_string().contains("does not exist"), "{loaded}");
    assert_eq!(loaded, pure);
}

/// Any fact of a file: every kind, sizes around the PEM limit.
fn any_fact() -> impl Strategy<Value = Option<FileFact>> {
    let limit = dispenser_actors::proxy::tls::MAX_PEM_FILE_BYTES;
    prop_oneof![
        Just(None),
        Just(Some(FileFact::of(FileKind::Missing))),
        Just(Some(FileFact::of(FileKind::Folder))),
        Just(Some(FileFact::of(FileKind::Special))),
        "[a-z ]{0,12}".prop_map(|why| Some(FileFact::of(FileKind::Unreadable(why)))),
        (limit - 2..limit + 2).prop_map(|size| Some(FileFact::of(FileKind::File { size }))),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|bytes| Some(FileFact::file(bytes))),
    ]
}

/// Whether a certificate or key with this fact is accepted.
fn acceptable(fact: &Option<FileFact>) -> bool {
    let limit = dispenser_actors::proxy::tls::MAX_PEM_FILE_BYTES;
    matches!(fact, Some(FileFact { kind: FileKind::File { size }, .. }) if *size <= limit)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn validation_follows_the_facts_and_only_them(cert in any_fact(), key in any_fact()) {
        let mut facts = FileFacts::default();
        for (name, fact) in [("cert.pem", &cert), ("key.pem", &key)] {
            if let Some(fact) = fact {
                facts.insert(format!("{ROOT}/web/{name}"), fact.clone());
            }
        }
        let first = validate(MAIN, WEB_TLS, &facts).map(|loaded| loaded.plan.services["web"].spec_hash.clone());
        let second = validate(MAIN, WEB_TLS, &facts).map(|loaded| loaded.plan.services["web"].spec_hash.clone());
        prop_assert_eq!(&first, &second);
        let expected_errors = usize::from(!acceptable(&cert)) + usize::from(!acceptable(&key));
        match first {
            Ok(_) => prop_assert_eq!(expected_errors, 0),
            Err(diagnostics) => {
                prop_assert_eq!(diagnostics.error_count(), expected_errors);
                for item in &diagnostics.items {
                    let snippet = item.snippet.as_ref().expect("a snippet");
                    prop_assert!(snippet.line == 8 || snippet.line == 9, "{}", item);
                }
            }
        }
    }
}
