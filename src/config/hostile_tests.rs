//! Hostile files: symbolic links, missing secret files, huge files and
//! non-UTF-8 bytes in each kind of file. Each gives a clear error naming the
//! file (and line where there is one), never a panic or a stall.

use std::path::Path;
use std::time::{Duration, Instant};

use super::secrets::LocalSecrets;
use super::*;

const MAIN: &str = "[[service]]\npath = \"web\"\n";
const WEB: &str = "[service]\nname = \"web\"\nimage = \"nginx:1.27\"\n";

fn write(root: &Path, relative: &str, content: &[u8]) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

/// A tree that loads; the test then spoils one file.
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    write(dir.path(), "dispenser.toml", MAIN.as_bytes());
    write(dir.path(), "web/service.toml", WEB.as_bytes());
    dir
}

/// Loads the tree and returns its report, which must be an error.
fn errors(root: &Path) -> String {
    match load(&root.join("dispenser.toml"), &LocalSecrets::new(root)) {
        Ok(_) => panic!("the tree should not load"),
        Err(diagnostics) => diagnostics.to_string(),
    }
}

#[test]
fn the_base_tree_loads() {
    let dir = tree();
    assert!(load(
        &dir.path().join("dispenser.toml"),
        &LocalSecrets::new(dir.path())
    )
    .is_ok());
}

#[test]
fn a_symlinked_service_folder_is_refused() {
    let dir = tree();
    let root = dir.path();
    std::fs::rename(root.join("web"), root.join("real-web")).expect("rename");
    std::os::unix::fs::symlink(root.join("real-web"), root.join("web")).expect("symlink");
    let text = errors(root);
    assert!(text.contains("is a symbolic link to `"), "{text}");
    assert!(text.contains("real-web`"), "{text}");
    assert!(text.contains("dispenser.toml:2:8"), "{text}");
    assert!(text.contains("write the real folder in `path`"), "{text}");

    // The real folder, named in `path`, is fine.
    write(
        root,
        "dispenser.toml",
        b"[[service]]\npath = \"real-web\"\n",
    );
    assert!(load(&root.join("dispenser.toml"), &LocalSecrets::new(root)).is_ok());
}

#[test]
fn a_symlinked_parent_folder_or_service_file_is_refused() {
    let dir = tree();
    let root = dir.path();
    std::fs::create_dir_all(root.join("real/apps/web")).expect("mkdir");
    std::fs::rename(
        root.join("web/service.toml"),
        root.join("real/apps/web/service.toml"),
    )
    .expect("rename");
    std::os::unix::fs::symlink(root.join("real/apps"), root.join("apps")).expect("symlink");
    write(
        root,
        "dispenser.toml",
        b"[[service]]\npath = \"apps/web\"\n",
    );
    assert!(errors(root).contains("apps` is a symbolic link"));

    std::os::unix::fs::symlink(
        root.join("real/apps/web/service.toml"),
        root.join("web/service.toml"),
    )
    .expect("symlink");
    write(root, "dispenser.toml", MAIN.as_bytes());
    assert!(errors(root).contains("web/service.toml` is a symbolic link"));
}

#[test]
fn a_dangling_symlinked_folder_is_refused_clearly() {
    let dir = tree();
    let root = dir.path();
    std::os::unix::fs::symlink(root.join("nowhere"), root.join("gone")).expect("symlink");
    write(root, "dispenser.toml", b"[[service]]\npath = \"gone\"\n");
    let text = errors(root);
    assert!(text.contains("gone` is a symbolic link to `"), "{text}");
}

