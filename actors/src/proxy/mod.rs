//! The built-in reverse proxy: the data plane that serves traffic and the
//! actors that feed it. `start` is its face: it binds the listeners and
//! starts the router, the certificate loader and the certificate issuer
//! (ACME or the development CA), and hands back a `Proxy` the control plane
//! wires to the services (`control::start`).
//!
//! - `table`: the immutable route table the workers read lock-free.
//! - `router`: the `ProxyRouter` actor that rebuilds the table from applied
//!   plans and from the endpoints the service actors report.
//! - `server`: the HTTP and HTTPS listeners (actix-http + rustls), started
//!   once; the only module that knows actix-http's server side.
//! - `forward`: the request path: routing, forwarded headers, upgrades.
//! - `upstream`: the HTTP/1.1 client to containers, one keep-alive pool per
//!   worker thread, driven by the request's own task.
//! - `tls`: the SNI certificate resolver and the `CertLoader` actor (manual
//!   and self-signed certificates).
//! - `certs`, `challenge`: the two maps shared with the ACME manager.
//! - `guard`: a route's redirect, allow-list, basic auth, prefix and pages,
//!   compiled once per table; `maintenance`: the services an operator took
//!   out of traffic, saved under the state dir.
//!
//! The request path (`server`, `forward`, `upstream`, `table`) imports no
//! actor: it reads the table and the two maps, and the actors write them.

pub mod acme;
pub mod certs;
pub mod challenge;
pub mod dev_ca;
pub mod forward;
pub mod guard;
pub mod headers;
pub mod maintenance;
#[cfg(test)]
mod request_path_tests;
pub mod router;
pub mod server;
mod state_files;
pub mod table;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;

use actix::prelude::*;
use tracing::{error, info};

use crate::plan::{Plan, PlanApplied, ProxySettings};
use acme::{AcmeManager, Timing};
use certs::CertMap;
use challenge::Challenges;
use dev_ca::DevCa;
use router::{EndpointChanged, ProxyRouter};
use server::{ProxyServer, ServerError};
use table::{InFlightBoard, SharedTable};
use tls::CertLoader;

/// Where certificates come from besides the manual and self-signed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Certificates {
    /// From the ACME CA of `[certbot]`, when set; its HTTP-01 answers go out
    /// through the port-80 listener.
    Acme,
    /// From the development CA under the state dir (`dispenser dev`), issued
    /// after each apply; no ACME.
    Development,
}

/// The running proxy. Its listeners and actors live as long as the process:
/// a reload changes its routes and certificates, never its listeners.
pub struct Proxy {
    /// The settings the listeners were started with.
    settings: ProxySettings,
    table: SharedTable,
    certs: CertMap,
    router: Addr<ProxyRouter>,
    in_flight: InFlightBoard,
    cert_loader: Addr<CertLoader>,
    /// `None` in a development run.
    acme: Option<Addr<AcmeManager>>,
    certificates: Certificates,
    server: ProxyServer,
}

/// Starts the proxy `plan` asks for (`None` when `[proxy]` is disabled):
/// binds the listeners and starts their thread, the router and the
/// certificate loader, and the ACME manager unless `certificates` says
/// development. Must run inside an actix system. The ACME back-off is read
/// from `plan` at start-up only.
pub fn start(plan: &Plan, certificates: Certificates) -> Result<Option<Proxy>, ServerError> {
    start_with_dns(plan, certificates, acme::dns::rfc2136_connector())
}

/// `start`, with the ACME manager building `[certbot.dns]` providers
/// through `dns` (the daemon's knows every provider).
pub fn start_with_dns(
    plan: &Plan,
    certificates: Certificates,
    dns: acme::dns::Connector,
) -> Result<Option<Proxy>, ServerError> {
    let Some(settings) = &plan.proxy else {
        return Ok(None);
    };
    let certs = CertMap::default();
    let challenges = Challenges::default();
    let table = SharedTable::default();
    let server = ProxyServer::start(settings, table.clone(), certs.clone(), challenges.clone())?;
    let router = ProxyRouter::new(table.clone());
    let in_flight = router.in_flight();
    let acme = match certificates {
        Certificates::Acme => {
            let timing = Timing {
                backoff_base: plan
                    .acme
                    .as_ref()
                    .map_or(Timing::default().backoff_base, |acme| {
                        acme.retry_after_failure
                    }),
                ..Timing::default()
            };
            Some(
                AcmeManager::new(challenges, certs.clone(), timing)
                    .with_dns_connector(dns)
                    .start(),
            )
        }
        Certificates::Development => None,
    };
    Ok(Some(Proxy {
        settings: settings.clone(),
        table,
        cert_loader: CertLoader::new(certs.clone()).start(),
        certs,
        router: router.start(),
        in_flight,
        acme,
        certificates,
        server,
    }))
}

impl Proxy {
    /// The settings the listeners run with (a reload does not change them).
    pub fn settings(&self) -> &ProxySettings {
        &self.settings
    }

    /// The route table the router writes (the admin API reads each route's
    /// upstream state from it).
    pub fn table(&self) -> SharedTable {
        self.table.clone()
    }

    /// The certificates the listeners serve.
    pub fn certs(&self) -> CertMap {
        self.certs.clone()
    }

    /// Where the service actors report their containers' endpoints.
    pub fn endpoints(&self) -> Recipient<EndpointChanged> {
        self.router.clone().recipient()
    }

    /// Where the admin API puts services in maintenance and out of it.
    pub fn maintenance(&self) -> Recipient<router::SetMaintenance> {
        self.router.clone().recipient()
    }

    /// The in-flight counts deploys drain an old container by.
    pub fn in_flight(&self) -> InFlightBoard {
        self.in_flight.clone()
    }

    /// The proxy's observers of applied plans, each once: the router, the
    /// certificate loader and the ACME manager.
    pub fn observers(&self) -> Vec<Recipient<PlanApplied>> {
        let mut observers = vec![
            self.router.clone().recipient(),
            self.cert_loader.clone().recipient(),
        ];
        if let Some(acme) = &self.acme {
            observers.push(acme.clone().recipient());
        }
        observers
    }

    /// The HTTP listener's bound address.
    pub fn http(&self) -> Option<SocketAddr> {
        self.server.http
    }

    /// The HTTPS listener's bound address, when the strategy has one.
    pub fn https(&self) -> Option<SocketAddr> {
        self.server.https
    }

    /// Whether `applied` needs the plan after each apply.
    pub fn issues_on_apply(&self) -> bool {
        self.certificates == Certificates::Development
    }

    /// After `plan` was applied: in a development run, a certificate from the
    /// development CA for every route host (the CA is created on first use
    /// under the state dir). Otherwise nothing: the observers learn the plan
    /// from the supervisor.
    pub fn applied(&self, plan: &Plan) {
        if self.certificates != Certificates::Development {
            return;
        }
        match DevCa::load_or_create(&plan.settings.state_dir) {
            Ok(ca) => match ca.fill(plan, &self.certs) {
                Ok(hosts) => info!(
                    hosts = hosts.len(),
                    ca = %DevCa::cert_path(&plan.settings.state_dir).display(),
                    "development certificates installed; trust the CA file to avoid warnings"
                ),
                Err(err) => error!(error = %err, "cannot issue development certificates"),
            },
            Err(err) => error!(error = %err, "cannot open the development CA"),
        }
    }
}
