//! The route table: an immutable snapshot of every route and where its
//! upstream is, built by the `ProxyRouter` and read lock-free by the workers
//! (`SharedTable`). Pure: no I/O, no clock.
//!
//! Matching: the host ignores case, a port and a trailing dot; among the
//! routes of a host the longest path prefix wins, on segment boundaries
//! (`/api` matches `/api`, `/api/` and `/api/v1`, never `/api-v2`).
//!
//! A route's aliases are entries like its host; each `redirect_from` name
//! is an entry whose guard redirects. A route with rules, or of a service
//! in maintenance, has a `RouteGuard` shared by its entries; a plain one none.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
// foldhash: the keys are the config's hosts (a client's host is only looked up, never
// inserted), so the per-request path needs no flood-resistant hash.
use foldhash::{HashMap, HashMapExt as _};
use http::uri::Authority;
use tokio::sync::Notify;

use super::guard::RouteGuard;
use super::maintenance::{Maintenance, MaintenanceMap};
use crate::plan::Route;

/// Where a service's container stands, as the proxy routes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    /// Running and reachable at its address.
    Ready,
    /// Being created, started or replaced stop-first: requests are held
    /// (up to `[proxy] hold_timeout`), then get 503.
    Starting,
    /// Not running: requests get 502.
    Down,
}

/// Where requests for one route go right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The container's address on the default network and the service port.
    Ready {
        address: SocketAddr,
        /// `address` as a URI authority, built once per table, not per request.
        authority: Authority,
        /// Requests to `address` in flight right now (shared across tables).
        in_flight: InFlight,
        /// The previous container, still running while the new one soaks:
        /// a request the new one failed is replayed there at once.
        fallback: Option<Fallback>,
    },
    Starting,
    Down,
}

/// The address a route's previous container still answers on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub address: SocketAddr,
    pub in_flight: InFlight,
}

/// One route in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub service: Arc<str>,
    /// Starts with `/`, no trailing slash unless it is `/`.
    pub path: String,
    pub upstream: Upstream,
    /// Redirect, guards and pages; `None` for a plain route (the request
    /// path then does nothing more than forward).
    pub guard: Option<Arc<RouteGuard>>,
}

/// What the table says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    Found(&'a Entry),
    /// No route has this host: 404.
    UnknownHost,
    /// The host is known but no route's path covers the request path: 404.
    NoPath,
}

/// Every route, by host. Entries of a host are sorted longest path first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    hosts: HashMap<String, Vec<Entry>>,
    /// Wildcard hosts (`*.example.com`) by the parent they stand under
    /// (`example.com`), with their name: any one label below the parent
    /// that `hosts` does not name.
    wildcards: HashMap<String, (String, Vec<Entry>)>,
    /// The services in maintenance, as the table was built.
    maintenance: MaintenanceMap,
}

/// The table the workers read; the router swaps in a new one atomically
/// and wakes the requests held for a change. Cloning shares the same slot.
#[derive(Debug, Clone, Default)]
pub struct SharedTable {
    slot: Arc<ArcSwap<RouteTable>>,
    changed: Arc<Notify>,
    /// Set by the first `store`: until then the routes are not known yet
    /// (the daemon is starting), and no host is unknown.
    loaded: Arc<AtomicBool>,
}

/// The count of requests in flight to one upstream address. The request
/// path only touches the atomic; the `InFlightGuard` decrements on drop.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

/// Holds one request's place in an `InFlight` count.
#[derive(Debug)]
pub struct InFlightGuard(InFlight);

/// The in-flight counts by upstream IP, shared by the router (which puts
/// each address's counter into the tables it builds) and the service actors
/// (which read it to drain an old container). Never touched per request.
#[derive(Debug, Clone, Default)]
pub struct InFlightBoard(Arc<Mutex<HashMap<IpAddr, InFlight>>>);

