//! Tests of the Docker config lookup: `auths`, `identitytoken`, helpers.

use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;

use super::*;

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn config(dir: &tempfile::TempDir, json: &str) -> DockerConfig {
    let path = dir.path().join("config.json");
    std::fs::write(&path, json).unwrap();
    DockerConfig::at(path).with_helper_path(dir.path())
}

/// A `docker-credential-<name>` script in `dir` that answers for one key.
fn helper(dir: &tempfile::TempDir, name: &str, key: &str, user: &str, secret: &str) {
    let path = dir.path().join(format!("docker-credential-{name}"));
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r key\nif [ \"$key\" = '{key}' ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}' \"$key\"\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn basic(user: &str, password: &str) -> Option<Credential> {
    Some(Credential::Basic {
        username: user.into(),
        password: Sensitive::new(password),
    })
}

#[tokio::test]
async fn auths_entry_password_may_contain_colons() {
    let dir = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{}"}}}}}}"#,
        b64("alice:pa:ss:word")
    );
    let found = config(&dir, &json).lookup("127.0.0.1:5000").await.unwrap();
    assert_eq!(found, basic("alice", "pa:ss:word"));
    let other = config(&dir, &json).lookup("ghcr.io").await.unwrap();
    assert_eq!(other, None);
}

#[tokio::test]
async fn docker_hub_uses_the_index_key_and_scheme_prefixes_match() {
    let dir = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"https://ghcr.io":{{"auth":"{}"}}}}}}"#,
        b64("hub:secret"),
        b64("gh:token")
    );
    let store = config(&dir, &json);
    assert_eq!(
        store.lookup("docker.io").await.unwrap(),
        basic("hub", "secret")
    );
    assert_eq!(store.lookup("ghcr.io").await.unwrap(), basic("gh", "token"));
}

#[tokio::test]
async fn identity_token_wins_over_auth() {
    let dir = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"auths":{{"reg.example":{{"auth":"{}","identitytoken":"refresh-1"}}}}}}"#,
        b64("u:p")
    );
    let found = config(&dir, &json).lookup("reg.example").await.unwrap();
    assert_eq!(
        found,
        Some(Credential::IdentityToken(Sensitive::new("refresh-1")))
    );
}

#[tokio::test]
async fn cred_helpers_then_creds_store_then_auths() {
    let dir = tempfile::tempdir().unwrap();
    helper(&dir, "one", "reg.example", "helper-user", "helper-secret");
    helper(
        &dir,
        "store",
        "https://index.docker.io/v1/",
        "<token>",
        "idt",
    );
    let json = format!(
        r#"{{"credHelpers":{{"reg.example":"one"}},"credsStore":"store","auths":{{"other.example":{{"auth":"{}"}}}}}}"#,
        b64("file:pw")
    );
    let store = config(&dir, &json);
    assert_eq!(
        store.lookup("reg.example").await.unwrap(),
        basic("helper-user", "helper-secret")
    );
    assert_eq!(
        store.lookup("docker.io").await.unwrap(),
        Some(Credential::IdentityToken(Sensitive::new("idt")))
    );
    // The store knows nothing of it: the auths entry is used.
    assert_eq!(
        store.lookup("other.example").await.unwrap(),
        basic("file", "pw")
    );
}

#[tokio::test]
async fn missing_helper_and_bad_files_are_errors_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let store = config(&dir, r#"{"credHelpers":{"reg.example":"absent"}}"#);
    let err = store.lookup("reg.example").await.unwrap_err();
    assert!(
        err.to_string().contains("docker-credential-absent"),
        "{err}"
    );
    let store = config(&dir, r#"{"auths":{"reg.example":{"auth":"!!!"}}}"#);
    let err = store.lookup("reg.example").await.unwrap_err();
    assert!(err.to_string().contains("not valid base64"), "{err}");
    let store = config(&dir, r#"{"credHelpers":{"reg.example":"../evil"}}"#);
    assert!(store.lookup("reg.example").await.is_err());
}

#[tokio::test]
async fn no_config_file_means_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let store = DockerConfig::at(dir.path().join("absent.json"));
    assert_eq!(store.lookup("docker.io").await.unwrap(), None);
}

#[test]
fn decoded_password_is_masked_in_debug() {
    let credential = decode_auth(&b64("bob:hunter2")).unwrap();
    assert!(!format!("{credential:?}").contains("hunter2"));
}
