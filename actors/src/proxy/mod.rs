//! The built-in reverse proxy. This module holds the two maps the data plane
//! reads on every request and that the control plane swaps at run time:
//! `challenge::Challenges` (ACME HTTP-01 tokens, answered from memory) and
//! `certs::CertMap` (the certificate per host, chosen by SNI).

pub mod acme;
pub mod certs;
pub mod challenge;
pub mod dev_ca;
mod state_files;
