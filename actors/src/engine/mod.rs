//! The engine: the only module that talks to Docker. `Engine` is the seam the
//! actors use; `docker::DockerEngine` implements it on bollard, and
//! `fake::FakeEngine` records calls for the supervisor's unit tests.

pub mod docker;
pub mod fake;
pub mod labels;
pub mod reachability;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::plan::{DefaultNetwork, ImageRef, Network, Service};
use crate::registry::Credential;

/// A container as Docker reports it, reduced to what Dispenser decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
    /// `None` when the container has no healthcheck.
    pub health: Option<Health>,
    /// The image id (`sha256:...`) the container was created from.
    pub image_id: String,
    /// RFC 3339, as Docker reports it.
    pub started_at: String,
    /// The container's IP address on each network it is attached to, by
    /// network name (Docker assigns them when the container starts).
    pub addresses: BTreeMap<String, IpAddr>,
    /// True when the kernel killed its last run for lack of memory (Docker
    /// clears it when the container starts again).
    pub oom_killed: bool,
    /// How often Docker's restart policy restarted it.
    pub restart_count: u64,
}

/// Docker's container states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Restarting,
    Paused,
    Exited { code: i64 },
    Removing,
    Dead,
}

/// Docker's health states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// A local image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    /// `sha256:...`
    pub id: String,
    /// `repo@sha256:...` entries, empty for images never pushed or pulled.
    pub repo_digests: Vec<String>,
    /// Bytes on disk (Docker's `Size`), 0 when unknown.
    pub size: u64,
}

/// What removing one image reference did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageRemoval {
    /// The reference was the image's last: the image is gone.
    Deleted,
    /// Only the reference went; another tag or digest keeps the image.
    Untagged,
    /// A container (running or stopped) uses the image: nothing was removed.
    InUse,
    /// No such image.
    Absent,
}

/// What to create: the service's container under a given name, with labels.
#[derive(Debug, Clone)]
pub struct CreateRequest<'a> {
    /// Usually the service name.
    pub name: &'a str,
    pub service: &'a Service,
    /// The exact image to create from: the service's image pinned to the
    /// digest the container is labelled with, when the host has it so
    /// (`service::reconcile::source_image`); the service's reference
    /// otherwise.
    pub image: &'a ImageRef,
    pub default_network: &'a DefaultNetwork,
    /// Every label the container carries (see `labels`).
    pub labels: BTreeMap<String, String>,
}

/// Something that happened to a container, as Docker's event stream says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    /// Its `dispenser.service` label, when it has one.
    pub service: Option<String>,
    pub kind: EventKind,
}

/// The container events Dispenser follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Start,
    /// Its process exited (or was killed); the code when Docker gives one.
    Die {
        exit_code: Option<i64>,
    },
    /// The kernel's OOM killer killed a process of the container.
    Oom,
    Health(Health),
    Destroy,
}

/// Events as they come, until Docker closes the stream or goes away.
pub type EventStream = BoxStream<'static, Result<ContainerEvent, EngineError>>;

/// A container's output as it comes: chunks of stdout and stderr, in order.
pub type LogStream = BoxStream<'static, Result<Bytes, EngineError>>;

/// A failed Docker call, with what it was about.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker Engine: {0}")]
    Unreachable(String),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    Conflict { what: String },
    #[error("pulling {image} failed: {reason}")]
    Pull { image: String, reason: String },
    #[error("docker refused to {action} {what}: {reason}")]
    Refused {
        action: &'static str,
        what: String,
        reason: String,
    },
}

