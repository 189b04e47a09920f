//! Validation, the second stage: file structs to plan types, one function
//! per table (`global.rs` and `operator.rs` for dispenser.toml; `service.rs`,
//! `container.rs`, `lifecycle.rs` and `route.rs` for service.toml; `field.rs`
//! for the checks of single fields they share). Pure: what it needs of the
//! files a config names comes as [`FileFacts`], which the I/O pre-pass fills
//! from the lists [`global_files`] and [`service_files`] make. Every problem
//! is reported at its span; a file with errors yields no plan part but its
//! siblings are still checked.

mod container;
mod dns;
mod field;
mod global;
mod lifecycle;
mod operator;
mod route;
mod service;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use dispenser_actors::plan::{
    AcmeSettings, ContainerSpec, Network, ProxySettings, Sensitive, Service, Settings, Zone,
    ERROR_PAGE_FILES,
};

use super::check::FileCheck;
use super::file::{DispenserFile, ServiceFile};
use super::files::{FileFacts, Want};
use super::hash::spec_hash;
use container::SourceRule;
use field::resolve;
pub(crate) use route::route_name_paths;

/// What dispenser.toml says, validated.
#[derive(Debug, Clone)]
pub struct Global {
    pub settings: Settings,
    pub networks: BTreeMap<String, Network>,
    pub proxy: Option<ProxySettings>,
    pub acme: Option<AcmeSettings>,
    pub operator: OperatorSettings,
}

/// The operator's settings: read by the binary (admin API, notifications),
/// never part of the plan the actors apply.
#[derive(Debug, Clone, Default)]
pub struct OperatorSettings {
    /// `[admin] listen`: a loopback address for the admin API.
    pub admin_listen: Option<SocketAddr>,
    /// `[notify]`.
    pub notify: Option<NotifySettings>,
}

/// Where and how events are sent.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// The webhook URL; it often holds a token, so it is never shown.
    pub webhook: Sensitive,
    /// The body template's text (handlebars), already checked to compile.
    pub template: Option<String>,
}

/// The files dispenser.toml names, and what validation needs of each: for
/// the I/O pre-pass. `config_dir` is absolute.
pub fn global_files(file: &DispenserFile, config_dir: &Path) -> Vec<(PathBuf, Want)> {
    let bundle = file.certbot.as_ref().and_then(|t| t.ca_bundle.as_ref());
    let template = file.notify.as_ref().and_then(|t| t.template.as_ref());
    let bundle = bundle.map(|bundle| (resolve(config_dir, bundle), Want::Metadata));
    let template = template.map(|template| (resolve(config_dir, template), Want::Content));
    bundle.into_iter().chain(template).collect()
}

/// The files one service.toml names, and what validation needs of each: for
/// the I/O pre-pass. `folder` is the service folder, absolute.
pub fn service_files(file: &ServiceFile, folder: &Path) -> Vec<(PathBuf, Want)> {
    let mut wanted = Vec::new();
    for volume in &file.volumes {
        match container::source_rule(&volume.source, folder) {
            SourceRule::Empty => {}
            SourceRule::Bind(path) | SourceRule::Ambiguous(path) => {
                wanted.push((path, Want::Digest));
            }
            SourceRule::Named(beside) => wanted.push((beside, Want::Metadata)),
        }
    }
    if let Some(route) = &file.proxy {
        for written in [&route.cert_file, &route.key_file].into_iter().flatten() {
            wanted.push((resolve(folder, written), Want::Metadata));
        }
        if let Some(written) = &route.error_pages {
            let pages = resolve(folder, written);
            for (name, _) in ERROR_PAGE_FILES {
                wanted.push((pages.join(name), Want::Content));
            }
            wanted.push((pages, Want::Metadata));
        }
    }
    wanted
}

/// Validates dispenser.toml. `config_dir` is absolute; `facts` holds what
/// the pre-pass found at the files it names.
pub fn global(
    check: &mut FileCheck<'_>,
    file: &DispenserFile,
    config_dir: &Path,
    facts: &FileFacts,
) -> Option<Global> {
    let errors_before = check.error_count();
    let poll_delay = global::poll_delay(check, file.delay);
    global::telemetry(check, file);
    let mut settings = global::daemon(check, file.daemon.as_ref(), config_dir, poll_delay);
    settings.deploy = global::deploy(check, file.deploy.as_ref());
    if let Some(keep) = global::keep_images(check, file.daemon.as_ref()) {
        settings.deploy.keep_images = keep;
    }
    let networks = global::networks(check, &file.networks);
    let proxy = global::proxy(check, file.proxy.as_ref());
    let acme = file
        .certbot
        .as_ref()
        .map(|table| global::certbot(check, table, config_dir, facts));
    let operator = OperatorSettings {
        admin_listen: operator::admin(check, file.admin.as_ref()),
        notify: file
            .notify
            .as_ref()
            .map(|table| operator::notify(check, table, config_dir, facts)),
    };
    (check.error_count() == errors_before).then_some(Global {
        settings,
        networks,
        proxy,
        acme,
        operator,
    })
}

/// Validates one service.toml. `folder` is the service folder, absolute;
/// `facts` holds what the pre-pass found at the files it names. Returns
/// `None` only when no image can be derived; other errors are reported and
/// the service still returned for cross-service checks.
pub fn service(
    check: &mut FileCheck<'_>,
    file: &ServiceFile,
    folder: &Path,
    declared_networks: &BTreeMap<String, Network>,
    default_zone: Zone,
    facts: &FileFacts,
) -> Option<Service> {
    let (name, container) = service::service_table(check, &file.service);
    let ports = container::ports(check, &file.ports);
    let volumes = container::volumes(check, &file.volumes, folder, facts);
    let env = container::env(check, &file.env);
    let networks = container::networks(check, &file.networks, declared_networks);
    let extra_hosts = container::extra_hosts(check, &file.extra_hosts);
    let healthcheck = file
        .healthcheck
        .as_ref()
        .and_then(|table| container::healthcheck(check, table));
    let logging = file
        .logging
        .as_ref()
        .and_then(|table| container::logging(check, table));
    let lifecycle = lifecycle::lifecycle(check, file.dispenser.as_ref(), default_zone);
    let pinned = container
        .as_ref()
        .is_some_and(|container| container.image.digest.is_some());
    if lifecycle.track.is_some() && pinned {
        check.error(
            "dispenser.track",
            "`track` follows the registry's tags, but the image is pinned by digest",
            "pinned image",
        );
    }
    let depends_on = lifecycle::depends_on(check, &file.depends_on);
    let route = file
        .proxy
        .as_ref()
        .and_then(|table| route::route(check, table, folder, facts));
    let container = ContainerSpec {
        ports,
        volumes,
        env,
        networks,
        extra_hosts,
        healthcheck,
        logging,
        ..container?
    };
    // A service with errors is still returned (unless its image is invalid)
    // so cross-service checks see it; the caller rejects the plan anyway.
    let spec_hash = spec_hash(&container, facts);
    Some(Service {
        name,
        folder: folder.to_path_buf(),
        container,
        lifecycle,
        depends_on,
        route,
        spec_hash,
    })
}
