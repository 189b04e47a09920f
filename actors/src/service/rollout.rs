//! Replacing a running service's container without dropping a request: the
//! new container is started and proven ready before traffic moves, and a bad
//! one is removed while the previous one keeps (or takes back) the traffic.
//!
//! - Start-first (routed through the proxy, no host port): `<name>-next` is
//!   created beside the old container (both carry the service's DNS alias
//!   during the overlap), started, and must become ready; the router gets the
//!   new address in one swap; the old container drains (its requests in
//!   flight finish, up to `drain_timeout`); the new one must stay up for the
//!   soak, while the old one stays running so a rollback is one more swap;
//!   then the old one is stopped with its stop signal and grace period,
//!   removed, and `-next` takes the service's name (`promote`).
//! - Stop-first (host ports, no route, or no proxy): the proxy holds the
//!   route's requests (endpoint `Starting`); the old container is stopped and
//!   renamed `<name>-prev`; the new one is created and started under the
//!   service's name, and must become ready and soak; on failure it is removed
//!   and `-prev` is renamed back and started (`revert`).
//!
//! `replace` runs up to the swap. With a soak to watch it returns a `Soak`:
//! the service actor goes back to its mailbox and watches the soak through
//! Docker's events (`service/soak.rs`), then calls `promote` or `revert`.
//!
//! A kill of the daemon at any step converges on restart
//! (`converge::remove_strays`): `-next` is removed; `-prev` is the proven
//! version, so the unproven container under the service's name is removed
//! and `-prev` takes the name back; the reconcile then deploys the declared
//! version through the gate again. A missing container is created from the
//! local image.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};
use tracing::{info, warn};

use super::container::{container_labels, short, source_image, NEXT_SUFFIX, PREV_SUFFIX};
use super::{Runtime, ServiceError};
use crate::engine::{labels, Container, ContainerState, CreateRequest, Health};
use crate::plan::Service;
use crate::proxy::router::EndpointChanged;
use crate::proxy::table::EndpointState;

/// Time between two looks at a container that is becoming ready.
const POLL: Duration = Duration::from_millis(200);
/// Without a healthcheck or health path: how long a container that accepts
/// connections (or has no port to try) must stay up to count as ready.
const SETTLE: Duration = Duration::from_secs(1);
/// Longest wait for one readiness probe (TCP connect or HTTP answer).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes of a probe's answer read to find the status line.
const PROBE_READ_LIMIT: usize = 1024;
/// After the swap, requests that read the old table may still be counting
/// in: the drain waits at least this long.
const DRAIN_SETTLE: Duration = Duration::from_millis(100);

