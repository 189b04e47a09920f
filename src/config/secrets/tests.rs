//! Unit tests of the local sources and of the batch resolver.

use super::*;

#[test]
fn file_secret_trims_one_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret\n\n").unwrap();
    let secrets = LocalSecrets::new(dir.path());
    let value = secrets
        .resolve(&SecretRef::File {
            path: "token".into(),
        })
        .unwrap();
    assert_eq!(value.expose(), "s3cret\n");
}

#[test]
fn missing_sources_are_errors_without_values() {
    let secrets = LocalSecrets::new("/nonexistent");
    let env = secrets.resolve(&SecretRef::Env {
        name: "DISPENSER_TEST_SURELY_UNSET_VARIABLE".into(),
    });
    assert!(matches!(env, Err(SecretError::EnvNotSet { .. })));
    let google = secrets.resolve(&SecretRef::Google {
        name: "projects/p/secrets/s".into(),
        version: DEFAULT_SECRET_VERSION.into(),
    });
    assert_eq!(
        google.unwrap_err().to_string(),
        "google secret manager is not available to this resolver"
    );
}

#[test]
fn batch_keeps_order_and_mixes_sources() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), "from-file\n").unwrap();
    let secrets = Secrets::from_env(dir.path());
    let results = secrets.resolve_all(&[
        SecretRef::File { path: "a".into() },
        SecretRef::Env {
            name: "DISPENSER_TEST_SURELY_UNSET_VARIABLE".into(),
        },
        SecretRef::File {
            path: "missing".into(),
        },
    ]);
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].as_ref().unwrap().expose(), "from-file");
    assert!(matches!(results[1], Err(SecretError::EnvNotSet { .. })));
    assert!(matches!(results[2], Err(SecretError::File { .. })));
}
