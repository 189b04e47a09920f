//! `DockerEngine`: the `Engine` on the real Docker Engine, through bollard.
//!
//! The client negotiates the API version at connect: Docker 20.10 (Debian 12)
//! speaks at most 1.41, current engines refuse anything older than 1.44.

mod create_body;
mod version;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, EventMessage, EventMessageTypeEnum,
    HealthStatusEnum, Ipam, IpamConfig, NetworkConnectRequest, NetworkCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, ListContainersOptions,
    ListNetworksOptions, LogsOptions, RemoveContainerOptions, RemoveImageOptions,
    RenameContainerOptions, StopContainerOptions, TagImageOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};
use tracing::{debug, warn};

use crate::engine::labels;
use crate::engine::{
    Container, ContainerEvent, ContainerState, CreateRequest, Engine, EngineError, EventKind,
    EventStream, Health, Image, ImageRemoval,
};
use crate::plan::{DefaultNetwork, ImageRef, Network, NetworkDriver};
use crate::registry::Credential;

pub use create_body::HOST_GATEWAY_ENTRY;

/// The Docker Engine, reached through its API socket.
#[derive(Debug, Clone)]
pub struct DockerEngine {
    docker: Docker,
}

/// Seconds a request may take before the client gives up (a stop adds its grace).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Inspects a listing runs at once (each is one small request to the engine).
const LIST_INSPECTS_AT_ONCE: usize = 8;
/// Longest time between two progress updates of a pull.
const PULL_PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl DockerEngine {
    /// Connects to `DOCKER_HOST` (default: the local socket) and negotiates
    /// the API version with the daemon.
    pub async fn connect() -> Result<Self, EngineError> {
        let host = std::env::var("DOCKER_HOST").ok();
        Self::connect_to(host.as_deref()).await
    }

    /// Connects to `host` (`unix://...`, `tcp://...` or `http://...`; `None`
    /// for the local socket) and negotiates the API version.
    pub async fn connect_to(host: Option<&str>) -> Result<Self, EngineError> {
        let docker = version::negotiate(host, REQUEST_TIMEOUT_SECS).await?;
        debug!(api_version = %docker.client_version(), "docker api version negotiated");
        Ok(Self { docker })
    }

    /// The API version in use after negotiation, for example `1.41`.
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// Whether a network of exactly this name exists.
    async fn network_exists(&self, name: &str) -> Result<bool, EngineError> {
        match self.docker.inspect_network(name, None).await {
            // Docker also matches id prefixes: only an exact name counts.
            Ok(network) => Ok(network.name.as_deref() == Some(name)),
            Err(err) if status_of(&err) == Some(404) => Ok(false),
            Err(err) => Err(docker_error("inspect", format!("network {name}"), err)),
        }
    }

    async fn create_network(&self, request: NetworkCreateRequest) -> Result<(), EngineError> {
        let name = request.name.clone();
        match self.docker.create_network(request).await {
            Ok(_) => {
                debug!(network = %name, "network created");
                Ok(())
            }
            // Someone created it between our inspect and our create.
            Err(err) if status_of(&err) == Some(409) => Ok(()),
            Err(err) => Err(docker_error("create", format!("network {name}"), err)),
        }
    }

    /// Connects a freshly created container to the service's declared networks.
    async fn connect_declared_networks(
        &self,
        id: &str,
        request: &CreateRequest<'_>,
    ) -> Result<(), EngineError> {
        for network in &request.service.container.networks {
            // Docker accepts a created container onto a missing network and
            // fails only at start: check first, so create fails instead.
            if !self.network_exists(network).await? {
                return Err(EngineError::NotFound {
                    what: format!("network {network}"),
                });
            }
            let connect = NetworkConnectRequest {
                container: id.to_owned(),
                endpoint_config: Some(create_body::endpoint_with_alias(&request.service.name)),
            };
            self.docker
                .connect_network(network, connect)
                .await
                .map_err(|err| docker_error("connect to", format!("network {network}"), err))?;
        }
        Ok(())
    }

    /// Lists the containers (running or not) that match `filters` and
    /// inspects them, a few at a time.
    async fn list_inspected(
        &self,
        filters: HashMap<String, Vec<String>>,
    ) -> Result<Vec<Container>, EngineError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|err| docker_error("list", "containers", err))?;
        let inspected: Vec<Option<Container>> =
            futures_util::stream::iter(summaries.into_iter().filter_map(|summary| summary.id))
                .map(|id| async move { self.inspect(&id).await })
                .buffered(LIST_INSPECTS_AT_ONCE)
                .try_collect()
                .await?;
        // A container removed between list and inspect is simply gone.
        Ok(inspected.into_iter().flatten().collect())
    }
}

