//! `AcmeManager`: obtains and renews the certificates of every route host
//! whose TLS is automatic, from the ACME CA of `[certbot]`, by HTTP-01.
//!
//! Protocol:
//! - `PlanApplied` -> `()`: learns the hosts and settings; loads stored
//!   certificates (a restart does not re-issue) and starts work on the rest.
//! - `ForceRenewal { host }` -> `Result<String, ManagerError>`: issues a new
//!   certificate now, whatever its schedule; answers the new serial.
//! - `GetStatus` -> `AcmeStatus`: each host's certificate and schedule.
//! - `Check` -> `()`: (its own timer) attempts every host that is due.
//!
//! Issued certificates go into the shared `CertMap` as `CertSource::Acme`,
//! never over a `Manual` one. A host is due when it has no certificate, when
//! a third of its certificate's lifetime is left, or inside the window the CA
//! suggests (RFC 9773) where the directory offers renewal information. A
//! failure keeps the current certificate and backs off exponentially (longer
//! for rate limits), with one warning per streak of failures.

mod client;
pub mod dns;
pub mod policy;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use rustls::pki_types::CertificateDer;
use thiserror::Error;
use tracing::{debug, info, warn};

pub use client::{AcmeError, Answers, RenewalWindow};
pub use policy::Timing;
pub use store::{IssuedCert, Store, StoreError};

use crate::plan::{AcmeSettings, Challenge, Plan, PlanApplied, TlsSource};
use crate::proxy::certs::{CertMap, CertSource, HostCert};
use crate::proxy::challenge::Challenges;
use client::CaClient;
use dns::{Connector, DnsError, Publisher};
use policy::{jitter, renew_by_lifetime, renew_in_window, ARI_REFRESH_MIN};

/// Never schedule the next check sooner than this.
const MIN_CHECK_DELAY: Duration = Duration::from_millis(100);
/// Attempt times kept per host for `GetStatus`.
const RECENT_ATTEMPTS: usize = 16;

/// Issues a new certificate for `host` now, whatever its schedule.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, ManagerError>")]
pub struct ForceRenewal {
    pub host: String,
}

/// The state of every host the manager looks after.
#[derive(Debug, Message)]
#[rtype(result = "AcmeStatus")]
pub struct GetStatus;

/// Attempts every host that is due; sent by the manager's own timer.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Check;

/// Why a `ForceRenewal` did not produce a certificate.
#[derive(Debug, Error)]
pub enum ManagerError {
    #[error("acme is not configured")]
    NotConfigured,
    #[error("{0} is not a route host with automatic tls")]
    UnknownHost(String),
    #[error(transparent)]
    Acme(Arc<AcmeError>),
}

/// What `GetStatus` answers.
#[derive(Debug, Clone, Default)]
pub struct AcmeStatus {
    pub hosts: Vec<HostStatus>,
    /// Accounts this manager created (stored credentials are reused).
    pub accounts_created: u32,
    /// Certificates this manager obtained from the CA.
    pub issued: u32,
}

/// One host in `AcmeStatus`.
#[derive(Debug, Clone)]
pub struct HostStatus {
    pub host: String,
    /// Serial (hex) of the ACME certificate in use, if any.
    pub serial: Option<String>,
    pub not_after: Option<SystemTime>,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// When the host is next attempted.
    pub due: SystemTime,
    /// The last error, in words, while failing.
    pub last_error: Option<String>,
    /// When the latest attempts started, oldest first.
    pub recent_attempts: Vec<SystemTime>,
}

/// The ACME certificate manager.
pub struct AcmeManager {
    challenges: Challenges,
    certs: CertMap,
    timing: Timing,
    /// Settings and files in force; `None` while `[certbot]` is absent.
    config: Option<Config>,
    /// The account for `config`, opened on first use.
    client: Option<CaClient>,
    /// Builds the DNS provider of `[certbot.dns]`.
    dns_connector: Connector,
    /// The DNS-01 publisher for `config`, or why there is none.
    dns: Option<Result<Publisher, DnsError>>,
    hosts: BTreeMap<String, HostState>,
    timer: Option<SpawnHandle>,
    accounts_created: u32,
    issued: u32,
}

/// The part of the plan the manager works from.
#[derive(Debug, Clone, PartialEq)]
struct Config {
    settings: AcmeSettings,
    store_dir: std::path::PathBuf,
}