#[test]
fn a_secret_file_that_is_missing_points_at_the_reference() {
    let dir = tree();
    let root = dir.path();
    write(
        root,
        "dispenser.vars",
        b"mode = \"a\"\ntoken = { source = \"file\", path = \"secrets/missing.txt\" }\n",
    );
    write(
        root,
        "web/service.toml",
        format!("{WEB}\n[env]\nTOKEN = \"${{ token }}\"\n").as_bytes(),
    );
    let text = errors(root);
    assert!(
        text.contains(
            "cannot resolve secret `token`: cannot read secret file `secrets/missing.txt`"
        ),
        "{text}"
    );
    assert!(text.contains("dispenser.vars:2:9"), "{text}");
    // Its use is not reported a second time as an undefined variable.
    assert!(!text.contains("undefined variable"), "{text}");
    assert!(text.contains("1 error found."), "{text}");
}

#[test]
fn a_ten_megabyte_config_is_refused_quickly() {
    let dir = tree();
    let root = dir.path();
    let mut huge = MAIN.as_bytes().to_vec();
    let filler = b"# padding padding padding padding padding padding padding padding\n";
    while huge.len() < 10 << 20 {
        huge.extend_from_slice(filler);
    }
    write(root, "dispenser.toml", &huge);
    write(root, "dispenser.vars", &huge);
    let started = Instant::now();
    let text = errors(root);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        text.contains("error: the file is larger than 1 MiB"),
        "{text}"
    );
    assert!(text.contains("dispenser.toml\n"), "{text}");
    assert!(text.contains("dispenser.vars\n"), "{text}");
}

