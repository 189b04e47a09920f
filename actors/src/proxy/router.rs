//! `ProxyRouter`: keeps the route table in line with the plan and with where
//! each service's container is. It never talks to Docker: routes come from
//! `PlanApplied`, addresses from `EndpointChanged` that the service actors
//! send as containers start, stop and are replaced. After every change it
//! builds a new `RouteTable` and swaps it into the `SharedTable` the workers
//! read, so open connections carry on with the new routes.
//!
//! Protocol:
//! - `PlanApplied(plan)` -> `()`: the routes now in force.
//! - `EndpointChanged { service, ip, state, fallback }` -> `()`: a container's address or state
//!   changed (`fallback`: the previous container, up while the new one soaks).
//! - `SetMaintenance { service, maintenance }` -> `Result<bool, MaintenanceError>`: puts a
//!   routed service in maintenance or takes it out (true when that changed), saved under the
//!   state dir before the table changes.
//!
//! The services in maintenance are read from `<state_dir>/maintenance.json` with the first
//! plan, before its first table, so a restart serves no request that maintenance refuses.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use actix::prelude::*;
use tracing::{debug, error, info, warn};

use super::maintenance::{self, Maintenance, MaintenanceFileError, MaintenanceMap};
use super::table::{EndpointState, InFlightBoard, RouteInput, RouteTable, SharedTable};
use crate::plan::{Plan, PlanApplied};

/// A service's container changed: its IP on the default network (when it has
/// one) and whether it can take requests.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct EndpointChanged {
    pub service: String,
    pub ip: Option<IpAddr>,
    pub state: EndpointState,
    /// The previous container's IP while it stays up beside the new one
    /// (a start-first deploy's soak): requests the new one fails are
    /// replayed there. `None` everywhere else.
    pub fallback: Option<IpAddr>,
}

/// What the router knows of one service's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Endpoint {
    ip: Option<IpAddr>,
    state: EndpointState,
    fallback: Option<IpAddr>,
}

/// Puts a service in maintenance (`Some`) or takes it out (`None`).
/// Answers whether anything changed.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "Result<bool, MaintenanceError>")]
pub struct SetMaintenance {
    pub service: String,
    pub maintenance: Option<Maintenance>,
}

/// Why maintenance could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("no service named `{0}`")]
    UnknownService(String),
    #[error("service `{0}` has no route: maintenance changes what its routes answer")]
    NoRoute(String),
    #[error("no plan has been applied yet")]
    NotLoaded,
    #[error(transparent)]
    File(#[from] MaintenanceFileError),
}

/// The actor that owns the route table.
pub struct ProxyRouter {
    table: SharedTable,
    in_flight: InFlightBoard,
    plan: Option<Arc<Plan>>,
    endpoints: BTreeMap<String, Endpoint>,
    /// The services in maintenance; read with the first plan.
    maintenance: MaintenanceMap,
}

impl ProxyRouter {
    /// A router that publishes into `table`.
    pub fn new(table: SharedTable) -> Self {
        ProxyRouter {
            table,
            in_flight: InFlightBoard::default(),
            plan: None,
            endpoints: BTreeMap::new(),
            maintenance: MaintenanceMap::new(),
        }
    }

    /// The in-flight counts of the tables this router builds; service actors
    /// read them to drain an old container.
    pub fn in_flight(&self) -> InFlightBoard {
        self.in_flight.clone()
    }

    /// Builds the table from the plan's routes and the known endpoints, and
    /// swaps it in.
    fn publish(&self) {
        let Some(plan) = &self.plan else {
            return;
        };
        let inputs = plan.services.values().filter_map(|service| {
            let route = service.route.as_ref()?;
            let endpoint = self.endpoints.get(&service.name).copied();
            let endpoint = endpoint.unwrap_or(Endpoint {
                ip: None,
                state: EndpointState::Down,
                fallback: None,
            });
            Some(RouteInput {
                service: &service.name,
                route,
                ip: endpoint.ip,
                state: endpoint.state,
                fallback: endpoint.fallback,
                maintenance: self.maintenance.get(&service.name),
            })
        });
        let table = RouteTable::build_counted(inputs, &self.in_flight)
            .with_maintenance(self.maintenance.clone());
        let live: Vec<IpAddr> = self
            .endpoints
            .values()
            .flat_map(|endpoint| endpoint.ip.into_iter().chain(endpoint.fallback))
            .collect();
        self.in_flight.retain(&live);
        debug!(hosts = table.hosts().len(), "route table published");
        self.table.store(table);
    }
}

impl Actor for ProxyRouter {
    type Context = Context<Self>;
}

impl Handler<PlanApplied> for ProxyRouter {
    type Result = ();

    fn handle(&mut self, msg: PlanApplied, _ctx: &mut Self::Context) -> Self::Result {
        let PlanApplied(plan) = msg;
        if self.plan.is_none() {
            match maintenance::load(&plan.settings.state_dir) {
                Ok(services) => {
                    for (service, entry) in &services {
                        warn!(service = %service, since = %entry.since, "service is in maintenance");
                    }
                    self.maintenance = services;
                }
                Err(err) => error!(error = %err, "cannot read the services in maintenance"),
            }
        }
        self.endpoints
            .retain(|service, _| plan.services.contains_key(service));
        let routes = plan
            .services
            .values()
            .filter(|service| service.route.is_some())
            .count();
        self.plan = Some(plan);
        self.publish();
        info!(routes, "proxy routes updated");
    }
}