/// What the manager knows about one host.
#[derive(Debug)]
struct HostState {
    /// How the CA checks the name.
    challenge: Challenge,
    cert: Option<IssuedCert>,
    due: SystemTime,
    failures: u32,
    last_error: Option<String>,
    /// The CA's latest suggested renewal window.
    ari: Option<RenewalWindow>,
    /// When renewal information is next fetched.
    ari_refresh: SystemTime,
    recent_attempts: VecDeque<SystemTime>,
}

/// One round of work, run off the actor.
struct Round {
    config: Config,
    client: Option<CaClient>,
    challenges: Challenges,
    dns: Option<Result<Publisher, DnsError>>,
    timeout: Duration,
    /// Hosts to issue for, with their challenge and the leaf they replace.
    issue: Vec<(String, Challenge, Option<CertificateDer<'static>>)>,
    /// Hosts whose renewal information to fetch, with their leaf.
    windows: Vec<(String, CertificateDer<'static>)>,
}

/// A renewal-information look-up: a window, none offered, or a failure.
type WindowOutcome = Result<Option<RenewalWindow>, Arc<AcmeError>>;

/// What a round did.
struct RoundResult {
    client: Option<CaClient>,
    account_created: bool,
    started: SystemTime,
    issued: Vec<(String, Result<IssuedCert, Arc<AcmeError>>)>,
    windows: Vec<(String, WindowOutcome)>,
}

impl AcmeManager {
    /// A manager whose DNS-01 records go through RFC 2136 only; see
    /// [`AcmeManager::with_dns_connector`].
    pub fn new(challenges: Challenges, certs: CertMap, timing: Timing) -> Self {
        AcmeManager {
            challenges,
            certs,
            timing,
            config: None,
            client: None,
            dns_connector: dns::rfc2136_connector(),
            dns: None,
            hosts: BTreeMap::new(),
            timer: None,
            accounts_created: 0,
            issued: 0,
        }
    }

    /// Builds `[certbot.dns]` providers with `connector` (the daemon's knows
    /// every provider).
    pub fn with_dns_connector(mut self, connector: Connector) -> Self {
        self.dns_connector = connector;
        self
    }

    /// Hosts of routes whose certificate comes from ACME, with the
    /// challenge that proves each: not those where another route names
    /// certificate files (they cover the whole host).
    fn automatic_hosts(plan: &Plan) -> BTreeMap<String, Challenge> {
        let manual = plan.manual_certificates();
        let global = plan
            .acme
            .as_ref()
            .map(|acme| acme.challenge)
            .unwrap_or_default();
        plan.services
            .values()
            .filter_map(|service| service.route.as_ref())
            .filter(|route| route.tls == TlsSource::Automatic)
            .flat_map(|route| {
                let challenge = route.challenge_or(global);
                route
                    .names()
                    .map(move |name| (name.to_ascii_lowercase(), challenge))
            })
            .filter(|(host, _)| !manual.contains_key(host))
            .collect()
    }

    /// Puts an ACME certificate in the map, never over a manual one.
    fn install(&self, host: &str, cert: &IssuedCert) {
        if let Some(existing) = self.certs.get(host) {
            if existing.source == CertSource::Manual {
                debug!(host = %host, "keeping the manual certificate");
                return;
            }
        }
        self.certs.set(
            host,
            HostCert {
                key: cert.key.clone(),
                source: CertSource::Acme,
            },
        );
    }

    /// Takes back an ACME certificate from the map (a manual one stays).
    fn uninstall(&self, host: &str) {
        if matches!(self.certs.get(host), Some(c) if c.source == CertSource::Acme) {
            self.certs.remove(host);
        }
    }

    /// A new state for `host`, from its stored certificate when there is one.
    fn load_host(&self, config: &Config, host: &str, now: SystemTime) -> HostState {
        let store = Store::new(&config.store_dir);
        let cert = match store.load_cert(host) {
            Ok(cert) => cert,
            Err(err) => {
                warn!(host = %host, error = %err, "ignoring the stored certificate");
                None
            }
        };
        let mut state = HostState {
            challenge: Challenge::default(),
            cert: None,
            due: now,
            failures: 0,
            last_error: None,
            ari: None,
            ari_refresh: now,
            recent_attempts: VecDeque::new(),
        };
        if let Some(cert) = cert {
            self.install(host, &cert);
            // A certificate without its record (`<host>.json`) was stored by
            // ixpantia/dispenser, in the same `certs/` layout: kept while it
            // is valid, so a switch does not spend the CA's duplicate
            // certificate limit; renewed by the usual schedule.
            let upstream = cert.directory_url.is_empty() && now < cert.not_after;
            if cert.directory_url == config.settings.directory_url || upstream {
                if upstream {
                    info!(host = %host, serial = %cert.serial, "kept the certificate ixpantia/dispenser stored");
                } else {
                    info!(host = %host, serial = %cert.serial, "loaded the stored certificate");
                }
                state.due = renew_by_lifetime(cert.not_before, cert.not_after);
            } else {
                info!(host = %host, "the stored certificate is from another ca; replacing it");
            }
            state.cert = Some(cert);
        }
        state
    }

    /// Prepares a round for the hosts due at `now` (or exactly `forced`).
    fn round(&self, now: SystemTime, forced: Option<&str>) -> Option<Round> {
        let config = self.config.clone()?;
        let mut issue = Vec::new();
        let mut windows = Vec::new();
        for (host, state) in &self.hosts {
            let leaf = state.cert.as_ref().and_then(|c| c.leaf().cloned());
            let due = match forced {
                Some(forced) => forced == host,
                None => state.due <= now,
            };
            if due {
                issue.push((host.clone(), state.challenge, leaf));
            } else if forced.is_none() && state.failures == 0 && state.ari_refresh <= now {
                if let Some(leaf) = leaf {
                    windows.push((host.clone(), leaf));
                }
            }
        }
        if issue.is_empty() && windows.is_empty() {
            return None;
        }
        Some(Round {
            config,
            client: self.client.clone(),
            challenges: self.challenges.clone(),
            dns: self.dns.clone(),
            timeout: self.timing.order_timeout,
            issue,
            windows,
        })
    }

    /// Records what a round did: new certificates installed, failures
    /// counted and scheduled with back-off, renewal windows noted.
    fn absorb(&mut self, result: RoundResult) {
        let now = SystemTime::now();
        if result.account_created {
            self.accounts_created += 1;
        }
        // `None` after a failed connection or an account the CA forgot.
        self.client = result.client;
        for (host, outcome) in result.issued {
            let Some(state) = self.hosts.get_mut(&host) else {
                continue;
            };
            state.recent_attempts.push_back(result.started);
            while state.recent_attempts.len() > RECENT_ATTEMPTS {
                state.recent_attempts.pop_front();
            }
            match outcome {
                Ok(cert) => {
                    self.issued += 1;
                    if state.failures > 0 {
                        info!(host = %host, failures = state.failures, "certificate request succeeded again");
                    }
                    info!(host = %host, serial = %cert.serial, "certificate issued");
                    state.failures = 0;
                    state.last_error = None;
                    state.ari = None;
                    state.ari_refresh = now;
                    state.due = renew_by_lifetime(cert.not_before, cert.not_after);
                    state.cert = Some(cert.clone());
                    let cert = cert.clone();
                    self.install(&host, &cert);
                }
                Err(err) => {
                    state.failures = state.failures.saturating_add(1);
                    let delay = jitter(
                        self.timing.retry_delay(state.failures, err.failure_kind()),
                        fastrand::f64(),
                    );
                    state.due = now + delay;
                    state.last_error = Some(err.to_string());
                    if state.failures == 1 {
                        crate::events::publish(crate::events::Event::CertificateTrouble {
                            host: host.clone(),
                            reason: err.to_string(),
                        });
                        warn!(
                            host = %host,
                            error = %err,
                            retry_in_secs = delay.as_secs(),
                            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            "certificate request failed; keeping the current certificate and retrying with back-off"
                        );
                    } else {
                        info!(
                            host = %host,
                            failures = state.failures,
                            retry_in_secs = delay.as_secs(),
                            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            "certificate request failed again"
                        );
                    }
                }
            }
        }
        for (host, outcome) in result.windows {
            let Some(state) = self.hosts.get_mut(&host) else {
                continue;
            };
            match outcome {
                Ok(Some(window)) => {
                    state.ari_refresh = now + window.refresh_after.max(ARI_REFRESH_MIN);
                    let unchanged = state.ari == Some(window);
                    if !unchanged {
                        let renew_at = renew_in_window(window.start, window.end, fastrand::f64());
                        debug!(host = %host, "the ca suggested a renewal window");
                        state.ari = Some(window);
                        if state.failures == 0 {
                            state.due = renew_at;
                        }
                    }
                }
                Ok(None) => {
                    state.ari_refresh = now + self.timing.check_interval.max(ARI_REFRESH_MIN)
                }
                Err(err) => {
                    // The lifetime rule stays in force: a failed look-up
                    // never makes a certificate due.
                    debug!(host = %host, error = %err, "no renewal information");
                    state.ari_refresh = now + ARI_REFRESH_MIN;
                }
            }
        }
    }

    /// Arms the timer for the next due host or periodic check, with jitter.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        if self.config.is_none() || self.hosts.is_empty() {
            return;
        }
        let now = SystemTime::now();
        let periodic = jitter(self.timing.check_interval, fastrand::f64());
        let next = self
            .hosts
            .values()
            .map(|state| state.due.duration_since(now).unwrap_or(Duration::ZERO))
            .min()
            .unwrap_or(periodic)
            .min(periodic)
            .max(MIN_CHECK_DELAY);
        self.timer = Some(ctx.run_later(next, |_, ctx| ctx.notify(Check)));
    }
}

