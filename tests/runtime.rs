//! Runtime tests: the real `dispenser` binary against the real Docker Engine,
//! with images the tests build themselves (tests/images/build.sh).

#[path = "runtime/support.rs"]
mod support;

#[path = "runtime/containers.rs"]
mod containers;
#[path = "runtime/lifecycle.rs"]
mod lifecycle;
#[path = "runtime/watching.rs"]
mod watching;