/// A replace that did not put the new version in place.
#[derive(Debug)]
pub enum RolloutError {
    /// The new container was bad; the previous one serves again, the new
    /// one is removed. The digest should be quarantined.
    RolledBack { reason: String },
    /// A step failed (Docker refused something); the service may be down.
    Failed(ServiceError),
    /// The daemon began to stop during `phase`: the new container is
    /// removed and the previous one serves (or serves again). Not the new
    /// version's fault: nothing is quarantined, and the next start deploys
    /// it again.
    Abandoned { phase: &'static str },
    /// A newer digest (`by`) was reported during the gate: this version
    /// never took traffic; the newer one is deployed next, against the
    /// last proven version.
    Superseded { by: String },
}

/// What a replace left in place.
#[derive(Debug)]
pub enum Swapped {
    /// The new container serves under the service's name; the old one is gone.
    Done(String),
    /// The new container serves and its soak is to be watched; the old one
    /// is kept for `revert` until `promote`.
    Soaking(Box<Soak>),
}

/// A new container that took traffic and is not proven yet.
#[derive(Debug, Clone)]
pub struct Soak {
    /// The new container.
    pub id: String,
    /// Its `StartedAt` when it was ready: another means it restarted.
    pub started_at: String,
    /// The digest it runs.
    pub digest: String,
    /// The proven container: still running beside it (start-first), or
    /// stopped as `<name>-prev` (stop-first). `None`: there was none.
    pub old: Option<Container>,
    /// Where the route pointed before the swap (start-first).
    old_ip: Option<IpAddr>,
    /// Where it points since (start-first).
    new_ip: Option<IpAddr>,
    start_first: bool,
    /// How long it must stay up, counted from `began`.
    pub period: Duration,
    pub began: Instant,
}

impl From<ServiceError> for RolloutError {
    fn from(err: ServiceError) -> Self {
        RolloutError::Failed(err)
    }
}

impl From<crate::engine::EngineError> for RolloutError {
    fn from(err: crate::engine::EngineError) -> Self {
        RolloutError::Failed(err.into())
    }
}

impl Soak {
    /// When the soak ends.
    pub fn deadline(&self) -> Instant {
        self.began + self.period
    }
}

/// True when the service is replaced start-first.
pub fn starts_first(runtime: &Runtime, service: &Service, old: Option<&Container>) -> bool {
    service.route.is_some()
        && service.container.ports.is_empty()
        && runtime.endpoints.is_some()
        && old.is_some_and(|old| old.state == ContainerState::Running)
}

/// Replaces `old` (the service's running container, if any) with a new one
/// from the local image, labelled with `digest`, up to the swap. `soak`:
/// the new container is to be watched for the soak period before the
/// deploy counts as done (a new image), so it comes back as
/// `Swapped::Soaking`; `false` for a known version (a reload's new spec, a
/// rollback, a scheduled restart), which is finished at once.
pub async fn replace(
    runtime: &Runtime,
    service: &Service,
    old: Option<&Container>,
    digest: String,
    soak: bool,
) -> Result<Swapped, RolloutError> {
    let soak = if soak {
        runtime.deploy.soak
    } else {
        Duration::ZERO
    };
    if runtime.stopping.is_cancelled() {
        return Err(RolloutError::Abandoned { phase: "start" });
    }
    let swapped = match old {
        Some(old) if starts_first(runtime, service, Some(old)) => {
            start_first(runtime, service, old, digest, soak).await?
        }
        _ => stop_first(runtime, service, old, digest, soak).await?,
    };
    if swapped.period.is_zero() {
        return Ok(Swapped::Done(promote(runtime, service, &swapped).await?));
    }
    // A stop during the drain does not wait for a soak: the previous
    // container, still there, takes the traffic back.
    if runtime.stopping.is_cancelled() {
        revert(runtime, service, &swapped).await?;
        return Err(RolloutError::Abandoned { phase: "soak" });
    }
    Ok(Swapped::Soaking(Box::new(swapped)))
}

/// The soak is over and the new container is proven: the previous one is
/// stopped (its stop signal and grace period) and removed, and the new one
/// has the service's name. Returns the new container's id.
pub async fn promote(
    runtime: &Runtime,
    service: &Service,
    soak: &Soak,
) -> Result<String, ServiceError> {
    let engine = runtime.engine.as_ref();
    if let Some(old) = &soak.old {
        if soak.start_first {
            // The old container is no fallback once it stops.
            swap(runtime, service, soak.new_ip, None).await;
            engine.stop(&old.id, service.container.stop_grace()).await?;
        }
        engine.remove(&old.id).await?;
        info!(service = %service.name, container = %short(&old.id), "removed the previous container");
    }
    if soak.start_first {
        engine.rename(&soak.id, &service.name).await?;
    }
    Ok(soak.id.clone())
}

/// The new container is not kept (it failed, was superseded or the daemon
/// stops): the previous one takes the traffic (and, stop-first, its name)
/// back, and the new one is removed.
pub async fn revert(runtime: &Runtime, service: &Service, soak: &Soak) -> Result<(), ServiceError> {
    let engine = runtime.engine.as_ref();
    if soak.start_first {
        swap(runtime, service, soak.old_ip, None).await;
        warn!(service = %service.name, "traffic moved back to the previous container");
        discard(runtime, service, &soak.id).await;
        return Ok(());
    }
    discard(runtime, service, &soak.id).await;
    if let Some(old) = &soak.old {
        engine.rename(&old.id, &service.name).await?;
        engine.start(&old.id).await?;
        info!(service = %service.name, container = %short(&old.id), "previous container started again");
    }
    runtime.refresh_endpoint(&service.name).await;
    Ok(())
}

/// What one look at a soaking container found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It runs, has not restarted and is not unhealthy.
    Holds,
    /// It failed, for this reason.
    Fails(String),
    /// Docker did not answer: nothing can be said.
    Unknown,
}

