//! `FakeEngine`: an in-memory `Engine` that records every call, for the
//! supervisor's and service actors' unit tests. It models only what the
//! actors decide on: names, labels, states, images and networks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Container, ContainerEvent, ContainerState, CreateRequest, Engine, EngineError, EventStream,
    Health, Image, ImageRemoval,
};
use crate::engine::labels;
use crate::plan::{DefaultNetwork, ImageRef, Network};

/// The size every fake image reports, so clean-up can count bytes freed.
pub const FAKE_IMAGE_SIZE: u64 = 1_000_000;

/// An in-memory Docker. Cloning is not supported: share it in an `Arc`.
#[derive(Debug, Default)]
pub struct FakeEngine {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    containers: BTreeMap<String, Container>,
    /// Image reference (`original`) to image id.
    images: BTreeMap<String, String>,
    /// Images `pull` can fetch, reference to image id.
    registry: BTreeMap<String, String>,
    /// `repo@digest` entries of local images, by image id (filled by pulls by digest).
    repo_digests: BTreeMap<String, Vec<String>>,
    networks: BTreeMap<String, BTreeMap<String, String>>,
    /// Every call, as `"op target"`, in order.
    calls: Vec<String>,
    /// Operations (`"start web"`, `"pull app:1"`) that fail once.
    failures: BTreeSet<String>,
    /// Operations that panic once, to test crash recovery.
    panics: BTreeSet<String>,
    /// Operations that find Docker unreachable, each entry once.
    unreachable: Vec<String>,
    /// Exit codes containers report when they exit, by name.
    exit_codes: BTreeMap<String, i64>,
    /// Names of containers whose healthcheck reports healthy once started.
    healthy_on_start: BTreeSet<String>,
    /// How long each `stop` takes (the container's stop grace in use).
    stop_delay: Duration,
    /// Open event streams; `emit` sends to each, `end_event_streams` closes them.
    event_streams: Vec<EventSender>,
    next_id: u64,
    clock: u64,
}

type EventSender = tokio::sync::mpsc::UnboundedSender<Result<ContainerEvent, EngineError>>;