impl Round {
    async fn run(self) -> RoundResult {
        let started = SystemTime::now();
        let store = Store::new(&self.config.store_dir);
        let mut result = RoundResult {
            client: None,
            account_created: false,
            started,
            issued: Vec::new(),
            windows: Vec::new(),
        };
        let client = match self.client {
            Some(client) => client,
            None => match CaClient::connect(&self.config.settings, &store).await {
                Ok((client, created)) => {
                    if created {
                        info!(directory = %self.config.settings.directory_url, "acme account created");
                    }
                    result.account_created = created;
                    client
                }
                Err(err) => {
                    let err = Arc::new(err);
                    for (host, _, _) in self.issue {
                        result.issued.push((host, Err(err.clone())));
                    }
                    for (host, _) in self.windows {
                        result.windows.push((host, Err(err.clone())));
                    }
                    return result;
                }
            },
        };
        for (host, challenge, leaf) in self.issue {
            let replaces = leaf.as_ref().and_then(CaClient::certificate_id);
            let dns = match (&self.dns, challenge) {
                (Some(Err(err)), Challenge::Dns01) => {
                    let err = AcmeError::Dns {
                        host: host.clone(),
                        source: err.clone(),
                    };
                    result.issued.push((host, Err(Arc::new(err))));
                    continue;
                }
                (Some(Ok(publisher)), _) => Some(publisher),
                _ => None,
            };
            let answers = Answers {
                challenges: &self.challenges,
                dns,
            };
            // A DNS-01 order also waits for its record to show.
            let timeout = match (challenge, dns) {
                (Challenge::Dns01, Some(dns)) => self.timeout + dns.propagation_timeout(),
                _ => self.timeout,
            };
            let outcome = match client
                .issue(&host, challenge, answers, replaces, timeout)
                .await
            {
                Ok((chain, key)) => store
                    .save_cert(&host, &chain, &key, client.directory_url())
                    .map_err(|err| Arc::new(AcmeError::from(err))),
                Err(err) => Err(Arc::new(err)),
            };
            let unknown_account = matches!(&outcome, Err(err) if err.is_unknown_account());
            result.issued.push((host, outcome));
            if unknown_account {
                warn!(directory = %client.directory_url(), "the ca does not know the stored account; a new one will be created");
                if let Err(err) = store.forget_account(client.directory_url()) {
                    warn!(error = %err, "cannot set the stored account aside");
                }
                // The remaining hosts wait for their next turn.
                return result;
            }
        }
        for (host, leaf) in self.windows {
            let outcome = client.renewal_window(&leaf).await.map_err(Arc::new);
            result.windows.push((host, outcome));
        }
        result.client = Some(client);
        result
    }
}