/// One look at a soaking container: it must run, not have restarted and
/// not be unhealthy.
pub async fn judge(runtime: &Runtime, soak: &Soak) -> Verdict {
    if let Err(crate::engine::EngineError::Unreachable(_)) = runtime.engine.inspect(&soak.id).await
    {
        return Verdict::Unknown;
    }
    let now = match look(runtime, &soak.id).await {
        Ok(now) => now,
        Err(why) => return Verdict::Fails(format!("{why} during the soak period")),
    };
    if now.started_at != soak.started_at {
        return Verdict::Fails("the new container restarted during the soak period".to_string());
    }
    if now.health == Some(Health::Unhealthy) {
        return Verdict::Fails(
            "the new container turned unhealthy during the soak period".to_string(),
        );
    }
    Verdict::Holds
}

async fn start_first(
    runtime: &Runtime,
    service: &Service,
    old: &Container,
    digest: String,
    period: Duration,
) -> Result<Soak, RolloutError> {
    let engine = runtime.engine.as_ref();
    let next_name = format!("{}{NEXT_SUFFIX}", service.name);
    let image = source_image(engine, service, &digest).await?;
    let mut labels = container_labels(&runtime.instance, service, digest.clone());
    labels.insert(labels::ROLE.to_string(), "next".to_string());
    let request = CreateRequest {
        name: &next_name,
        service,
        image: &image,
        default_network: &runtime.default_network,
        labels,
    };
    let begun = Instant::now();
    let id = engine.create(&request).await?;
    info!(service = %service.name, container = %short(&id), "created the next container");
    if let Err(err) = engine.start(&id).await {
        discard(runtime, service, &id).await;
        return Err(RolloutError::RolledBack {
            reason: format!("the new container did not start: {err}"),
        });
    }
    let started_at = Instant::now();
    let started = match unless_stopping(runtime, wait_ready(runtime, service, &id)).await {
        Some(Ok(started)) => started,
        Some(Err(reason)) => {
            discard(runtime, service, &id).await;
            return Err(RolloutError::RolledBack { reason });
        }
        None => {
            discard(runtime, service, &id).await;
            return Err(RolloutError::Abandoned { phase: "ready" });
        }
    };
    // A newer digest came during the gate: this one never takes traffic,
    // and the newest is deployed next.
    if let Some(by) = runtime.newest_digest.past(&digest) {
        info!(service = %service.name, digest = %by, "a newer digest came during the gate");
        discard(runtime, service, &id).await;
        return Err(RolloutError::Superseded { by });
    }
    let new_ip = started
        .addresses
        .get(&runtime.default_network.name)
        .copied();
    let old_ip = old.addresses.get(&runtime.default_network.name).copied();
    let ready_at = Instant::now();
    // The old container stays up through the soak: the proxy replays on it
    // a request the new one fails (it died before the soak saw it).
    swap(runtime, service, new_ip, old_ip).await;
    let swapped_at = Instant::now();
    info!(service = %service.name, container = %short(&id), "traffic moved to the new container");
    if let Some(old_ip) = old_ip {
        // Skipped when stopping: the old container keeps running anyway.
        unless_stopping(runtime, drain(runtime, service, old_ip)).await;
    }
    info!(
        service = %service.name,
        start_ms = millis(started_at - begun),
        ready_ms = millis(ready_at - started_at),
        swap_ms = millis(swapped_at - ready_at),
        drain_ms = millis(swapped_at.elapsed()),
        "deploy phases"
    );
    Ok(Soak {
        id,
        started_at: started.started_at,
        digest,
        old: Some(old.clone()),
        old_ip,
        new_ip,
        start_first: true,
        period,
        began: Instant::now(),
    })
}