impl FakeEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes an image present locally.
    pub fn add_local_image(&self, reference: &str, id: &str) {
        let mut inner = self.lock();
        inner.images.insert(reference.to_string(), id.to_string());
    }

    /// Makes an image available for `pull`.
    pub fn add_registry_image(&self, reference: &str, id: &str) {
        let mut inner = self.lock();
        inner.registry.insert(reference.to_string(), id.to_string());
    }

    /// Makes the next `op` on `target` fail, for example `fail_once("start", "web")`.
    pub fn fail_once(&self, op: &str, target: &str) {
        self.lock().failures.insert(format!("{op} {target}"));
    }

    /// Makes the next `times` `op`s on `target` fail as if Docker did not answer.
    pub fn unreachable_for(&self, op: &str, target: &str, times: usize) {
        let mut inner = self.lock();
        for _ in 0..times {
            inner.unreachable.push(format!("{op} {target}"));
        }
    }

    /// Makes the next `op` on `target` panic, as a bug inside an action would.
    pub fn panic_once(&self, op: &str, target: &str) {
        self.lock().panics.insert(format!("{op} {target}"));
    }

    /// Containers of this name exit with `code` when started (jobs).
    pub fn exits_with(&self, name: &str, code: i64) {
        self.lock().exit_codes.insert(name.to_string(), code);
    }

    /// Containers of this name report healthy once running.
    pub fn healthy_when_running(&self, name: &str) {
        self.lock().healthy_on_start.insert(name.to_string());
    }

    /// Puts a container in place, as if someone else (or an earlier run) created it.
    pub fn insert_container(&self, container: Container) {
        self.lock()
            .containers
            .insert(container.id.clone(), container);
    }

    /// All containers, by id.
    pub fn containers(&self) -> Vec<Container> {
        self.lock().containers.values().cloned().collect()
    }

    /// The container of this name, if any.
    pub fn container_named(&self, name: &str) -> Option<Container> {
        self.lock()
            .containers
            .values()
            .find(|container| container.name == name)
            .cloned()
    }

    /// Changes a container in place (by name or id), as Docker would on its
    /// own: a crash, a restart by its policy, a health change.
    pub fn update_container(&self, name_or_id: &str, change: impl FnOnce(&mut Container)) {
        let mut inner = self.lock();
        if let Some(id) = inner.find(name_or_id) {
            if let Some(container) = inner.containers.get_mut(&id) {
                change(container);
            }
        }
    }

    /// Makes every `stop` take `delay`, as a container slow to stop would.
    pub fn slow_stops(&self, delay: Duration) {
        self.lock().stop_delay = delay;
    }

    /// Sends `event` on every open event stream.
    pub fn emit(&self, event: ContainerEvent) {
        self.lock()
            .event_streams
            .retain(|stream| stream.send(Ok(event.clone())).is_ok());
    }

    /// Ends every open event stream, as when Docker goes away.
    pub fn end_event_streams(&self) {
        self.lock().event_streams.clear();
    }

    /// How many event streams are open.
    pub fn event_streams(&self) -> usize {
        let mut inner = self.lock();
        inner.event_streams.retain(|stream| !stream.is_closed());
        inner.event_streams.len()
    }

    /// Every call so far, as `"op target"`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Calls whose op is one of `ops`, in order.
    pub fn calls_of(&self, ops: &[&str]) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|call| ops.iter().any(|op| call.split(' ').next() == Some(*op)))
            .collect()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Names of the networks that exist.
    pub fn network_names(&self) -> Vec<String> {
        self.lock().networks.keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock means a test already panicked; keep its state.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    /// The id of a local image by its reference, or (like Docker) by a
    /// `repository@digest` the image was pulled or pushed as.
    fn image_id(&self, image: &ImageRef) -> Option<String> {
        self.images.get(&image.original).cloned().or_else(|| {
            image.digest.as_ref()?;
            self.repo_digests
                .iter()
                .find(|(_, digests)| digests.contains(&image.original))
                .map(|(id, _)| id.clone())
        })
    }

    fn record(&mut self, op: &str, target: &str) -> Result<(), EngineError> {
        let call = format!("{op} {target}");
        self.calls.push(call.clone());
        if self.panics.remove(&call) {
            panic!("injected panic in {call}");
        }
        if let Some(at) = self.unreachable.iter().position(|entry| *entry == call) {
            self.unreachable.remove(at);
            return Err(EngineError::Unreachable(format!(
                "injected outage in {call}"
            )));
        }
        if self.failures.remove(&call) {
            return Err(EngineError::Refused {
                action: "run",
                what: call,
                reason: "injected failure".into(),
            });
        }
        Ok(())
    }

    fn find(&self, name_or_id: &str) -> Option<String> {
        if self.containers.contains_key(name_or_id) {
            return Some(name_or_id.to_string());
        }
        self.containers
            .values()
            .find(|container| container.name == name_or_id)
            .map(|container| container.id.clone())
    }

    fn find_or_not_found(&self, name_or_id: &str) -> Result<String, EngineError> {
        self.find(name_or_id).ok_or_else(|| EngineError::NotFound {
            what: format!("container {name_or_id}"),
        })
    }
}

#[async_trait]
impl Engine for FakeEngine {
    async fn ping(&self) -> Result<(), EngineError> {
        self.lock().record("ping", "engine")
    }

    async fn list_managed(&self, instance: &str) -> Result<Vec<Container>, EngineError> {
        let mut inner = self.lock();
        inner.record("list", instance)?;
        Ok(inner
            .containers
            .values()
            .filter(|container| {
                container.labels.get(labels::MANAGED).map(String::as_str) == Some("true")
                    && container.labels.get(labels::INSTANCE).map(String::as_str) == Some(instance)
            })
            .cloned()
            .collect())
    }

    async fn inspect(&self, name_or_id: &str) -> Result<Option<Container>, EngineError> {
        let inner = self.lock();
        Ok(inner
            .find(name_or_id)
            .and_then(|id| inner.containers.get(&id).cloned()))
    }

