//! Docker Swarm: a Compose v3 stack file.

use super::findings::Findings;
use super::{Input, OutputFile};

/// The stack file of the whole plan.
pub fn export(_input: &Input<'_>, _findings: &mut Findings<'_>) -> Vec<OutputFile> {
    Vec::new()
}