async fn stop_first(
    runtime: &Runtime,
    service: &Service,
    old: Option<&Container>,
    digest: String,
    period: Duration,
) -> Result<Soak, RolloutError> {
    let engine = runtime.engine.as_ref();
    let prev_name = prev_name(service, old);
    let image = source_image(engine, service, &digest).await?;
    if service.route.is_some() && runtime.endpoints.is_some() {
        // New requests are held from here; those in flight finish first.
        hold(runtime, service).await;
        if let Some(ip) = old.and_then(|old| old.addresses.get(&runtime.default_network.name)) {
            drain(runtime, service, *ip).await;
        }
    }
    if let Some(old) = old {
        // Renamed while it still runs, then stopped: a kill between the two
        // leaves a running `-prev`, which the next start puts back (see
        // `converge::remove_strays`). Stopped first, a kill in between
        // would leave a stopped container under the service's name, which
        // the restart would replace without the gate's way back.
        engine.rename(&old.id, &prev_name).await?;
        engine.stop(&old.id, service.container.stop_grace()).await?;
        info!(service = %service.name, container = %short(&old.id), "stopped the previous container");
    }
    let request = CreateRequest {
        name: &service.name,
        service,
        image: &image,
        default_network: &runtime.default_network,
        labels: container_labels(&runtime.instance, service, digest.clone()),
    };
    let outcome = match engine.create(&request).await {
        Ok(id) => {
            info!(service = %service.name, container = %short(&id), image = %service.container.image, "created");
            let gate = async {
                match engine.start(&id).await {
                    Ok(()) => wait_ready(runtime, service, &id).await,
                    Err(err) => Err(format!("the new container did not start: {err}")),
                }
            };
            // A stop abandons the gate: the previous version is put back.
            match unless_stopping(runtime, gate).await {
                Some(Ok(started)) => {
                    runtime.report_endpoint(&service.name, Some(&started));
                    Ok(Soak {
                        id: id.clone(),
                        started_at: started.started_at,
                        digest,
                        old: old.cloned(),
                        old_ip: None,
                        new_ip: None,
                        start_first: false,
                        period,
                        began: Instant::now(),
                    })
                }
                Some(Err(reason)) => Err((Some(id), Some(reason))),
                None => Err((Some(id), None)),
            }
        }
        Err(err) => Err((
            None,
            Some(format!("cannot create the new container: {err}")),
        )),
    };
    match outcome {
        Ok(soak) => Ok(soak),
        Err((new, reason)) => {
            if let Some(new) = new {
                discard(runtime, service, &new).await;
            }
            if let Some(old) = old {
                engine.rename(&old.id, &service.name).await?;
                engine.start(&old.id).await?;
                info!(service = %service.name, container = %short(&old.id), "previous container started again");
            }
            runtime.refresh_endpoint(&service.name).await;
            Err(match reason {
                Some(reason) => RolloutError::RolledBack { reason },
                None => RolloutError::Abandoned { phase: "gate" },
            })
        }
    }
}

/// The name `old` carries during a stop-first replace: `<name>-prev` for a
/// container of Dispenser's, `<name>-takeover` for one it takes over (no
/// Dispenser labels), which `converge::remove_strays` finds by that name.
fn prev_name(service: &Service, old: Option<&Container>) -> String {
    let foreign = old.is_some_and(|old| !old.labels.contains_key(labels::MANAGED));
    let suffix = if foreign {
        super::container::TAKEOVER_SUFFIX
    } else {
        PREV_SUFFIX
    };
    format!("{}{suffix}", service.name)
}

/// `work`'s result, or `None` as soon as the daemon begins to stop.
pub async fn unless_stopping<T>(
    runtime: &Runtime,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = runtime.stopping.cancelled() => None,
        done = work => Some(done),
    }
}

/// Points the route at `ip`, with `fallback` as the previous container
/// still up, and waits until the router has swapped its table.
async fn swap(runtime: &Runtime, service: &Service, ip: Option<IpAddr>, fallback: Option<IpAddr>) {
    let Some(endpoints) = &runtime.endpoints else {
        return;
    };
    let changed = EndpointChanged {
        service: service.name.clone(),
        ip,
        state: if ip.is_some() {
            EndpointState::Ready
        } else {
            EndpointState::Down
        },
        fallback,
    };
    if let Err(err) = endpoints.send(changed).await {
        warn!(service = %service.name, error = %err, "cannot reach the proxy router");
    }
}

/// Marks the route as starting (the proxy holds its requests) and waits
/// until the router has swapped its table.
async fn hold(runtime: &Runtime, service: &Service) {
    let Some(endpoints) = &runtime.endpoints else {
        return;
    };
    let starting = EndpointChanged {
        service: service.name.clone(),
        ip: None,
        state: EndpointState::Starting,
        fallback: None,
    };
    if let Err(err) = endpoints.send(starting).await {
        warn!(service = %service.name, error = %err, "cannot reach the proxy router");
    }
}