/// A service's route and its current endpoint, the router's inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInput<'a> {
    pub service: &'a str,
    pub route: &'a Route,
    /// The container's IP on the default network, when known.
    pub ip: Option<IpAddr>,
    pub state: EndpointState,
    /// The previous container's IP while it stays up beside `ip` (a
    /// start-first deploy's soak).
    pub fallback: Option<IpAddr>,
    /// Set while the service is in maintenance.
    pub maintenance: Option<&'a Maintenance>,
}

impl RouteTable {
    /// Builds the table from each routed service and its endpoint.
    pub fn build<'a>(inputs: impl IntoIterator<Item = RouteInput<'a>>) -> RouteTable {
        RouteTable::build_counted(inputs, &InFlightBoard::default())
    }

    /// Builds the table, each ready upstream counting its requests in flight
    /// on `board`'s counter for its address.
    pub fn build_counted<'a>(
        inputs: impl IntoIterator<Item = RouteInput<'a>>,
        board: &InFlightBoard,
    ) -> RouteTable {
        let mut hosts: HashMap<String, Vec<Entry>> = HashMap::new();
        let mut wildcards: HashMap<String, (String, Vec<Entry>)> = HashMap::new();
        let mut add = |name: &str, entry: Entry| {
            let name = normalize_host(name);
            match name.strip_prefix("*.") {
                Some(parent) => wildcards
                    .entry(parent.to_string())
                    .or_insert_with(|| (name.clone(), Vec::new()))
                    .1
                    .push(entry),
                None => hosts.entry(name).or_default().push(entry),
            }
        };
        for input in inputs {
            let upstream = match (input.state, input.ip) {
                (EndpointState::Ready, Some(ip)) => {
                    let address = SocketAddr::new(ip, input.route.service_port);
                    match Authority::try_from(address.to_string()) {
                        Ok(authority) => Upstream::Ready {
                            address,
                            authority,
                            in_flight: board.counter(ip),
                            fallback: input.fallback.filter(|old| *old != ip).map(|old| Fallback {
                                address: SocketAddr::new(old, input.route.service_port),
                                in_flight: board.counter(old),
                            }),
                        },
                        Err(_) => Upstream::Down,
                    }
                }
                (EndpointState::Starting, _) => Upstream::Starting,
                _ => Upstream::Down,
            };
            let service: Arc<str> = Arc::from(input.service);
            let path = normalize_path(&input.route.path);
            let guard = RouteGuard::for_route(input.route, input.maintenance).map(Arc::new);
            let rules = &input.route.rules;
            for name in std::iter::once(&input.route.host).chain(&rules.aliases) {
                add(
                    name,
                    Entry {
                        service: service.clone(),
                        path: path.clone(),
                        upstream: upstream.clone(),
                        guard: guard.clone(),
                    },
                );
            }
            if !rules.redirect_from.is_empty() {
                let redirect = Arc::new(RouteGuard::redirect(&normalize_host(&input.route.host)));
                for name in &rules.redirect_from {
                    add(
                        name,
                        Entry {
                            service: service.clone(),
                            path: path.clone(),
                            upstream: upstream.clone(),
                            guard: Some(redirect.clone()),
                        },
                    );
                }
            }
        }
        for entries in hosts
            .values_mut()
            .chain(wildcards.values_mut().map(|(_, entries)| entries))
        {
            entries.sort_by(|a, b| {
                b.path
                    .len()
                    .cmp(&a.path.len())
                    .then_with(|| a.path.cmp(&b.path))
            });
        }
        RouteTable {
            hosts,
            wildcards,
            maintenance: MaintenanceMap::new(),
        }
    }

    /// The same table, saying which services are in maintenance (for the
    /// status report; the guards were built from the inputs).
    pub fn with_maintenance(mut self, maintenance: MaintenanceMap) -> RouteTable {
        self.maintenance = maintenance;
        self
    }

    /// Whether `service` is in maintenance, and since when.
    pub fn maintenance(&self, service: &str) -> Option<&Maintenance> {
        self.maintenance.get(service)
    }

    /// The route for a request's `Host` (or `:authority`) and path: the
    /// host's own routes, else those of the wildcard one label above it.
    pub fn lookup(&self, host: &str, path: &str) -> Lookup<'_> {
        let host = strip_port(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let entries = self.hosts.get(host).or_else(|| self.wildcard(host));
        let Some(entries) = entries else {
            return Lookup::UnknownHost;
        };
        entries
            .iter()
            .find(|entry| path_matches(&entry.path, path))
            .map_or(Lookup::NoPath, Lookup::Found)
    }

    /// The entries of the wildcard that covers `host` (lowercase): one
    /// label, not empty, above a wildcard's parent.
    fn wildcard(&self, host: &str) -> Option<&Vec<Entry>> {
        if self.wildcards.is_empty() {
            return None;
        }
        let (label, parent) = host.split_once('.')?;
        if label.is_empty() {
            return None;
        }
        self.wildcards.get(parent).map(|(_, entries)| entries)
    }

    /// Every host in the table, wildcards (`*.example.com`) included, sorted.
    pub fn hosts(&self) -> Vec<&str> {
        let mut hosts: Vec<&str> = self
            .hosts
            .keys()
            .map(String::as_str)
            .chain(self.wildcards.values().map(|(name, _)| name.as_str()))
            .collect();
        hosts.sort_unstable();
        hosts
    }

    /// Every entry by host, for logs and tests.
    pub fn entries(&self) -> BTreeMap<&str, &[Entry]> {
        self.hosts
            .iter()
            .map(|(host, entries)| (host.as_str(), entries.as_slice()))
            .chain(
                self.wildcards
                    .values()
                    .map(|(name, entries)| (name.as_str(), entries.as_slice())),
            )
            .collect()
    }
}

