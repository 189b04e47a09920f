//! The built-in reverse proxy: the data plane that serves traffic and the
//! actors that feed it.
//!
//! - `table`: the immutable route table the workers read lock-free.
//! - `router`: the `ProxyRouter` actor that rebuilds the table from applied
//!   plans and from the endpoints the service actors report.
//! - `server`: the HTTP and HTTPS listeners (actix-web + rustls), started
//!   once; the only module that knows actix-web.
//! - `forward`: the request path: routing, forwarded headers, upgrades.
//! - `upstream`: the HTTP/1.1 client to containers, one keep-alive pool per
//!   worker thread, driven by the request's own task.
//! - `tls`: the SNI certificate resolver and the `CertLoader` actor (manual
//!   and self-signed certificates).
//! - `certs`, `challenge`: the two maps shared with the ACME manager.

pub mod acme;
pub mod certs;
pub mod challenge;
pub mod dev_ca;
pub mod forward;
pub mod router;
pub mod server;
mod state_files;
pub mod table;
pub mod tls;
pub mod upstream;