/// Waits until no request is in flight to `ip`, up to the drain timeout.
async fn drain(runtime: &Runtime, service: &Service, ip: IpAddr) {
    sleep(DRAIN_SETTLE).await;
    let Some(board) = &runtime.in_flight else {
        return;
    };
    let deadline = Instant::now() + runtime.deploy.drain_timeout;
    loop {
        let count = board.count(ip);
        if count == 0 {
            return;
        }
        if Instant::now() >= deadline {
            warn!(service = %service.name, in_flight = count, "drain timeout; stopping the previous container with requests in flight");
            return;
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// Whole milliseconds, for the phase log.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Stops and removes a new container that did not make it.
async fn discard(runtime: &Runtime, service: &Service, id: &str) {
    let engine = runtime.engine.as_ref();
    if let Err(err) = engine.remove(id).await {
        warn!(service = %service.name, container = %short(id), error = %err, "cannot remove the failed container");
    } else {
        info!(service = %service.name, container = %short(id), "removed the failed container");
    }
}

/// Waits until the container is ready, up to the ready timeout: its
/// healthcheck passes when it has one; else the route's health path answers
/// 2xx or 3xx; else its port accepts connections and it stays up for a
/// moment. Returns the container as it was when ready, or why it is not.
pub async fn wait_ready(
    runtime: &Runtime,
    service: &Service,
    id: &str,
) -> Result<Container, String> {
    let limit = runtime.deploy.ready_timeout;
    let started = Instant::now();
    let deadline = started + limit;
    let mut shown = None;
    loop {
        let elapsed_secs = started.elapsed().as_secs();
        if shown != Some(elapsed_secs) {
            shown = Some(elapsed_secs);
            crate::progress::publish(crate::progress::Progress::Waiting {
                service: service.name.clone(),
                elapsed_secs,
                limit_secs: limit.as_secs(),
            });
        }
        let container = look(runtime, id).await?;
        let verdict = match container.health {
            Some(Health::Healthy) => Some(Ok(())),
            Some(Health::Unhealthy) => {
                Some(Err("the new container failed its healthcheck".to_string()))
            }
            Some(Health::Starting) => None,
            None => probe(runtime, service, &container).await,
        };
        match verdict {
            Some(Ok(())) => {
                if container.health.is_none() {
                    sleep(SETTLE).await;
                    let settled = look(runtime, id).await?;
                    if settled.started_at != container.started_at {
                        return Err("the new container restarted while starting".into());
                    }
                    ready(service);
                    return Ok(settled);
                }
                ready(service);
                return Ok(container);
            }
            Some(Err(reason)) => return Err(reason),
            None => {}
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the new container was not ready within {}s",
                limit.as_secs()
            ));
        }
        sleep(POLL).await;
    }
}

/// Tells a watching person that `service`'s new container is ready.
fn ready(service: &Service) {
    crate::progress::publish(crate::progress::Progress::Ready {
        service: service.name.clone(),
    });
}

/// The container's state, as an error when it is not running.
async fn look(runtime: &Runtime, id: &str) -> Result<Container, String> {
    let container = runtime
        .engine
        .inspect(id)
        .await
        .map_err(|err| err.to_string())?
        .ok_or_else(|| "the new container disappeared".to_string())?;
    match container.state {
        ContainerState::Running => Ok(container),
        ContainerState::Exited { code } => {
            Err(format!("the new container exited with code {code}"))
        }
        ContainerState::Restarting => Err("the new container is restarting (crash loop)".into()),
        other => Err(format!("the new container is {other:?}")),
    }
}

/// One readiness probe of a container without a healthcheck: `Some(Ok)`
/// ready, `None` not yet.
async fn probe(
    runtime: &Runtime,
    service: &Service,
    container: &Container,
) -> Option<Result<(), String>> {
    let port = match (&service.route, service.container.ports.first()) {
        (Some(route), _) => route.service_port,
        (None, Some(binding)) => binding.container,
        (None, None) => return Some(Ok(())),
    };
    let ip = container.addresses.get(&runtime.default_network.name)?;
    let address = SocketAddr::new(*ip, port);
    let health_path = service
        .route
        .as_ref()
        .and_then(|r| r.health_path.as_deref());
    let attempt = async {
        let mut stream = TcpStream::connect(address).await.ok()?;
        let Some(path) = health_path else {
            return Some(());
        };
        let request = format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = vec![0u8; PROBE_READ_LIMIT];
        let mut read = 0;
        while read < 12 {
            let n = stream.read(&mut answer[read..]).await.ok()?;
            if n == 0 {
                break;
            }
            read += n;
        }
        let status = std::str::from_utf8(answer.get(9..12)?).ok()?;
        matches!(status.as_bytes().first(), Some(b'2' | b'3')).then_some(())
    };
    match timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Some(())) => Some(Ok(())),
        _ => None,
    }
}

#[cfg(test)]
#[path = "rollout/tests.rs"]
mod tests;