impl SharedTable {
    /// The current table; cheap, lock-free.
    pub fn load(&self) -> arc_swap::Guard<Arc<RouteTable>> {
        self.slot.load()
    }

    /// Replaces the table; requests already routed keep the old one, held
    /// requests look again.
    pub fn store(&self, table: RouteTable) {
        self.slot.store(Arc::new(table));
        self.loaded.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// True once the router has published a table built from a plan.
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Resolves at the next `store` after the returned future was created
    /// (create it before loading the table, then await it, to miss no change).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

impl InFlight {
    /// Counts one request until the guard drops.
    pub fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    /// Requests in flight now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for InFlight {}

impl InFlightBoard {
    /// The counter of `ip`, created at zero the first time.
    pub fn counter(&self, ip: IpAddr) -> InFlight {
        let mut board = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        board.entry(ip).or_default().clone()
    }

    /// Requests in flight to `ip` now (0 for an address never routed to).
    pub fn count(&self, ip: IpAddr) -> usize {
        let board = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        board.get(&ip).map_or(0, InFlight::count)
    }

    /// Forgets the counters of addresses not in `keep` that have nothing in flight.
    pub fn retain(&self, keep: &[IpAddr]) {
        let mut board = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        board.retain(|ip, counter| keep.contains(ip) || counter.count() > 0);
    }
}

/// True when `prefix` covers `path` on a segment boundary.
fn path_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The host without a port: `Example.com:8080` → `Example.com`, `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// True when a request's host (any case, a port, a trailing dot) names
/// `name` (lowercase, as TLS clients' server names are kept).
pub fn same_host(request_host: &str, name: &str) -> bool {
    let host = strip_port(request_host);
    let host = host.strip_suffix('.').unwrap_or(host);
    let name = name.strip_suffix('.').unwrap_or(name);
    host.eq_ignore_ascii_case(name)
}

fn normalize_host(host: &str) -> String {
    let host = strip_port(host);
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn normalize_path(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

#[cfg(test)]
#[path = "table/tests.rs"]
mod tests;
