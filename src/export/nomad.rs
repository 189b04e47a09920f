//! Nomad job files.

use super::findings::Findings;
use super::{Input, OutputFile};

/// One job file per service.
pub fn export(_input: &Input<'_>, _findings: &mut Findings<'_>) -> Vec<OutputFile> {
    Vec::new()
}
