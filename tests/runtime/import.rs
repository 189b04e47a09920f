//! `dispenser import compose`: a Compose file written as teams write them
//! (an anchor with merge keys, both port forms, long depends_on, an env file,
//! a secret in `${}`) is imported and the output runs on the real Docker Engine.

use std::io::{Read, Write};
use std::process::Command;

use crate::support::{docker, inspect, text, Sandbox};

const BUSYBOX: &str = "dispenser-test/busybox:latest";
const WEB: &str = "dispenser-test/web:v1";

#[test]
fn an_imported_compose_stack_runs() {
    let mut sb = Sandbox::new();
    let web = sb.name("web");
    let client = sb.name("client");
    let back = sb.name("back");
    let data = sb.name("data");
    sb.write(
        "compose/compose.yaml",
        &format!(
            r#"x-defaults: &defaults
  restart: unless-stopped
  stop_grace_period: 5s
  networks: [back]

services:
  {web}:
    <<: *defaults
    image: {WEB}
    ports:
      - target: 80
        published: "${{WEB_PORT:-8080}}"
    volumes:
      - ./site:/www:ro
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1/"]
      interval: 1s
      retries: 30
  {client}:
    <<: *defaults
    image: {BUSYBOX}
    env_file: client.env
    environment:
      - API_TOKEN=${{API_TOKEN}}
      - GREETING=$${{literal}}
    volumes:
      - {data}:/data
    depends_on:
      {web}:
        condition: service_healthy

networks:
  back:
    name: {back}
    internal: true
"#
        ),
    );
    sb.write("compose/site/index.html", "imported\n");
    // A free host port, through `.env` as Compose users set one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    sb.write("compose/.env", &format!("WEB_PORT={port}\n"));
    sb.write(
        "compose/client.env",
        "# the client's settings\nMODE=compose\nEMPTY=\n",
    );
    // Import into the sandbox's folder, then put the sandbox's settings
    // (instance, default network, proxy off) in front of the imported file.
    let import = Command::new(env!("CARGO_BIN_EXE_dispenser"))
        .current_dir(sb.path("compose"))
        .args(["import", "compose", "compose.yaml", "-o"])
        .arg(sb.dir.path())
        .output()
        .expect("run dispenser import");
    assert!(import.status.success(), "{}", text(&import.stderr));
    let imported = std::fs::read_to_string(sb.config()).unwrap();
    sb.write_main();
    let settings = std::fs::read_to_string(sb.config()).unwrap();
    sb.write("dispenser.toml", &format!("{settings}\n{imported}"));
    sb.set_env("API_TOKEN", "token-from-the-environment");
    let daemon = sb.start();

    // The bind mount was rewritten relative to the service folder.
    let page = docker(&["exec", &client, "wget", "-qO-", &format!("http://{web}/")]);
    assert_eq!(page.trim(), "imported");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.ends_with("imported\n"), "{answer}");
    let env = docker(&["exec", &client, "env"]);
    for expected in [
        "API_TOKEN=token-from-the-environment",
        "GREETING=${literal}",
        "MODE=compose",
        "EMPTY=",
    ] {
        assert!(
            env.lines().any(|line| line == expected),
            "{expected}:\n{env}"
        );
    }
    let client_info = inspect(&client);
    assert_eq!(
        client_info["HostConfig"]["RestartPolicy"]["Name"],
        "unless-stopped"
    );
    assert!(client_info["NetworkSettings"]["Networks"][&back].is_object());
    assert_eq!(inspect(&back)["Internal"], true);
    let mounts = client_info["Mounts"].as_array().unwrap();
    assert!(
        mounts.iter().any(|mount| mount["Name"] == data.as_str()),
        "{mounts:?}"
    );

    daemon.stop();
}