#[async_trait]
impl Engine for DockerEngine {
    async fn ping(&self) -> Result<(), EngineError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|err| docker_error("answer", "a ping", err))
    }

    async fn list_managed(&self, instance: &str) -> Result<Vec<Container>, EngineError> {
        self.list_inspected(managed_filter(instance)).await
    }

    async fn list_service(
        &self,
        instance: &str,
        service: &str,
    ) -> Result<Vec<Container>, EngineError> {
        let mut filters = managed_filter(instance);
        filters
            .entry("label".to_owned())
            .or_default()
            .push(format!("{}={service}", labels::SERVICE));
        self.list_inspected(filters).await
    }

    async fn inspect(&self, name_or_id: &str) -> Result<Option<Container>, EngineError> {
        match self.docker.inspect_container(name_or_id, None).await {
            Ok(response) => Ok(Some(container_from(response))),
            Err(err) if status_of(&err) == Some(404) => Ok(None),
            Err(err) => Err(docker_error(
                "inspect",
                format!("container {name_or_id}"),
                err,
            )),
        }
    }

    async fn image(&self, image: &ImageRef) -> Result<Option<Image>, EngineError> {
        match self.docker.inspect_image(&image.original).await {
            Ok(inspect) => Ok(Some(Image {
                id: inspect.id.unwrap_or_default(),
                repo_digests: inspect.repo_digests.unwrap_or_default(),
                size: inspect
                    .size
                    .and_then(|size| u64::try_from(size).ok())
                    .unwrap_or(0),
            })),
            Err(err) if status_of(&err) == Some(404) => Ok(None),
            Err(err) => Err(docker_error("inspect", format!("image {image}"), err)),
        }
    }

    async fn pull(&self, image: &ImageRef) -> Result<(), EngineError> {
        self.pull_with(image, None).await
    }

    async fn pull_with(
        &self,
        image: &ImageRef,
        credential: Option<&Credential>,
    ) -> Result<(), EngineError> {
        // Always name a tag or digest: an empty tag would pull every tag.
        let tag = image
            .digest
            .clone()
            .or_else(|| image.tag.clone())
            .unwrap_or_else(|| "latest".to_owned());
        let options = CreateImageOptions {
            from_image: Some(format!("{}/{}", image.registry, image.repository)),
            tag: Some(tag),
            ..Default::default()
        };
        let pull_error = |reason: String| EngineError::Pull {
            image: image.original.clone(),
            reason,
        };
        let credentials = credential.map(|credential| docker_credentials(image, credential));
        let mut progress = self.docker.create_image(Some(options), None, credentials);
        let mut tally = crate::progress::PullTally::default();
        let mut shown = std::time::Instant::now();
        loop {
            match progress.try_next().await {
                Ok(Some(info)) => {
                    if let Some(message) = info.error_detail.and_then(|detail| detail.message) {
                        return Err(pull_error(message));
                    }
                    let detail = info.progress_detail.unwrap_or_default();
                    tally.record(
                        info.id.as_deref().unwrap_or(""),
                        info.status.as_deref().unwrap_or(""),
                        detail.current,
                        detail.total,
                    );
                    if shown.elapsed() >= PULL_PROGRESS_EVERY {
                        shown = std::time::Instant::now();
                        crate::progress::publish(tally.progress(&image.original));
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    return Err(match docker_error("pull", image.original.clone(), err) {
                        EngineError::Unreachable(reason) => EngineError::Unreachable(reason),
                        EngineError::NotFound { what } => pull_error(format!("{what} not found")),
                        EngineError::Refused { reason, .. } => pull_error(reason),
                        EngineError::Conflict { what } => pull_error(format!("{what} conflict")),
                        EngineError::Pull { reason, .. } => pull_error(reason),
                    });
                }
            }
        }
        crate::progress::publish(tally.progress(&image.original));
        crate::progress::publish(crate::progress::Progress::Pulled {
            image: image.original.clone(),
        });
        debug!(image = %image, "image pulled");
        Ok(())
    }

    async fn tag(&self, source: &ImageRef, target: &ImageRef) -> Result<(), EngineError> {
        let options = TagImageOptions {
            repo: Some(format!("{}/{}", target.registry, target.repository)),
            tag: Some(
                target
                    .tag
                    .clone()
                    .unwrap_or_else(|| crate::plan::DEFAULT_TAG.to_owned()),
            ),
        };
        self.docker
            .tag_image(&source.original, Some(options))
            .await
            .map_err(|err| match status_of(&err) {
                Some(404) => EngineError::NotFound {
                    what: format!("image {source}"),
                },
                _ => docker_error("tag", format!("image {source} as {target}"), err),
            })?;
        debug!(image = %source, tag = %target, "image tagged");
        Ok(())
    }

    async fn remove_image(&self, image: &ImageRef) -> Result<ImageRemoval, EngineError> {
        let options = RemoveImageOptions {
            force: false,
            noprune: false,
            platforms: None,
        };
        match self
            .docker
            .remove_image(&image.original, Some(options), None)
            .await
        {
            Ok(items) if items.iter().any(|item| item.deleted.is_some()) => {
                debug!(image = %image, "image removed");
                Ok(ImageRemoval::Deleted)
            }
            Ok(_) => Ok(ImageRemoval::Untagged),
            Err(err) if status_of(&err) == Some(404) => Ok(ImageRemoval::Absent),
            Err(err) if status_of(&err) == Some(409) => Ok(ImageRemoval::InUse),
            Err(err) => Err(docker_error("remove", format!("image {image}"), err)),
        }
    }

    async fn create(&self, request: &CreateRequest<'_>) -> Result<String, EngineError> {
        let body = create_body::container_body(request)?;
        let options = CreateContainerOptions {
            name: Some(request.name.to_owned()),
            ..Default::default()
        };
        let image = request.image;
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|err| match status_of(&err) {
                Some(404) => EngineError::NotFound {
                    what: format!("image {image}"),
                },
                _ => docker_error("create", format!("container {}", request.name), err),
            })?;
        let id = created.id;
        if let Err(err) = self.connect_declared_networks(&id, request).await {
            // Half-made containers would be adopted later: remove this one.
            if let Err(cleanup) = self.remove(&id).await {
                warn!(container = %id, error = %cleanup, "cannot remove half-created container");
            }
            return Err(err);
        }
        debug!(service = %request.service.name, container = %id, "container created");
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(()),
            // Already running: started, as asked.
            Err(err) if status_of(&err) == Some(304) => Ok(()),
            Err(err) => Err(docker_error("start", format!("container {id}"), err)),
        }
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), EngineError> {
        let grace_secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let options = StopContainerOptions {
            t: Some(i32::try_from(grace_secs).unwrap_or(i32::MAX)),
            signal: None,
        };
        // The daemon answers only once the container is down: allow the grace.
        let docker = self
            .docker
            .clone()
            .with_timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS + grace_secs));
        match docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(err) if status_of(&err) == Some(304) => Ok(()),
            Err(err) => Err(docker_error("stop", format!("container {id}"), err)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(err) if status_of(&err) == Some(404) => Ok(()),
            Err(err) => Err(docker_error("remove", format!("container {id}"), err)),
        }
    }

    async fn rename(&self, id: &str, new_name: &str) -> Result<(), EngineError> {
        let options = RenameContainerOptions {
            name: new_name.to_owned(),
        };
        self.docker
            .rename_container(id, options)
            .await
            .map_err(|err| match status_of(&err) {
                Some(409) => EngineError::Conflict {
                    what: format!("container {new_name}"),
                },
                _ => docker_error("rename", format!("container {id}"), err),
            })
    }

    async fn wait_exit(&self, id: &str) -> Result<i64, EngineError> {
        let options = WaitContainerOptions {
            condition: "not-running".to_owned(),
        };
        let mut responses = self.docker.wait_container(id, Some(options));
        match responses.try_next().await {
            Ok(Some(response)) => Ok(response.status_code),
            // bollard turns a non-zero exit code into an error: it is a result.
            Err(DockerError::DockerContainerWaitError { code, .. }) => Ok(code),
            Ok(None) => Err(EngineError::Refused {
                action: "wait for",
                what: format!("container {id}"),
                reason: "the daemon closed the wait without a status".to_owned(),
            }),
            Err(err) => Err(docker_error("wait for", format!("container {id}"), err)),
        }
    }

    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>, EngineError> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let chunks: Vec<_> = self
            .docker
            .logs(id, Some(options))
            .try_collect()
            .await
            .map_err(|err| docker_error("read logs of", format!("container {id}"), err))?;
        let mut output = Vec::new();
        for chunk in chunks {
            output.extend_from_slice(&chunk.into_bytes());
        }
        let text = String::from_utf8_lossy(&output);
        let all: Vec<&str> = text.lines().collect();
        let first = all.len().saturating_sub(lines);
        Ok(all[first..].iter().map(|line| (*line).to_owned()).collect())
    }

    async fn logs(
        &self,
        id: &str,
        tail: usize,
        follow: bool,
    ) -> Result<super::LogStream, EngineError> {
        // Fails early (and clearly) when the container is gone.
        if self.inspect(id).await?.is_none() {
            return Err(EngineError::NotFound {
                what: format!("container {id}"),
            });
        }
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            follow,
            tail: tail.to_string(),
            ..Default::default()
        };
        let what = format!("container {id}");
        let stream = self
            .docker
            .logs(id, Some(options))
            .map_ok(|chunk| chunk.into_bytes())
            .map_err(move |err| docker_error("read logs of", what.clone(), err));
        Ok(Box::pin(stream))
    }

    async fn ensure_default_network(
        &self,
        network: &DefaultNetwork,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        if self.network_exists(&network.name).await? {
            debug!(network = %network.name, "default network exists, using it");
            return Ok(());
        }
        self.create_network(NetworkCreateRequest {
            name: network.name.clone(),
            driver: Some("bridge".to_owned()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(network.subnet.clone()),
                    gateway: Some(network.gateway.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            labels: Some(hash_map(labels)),
            ..Default::default()
        })
        .await
    }

    async fn ensure_network(
        &self,
        network: &Network,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        let exists = self.network_exists(&network.name).await?;
        if network.external {
            return if exists {
                Ok(())
            } else {
                Err(EngineError::NotFound {
                    what: format!("external network {}", network.name),
                })
            };
        }
        if exists {
            return Ok(());
        }
        let mut all_labels = hash_map(&network.labels);
        all_labels.extend(hash_map(labels));
        self.create_network(NetworkCreateRequest {
            name: network.name.clone(),
            driver: Some(driver_name(network.driver).to_owned()),
            internal: Some(network.internal),
            attachable: Some(network.attachable),
            labels: Some(all_labels),
            ..Default::default()
        })
        .await
    }

    async fn list_managed_networks(&self, instance: &str) -> Result<Vec<String>, EngineError> {
        let options = ListNetworksOptions {
            filters: Some(managed_filter(instance)),
        };
        let networks = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|err| docker_error("list", "networks", err))?;
        Ok(networks.into_iter().filter_map(|n| n.name).collect())
    }

    async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(err) if status_of(&err) == Some(404) => Ok(()),
            Err(err) => Err(docker_error("remove", format!("network {name}"), err)),
        }
    }

    async fn events(&self, instance: &str) -> Result<EventStream, EngineError> {
        let mut filters = managed_filter(instance);
        filters.insert("type".to_owned(), vec!["container".to_owned()]);
        filters.insert(
            "event".to_owned(),
            ["start", "die", "oom", "health_status", "destroy"]
                .map(str::to_owned)
                .to_vec(),
        );
        // The request goes out when the stream is first polled: `since` now
        // makes the daemon replay what happened in between. The stream has
        // no end of its own: the client's request timeout covers only the
        // answer's head, which the daemon sends at once.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let options = EventsOptions {
            since: Some(format!("{}.{:09}", now.as_secs(), now.subsec_nanos())),
            filters: Some(filters),
            ..Default::default()
        };
        let stream = self
            .docker
            .events(Some(options))
            .map_err(|err| docker_error("follow", "events", err))
            .try_filter_map(|message| futures_util::future::ready(Ok(event_from(message))));
        Ok(Box::pin(stream))
    }
}