/// Every Docker operation Dispenser uses.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Asks the engine whether it answers (`GET /_ping`).
    async fn ping(&self) -> Result<(), EngineError>;
    /// Containers (running or not) that carry `dispenser.managed=true` and
    /// `dispenser.instance=<instance>`.
    async fn list_managed(&self, instance: &str) -> Result<Vec<Container>, EngineError>;
    /// The containers of one service of this instance (label
    /// `dispenser.service=<service>`), whatever their names: its own and
    /// leftovers of an interrupted deploy. Called for every service on each
    /// reconcile, so engines filter at the source; the default filters
    /// `list_managed`.
    async fn list_service(
        &self,
        instance: &str,
        service: &str,
    ) -> Result<Vec<Container>, EngineError> {
        Ok(self
            .list_managed(instance)
            .await?
            .into_iter()
            .filter(|container| {
                container.labels.get(labels::SERVICE).map(String::as_str) == Some(service)
            })
            .collect())
    }
    /// A container by name or id; `None` when it does not exist.
    async fn inspect(&self, name_or_id: &str) -> Result<Option<Container>, EngineError>;
    /// A local image by reference; `None` when it is not on the host.
    async fn image(&self, image: &ImageRef) -> Result<Option<Image>, EngineError>;
    /// Pulls an image (its tag, or its digest when pinned).
    async fn pull(&self, image: &ImageRef) -> Result<(), EngineError>;
    /// Pulls with credentials for the image's registry (the engine reads no
    /// Docker config of its own). Engines that need none just pull.
    async fn pull_with(
        &self,
        image: &ImageRef,
        credential: Option<&Credential>,
    ) -> Result<(), EngineError> {
        let _ = credential;
        self.pull(image).await
    }
    /// Points the local reference `target` (its repository and tag) at the
    /// local image `source`, as `docker tag` does.
    async fn tag(&self, source: &ImageRef, target: &ImageRef) -> Result<(), EngineError>;
    /// Removes the image reference `image` (`repository@digest`), as
    /// `docker rmi` without `--force`: the image goes with its last
    /// reference, and an image a container uses is left alone.
    async fn remove_image(&self, image: &ImageRef) -> Result<ImageRemoval, EngineError>;
    /// Creates a container attached to the default network (alias: the
    /// service name) and to the service's declared networks. Returns its id.
    async fn create(&self, request: &CreateRequest<'_>) -> Result<String, EngineError>;
    /// Starts a container; one that already runs is left as it is.
    async fn start(&self, id: &str) -> Result<(), EngineError>;
    /// Stops with the container's stop signal, killing after `grace`.
    async fn stop(&self, id: &str, grace: Duration) -> Result<(), EngineError>;
    /// Removes a container (forcibly, with its anonymous volumes).
    async fn remove(&self, id: &str) -> Result<(), EngineError>;
    async fn rename(&self, id: &str, new_name: &str) -> Result<(), EngineError>;
    /// Waits until the container exits and returns its exit code.
    async fn wait_exit(&self, id: &str) -> Result<i64, EngineError>;
    /// The last `lines` lines of the container's output (stdout and stderr).
    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>, EngineError>;
    /// The container's output: its last `tail` lines, then, with `follow`,
    /// new output until the container stops or the stream is dropped.
    /// Engines that cannot stream give the tail only.
    async fn logs(&self, id: &str, tail: usize, follow: bool) -> Result<LogStream, EngineError> {
        let _ = follow;
        let lines = self.logs_tail(id, tail).await?;
        let chunks = lines
            .into_iter()
            .map(|line| Ok(Bytes::from(format!("{line}\n"))));
        Ok(Box::pin(futures_util::stream::iter(chunks)))
    }
    /// Creates the default network if missing (with `labels`); an existing
    /// network of that name is used as it is.
    async fn ensure_default_network(
        &self,
        network: &DefaultNetwork,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError>;
    /// Creates a declared network if missing. External networks must exist:
    /// a missing one is `NotFound`.
    async fn ensure_network(
        &self,
        network: &Network,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError>;
    /// Names of networks that carry `dispenser.managed=true` and this instance.
    async fn list_managed_networks(&self, instance: &str) -> Result<Vec<String>, EngineError>;
    async fn remove_network(&self, name: &str) -> Result<(), EngineError>;
    /// From now on, the events (start, die, oom, health status, destroy) of
    /// containers that carry `dispenser.managed=true` and this instance.
    async fn events(&self, instance: &str) -> Result<EventStream, EngineError>;
}
