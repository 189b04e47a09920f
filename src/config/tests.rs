//! Tests of loading whole trees from a temporary folder.

use std::path::Path;

use super::*;

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn load_tree(root: &Path) -> Result<Loaded, Diagnostics> {
    load(&root.join("dispenser.toml"), &LocalSecrets::new(root))
}

const WEB: &str = "[service]\nname = \"web\"\nimage = \"nginx:1.27\"\n\n[[port]]\nhost = 8080\ncontainer = 80\n\n[env]\nMODE = \"${mode}\"\n";

#[test]
fn spec_hash_ignores_lifecycle_route_and_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "dispenser.toml",
        "[[service]]\npath = \"web\"\n\n[[service]]\npath = \"db\"\n",
    );
    write(root, "dispenser.vars", "mode = \"a\"\n");
    write(
        root,
        "db/service.toml",
        "[service]\nname = \"db\"\nimage = \"postgres:16\"\n",
    );
    write(root, "web/service.toml", WEB);
    let base = load_tree(root).unwrap().plan.services["web"]
        .spec_hash
        .clone();

    let extra = "\n[proxy]\nhost = \"app.example.com\"\nservice_port = 80\n\n[dispenser]\nwatch = true\ncron = \"@daily\"\n\n[depends_on]\ndb = \"started\"\n";
    write(root, "web/service.toml", &format!("{WEB}{extra}"));
    let loaded = load_tree(root).unwrap();
    assert!(loaded.plan.services["web"].lifecycle.watch);
    assert_eq!(loaded.plan.services["web"].spec_hash, base);

    write(root, "dispenser.vars", "mode = \"b\"\n");
    let changed = load_tree(root).unwrap().plan.services["web"]
        .spec_hash
        .clone();
    assert_ne!(
        changed, base,
        "an env value from a variable changes the hash"
    );
}

#[test]
fn later_vars_files_override_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "dispenser.toml", "[[service]]\npath = \"web\"\n");
    write(root, "dispenser.vars", "env = \"prod\"\nmode = \"base\"\n");
    write(
        root,
        "a.dispenser.vars",
        "{% if env == \"prod\" %}\nmode = \"a\"\n{% endif %}\n",
    );
    write(root, "b.dispenser.vars", "mode = \"b-${env}\"\n");
    write(root, "web/service.toml", WEB);
    let plan = load_tree(root).unwrap().plan;
    assert_eq!(
        plan.services["web"].container.env["MODE"].expose(),
        "b-prod"
    );
}

#[test]
fn collects_errors_from_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "dispenser.toml",
        "[[service]]\npath = \"a\"\n\n[[service]]\npath = \"b\"\n\n[[service]]\npath = \"missing\"\n",
    );
    write(
        root,
        "a/service.toml",
        "[service]\nname = \"a\"\nimage = \"nginx\"\nrestrat = \"always\"\n",
    );
    write(
        root,
        "b/service.toml",
        "[service]\nname = \"b\"\nimage = \"nginx\"\nmemory = \"lots\"\n",
    );
    let errors = load_tree(root).unwrap_err();
    assert_eq!(errors.error_count(), 3, "{errors}");
    let text = errors.to_string();
    assert!(
        text.contains("unknown key `restrat` in [service]"),
        "{text}"
    );
    assert!(text.contains("help: did you mean `restart`?"), "{text}");
    assert!(text.contains("invalid memory value `lots`"), "{text}");
    assert!(text.contains("no service.toml in `missing`"), "{text}");
}

#[test]
fn finds_dependency_cycles_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "dispenser.toml",
        "[[service]]\npath = \"a\"\n\n[[service]]\npath = \"b\"\n",
    );
    write(
        root,
        "a/service.toml",
        "[service]\nname = \"a\"\nimage = \"nginx\"\n\n[depends_on]\nb = \"started\"\n",
    );
    write(
        root,
        "b/service.toml",
        "[service]\nname = \"b\"\nimage = \"nginx\"\n\n[depends_on]\na = \"healthy\"\n",
    );
    let errors = load_tree(root).unwrap_err();
    assert_eq!(errors.error_count(), 1, "{errors}");
    assert!(
        errors.to_string().contains("dependency cycle: a -> b -> a"),
        "{errors}"
    );
}