/// A Docker event reduced to what the service actors follow; `None` for
/// anything else (other types, actions, or a message without an actor).
fn event_from(message: EventMessage) -> Option<ContainerEvent> {
    if message.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let action = message.action?;
    let actor = message.actor?;
    let attributes = actor.attributes.unwrap_or_default();
    let kind = match action.as_str() {
        "start" => EventKind::Start,
        "die" => EventKind::Die {
            exit_code: attributes
                .get("exitCode")
                .and_then(|code| code.parse().ok()),
        },
        "oom" => EventKind::Oom,
        "destroy" => EventKind::Destroy,
        // `health_status: healthy` (older engines), or the status alone.
        other => match other
            .trim_start_matches("health_status")
            .trim_start_matches(':')
            .trim()
        {
            "healthy" => EventKind::Health(Health::Healthy),
            "unhealthy" => EventKind::Health(Health::Unhealthy),
            "starting" => EventKind::Health(Health::Starting),
            _ => return None,
        },
    };
    Some(ContainerEvent {
        id: actor.id?,
        name: attributes
            .get("name")
            .map(|name| name.trim_start_matches('/').to_owned())
            .unwrap_or_default(),
        service: attributes.get(labels::SERVICE).cloned(),
        kind,
    })
}

/// The HTTP status of a daemon's refusal, if it is one.
fn status_of(err: &DockerError) -> Option<u16> {
    match err {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Maps a bollard error: transport failures are `Unreachable`, 404 is
/// `NotFound`, 409 is `Conflict`, any other refusal keeps the daemon's message.
fn docker_error(action: &'static str, what: impl Into<String>, err: DockerError) -> EngineError {
    let what = what.into();
    match err {
        DockerError::DockerResponseServerError {
            status_code: 404, ..
        } => EngineError::NotFound { what },
        DockerError::DockerResponseServerError {
            status_code: 409, ..
        } => EngineError::Conflict { what },
        DockerError::DockerResponseServerError { message, .. } => EngineError::Refused {
            action,
            what,
            reason: message,
        },
        DockerError::DockerStreamError { error } => EngineError::Refused {
            action,
            what,
            reason: error,
        },
        transport @ (DockerError::HyperLegacyError { .. }
        | DockerError::HttpClientError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::IOError { .. }
        | DockerError::SocketNotFoundError(_)
        | DockerError::RequestTimeoutError
        | DockerError::UnsupportedURISchemeError { .. }) => {
            EngineError::Unreachable(transport.to_string())
        }
        other => EngineError::Refused {
            action,
            what,
            reason: other.to_string(),
        },
    }
}

/// Docker filters selecting objects this instance manages.
fn managed_filter(instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        vec![
            format!("{}=true", labels::MANAGED),
            format!("{}={instance}", labels::INSTANCE),
        ],
    )])
}