/// A plain self-signed certificate, served while ACME is off for a host.
fn self_signed(host: &str) -> Option<Arc<rustls::sign::CertifiedKey>> {
    let key = rcgen::KeyPair::generate().ok()?;
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])
        .ok()?
        .self_signed(&key)
        .ok()?;
    let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).ok()?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(vec![cert.der().clone()], der, &provider)
        .ok()
        .map(Arc::new)
}

impl Actor for AcmeManager {
    type Context = Context<Self>;
}

impl Handler<PlanApplied> for AcmeManager {
    type Result = ();

    fn handle(&mut self, msg: PlanApplied, ctx: &mut Self::Context) {
        let plan = msg.0;
        let now = SystemTime::now();
        let config = plan.acme.as_ref().map(|settings| Config {
            settings: settings.clone(),
            store_dir: plan.settings.state_dir.clone(),
        });
        let wanted = match config {
            Some(_) => Self::automatic_hosts(&plan),
            None => BTreeMap::new(),
        };
        // Hosts no longer ours: an ACME certificate gives way to a
        // self-signed one while the host is still routed.
        let still_routed: BTreeSet<String> = plan
            .services
            .values()
            .filter_map(|service| service.route.as_ref())
            .flat_map(|route| route.names().map(str::to_ascii_lowercase))
            .collect();
        let gone: Vec<String> = self
            .hosts
            .keys()
            .filter(|host| !wanted.contains_key(*host))
            .cloned()
            .collect();
        for host in gone {
            self.hosts.remove(&host);
            if matches!(self.certs.get(&host), Some(c) if c.source == CertSource::Acme) {
                match self_signed(&host).filter(|_| still_routed.contains(&host)) {
                    Some(key) => self.certs.set(
                        &host,
                        HostCert {
                            key,
                            source: CertSource::SelfSigned,
                        },
                    ),
                    None => self.uninstall(&host),
                }
            }
        }
        if config != self.config {
            // Another CA, account or folder: open the account afresh and
            // re-read the hosts from that folder.
            self.client = None;
            self.hosts.clear();
            self.dns = config
                .as_ref()
                .and_then(|config| config.settings.dns.as_ref())
                .map(|settings| Publisher::new(settings, &self.dns_connector));
            if let Some(Err(err)) = &self.dns {
                warn!(error = %err, "the dns provider cannot be used; dns-01 names wait");
            }
            self.config = config;
        }
        if let Some(config) = self.config.clone() {
            for (host, challenge) in wanted {
                let state = match self.hosts.remove(&host) {
                    Some(state) => state,
                    None => self.load_host(&config, &host, now),
                };
                self.hosts.insert(host, HostState { challenge, ..state });
            }
        }
        self.schedule(ctx);
        if self.hosts.values().any(|state| state.due <= now) {
            ctx.notify(Check);
        }
    }
}

