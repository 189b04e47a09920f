//! `dispenser` as a library: the config front-end (files -> validated
//! [`dispenser_actors::plan::Plan`]), so that the binary, the fuzz targets in
//! `fuzz/` and the property tests all reach the same code.

pub mod config;