fn hash_map(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The `X-Registry-Auth` of a pull, for the image's registry.
fn docker_credentials(image: &ImageRef, credential: &Credential) -> DockerCredentials {
    let serveraddress = if image.registry == crate::plan::DOCKER_HUB {
        crate::registry::credentials::DOCKER_HUB_KEY.to_owned()
    } else {
        image.registry.clone()
    };
    match credential {
        Credential::Basic { username, password } => DockerCredentials {
            username: Some(username.clone()),
            password: Some(password.expose().to_owned()),
            serveraddress: Some(serveraddress),
            ..Default::default()
        },
        Credential::IdentityToken(token) => DockerCredentials {
            identitytoken: Some(token.expose().to_owned()),
            serveraddress: Some(serveraddress),
            ..Default::default()
        },
    }
}

fn driver_name(driver: NetworkDriver) -> &'static str {
    match driver {
        NetworkDriver::Bridge => "bridge",
        NetworkDriver::Host => "host",
        NetworkDriver::Overlay => "overlay",
        NetworkDriver::Macvlan => "macvlan",
        NetworkDriver::None => "null",
    }
}

fn container_from(response: ContainerInspectResponse) -> Container {
    let state = response.state.unwrap_or_default();
    let exit_code = state.exit_code.unwrap_or_default();
    let container_state = match state.status {
        Some(ContainerStateStatusEnum::CREATED) | Some(ContainerStateStatusEnum::EMPTY) | None => {
            ContainerState::Created
        }
        Some(ContainerStateStatusEnum::RUNNING) | Some(ContainerStateStatusEnum::STOPPING) => {
            ContainerState::Running
        }
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerStateStatusEnum::EXITED) => ContainerState::Exited { code: exit_code },
        Some(ContainerStateStatusEnum::REMOVING) => ContainerState::Removing,
        Some(ContainerStateStatusEnum::DEAD) => ContainerState::Dead,
    };
    let health = state
        .health
        .and_then(|health| health.status)
        .and_then(|status| match status {
            HealthStatusEnum::STARTING => Some(Health::Starting),
            HealthStatusEnum::HEALTHY => Some(Health::Healthy),
            HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
            HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
        });
    let name = response.name.unwrap_or_default();
    let addresses = response
        .network_settings
        .and_then(|settings| settings.networks)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(network, endpoint)| {
            let ip = endpoint.ip_address.filter(|ip| !ip.is_empty())?;
            Some((network, ip.parse().ok()?))
        })
        .collect();
    Container {
        id: response.id.unwrap_or_default(),
        name: name.trim_start_matches('/').to_owned(),
        labels: response
            .config
            .and_then(|config| config.labels)
            .unwrap_or_default()
            .into_iter()
            .collect(),
        state: container_state,
        health,
        image_id: response.image.unwrap_or_default(),
        started_at: state.started_at.unwrap_or_default(),
        addresses,
        oom_killed: state.oom_killed.unwrap_or(false),
        restart_count: response
            .restart_count
            .and_then(|count| u64::try_from(count).ok())
            .unwrap_or(0),
    }
}