impl Handler<ForceRenewal> for AcmeManager {
    type Result = AtomicResponse<Self, Result<String, ManagerError>>;

    fn handle(&mut self, msg: ForceRenewal, _ctx: &mut Self::Context) -> Self::Result {
        let host = msg.host.to_ascii_lowercase();
        let refused = if self.config.is_none() {
            Some(ManagerError::NotConfigured)
        } else if !self.hosts.contains_key(&host) {
            Some(ManagerError::UnknownHost(host.clone()))
        } else {
            None
        };
        let round = self.round(SystemTime::now(), Some(&host));
        let (Some(round), None) = (round, refused.as_ref()) else {
            let err = refused.unwrap_or(ManagerError::NotConfigured);
            return AtomicResponse::new(Box::pin(fut::ready(Err(err))));
        };
        info!(host = %host, "renewal forced");
        AtomicResponse::new(Box::pin(round.run().into_actor(self).map(
            move |result, act, ctx| {
                let outcome = result
                    .issued
                    .iter()
                    .find(|(name, _)| *name == host)
                    .map(|(_, outcome)| match outcome {
                        Ok(cert) => Ok(cert.serial.clone()),
                        Err(err) => Err(ManagerError::Acme(err.clone())),
                    })
                    .unwrap_or_else(|| Err(ManagerError::UnknownHost(host.clone())));
                act.absorb(result);
                act.schedule(ctx);
                outcome
            },
        )))
    }
}

impl Handler<GetStatus> for AcmeManager {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _msg: GetStatus, _ctx: &mut Self::Context) -> Self::Result {
        let hosts = self
            .hosts
            .iter()
            .map(|(host, state)| HostStatus {
                host: host.clone(),
                serial: state.cert.as_ref().map(|c| c.serial.clone()),
                not_after: state.cert.as_ref().map(|c| c.not_after),
                failures: state.failures,
                due: state.due,
                last_error: state.last_error.clone(),
                recent_attempts: state.recent_attempts.iter().copied().collect(),
            })
            .collect();
        MessageResult(AcmeStatus {
            hosts,
            accounts_created: self.accounts_created,
            issued: self.issued,
        })
    }
}

impl Handler<Check> for AcmeManager {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: Check, ctx: &mut Self::Context) -> Self::Result {
        let Some(round) = self.round(SystemTime::now(), None) else {
            self.schedule(ctx);
            return AtomicResponse::new(Box::pin(fut::ready(())));
        };
        AtomicResponse::new(Box::pin(round.run().into_actor(self).map(
            |result, act, ctx| {
                act.absorb(result);
                act.schedule(ctx);
            },
        )))
    }
}

#[cfg(test)]
mod tests;
