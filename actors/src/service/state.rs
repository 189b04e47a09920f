//! The lifecycle of one service as an explicit state machine: the states, the
//! actions, in `State::admits` the one table of which action fits which state,
//! and in `State::observe` the one table of what a change Docker reports
//! (through its events) does to each state.

use std::fmt;

/// Where a service stands, as its actor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Known from the plan, not yet matched against Docker.
    Pending,
    /// An action is in progress.
    Busy(Action),
    /// Its container exists and waits for a trigger (`initialize = "on-trigger"`).
    Waiting,
    /// Its container runs.
    Running,
    /// Its container exited and Docker's restart policy is restarting it.
    Restarting,
    /// Its container exited: a finished job, or a crash Docker did not restart.
    Exited { code: i64 },
    /// Stopped by Dispenser at shutdown.
    Stopped,
    /// The last action failed; the service keeps whatever Docker still runs.
    Failed { reason: String },
    /// Removed from the plan, container removed. Final.
    Retired,
}

/// Everything that can be asked of a service actor that changes its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Make the container match a (possibly new) spec.
    Reconcile,
    /// Stop and remove the container: the service left the plan.
    Retire,
    /// The daemon stops; the container stops too only if configured.
    Shutdown,
    /// A scheduled run: a fresh container for a job, a restart for a
    /// long-running service.
    Run,
    /// Stop a job's run that exceeded its `max_runtime`.
    StopRun,
    /// Run a new registry digest of the image (continuous deployment).
    Deploy,
}

/// What Docker reports about the service's own container, outside any
/// action of Dispenser (an event, or a fresh read after the event stream
/// was down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    Running,
    /// Exited; Docker's restart policy is bringing it back.
    Restarting,
    /// Exited and stays down (no restart policy applies).
    Exited {
        code: i64,
    },
    /// Created and never started (an `on-trigger` service before its trigger).
    Created,
    /// Removed outside Dispenser.
    Gone,
}

/// An action that does not fit the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} while {state}")]
pub struct StateError {
    pub action: Action,
    pub state: String,
}

impl State {
    /// The transition table: `Ok` when `action` may start from this state.
    pub fn admits(&self, action: Action) -> Result<(), StateError> {
        use Action::*;
        let allowed = match (self, action) {
            (State::Retired, _) => false,
            (State::Busy(_), _) => false,
            (State::Running, StopRun) => true,
            (_, StopRun) => false,
            // Stopped at shutdown: nothing new starts while the daemon stops.
            (State::Stopped, Deploy) => false,
            (_, Reconcile | Retire | Shutdown | Run | Deploy) => true,
        };
        match allowed {
            true => Ok(()),
            false => Err(StateError {
                action,
                state: self.to_string(),
            }),
        }
    }

    /// The transition table for changes Docker reports: the new state, or
    /// `None` when the report does not apply to this state and is ignored.
    /// - Busy: never reached (the mailbox holds reports until the action
    ///   ends), and an action's own stops and starts are its business.
    /// - Stopped, Retired: Dispenser stopped or removed the container itself.
    /// - Every settled state follows what Docker says; a `Failed` service
    ///   whose container runs again (Docker restarted it) is running.
    pub fn observe(&self, observed: Observed) -> Option<State> {
        match self {
            State::Busy(_) | State::Stopped | State::Retired => None,
            State::Pending
            | State::Waiting
            | State::Running
            | State::Restarting
            | State::Exited { .. }
            | State::Failed { .. } => Some(match observed {
                Observed::Running => State::Running,
                Observed::Restarting => State::Restarting,
                Observed::Exited { code } => State::Exited { code },
                Observed::Created => match self {
                    State::Waiting => State::Waiting,
                    _ => State::Pending,
                },
                Observed::Gone => State::Failed {
                    reason: "its container was removed outside dispenser".to_string(),
                },
            }),
        }
    }

    /// True when the service's container is expected to be running.
    pub fn is_running(&self) -> bool {
        matches!(self, State::Running)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Pending => f.write_str("pending"),
            State::Busy(action) => write!(f, "busy ({action})"),
            State::Waiting => f.write_str("waiting for a trigger"),
            State::Running => f.write_str("running"),
            State::Restarting => f.write_str("restarting (docker's restart policy)"),
            State::Exited { code } => write!(f, "exited ({code})"),
            State::Stopped => f.write_str("stopped"),
            State::Failed { reason } => write!(f, "failed: {reason}"),
            State::Retired => f.write_str("retired"),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Reconcile => "reconcile",
            Action::Retire => "retire",
            Action::Shutdown => "shut down",
            Action::Run => "run on schedule",
            Action::StopRun => "stop an overdue run",
            Action::Deploy => "deploy a new image",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_admits_nothing() {
        for action in [
            Action::Reconcile,
            Action::Retire,
            Action::Shutdown,
            Action::Deploy,
        ] {
            let err = State::Retired.admits(action).unwrap_err();
            assert_eq!(err.state, "retired");
        }
    }

    #[test]
    fn busy_admits_nothing_and_says_why() {
        let err = State::Busy(Action::Reconcile)
            .admits(Action::Retire)
            .unwrap_err();
        assert_eq!(err.to_string(), "cannot retire while busy (reconcile)");
    }

    #[test]
    fn settled_states_admit_every_action() {
        let states = [
            State::Pending,
            State::Waiting,
            State::Running,
            State::Restarting,
            State::Exited { code: 1 },
            State::Stopped,
            State::Failed { reason: "x".into() },
        ];
        for state in states {
            for action in [
                Action::Reconcile,
                Action::Retire,
                Action::Shutdown,
                Action::Run,
            ] {
                assert!(
                    state.admits(action).is_ok(),
                    "{state} should admit {action}"
                );
            }
        }
    }

    #[test]
    fn only_a_running_run_can_be_stopped() {
        assert!(State::Running.admits(Action::StopRun).is_ok());
        for state in [State::Waiting, State::Exited { code: 0 }, State::Pending] {
            assert!(state.admits(Action::StopRun).is_err(), "{state}");
        }
        assert!(State::Busy(Action::Run).admits(Action::Run).is_err());
    }

    #[test]
    fn deploy_fits_every_settled_state_but_stopped() {
        for state in [
            State::Pending,
            State::Waiting,
            State::Running,
            State::Exited { code: 0 },
            State::Failed { reason: "x".into() },
        ] {
            assert!(state.admits(Action::Deploy).is_ok(), "{state}");
        }
        let err = State::Stopped.admits(Action::Deploy).unwrap_err();
        assert_eq!(err.to_string(), "cannot deploy a new image while stopped");
    }

    #[test]
    fn reports_from_docker_move_settled_states_only() {
        for state in [State::Busy(Action::Deploy), State::Stopped, State::Retired] {
            for observed in [
                Observed::Running,
                Observed::Exited { code: 1 },
                Observed::Gone,
            ] {
                assert_eq!(state.observe(observed), None, "{state} {observed:?}");
            }
        }
        let settled = [
            State::Pending,
            State::Running,
            State::Restarting,
            State::Exited { code: 137 },
            State::Failed { reason: "x".into() },
        ];
        for state in settled {
            assert_eq!(state.observe(Observed::Running), Some(State::Running));
            assert_eq!(state.observe(Observed::Restarting), Some(State::Restarting));
            assert_eq!(
                state.observe(Observed::Exited { code: 1 }),
                Some(State::Exited { code: 1 })
            );
            assert!(matches!(
                state.observe(Observed::Gone),
                Some(State::Failed { .. })
            ));
        }
        assert_eq!(
            State::Waiting.observe(Observed::Created),
            Some(State::Waiting)
        );
    }
}
