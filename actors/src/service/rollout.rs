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
//!   removed, and `-next` takes the service's name.
//! - Stop-first (host ports, no route, or no proxy): the proxy holds the
//!   route's requests (endpoint `Starting`); the old container is stopped and
//!   renamed `<name>-prev`; the new one is created and started under the
//!   service's name, and must become ready and soak; on failure it is removed
//!   and `-prev` is renamed back and started.
//!
//! A kill of the daemon at any step converges on restart
//! (`reconcile::remove_strays`): `-next` is removed; `-prev` is the proven
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

use super::reconcile::{container_labels, short, source_image};
use super::{Runtime, ServiceError};
use crate::engine::{labels, Container, ContainerState, CreateRequest, Health};
use crate::plan::Service;
use crate::proxy::router::EndpointChanged;
use crate::proxy::table::EndpointState;

/// Time between two looks at a container that is becoming ready or soaking.
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
/// Suffix of the new container during a start-first replace.
pub const NEXT_SUFFIX: &str = "-next";
/// Suffix of the stopped old container during a stop-first replace.
pub const PREV_SUFFIX: &str = "-prev";

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
    /// A newer digest (`by`) was reported during the soak: this version was
    /// never proven, so the previous container serves again and the newer
    /// one is deployed next, against the last proven version.
    Superseded { by: String },
}

/// Why a gate or soak did not prove the new container.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unproven {
    /// It failed: rolled back.
    Failed(String),
    /// A newer digest came during the soak.
    Superseded(String),
}

impl From<String> for Unproven {
    fn from(reason: String) -> Self {
        Unproven::Failed(reason)
    }
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

/// True when the service is replaced start-first.
pub fn starts_first(runtime: &Runtime, service: &Service, old: Option<&Container>) -> bool {
    service.route.is_some()
        && service.container.ports.is_empty()
        && runtime.endpoints.is_some()
        && old.is_some_and(|old| old.state == ContainerState::Running)
}

/// Replaces `old` (the service's running container, if any) with a new one
/// from the local image, labelled with `digest`. Returns the new id.
/// `soak`: watch the new container for the soak period before the deploy
/// counts as done (a new image); `false` for a known version (a reload's
/// new spec, a rollback, a scheduled restart).
pub async fn replace(
    runtime: &Runtime,
    service: &Service,
    old: Option<&Container>,
    digest: String,
    soak: bool,
) -> Result<String, RolloutError> {
    let soak = if soak {
        runtime.deploy.soak
    } else {
        Duration::ZERO
    };
    match old {
        Some(old) if starts_first(runtime, service, Some(old)) => {
            start_first(runtime, service, old, digest, soak).await
        }
        _ => stop_first(runtime, service, old, digest, soak).await,
    }
}

async fn start_first(
    runtime: &Runtime,
    service: &Service,
    old: &Container,
    digest: String,
    soak_for: Duration,
) -> Result<String, RolloutError> {
    let engine = runtime.engine.as_ref();
    if runtime.stopping.is_cancelled() {
        return Err(RolloutError::Abandoned { phase: "start" });
    }
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
    swap(runtime, service, new_ip).await;
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
    // A stop during the soak does not wait for it: the version is not
    // proven, so the previous container, still running, takes the traffic
    // back, as for a failure, but nothing is blamed.
    // A newer digest during the soak supersedes this version the same way.
    let soaked = unless_stopping(runtime, soak(runtime, &started, soak_for, &digest)).await;
    if soaked != Some(Ok(())) {
        swap(runtime, service, old_ip).await;
        warn!(service = %service.name, "traffic moved back to the previous container");
        discard(runtime, service, &id).await;
        return Err(match soaked {
            Some(Err(Unproven::Failed(reason))) => RolloutError::RolledBack { reason },
            Some(Err(Unproven::Superseded(by))) => RolloutError::Superseded { by },
            _ => RolloutError::Abandoned { phase: "soak" },
        });
    }
    engine.stop(&old.id, service.container.stop_grace()).await?;
    engine.remove(&old.id).await?;
    info!(service = %service.name, container = %short(&old.id), "removed the previous container");
    engine.rename(&id, &service.name).await?;
    Ok(id)
}

async fn stop_first(
    runtime: &Runtime,
    service: &Service,
    old: Option<&Container>,
    digest: String,
    soak_for: Duration,
) -> Result<String, RolloutError> {
    let engine = runtime.engine.as_ref();
    if runtime.stopping.is_cancelled() {
        return Err(RolloutError::Abandoned { phase: "start" });
    }
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
        // `reconcile::remove_strays`). Stopped first, a kill in between
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
                    Ok(()) => match wait_ready(runtime, service, &id).await {
                        Ok(started) => {
                            runtime.report_endpoint(&service.name, Some(&started));
                            soak(runtime, &started, soak_for, &digest).await
                        }
                        Err(reason) => Err(reason.into()),
                    },
                    Err(err) => Err(format!("the new container did not start: {err}").into()),
                }
            };
            // A stop abandons the gate: the previous version is put back.
            match unless_stopping(runtime, gate).await {
                Some(Ok(())) => Ok(id.clone()),
                Some(Err(unproven)) => Err((Some(id), Some(unproven))),
                None => Err((Some(id), None)),
            }
        }
        Err(err) => Err((
            None,
            Some(Unproven::Failed(format!(
                "cannot create the new container: {err}"
            ))),
        )),
    };
    match outcome {
        Ok(id) => {
            if let Some(old) = old {
                engine.remove(&old.id).await?;
                info!(service = %service.name, container = %short(&old.id), "removed the previous container");
            }
            Ok(id)
        }
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
                Some(Unproven::Failed(reason)) => RolloutError::RolledBack { reason },
                Some(Unproven::Superseded(by)) => RolloutError::Superseded { by },
                None => RolloutError::Abandoned { phase: "gate" },
            })
        }
    }
}