    async fn image(&self, image: &ImageRef) -> Result<Option<Image>, EngineError> {
        let inner = self.lock();
        Ok(inner.image_id(image).map(|id| Image {
            id: id.clone(),
            repo_digests: inner.repo_digests.get(&id).cloned().unwrap_or_default(),
            size: FAKE_IMAGE_SIZE,
        }))
    }

    async fn pull(&self, image: &ImageRef) -> Result<(), EngineError> {
        let mut inner = self.lock();
        inner
            .record("pull", &image.original)
            .map_err(|err| EngineError::Pull {
                image: image.original.clone(),
                reason: err.to_string(),
            })?;
        match inner.registry.get(&image.original).cloned() {
            Some(id) => {
                if let Some(digest) = &image.digest {
                    let entry = format!("{}/{}@{digest}", image.registry, image.repository);
                    let digests = inner.repo_digests.entry(id.clone()).or_default();
                    if !digests.contains(&entry) {
                        digests.push(entry);
                    }
                }
                inner.images.insert(image.original.clone(), id);
                Ok(())
            }
            None => Err(EngineError::Pull {
                image: image.original.clone(),
                reason: "manifest unknown".into(),
            }),
        }
    }

    async fn tag(&self, source: &ImageRef, target: &ImageRef) -> Result<(), EngineError> {
        let mut inner = self.lock();
        inner.record("tag", &format!("{} {}", source.original, target.original))?;
        let id =
            inner
                .images
                .get(&source.original)
                .cloned()
                .ok_or_else(|| EngineError::NotFound {
                    what: format!("image {source}"),
                })?;
        inner.images.insert(target.original.clone(), id);
        Ok(())
    }

    async fn remove_image(&self, image: &ImageRef) -> Result<ImageRemoval, EngineError> {
        let mut inner = self.lock();
        inner.record("rmi", &image.original)?;
        let Some(id) = inner.image_id(image) else {
            return Ok(ImageRemoval::Absent);
        };
        if inner.containers.values().any(|c| c.image_id == id) {
            return Ok(ImageRemoval::InUse);
        }
        inner.images.remove(&image.original);
        if let Some(digests) = inner.repo_digests.get_mut(&id) {
            digests.retain(|entry| *entry != image.original);
        }
        let referenced = inner.images.values().any(|other| *other == id)
            || inner.repo_digests.get(&id).is_some_and(|d| !d.is_empty());
        if referenced {
            return Ok(ImageRemoval::Untagged);
        }
        inner.repo_digests.remove(&id);
        Ok(ImageRemoval::Deleted)
    }

    async fn create(&self, request: &CreateRequest<'_>) -> Result<String, EngineError> {
        let mut inner = self.lock();
        inner.record("create", request.name)?;
        if inner.find(request.name).is_some() {
            return Err(EngineError::Conflict {
                what: format!("container {}", request.name),
            });
        }
        let image = &request.image.original;
        let image_id = inner
            .image_id(request.image)
            .ok_or_else(|| EngineError::NotFound {
                what: format!("image {image}"),
            })?;
        inner.next_id += 1;
        let id_number = inner.next_id;
        let id = format!("c{:04}", inner.next_id);
        let health = request
            .service
            .container
            .healthcheck
            .as_ref()
            .map(|_| Health::Starting);
        inner.containers.insert(
            id.clone(),
            Container {
                id: id.clone(),
                name: request.name.to_string(),
                labels: request.labels.clone(),
                state: ContainerState::Created,
                health,
                image_id,
                started_at: String::new(),
                addresses: BTreeMap::from([(
                    request.default_network.name.clone(),
                    fake_address(id_number),
                )]),
                oom_killed: false,
                restart_count: 0,
            },
        );
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        let mut inner = self.lock();
        let id = inner.find_or_not_found(id)?;
        let name = inner.containers[&id].name.clone();
        inner.record("start", &name)?;
        if inner.containers[&id].state == ContainerState::Running {
            return Ok(());
        }
        inner.clock += 1;
        let started_at = format!("t{}", inner.clock);
        let exit = inner.exit_codes.get(&name).copied();
        let healthy = inner.healthy_on_start.contains(&name);
        if let Some(container) = inner.containers.get_mut(&id) {
            container.started_at = started_at;
            container.state = match exit {
                Some(code) => ContainerState::Exited { code },
                None => ContainerState::Running,
            };
            if healthy && container.health.is_some() {
                container.health = Some(Health::Healthy);
            }
        }
        Ok(())
    }

