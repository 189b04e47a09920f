//! Unit tests of the pure parts of the Google source: decoding answers and
//! classifying errors. The client itself is tested against a stand-in server
//! in tests/runtime/secrets.rs.

use super::*;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn decodes_a_text_payload() {
    let body = format!(
        r#"{{"name":"projects/1/secrets/s/versions/3","payload":{{"data":"{}"}}}}"#,
        b64("pässword".as_bytes())
    );
    assert_eq!(
        decode_payload(body.as_bytes()).unwrap().expose(),
        "pässword"
    );
}

#[test]
fn binary_and_malformed_payloads_are_errors_without_values() {
    let body = format!(r#"{{"payload":{{"data":"{}"}}}}"#, b64(&[0xff, 0xfe, 0x00]));
    assert_eq!(decode_payload(body.as_bytes()), Err(GoogleError::Binary));
    let wrong_type = br#"{"payload":{"data":"c2VjcmV0LXZhbHVl!"}}"#;
    let err = decode_payload(wrong_type).unwrap_err().to_string();
    assert!(err.contains("not base64"), "{err}");
    assert!(!err.contains("c2VjcmV0"), "{err}");
    let err = decode_payload(b"secret-value").unwrap_err().to_string();
    assert!(!err.contains("secret-value"), "{err}");
}

#[test]
fn classifies_not_found_and_permission_denied() {
    let not_found = br#"{"error":{"code":404,"message":"Secret [projects/1/secrets/x] not found or has no versions.","status":"NOT_FOUND"}}"#;
    assert_eq!(
        classify(StatusCode::NOT_FOUND, not_found, "me", "p"),
        GoogleError::NotFound
    );
    let denied = br#"{"error":{"code":403,"message":"Permission 'secretmanager.versions.access' denied","status":"PERMISSION_DENIED"}}"#;
    let err = classify(StatusCode::FORBIDDEN, denied, "service account `a@b`", "p");
    assert_eq!(
        err,
        GoogleError::PermissionDenied {
            principal: "service account `a@b`".into()
        }
    );
    assert!(err.help().unwrap().contains(ACCESSOR_ROLE));
}

#[test]
fn classifies_a_disabled_api_by_reason_or_message() {
    let by_reason = br#"{"error":{"code":403,"message":"Secret Manager API has not been used in project 123 before or it is disabled.","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"SERVICE_DISABLED","domain":"googleapis.com","metadata":{"consumer":"projects/123","service":"secretmanager.googleapis.com","activationUrl":"https://console.developers.google.com/apis/api/secretmanager.googleapis.com/overview?project=123"}}]}}"#;
    let err = classify(StatusCode::FORBIDDEN, by_reason, "me", "p");
    assert!(
        matches!(&err, GoogleError::ApiDisabled { project, activation_url: Some(_) } if project == "123"),
        "{err:?}"
    );
    let by_message = br#"{"error":{"code":403,"message":"Secret Manager API has not been used in project my-proj before or it is disabled."}}"#;
    assert_eq!(
        classify(StatusCode::FORBIDDEN, by_message, "me", "my-proj"),
        GoogleError::ApiDisabled {
            project: "my-proj".into(),
            activation_url: None
        }
    );
}

#[test]
fn server_errors_are_transient_and_quoted_briefly() {
    let err = classify(StatusCode::SERVICE_UNAVAILABLE, b"", "me", "p");
    assert!(err.is_transient());
    assert_eq!(
        err.to_string(),
        "google secret manager answered 503: service unavailable"
    );
    assert!(!GoogleError::NotFound.is_transient());
    let long = format!(r#"{{"error":{{"message":"{}"}}}}"#, "x".repeat(1000));
    let GoogleError::Api { message, .. } =
        classify(StatusCode::BAD_REQUEST, long.as_bytes(), "me", "p")
    else {
        panic!("expected an api error");
    };
    assert_eq!(message.len(), MAX_QUOTED_MESSAGE);
}

#[test]
fn nothing_wanted_fetches_nothing() {
    let google = GoogleSecrets::new("http://127.0.0.1:9", ATTEMPT_TIMEOUT);
    assert!(google.fetch_all(&[]).is_empty());
}

#[test]
fn plain_http_is_only_for_a_loopback_endpoint() {
    for allowed in [
        "https://secretmanager.googleapis.com",
        "https://10.1.2.3:8443",
        "http://127.0.0.1:9000",
        "http://127.9.9.9",
        "http://[::1]:9000/base",
        "http://LocalHost:9000",
    ] {
        assert!(endpoint_allowed(allowed), "{allowed}");
    }
    for refused in [
        "http://secretmanager.googleapis.com",
        "http://10.1.2.3:9000",
        "http://127.0.0.1.evil.example",
        "http://localhost.evil.example:80",
        "http://[::2]:9000",
        "ftp://127.0.0.1",
        "secretmanager.googleapis.com",
    ] {
        assert!(!endpoint_allowed(refused), "{refused}");
    }
}