#[test]
fn a_file_just_under_the_limit_loads() {
    let dir = tree();
    let root = dir.path();
    let mut big = MAIN.to_string();
    let filler = "# padding padding padding padding padding padding padding padding\n";
    while big.len() + filler.len() <= MAX_FILE_BYTES as usize {
        big.push_str(filler);
    }
    write(root, "dispenser.toml", big.as_bytes());
    let started = Instant::now();
    assert!(load(&root.join("dispenser.toml"), &LocalSecrets::new(root)).is_ok());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn non_utf8_bytes_name_the_file_line_and_column() {
    let cases: [(&str, &[u8]); 4] = [
        ("dispenser.toml", b"[[service]]\npath = \"w\xffeb\"\n"),
        (
            "web/service.toml",
            b"[service]\nname = \"web\"\nimage = \"ngi\xc3nx\"\n",
        ),
        ("dispenser.vars", b"mode = \"a\"\n\xfe = 1\n"),
        ("prod.dispenser.vars", b"# \xe9t\xe9\n"),
    ];
    for (file, content) in cases {
        let dir = tree();
        let root = dir.path();
        write(root, file, content);
        let text = errors(root);
        assert!(
            text.contains("error: the file is not valid UTF-8"),
            "{file}: {text}"
        );
        assert!(text.contains("invalid byte"), "{file}: {text}");
        assert!(text.contains("re-save the file as UTF-8"), "{file}: {text}");
        let at = match file {
            "dispenser.toml" => "dispenser.toml:2:10",
            "web/service.toml" => "web/service.toml:3:13",
            "dispenser.vars" => "dispenser.vars:2:1",
            _ => "prod.dispenser.vars:1:3",
        };
        assert!(text.contains(at), "{file}: expected {at} in {text}");
    }
}

#[test]
fn a_non_utf8_secret_file_is_a_clear_error() {
    let dir = tree();
    let root = dir.path();
    write(
        root,
        "dispenser.vars",
        b"token = { source = \"file\", path = \"key\" }\n",
    );
    write(root, "key", b"\xff\xfe\x00binary");
    let text = errors(root);
    assert!(
        text.contains("cannot read secret file `key`: the file is not valid UTF-8"),
        "{text}"
    );
    assert!(!text.contains("binary"), "{text}");
}

#[test]
fn a_service_folder_path_that_is_a_file_or_a_fifo_does_not_stall() {
    let dir = tree();
    let root = dir.path();
    std::fs::remove_file(root.join("web/service.toml")).expect("remove");
    std::fs::create_dir(root.join("web/service.toml")).expect("mkdir");
    let text = errors(root);
    assert!(
        text.contains("cannot read the file: not a regular file"),
        "{text}"
    );
    assert!(text.contains("web/service.toml"), "{text}");

    std::fs::remove_dir(root.join("web/service.toml")).expect("rmdir");
    nix::unistd::mkfifo(
        &root.join("web/service.toml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    let started = Instant::now();
    let text = errors(root);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        text.contains("cannot read the file: not a regular file"),
        "{text}"
    );
}

#[test]
fn deeply_nested_values_do_not_overflow_the_stack() {
    for (open, close) in [("[", "]"), ("{ a = ", "}")] {
        let dir = tree();
        let root = dir.path();
        let depth = 50_000;
        let text = format!(
            "{WEB}\n[env]\nX = {}1{}\n",
            open.repeat(depth),
            close.repeat(depth)
        );
        write(root, "web/service.toml", text.as_bytes());
        let text = errors(root);
        assert!(text.contains("web/service.toml"), "{text}");
    }
    let dir = tree();
    let root = dir.path();
    let depth = 50_000;
    let text = format!(
        "{WEB}{}\n{}",
        "{% if true %}".repeat(depth),
        "{% endif %}".repeat(depth)
    );
    write(root, "web/service.toml", text.as_bytes());
    let text = errors(root);
    assert!(text.contains("web/service.toml"), "{text}");
}

/// `cert_file` and `key_file` are bounded as the proxy reads them: a huge
/// file, a link to a device and a FIFO are refused, naming the file, at once.
#[test]
fn certificate_files_must_be_small_regular_files() {
    let dir = tree();
    let root = dir.path();
    write(root, "web/key.pem", b"x");
    let huge = std::fs::File::create(root.join("web/huge.pem")).expect("create");
    huge.set_len(2 << 20).expect("a 2 MiB file");
    std::os::unix::fs::symlink("/dev/zero", root.join("web/zero.pem")).expect("symlink");
    nix::unistd::mkfifo(
        &root.join("web/fifo.pem"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    write(root, "web/real.pem", b"x");
    std::os::unix::fs::symlink(root.join("web/real.pem"), root.join("web/link.pem"))
        .expect("symlink");
    let cases = [
        ("huge.pem", Some("file `huge.pem` is larger than 1 MiB")),
        ("zero.pem", Some("file `zero.pem` is not a regular file")),
        ("fifo.pem", Some("file `fifo.pem` is not a regular file")),
        // A link to a regular file is followed, as for every config file.
        ("link.pem", None),
    ];
    for (cert, expected) in cases {
        write(
            root,
            "web/service.toml",
            format!("{WEB}\n[proxy]\nhost = \"a.test\"\nservice_port = 80\ncert_file = \"{cert}\"\nkey_file = \"{cert}\"\n").as_bytes(),
        );
        let started = Instant::now();
        let result = load(&root.join("dispenser.toml"), &LocalSecrets::new(root));
        assert!(started.elapsed() < Duration::from_secs(5), "{cert}");
        match expected {
            Some(expected) => {
                let text = result.expect_err("refused").to_string();
                assert!(text.contains(expected), "{cert}: {text}");
                assert!(text.contains("web/service.toml:8:13"), "{cert}: {text}");
                assert!(text.contains("web/service.toml:9:12"), "{cert}: {text}");
            }
            None => assert!(
                result.is_ok(),
                "{cert}: {}",
                result.err().unwrap_or_default()
            ),
        }
    }
}

/// A variables file that is a FIFO, a folder or a link to a
/// device is refused with an error naming it, as docs/configuration.md says,
/// never skipped (nor waited on).
#[test]
fn a_variables_file_that_is_not_a_regular_file_is_refused() {
    for name in ["dispenser.vars", "prod.dispenser.vars"] {
        for kind in ["fifo", "folder", "device link", "dangling link"] {
            let dir = tree();
            let root = dir.path();
            let path = root.join(name);
            match kind {
                "fifo" => {
                    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                        .expect("mkfifo")
                }
                "folder" => std::fs::create_dir(&path).expect("mkdir"),
                "device link" => std::os::unix::fs::symlink("/dev/zero", &path).expect("symlink"),
                _ => std::os::unix::fs::symlink(root.join("nowhere"), &path).expect("symlink"),
            }
            let started = Instant::now();
            let text = errors(root);
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{name} ({kind}): {:?}",
                started.elapsed()
            );
            let shown = paths::display(&path);
            assert!(
                text.contains(&format!("  --> {shown}\n")),
                "{name} ({kind}) must be named: {text}"
            );
            let expected = if kind == "dangling link" {
                "error: file not found"
            } else {
                "error: cannot read the file: not a regular file"
            };
            assert!(text.contains(expected), "{name} ({kind}): {text}");
            assert!(text.contains("1 error found."), "{name} ({kind}): {text}");
        }
    }
}

/// A variable declared in a variables file that is refused (here
/// a bad secret name) is not reported again as undefined where it is used,
/// nor are the file's other variables.
#[test]
fn the_variables_of_a_refused_vars_file_are_not_called_undefined() {
    let dir = tree();
    let root = dir.path();
    write(
        root,
        "dispenser.vars",
        b"mode = \"a\"\ndb = { source = \"google\", name = \"db-password\" }\n",
    );
    write(
        root,
        "web/service.toml",
        format!("{WEB}\n[env]\nDB = \"${{ db }}\"\nMODE = \"${{ mode }}\"\n").as_bytes(),
    );
    let text = errors(root);
    assert!(text.contains("is not a secret manager name"), "{text}");
    assert!(!text.contains("undefined variable"), "{text}");
    assert!(text.contains("1 error found."), "{text}");

    // The same when the file is not TOML at all, or cannot be read.
    write(root, "dispenser.vars", b"mode = \"a\ndb = 1\n");
    let text = errors(root);
    assert!(text.contains("invalid TOML"), "{text}");
    assert!(!text.contains("undefined variable"), "{text}");
    std::fs::remove_file(root.join("dispenser.vars")).expect("remove");
    std::fs::create_dir(root.join("dispenser.vars")).expect("mkdir");
    let text = errors(root);
    assert!(text.contains("not a regular file"), "{text}");
    assert!(!text.contains("undefined variable"), "{text}");

    // A variable no file declares is still undefined.
    std::fs::remove_dir(root.join("dispenser.vars")).expect("rmdir");
    write(root, "dispenser.vars", b"mode = \"a\"\n");
    let text = errors(root);
    assert!(text.contains("undefined variable `db`"), "{text}");
}

/// Through the loader: a secret holding TOML lines is the
/// value of its `[env]` key, and adds no volume.
#[test]
fn a_secret_holding_toml_lines_adds_no_key() {
    let dir = tree();
    let root = dir.path();
    let injection = "x\"\n[[volume]]\nsource = \"/\"\ntarget = \"/host\"\n#";
    write(root, "token.txt", injection.as_bytes());
    write(
        root,
        "dispenser.vars",
        b"token = { source = \"file\", path = \"token.txt\" }\n",
    );
    write(
        root,
        "web/service.toml",
        format!("{WEB}\n[env]\nTOKEN = \"${{ token }}\"\n").as_bytes(),
    );
    let loaded = load(&root.join("dispenser.toml"), &LocalSecrets::new(root)).expect("loads");
    let web = &loaded.plan.services["web"];
    assert!(web.container.volumes.is_empty());
    assert_eq!(web.container.env["TOKEN"].expose(), injection);

    // Without quotes it cannot be written at all.
    write(
        root,
        "web/service.toml",
        format!("{WEB}\n[env]\nTOKEN = ${{ token }}\n").as_bytes(),
    );
    let text = errors(root);
    assert!(
        text.contains("the value of `${ token }` is written without quotes"),
        "{text}"
    );
    assert!(text.contains("web/service.toml:6:9"), "{text}");
    assert!(!text.contains("/host"), "{text}");
}
