//! Tests of loading whole trees from a temporary folder.

use std::path::Path;

use super::secrets::LocalSecrets;
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

#[test]
fn the_valid_stack_resolves_every_field() {
    use dispenser_actors::plan::{
        DependsOn, Initialize, MountSource, NetworkDriver, ProxyStrategy, PullPolicy,
        RestartPolicy, TlsSource,
    };
    std::env::set_var("DISPENSER_TEST_DB_PASSWORD", "hunter2");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/valid/stack");
    let loaded = load_tree(&root).unwrap_or_else(|errors| panic!("{errors}"));
    let plan = &loaded.plan;
    assert_eq!(plan.settings.instance, "stack-prod");
    assert_eq!(plan.settings.default_network.name, "dispenser-prod");
    assert_eq!(plan.settings.state_dir, root.join(".dispenser"));
    assert_eq!(plan.networks["storage"].driver, NetworkDriver::Bridge);
    assert!(plan.networks["storage"].internal);
    assert!(plan.networks["shared-edge"].external);
    assert_eq!(plan.networks["backend"].labels["env"], "prod");
    let proxy = plan.proxy.as_ref().unwrap();
    assert_eq!(proxy.strategy, ProxyStrategy::HttpsOnly);
    assert_eq!(proxy.https_listen.port(), 8443);
    assert_eq!(proxy.max_header_bytes, 32768);
    assert_eq!(proxy.idle_timeout, std::time::Duration::from_secs(120));
    assert_eq!(proxy.workers, Some(3));
    assert_eq!(
        plan.acme.as_ref().unwrap().ca_bundle,
        Some(root.join("ca.pem"))
    );

    let web = &plan.services["web"];
    let route = web.route.as_ref().unwrap();
    assert_eq!(route.host, "www.example.com");
    assert!(matches!(route.tls, TlsSource::Manual { .. }));
    assert_eq!(web.container.memory_bytes, Some(256 << 20));
    assert_eq!(web.container.nano_cpus, Some(500_000_000));
    assert_eq!(web.container.image.tag.as_deref(), Some("1.27"));

    let api = &plan.services["api"];
    assert_eq!(api.route.as_ref().unwrap().path, "/v1");
    assert_eq!(api.depends_on["db"], DependsOn::Healthy);
    assert_eq!(api.container.restart, RestartPolicy::OnFailure);
    assert_eq!(api.container.env["WORKERS"].expose(), "4");
    assert_eq!(api.container.env["DEBUG"].expose(), "false");
    assert_eq!(api.container.env["API_TOKEN"].expose(), "not-a-real-token");
    assert!(api.container.env["DATABASE_URL"]
        .expose()
        .contains("hunter2"));
    assert_eq!(api.container.healthcheck.as_ref().unwrap().test[0], "CMD");

    let db = &plan.services["db"];
    assert_eq!(
        db.container.volumes[0].source,
        MountSource::Volume("pgdata".into())
    );
    assert_eq!(
        db.container.healthcheck.as_ref().unwrap().test[0],
        "CMD-SHELL"
    );

    let worker = &plan.services["worker"];
    assert_eq!(
        worker.container.entrypoint,
        Some(vec![
            "/usr/local/bin/worker".into(),
            "--queue".into(),
            "default high".into()
        ])
    );
    assert_eq!(worker.lifecycle.pull, PullPolicy::Always);

    let backup = &plan.services["backup"];
    assert_eq!(backup.lifecycle.initialize, Initialize::OnTrigger);
    assert!(backup.lifecycle.schedule.is_some());
    assert!(backup.container.image.digest.is_some());
    assert_eq!(
        backup.container.volumes[0].source,
        MountSource::Bind(root.join("backup/scripts"))
    );
    assert_eq!(plan.start_order().first(), Some(&"db"));
    assert!(loaded.warnings.items.is_empty());
}

/// Answers every reference with a fixed value per name, Google's included.
struct FixedSecrets;

impl SecretResolver for FixedSecrets {
    fn resolve_all(
        &self,
        secrets: &[SecretRef],
    ) -> Vec<Result<dispenser_actors::plan::Sensitive, secrets::SecretError>> {
        secrets
            .iter()
            .map(|secret| {
                let value = match secret {
                    SecretRef::Google { name, .. } => format!("g-{}", name.len()),
                    SecretRef::Env { name } => format!("e-{name}"),
                    SecretRef::File { path } => format!("f-{}", path.display()),
                };
                Ok(dispenser_actors::plan::Sensitive::new(value))
            })
            .collect()
    }
}

#[test]
fn env_origins_name_the_secret_source_and_never_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "dispenser.toml", "[[service]]\npath = \"web\"\n");
    write(
        root,
        "dispenser.vars",
        "mode = \"prod\"\ndb = { source = \"google\", name = \"projects/p/secrets/db\" }\ntoken = { source = \"env\", name = \"TOKEN\" }\nkey = { source = \"file\", path = \"key.txt\" }\n",
    );
    write(
        root,
        "web/service.toml",
        "[service]\nname = \"web\"\nimage = \"nginx:1.27\"\n\n[env]\nLITERAL = \"x\"\nMODE = \"${ mode }\"\nDB = \"${ db }\"\nTOKEN = \"${ token }\"\nKEY = \"${ key }\"\nURL = \"postgres://u:${ db }@h/x\"\nUPPER = \"${ token | upper }\"\nCOPY = \"e-TOKEN\"\n",
    );
    let loaded = load(&root.join("dispenser.toml"), &FixedSecrets).unwrap();
    let env = &loaded.origins.service("web").unwrap().env;
    assert_eq!(env["LITERAL"], EnvOrigin::Plain);
    assert_eq!(env["MODE"], EnvOrigin::Plain);
    assert_eq!(
        env["DB"],
        EnvOrigin::Secret {
            variable: "db".into(),
            source: SecretRef::Google {
                name: "projects/p/secrets/db".into(),
                version: "latest".into()
            }
        }
    );
    assert_eq!(
        env["TOKEN"],
        EnvOrigin::Secret {
            variable: "token".into(),
            source: SecretRef::Env {
                name: "TOKEN".into()
            }
        }
    );
    assert!(matches!(
        &env["KEY"],
        EnvOrigin::Secret { source: SecretRef::File { path }, .. } if path == Path::new("key.txt")
    ));
    for mixed in ["URL", "UPPER", "COPY"] {
        assert!(
            matches!(&env[mixed], EnvOrigin::Mixed { variables } if !variables.is_empty()),
            "{mixed}: {:?}",
            env[mixed]
        );
    }
    let shown = format!("{:?}", loaded.origins.service("web").unwrap());
    assert!(
        !shown.contains("e-TOKEN") && !shown.contains("g-"),
        "{shown}"
    );
}
