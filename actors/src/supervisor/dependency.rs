//! Waiting for a `depends_on` condition by watching the dependency's
//! container in Docker.

use std::time::Duration;

use tokio::time::{sleep, Instant};
use tracing::warn;

use crate::engine::{ContainerState, Engine, Health};
use crate::plan::DependsOn;

/// How often a dependency's container is inspected while waiting.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Why a dependency condition was not met.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DependencyError {
    #[error("dependency `{name}` did not become {condition} within {waited:?}")]
    Timeout {
        name: String,
        condition: &'static str,
        waited: Duration,
    },
    #[error("dependency `{name}` exited with code {code} before becoming {condition}")]
    Exited {
        name: String,
        code: i64,
        condition: &'static str,
    },
    #[error("dependency `{name}` is unhealthy")]
    Unhealthy { name: String },
    #[error("dependency `{name}` failed: {reason}")]
    Failed { name: String, reason: String },
}

/// Waits until the container `name` meets `condition`, or `timeout` passes.
pub async fn wait_for(
    engine: &dyn Engine,
    name: &str,
    condition: DependsOn,
    timeout: Duration,
) -> Result<(), DependencyError> {
    let deadline = Instant::now() + timeout;
    let label = condition_name(condition);
    loop {
        let container = engine.inspect(name).await.ok().flatten();
        if let Some(container) = container {
            match (condition, container.state, container.health) {
                (DependsOn::Completed, ContainerState::Exited { code: 0 }, _) => return Ok(()),
                (DependsOn::Completed, ContainerState::Exited { code }, _) => {
                    return Err(DependencyError::Exited {
                        name: name.into(),
                        code,
                        condition: label,
                    })
                }
                // A dependency that ran and exited has started, as in Compose.
                (
                    DependsOn::Started,
                    ContainerState::Running | ContainerState::Exited { .. },
                    _,
                ) => return Ok(()),
                (DependsOn::Healthy, ContainerState::Running, Some(Health::Healthy)) => {
                    return Ok(())
                }
                (DependsOn::Healthy, ContainerState::Running, None) => {
                    warn!(dependency = %name, "dependency has no healthcheck; counting it healthy once running");
                    return Ok(());
                }
                (DependsOn::Healthy, _, Some(Health::Unhealthy)) => {
                    return Err(DependencyError::Unhealthy { name: name.into() })
                }
                (DependsOn::Healthy, ContainerState::Exited { code }, _) => {
                    return Err(DependencyError::Exited {
                        name: name.into(),
                        code,
                        condition: label,
                    })
                }
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            return Err(DependencyError::Timeout {
                name: name.into(),
                condition: label,
                waited: timeout,
            });
        }
        sleep(POLL_INTERVAL).await;
    }
}

fn condition_name(condition: DependsOn) -> &'static str {
    match condition {
        DependsOn::Started => "started",
        DependsOn::Healthy => "healthy",
        DependsOn::Completed => "completed",
    }
}
