//! Webhook notifications: a task subscribed to `dispenser_actors::events`
//! POSTs each event to `[notify] webhook`, as JSON or through the
//! `[notify] template` (handlebars, for Slack's or ntfy's formats). The
//! settings are re-read for every event, so a reload takes effect at once.
//! The URL is never logged (it often holds a token).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use dispenser_actors::events::{self, Event};
use handlebars::Handlebars;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use crate::config::{NotifySettings, OperatorSettings};

/// Longest wait for the webhook to answer.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The operator settings of the latest configuration that loaded; the
/// loader writes, the notifier and the daemon read.
#[derive(Debug, Clone, Default)]
pub struct OperatorSlot(Arc<RwLock<OperatorSettings>>);

/// What a template sees: the event's fields, plus `instance`, `kind` and
/// `text` (one line for people).
#[derive(Debug, Serialize)]
struct Payload<'a> {
    #[serde(flatten)]
    event: &'a Event,
    kind: &'static str,
    instance: &'a str,
    text: String,
}

impl OperatorSlot {
    pub fn get(&self) -> OperatorSettings {
        self.0
            .read()
            .map(|settings| settings.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    pub fn set(&self, settings: OperatorSettings) {
        let mut slot = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = settings;
    }
}

/// Starts the notifier on the current runtime. `instance` names this
/// installation in messages.
pub fn start(slot: OperatorSlot, instance: String) {
    let mut receiver = events::subscribe();
    tokio::spawn(async move {
        let client = match reqwest::Client::builder().timeout(WEBHOOK_TIMEOUT).build() {
            Ok(client) => client,
            Err(err) => {
                warn!(error = %err, "cannot build the webhook client; notifications are off");
                return;
            }
        };
        loop {
            let event = match receiver.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    warn!(
                        missed,
                        "notifications fell behind; some events were not sent"
                    );
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let Some(settings) = slot.get().notify else {
                continue;
            };
            send(&client, &settings, &instance, &event).await;
        }
    });
}

/// Renders the body: the template's output, or the payload as JSON.
pub fn body(
    settings: &NotifySettings,
    instance: &str,
    event: &Event,
) -> Result<(String, &'static str), String> {
    let payload = Payload {
        event,
        kind: event.kind(),
        instance,
        text: summary(event, instance),
    };
    match &settings.template {
        Some(template) => {
            let mut registry = Handlebars::new();
            // Bodies are JSON far more often than HTML: values are escaped
            // as JSON string content, so a quote in a reason keeps it valid.
            registry.register_escape_fn(json_escape);
            let rendered = registry
                .render_template(template, &payload)
                .map_err(|err| err.to_string())?;
            let kind = if serde_json::from_str::<serde_json::Value>(&rendered).is_ok() {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            Ok((rendered, kind))
        }
        None => serde_json::to_string(&payload)
            .map(|json| (json, "application/json"))
            .map_err(|err| err.to_string()),
    }
}

async fn send(client: &reqwest::Client, settings: &NotifySettings, instance: &str, event: &Event) {
    let (body, content_type) = match body(settings, instance, event) {
        Ok(body) => body,
        Err(err) => {
            warn!(event = event.kind(), error = %err, "cannot render the notification");
            return;
        }
    };
    let sent = client
        .post(settings.webhook.expose())
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => {
            debug!(event = event.kind(), "notification sent");
        }
        Ok(response) => {
            warn!(event = event.kind(), status = %response.status(), "the webhook refused the notification");
        }
        Err(err) => {
            // reqwest's error names the URL; say only what kind of failure.
            let reason = if err.is_timeout() {
                "timed out"
            } else if err.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            warn!(event = event.kind(), reason, "cannot send the notification");
        }
    }
}

/// `value` as the inside of a JSON string.
fn json_escape(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_default()
        .to_owned()
}

/// One line for people: `[prod] api deployed: ...`.
fn summary(event: &Event, instance: &str) -> String {
    match event {
        Event::Deployed { service, message } => {
            format!("[{instance}] {service} deployed: {message}")
        }
        Event::DeployFailed { service, reason } => {
            format!("[{instance}] {service} deploy failed: {reason}")
        }
        Event::RolledBack { service, message } => {
            format!("[{instance}] {service} rolled back: {message}")
        }
        Event::RollbackFailed { service, reason } => {
            format!("[{instance}] {service} rollback failed: {reason}")
        }
        Event::CronRunFailed {
            service,
            exit_code,
            reason,
        } => format!(
            "[{instance}] scheduled run of {service} failed{}{}",
            exit_code
                .map(|code| format!(" (exit code {code})"))
                .unwrap_or_default(),
            reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        Event::CertificateTrouble { host, reason } => {
            format!("[{instance}] certificate for {host}: {reason}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispenser_actors::plan::Sensitive;

    fn event() -> Event {
        Event::CronRunFailed {
            service: "backup".into(),
            exit_code: Some(2),
            reason: None,
        }
    }

    #[test]
    fn default_body_is_the_event_as_json() {
        let settings = NotifySettings {
            webhook: Sensitive::new("https://hooks.example.test/T0K3N"),
            template: None,
        };
        let (body, kind) = body(&settings, "prod", &event()).expect("body");
        assert_eq!(kind, "application/json");
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(json["event"], "cron_run_failed");
        assert_eq!(json["service"], "backup");
        assert_eq!(json["instance"], "prod");
        assert_eq!(
            json["text"],
            "[prod] scheduled run of backup failed (exit code 2)"
        );
        assert!(!body.contains("T0K3N"));
    }

    #[test]
    fn template_values_are_escaped_as_json() {
        let settings = NotifySettings {
            webhook: Sensitive::new("https://hooks.example.test/x"),
            template: Some("{\"text\": \"{{reason}}\"}".into()),
        };
        let failed = Event::DeployFailed {
            service: "api".into(),
            reason: "bad \"tag\"\nnext".into(),
        };
        let (body, kind) = body(&settings, "prod", &failed).expect("body");
        assert_eq!(kind, "application/json", "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(json["text"], "bad \"tag\"\nnext");
    }

    #[test]
    fn a_template_shapes_the_body() {
        let settings = NotifySettings {
            webhook: Sensitive::new("https://hooks.example.test/x"),
            template: Some("{\"text\": \"{{text}}\"}".into()),
        };
        let (body, kind) = body(&settings, "prod", &event()).expect("body");
        assert_eq!(kind, "application/json");
        assert_eq!(
            body,
            "{\"text\": \"[prod] scheduled run of backup failed (exit code 2)\"}"
        );
    }
}
