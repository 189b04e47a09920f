//! The route table: an immutable snapshot of every route and where its
//! upstream is, built by the `ProxyRouter` and read lock-free by the workers
//! (`SharedTable`). Pure: no I/O, no clock.
//!
//! Matching: the host ignores case, a port and a trailing dot; among the
//! routes of a host the longest path prefix wins, on segment boundaries
//! (`/api` matches `/api`, `/api/` and `/api/v1`, never `/api-v2`).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::uri::Authority;

use crate::plan::Route;

/// Where a service's container stands, as the proxy routes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    /// Running and reachable at its address.
    Ready,
    /// Being created or started: requests get 503.
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
    },
    Starting,
    Down,
}

/// One route in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub service: Arc<str>,
    /// Starts with `/`, no trailing slash unless it is `/`.
    pub path: String,
    pub upstream: Upstream,
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
}

/// The table the workers read; the router swaps in a new one atomically.
/// Cloning shares the same slot.
#[derive(Debug, Clone, Default)]
pub struct SharedTable(Arc<ArcSwap<RouteTable>>);

/// A service's route and its current endpoint, the router's inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInput<'a> {
    pub service: &'a str,
    pub route: &'a Route,
    /// The container's IP on the default network, when known.
    pub ip: Option<IpAddr>,
    pub state: EndpointState,
}

impl RouteTable {
    /// Builds the table from each routed service and its endpoint.
    pub fn build<'a>(inputs: impl IntoIterator<Item = RouteInput<'a>>) -> RouteTable {
        let mut hosts: HashMap<String, Vec<Entry>> = HashMap::new();
        for input in inputs {
            let upstream = match (input.state, input.ip) {
                (EndpointState::Ready, Some(ip)) => {
                    let address = SocketAddr::new(ip, input.route.service_port);
                    match Authority::try_from(address.to_string()) {
                        Ok(authority) => Upstream::Ready { address, authority },
                        Err(_) => Upstream::Down,
                    }
                }
                (EndpointState::Starting, _) => Upstream::Starting,
                _ => Upstream::Down,
            };
            hosts
                .entry(normalize_host(&input.route.host))
                .or_default()
                .push(Entry {
                    service: Arc::from(input.service),
                    path: normalize_path(&input.route.path),
                    upstream,
                });
        }
        for entries in hosts.values_mut() {
            entries.sort_by(|a, b| {
                b.path
                    .len()
                    .cmp(&a.path.len())
                    .then_with(|| a.path.cmp(&b.path))
            });
        }
        RouteTable { hosts }
    }

    /// The route for a request's `Host` (or `:authority`) and path.
    pub fn lookup(&self, host: &str, path: &str) -> Lookup<'_> {
        let host = strip_port(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        let entries = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.hosts.get(&host.to_ascii_lowercase())
        } else {
            self.hosts.get(host)
        };
        let Some(entries) = entries else {
            return Lookup::UnknownHost;
        };
        entries
            .iter()
            .find(|entry| path_matches(&entry.path, path))
            .map_or(Lookup::NoPath, Lookup::Found)
    }

    /// Every host in the table, sorted.
    pub fn hosts(&self) -> Vec<&str> {
        let mut hosts: Vec<&str> = self.hosts.keys().map(String::as_str).collect();
        hosts.sort_unstable();
        hosts
    }

    /// Every entry by host, for logs and tests.
    pub fn entries(&self) -> BTreeMap<&str, &[Entry]> {
        self.hosts
            .iter()
            .map(|(host, entries)| (host.as_str(), entries.as_slice()))
            .collect()
    }
}

impl SharedTable {
    /// The current table; cheap, lock-free.
    pub fn load(&self) -> arc_swap::Guard<Arc<RouteTable>> {
        self.0.load()
    }

    /// Replaces the table; requests already routed keep the old one.
    pub fn store(&self, table: RouteTable) {
        self.0.store(Arc::new(table));
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