/// The name `old` carries during a stop-first replace: `<name>-prev` for a
/// container of Dispenser's, `<name>-takeover` for one it takes over (no
/// Dispenser labels), which `reconcile::remove_strays` finds by that name.
fn prev_name(service: &Service, old: Option<&Container>) -> String {
    let foreign = old.is_some_and(|old| !old.labels.contains_key(labels::MANAGED));
    let suffix = if foreign {
        super::reconcile::TAKEOVER_SUFFIX
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

/// Points the route at `ip` and waits until the router has swapped its table.
async fn swap(runtime: &Runtime, service: &Service, ip: Option<IpAddr>) {
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
    let deadline = Instant::now() + limit;
    loop {
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
                    return Ok(settled);
                }
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

/// Watches a container that took traffic for the soak period: it must stay
/// up, not restart and not turn unhealthy. It ends early, superseded, when
/// the registry reports a digest other than `digest` for the image.
async fn soak(
    runtime: &Runtime,
    started: &Container,
    period: Duration,
    digest: &str,
) -> Result<(), Unproven> {
    if period.is_zero() {
        return Ok(());
    }
    let watch = async {
        let deadline = Instant::now() + period;
        while Instant::now() < deadline {
            sleep(POLL.min(deadline - Instant::now())).await;
            let now = look(runtime, &started.id)
                .await
                .map_err(|why| format!("{why} during the soak period"))?;
            if now.started_at != started.started_at {
                return Err("the new container restarted during the soak period".to_string());
            }
            if now.health == Some(Health::Unhealthy) {
                return Err("the new container turned unhealthy during the soak period".to_string());
            }
        }
        Ok(())
    };
    tokio::select! {
        watched = watch => watched.map_err(Unproven::Failed),
        newer = runtime.newest_digest.moved_past(digest) => {
            info!(container = %short(&started.id), digest = %newer, "a newer digest came during the soak");
            Err(Unproven::Superseded(newer))
        }
    }
}

#[cfg(test)]
#[path = "rollout/tests.rs"]
mod tests;
