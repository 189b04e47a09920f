//! Runtime tests: the real `dispenser` binary against the real Docker Engine,
//! with images the tests build themselves (tests/images/build.sh).

#[path = "runtime/support.rs"]
mod support;

#[path = "runtime/acme.rs"]
mod acme;
#[path = "../actors/tests/acme/bind.rs"]
mod bind;
#[path = "runtime/containers.rs"]
mod containers;
#[path = "runtime/crashes.rs"]
mod crashes;
#[path = "runtime/cron.rs"]
mod cron;
#[path = "runtime/deploys.rs"]
mod deploys;
#[path = "runtime/example.rs"]
mod example;
#[path = "runtime/faults.rs"]
mod faults;
#[path = "runtime/google_standin.rs"]
mod google_standin;
#[path = "runtime/hostile.rs"]
mod hostile;
#[path = "runtime/hostile_files.rs"]
mod hostile_files;
#[path = "runtime/import.rs"]
mod import;
#[path = "runtime/lifecycle.rs"]
mod lifecycle;
#[path = "runtime/operator.rs"]
mod operator;
#[path = "runtime/outages.rs"]
mod outages;
#[path = "runtime/proxy.rs"]
mod proxy;
#[path = "runtime/routes.rs"]
mod routes;
#[path = "runtime/secrets.rs"]
mod secrets;
#[path = "runtime/status_page.rs"]
mod status_page;
#[path = "runtime/stopping.rs"]
mod stopping;
#[path = "runtime/takeover.rs"]
mod takeover;
#[path = "runtime/watching.rs"]
mod watching;
