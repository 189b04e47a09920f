//! The labels Dispenser puts on every object it creates. Start-up adoption
//! and orphan removal read only these.

/// `true` on everything Dispenser created.
pub const MANAGED: &str = "dispenser.managed";
/// The instance id of the install that created it.
pub const INSTANCE: &str = "dispenser.instance";
/// The service a container belongs to.
pub const SERVICE: &str = "dispenser.service";
/// The spec hash the container was created from.
pub const SPEC_HASH: &str = "dispenser.spec-hash";
/// The image digest (or image id for local-only images) it runs.
pub const IMAGE_DIGEST: &str = "dispenser.image-digest";
/// `current`, `next` (during a blue-green deploy) or `job`.
pub const ROLE: &str = "dispenser.role";