    async fn stop(&self, id: &str, _grace: Duration) -> Result<(), EngineError> {
        let delay = self.lock().stop_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut inner = self.lock();
        let id = inner.find_or_not_found(id)?;
        let name = inner.containers[&id].name.clone();
        inner.record("stop", &name)?;
        if let Some(container) = inner.containers.get_mut(&id) {
            if container.state == ContainerState::Running {
                container.state = ContainerState::Exited { code: 143 };
            }
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let mut inner = self.lock();
        let Some(id) = inner.find(id) else {
            return Ok(());
        };
        let name = inner.containers[&id].name.clone();
        inner.record("remove", &name)?;
        inner.containers.remove(&id);
        Ok(())
    }

    async fn rename(&self, id: &str, new_name: &str) -> Result<(), EngineError> {
        let mut inner = self.lock();
        let id = inner.find_or_not_found(id)?;
        let name = inner.containers[&id].name.clone();
        inner.record("rename", &format!("{name} {new_name}"))?;
        if let Some(container) = inner.containers.get_mut(&id) {
            container.name = new_name.to_string();
        }
        Ok(())
    }

    async fn wait_exit(&self, id: &str) -> Result<i64, EngineError> {
        let mut inner = self.lock();
        let id = inner.find_or_not_found(id)?;
        let name = inner.containers[&id].name.clone();
        inner.record("wait", &name)?;
        match inner.containers[&id].state {
            ContainerState::Exited { code } => Ok(code),
            _ => Ok(0),
        }
    }

    async fn logs_tail(&self, id: &str, _lines: usize) -> Result<Vec<String>, EngineError> {
        let inner = self.lock();
        inner.find_or_not_found(id)?;
        Ok(Vec::new())
    }

    async fn ensure_default_network(
        &self,
        network: &DefaultNetwork,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        let mut inner = self.lock();
        inner.record("network", &network.name)?;
        inner
            .networks
            .entry(network.name.clone())
            .or_insert_with(|| labels.clone());
        Ok(())
    }

    async fn ensure_network(
        &self,
        network: &Network,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        let mut inner = self.lock();
        inner.record("network", &network.name)?;
        if network.external {
            return match inner.networks.contains_key(&network.name) {
                true => Ok(()),
                false => Err(EngineError::NotFound {
                    what: format!("external network {}", network.name),
                }),
            };
        }
        inner
            .networks
            .entry(network.name.clone())
            .or_insert_with(|| labels.clone());
        Ok(())
    }

    async fn list_managed_networks(&self, instance: &str) -> Result<Vec<String>, EngineError> {
        let inner = self.lock();
        Ok(inner
            .networks
            .iter()
            .filter(|(_, network_labels)| {
                network_labels.get(labels::INSTANCE).map(String::as_str) == Some(instance)
            })
            .map(|(name, _)| name.clone())
            .collect())
    }

    async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        let mut inner = self.lock();
        inner.record("remove-network", name)?;
        inner.networks.remove(name);
        Ok(())
    }

    async fn events(&self, instance: &str) -> Result<EventStream, EngineError> {
        let mut inner = self.lock();
        inner.record("events", instance)?;
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        inner.event_streams.push(sender);
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let event = receiver.recv().await?;
            Some((event, receiver))
        });
        Ok(Box::pin(stream))
    }
}

/// The address the fake gives its `n`th container on the default network.
fn fake_address(n: u64) -> IpAddr {
    IpAddr::from([10, 99, (n / 256 % 256) as u8, (n % 256) as u8])
}
