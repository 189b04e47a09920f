//! Unit tests of the Compose mapping.

use super::*;
use crate::import::yaml;

fn run(source: &str) -> Imported {
    let read = |path: &Path| -> Result<Option<String>, String> {
        Ok(match path.to_str() {
            Some("app.env") => Some("# comment\n\nexport MODE=prod\nEMPTY=\nQUOTED=\"a b\" \nLITERAL='$x'\nAPI_KEY=abc123\n".into()),
            Some(".env") => Some("TAG=2.0\n".into()),
            _ => None,
        })
    };
    let inputs = Inputs {
        compose_name: "compose.yaml",
        compose_dir: Path::new("/srv/app"),
        out_dir: Path::new("/srv/app/dispenser"),
        read_env_file: &read,
    };
    import(&yaml::parse(source).unwrap(), &inputs).unwrap()
}

fn service<'a>(imported: &'a Imported, name: &str) -> &'a str {
    &imported.services.iter().find(|(n, _)| n == name).unwrap().1
}

#[test]
fn ports_short_and_long_form() {
    let imported = run("services:\n  web:\n    image: nginx\n    ports:\n      - \"8080:80\"\n      - 443:443/tcp\n      - target: 9000\n        published: \"${WEB_PORT:-9001}\"\n");
    let text = service(&imported, "web");
    assert!(
        text.contains("[[port]]\nhost = 8080\ncontainer = 80\n"),
        "{text}"
    );
    assert!(text.contains("host = 443\ncontainer = 443\n"), "{text}");
    assert!(
        text.contains("host = ${ web_port }\ncontainer = 9000\n"),
        "{text}"
    );
    assert!(
        imported.vars.contains("web_port = 9001\n"),
        "{}",
        imported.vars
    );
    assert!(imported.dropped.is_empty());
}

#[test]
fn unmappable_ports_are_dropped_with_their_line() {
    let imported = run("services:\n  web:\n    image: nginx\n    ports:\n      - \"53:53/udp\"\n      - \"127.0.0.1:8080:80\"\n      - \"8000-8001:8000-8001\"\n");
    let found: Vec<(usize, &str)> = imported
        .dropped
        .iter()
        .map(|d| (d.line, d.key.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (5, "services.web.ports"),
            (6, "services.web.ports"),
            (7, "services.web.ports")
        ]
    );
    assert!(imported.dropped[2].reason.contains("range"));
}

#[test]
fn environment_env_files_and_secrets() {
    let imported = run("services:\n  api:\n    image: api\n    env_file: app.env\n    environment:\n      - MODE=dev\n      - DB_PASSWORD=${DB_PASSWORD}\n      - HOME_DIR\n      - ADMIN_PASSWORD=hunter2\n");
    let text = service(&imported, "api");
    assert!(text.contains("\"MODE\" = \"dev\"\n"), "{text}");
    assert!(text.contains("\"EMPTY\" = \"\"\n"), "{text}");
    assert!(text.contains("\"QUOTED\" = \"a b\"\n"), "{text}");
    assert!(text.contains("\"LITERAL\" = \"$x\"\n"), "{text}");
    assert!(
        text.contains("\"DB_PASSWORD\" = \"${ db_password }\"\n"),
        "{text}"
    );
    assert!(
        text.contains("\"HOME_DIR\" = \"${ home_dir }\"\n"),
        "{text}"
    );
    assert!(!text.contains("hunter2") && !imported.vars.contains("hunter2"));
    assert!(!text.contains("abc123") && !imported.vars.contains("abc123"));
    assert!(
        imported
            .vars
            .contains("admin_password = { source = \"env\", name = \"ADMIN_PASSWORD\" }\n"),
        "{}",
        imported.vars
    );
    assert!(imported
        .vars
        .contains("api_key = { source = \"env\", name = \"API_KEY\" }\n"));
}

#[test]
fn a_secret_default_is_never_written() {
    let imported = run("services:\n  db:\n    image: postgres\n    environment:\n      POSTGRES_PASSWORD: ${PG_PASSWORD:-changeme}\n      POSTGRES_USER: ${PG_USER:-app}\n");
    assert!(!imported.vars.contains("changeme"), "{}", imported.vars);
    assert!(imported
        .vars
        .contains("pg_password = { source = \"env\", name = \"PG_PASSWORD\" }\n"));
    assert!(imported.vars.contains("pg_user = \"app\"\n"));
}