impl Handler<EndpointChanged> for ProxyRouter {
    type Result = ();

    fn handle(&mut self, msg: EndpointChanged, _ctx: &mut Self::Context) -> Self::Result {
        let EndpointChanged {
            service,
            ip,
            state,
            fallback,
        } = msg;
        let entry = Endpoint {
            ip,
            state,
            fallback,
        };
        if self.endpoints.get(&service) == Some(&entry) {
            return;
        }
        match (ip, fallback) {
            (Some(ip), Some(fallback)) => {
                info!(service = %service, ip = %ip, state = ?state, fallback = %fallback, "endpoint changed")
            }
            (Some(ip), None) => {
                info!(service = %service, ip = %ip, state = ?state, "endpoint changed")
            }
            (None, _) => info!(service = %service, state = ?state, "endpoint changed"),
        }
        self.endpoints.insert(service, entry);
        self.publish();
    }
}

impl Handler<SetMaintenance> for ProxyRouter {
    type Result = Result<bool, MaintenanceError>;

    fn handle(&mut self, msg: SetMaintenance, _ctx: &mut Self::Context) -> Self::Result {
        let SetMaintenance {
            service,
            maintenance,
        } = msg;
        let plan = self.plan.as_ref().ok_or(MaintenanceError::NotLoaded)?;
        // Turning off is always possible for a service in maintenance, even
        // one no longer declared; turning on needs a declared, routed one.
        let held = self.maintenance.contains_key(&service);
        if maintenance.is_some() || !held {
            let declared = plan
                .services
                .get(&service)
                .ok_or_else(|| MaintenanceError::UnknownService(service.clone()))?;
            if declared.route.is_none() && maintenance.is_some() {
                return Err(MaintenanceError::NoRoute(service));
            }
        }
        let mut next = self.maintenance.clone();
        let changed = match &maintenance {
            Some(entry) => next.insert(service.clone(), entry.clone()).as_ref() != Some(entry),
            None => next.remove(&service).is_some(),
        };
        if !changed {
            return Ok(false);
        }
        // Saved first: what the proxy answers never runs ahead of the file.
        maintenance::save(&plan.settings.state_dir, &next)?;
        self.maintenance = next;
        match maintenance {
            Some(_) => warn!(service = %service, "service put in maintenance"),
            None => info!(service = %service, "service out of maintenance"),
        }
        self.publish();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::sample;
    use crate::proxy::table::{Lookup, Upstream};

    fn routed_plan() -> Plan {
        let mut plan = sample::plan("test", vec![sample::service("web", "web:1")]);
        let web = plan.services.get_mut("web").expect("web");
        web.route = Some(crate::plan::Route {
            host: "app.test".into(),
            path: "/".into(),
            service_port: 8080,
            health_path: None,
            tls: crate::plan::TlsSource::Automatic,
            challenge: None,
            rules: Default::default(),
        });
        plan
    }

    fn upstream(table: &SharedTable) -> Option<Upstream> {
        match table.load().lookup("app.test", "/") {
            Lookup::Found(entry) => Some(entry.upstream.clone()),
            _ => None,
        }
    }

    #[actix_rt::test]
    async fn routes_follow_plans_and_endpoints() {
        let table = SharedTable::default();
        let router = ProxyRouter::new(table.clone()).start();
        router
            .send(PlanApplied(Arc::new(routed_plan())))
            .await
            .unwrap();
        assert_eq!(upstream(&table), Some(Upstream::Down), "no endpoint yet");

        let changed = |state, ip: Option<[u8; 4]>| EndpointChanged {
            service: "web".into(),
            ip: ip.map(IpAddr::from),
            state,
            fallback: None,
        };
        router
            .send(changed(EndpointState::Starting, None))
            .await
            .unwrap();
        assert_eq!(upstream(&table), Some(Upstream::Starting));
        router
            .send(changed(EndpointState::Ready, Some([10, 1, 2, 3])))
            .await
            .unwrap();
        match upstream(&table) {
            Some(Upstream::Ready { address, .. }) => {
                assert_eq!(address.to_string(), "10.1.2.3:8080")
            }
            other => panic!("expected ready, got {other:?}"),
        }

        // A plan without the route removes it; the endpoint is kept while the
        // service stays in the plan.
        let mut unrouted = routed_plan();
        unrouted.services.get_mut("web").expect("web").route = None;
        router.send(PlanApplied(Arc::new(unrouted))).await.unwrap();
        assert_eq!(table.load().lookup("app.test", "/"), Lookup::UnknownHost);
        router
            .send(PlanApplied(Arc::new(routed_plan())))
            .await
            .unwrap();
        assert!(matches!(upstream(&table), Some(Upstream::Ready { .. })));
    }
}
