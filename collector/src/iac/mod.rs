//! Infrastructure as code on the fleet side, beside the store: which IaC resource owns each
//! reporting host ([`correlate`]) and the states the collector follows by itself
//! ([`sources`]). Reading states and manifests is `driftwatch_iac`'s.

pub mod correlate;
pub mod sources;

pub use driftwatch_iac::{import, packer, tfstate};