#[test]
fn volumes_are_rewritten_relative_to_the_service_folder() {
    let imported = run("services:\n  db:\n    image: postgres\n    volumes:\n      - ./data:/data:ro\n      - pgdata:/var/lib/postgresql/data\n      - type: bind\n        source: /etc/ssl\n        target: /ssl\n        read_only: true\nvolumes:\n  pgdata:\n    name: shared-pgdata\n");
    let text = service(&imported, "db");
    assert!(
        text.contains("source = \"../../data\"\ntarget = \"/data\"\nreadonly = true\n"),
        "{text}"
    );
    assert!(text.contains("source = \"shared-pgdata\"\n"), "{text}");
    assert!(
        text.contains("source = \"/etc/ssl\"\ntarget = \"/ssl\"\nreadonly = true\n"),
        "{text}"
    );
}

#[test]
fn depends_on_healthcheck_and_resources() {
    let imported = run("services:\n  api:\n    image: api\n    restart: unless-stopped\n    mem_limit: 512m\n    deploy:\n      resources:\n        limits:\n          cpus: '0.5'\n    depends_on:\n      db:\n        condition: service_healthy\n      init:\n        condition: service_completed_successfully\n    healthcheck:\n      test: [\"CMD\", \"wget\", \"-q\", \"-O-\", \"http://localhost/\"]\n      interval: 10s\n      retries: 3\n  worker:\n    image: api\n    depends_on: [api]\n    healthcheck:\n      test: pg_isready\n");
    let api = service(&imported, "api");
    assert!(
        api.contains("memory = \"512m\"\ncpus = \"0.5\"\nrestart = \"unless-stopped\"\n"),
        "{api}"
    );
    assert!(
        api.contains("[depends_on]\n\"db\" = \"healthy\"\n\"init\" = \"completed\"\n"),
        "{api}"
    );
    assert!(api.contains("test = [\"CMD\", \"wget\", \"-q\", \"-O-\", \"http://localhost/\"]\ninterval = \"10s\"\nretries = 3\n"), "{api}");
    let worker = service(&imported, "worker");
    assert!(worker.contains("\"api\" = \"started\"\n"), "{worker}");
    assert!(worker.contains("test = \"pg_isready\"\n"), "{worker}");
}

#[test]
fn networks_and_lossy_keys() {
    let imported = run("networks:\n  back:\n    internal: true\n  default:\nservices:\n  web:\n    image: nginx\n    build: .\n    container_name: web1\n    networks: [back, default]\n    extra_hosts:\n      - \"db.local:10.0.0.2\"\n");
    assert!(
        imported
            .dispenser_toml
            .contains("[[network]]\nname = \"back\"\ninternal = true\n"),
        "{}",
        imported.dispenser_toml
    );
    let web = service(&imported, "web");
    assert!(web.contains("[[network]]\nname = \"back\"\n"), "{web}");
    assert!(
        web.contains("hostname = \"db.local\"\nipv4 = \"10.0.0.2\"\n"),
        "{web}"
    );
    let found: Vec<(usize, &str)> = imported
        .dropped
        .iter()
        .map(|d| (d.line, d.key.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (8, "services.web.build"),
            (9, "services.web.container_name")
        ]
    );
}

#[test]
fn logging_becomes_the_logging_table() {
    let imported = run("services:\n  web:\n    image: nginx\n    logging:\n      driver: local\n      options:\n        max-size: 20m\n        max-file: \"5\"\n");
    let web = service(&imported, "web");
    assert!(
        web.contains("[logging]\ndriver = \"local\"\n\n[logging.options]\n\"max-file\" = \"5\"\n\"max-size\" = \"20m\"\n")
            || web.contains("[logging]\ndriver = \"local\"\n\n[logging.options]\n\"max-size\" = \"20m\"\n\"max-file\" = \"5\"\n"),
        "{web}"
    );
    assert!(imported.dropped.is_empty(), "{:?}", imported.dropped);
}

#[test]
fn relative_paths() {
    assert_eq!(
        relative_to(Path::new("/a/b/c"), Path::new("/a/d")),
        "../b/c"
    );
    assert_eq!(relative_to(Path::new("/a/d/x"), Path::new("/a/d")), "./x");
    assert_eq!(
        relative_to(Path::new("/srv/x"), Path::new("/tmp/out/web")),
        "/srv/x"
    );
    assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
}

#[test]
fn dot_env_wins_over_the_default() {
    let imported = run("services:\n  web:\n    image: nginx:${TAG:-1.0}\n");
    assert!(
        imported.vars.contains("tag = \"2.0\"\n"),
        "{}",
        imported.vars
    );
}
