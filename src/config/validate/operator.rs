//! The operator's tables of dispenser.toml, `[admin]` and `[notify]`: read
//! by the binary, never part of the plan. Pure: the notify template's text
//! comes from [`FileFacts`].

use std::net::SocketAddr;
use std::path::Path;

use dispenser_actors::plan::Sensitive;

use super::field::resolve;
use super::NotifySettings;
use crate::config::check::FileCheck;
use crate::config::file::{AdminTable, NotifyTable};
use crate::config::files::FileFacts;

/// `[admin] listen`: a loopback address with a port.
pub(super) fn admin(check: &mut FileCheck<'_>, table: Option<&AdminTable>) -> Option<SocketAddr> {
    let text = table.and_then(|table| table.listen.as_deref())?;
    match text.parse::<SocketAddr>() {
        Ok(address) if address.ip().is_loopback() => Some(address),
        Ok(_) => {
            check
                .error(
                    "admin.listen",
                    "the admin API only listens on a loopback address",
                    "not loopback",
                )
                .help = Some(
                "use 127.0.0.1:PORT or [::1]:PORT; reach it from elsewhere through an SSH tunnel"
                    .into(),
            );
            None
        }
        Err(_) => {
            check.error(
                "admin.listen",
                "`listen` must be an address with a port, e.g. 127.0.0.1:9180",
                "not an address",
            );
            None
        }
    }
}

/// `[notify]`: an http(s) webhook and an optional body template.
pub(super) fn notify(
    check: &mut FileCheck<'_>,
    table: &NotifyTable,
    config_dir: &Path,
    facts: &FileFacts,
) -> NotifySettings {
    let scheme_ok = table.webhook.starts_with("https://") || table.webhook.starts_with("http://");
    if !scheme_ok || table.webhook.parse::<http::Uri>().is_err() {
        check.error(
            "notify.webhook",
            "`webhook` must be an http:// or https:// URL",
            "not a URL",
        );
    }
    let template = table
        .template
        .as_ref()
        .and_then(|relative| template(check, relative, config_dir, facts));
    NotifySettings {
        webhook: Sensitive::new(table.webhook.clone()),
        template,
    }
}

/// `[notify] template`: a handlebars file beside dispenser.toml that compiles.
fn template(
    check: &mut FileCheck<'_>,
    relative: &str,
    config_dir: &Path,
    facts: &FileFacts,
) -> Option<String> {
    let path = resolve(config_dir, relative);
    match facts.get(&path).text() {
        Ok(text) => match handlebars::Template::compile(&text) {
            Ok(_) => Some(text),
            Err(err) => {
                check.error(
                    "notify.template",
                    format!("the template does not compile: {err}"),
                    "invalid template",
                );
                None
            }
        },
        Err(err) => {
            check
                .error(
                    "notify.template",
                    format!(
                        "cannot read the template{}: {err}",
                        check.shown("notify.template", relative)
                    ),
                    "unreadable",
                )
                .help = Some("the path is relative to the folder of dispenser.toml".into());
            None
        }
    }
}
