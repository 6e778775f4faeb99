//! Terraform/OpenTofu state: the raw format v4 and `terraform show -json` output, reduced to the
//! machine-like resources driftwatch correlates with hosts.
//!
//! # Accepted inputs, told apart by shape
//! - **Raw state v4** (`terraform.tfstate`, `terraform state pull`, OpenTofu's too): top-level
//!   `version: 4`, `terraform_version`, `serial`, `lineage`, `resources[]`; each resource has
//!   `module` (absent for the root), `mode`, `type`, `name`, `provider`, `instances[]`; each
//!   instance `index_key` (number for `count`, string for `for_each`), `status` (`tainted`),
//!   `deposed` (a key, for objects replaced under `create_before_destroy` and not yet
//!   destroyed), `attributes`.
//! - **`terraform show -json`**: top-level `format_version` and `values.root_module`, with
//!   `resources[]` (`address`, `mode`, `type`, `name`, `index`, `provider_name`, `values`,
//!   `tainted`, `deposed_key`) and nested `child_modules[]`. It has no `serial` or `lineage`.
//!
//! Refused with a message that says what to do instead: an OpenTofu client-side-encrypted state
//! (`encrypted_data` + `encryption_version`), a raw state of another version (v3 is Terraform ≤
//! 0.11), `show -json` of a plan, anything else.
//!
//! # One pass, allow-list only
//! The document is read once from a capped [`Read`] by hand-written visitors (`read`): data sources and
//! resource types not in the `resources` submodule are skipped as they stream past, and for the types that
//! are read only the allow-listed attributes are materialized. That works because Terraform
//! writes `mode` and `type` before `instances` (and `values`); for a document that does not,
//! that one resource's instances are held as raw JSON text until its type is known, then read
//! the same way and dropped.
//!
//! Unknown keys are ignored everywhere (Terraform ≥ 1.12 adds `identity`, OpenTofu adds
//! `instance_provider`); an allow-listed attribute of an unexpected shape becomes a warning.

use std::fmt;
use std::io::Read;

use super::InputError;

#[cfg(test)]
mod proptests;
mod read;
pub(crate) mod resources;
#[cfg(test)]
mod tests;

use read::{Object, Sink, TopVisitor};
pub use resources::{
    AsgTag, AwsAutoscalingGroup, AwsInstance, AwsLaunchConfiguration, AwsLaunchTemplate,
    AzureImageReference, AzureLinuxVm, GoogleComputeInstance, LaunchTemplateRef, ResourceKind,
};

/// The largest state read by default. States of hundreds of megabytes exist (tens of thousands
/// of resources); beyond this, a state is more likely a wrong file than a real one.
pub const DEFAULT_MAX_STATE_BYTES: u64 = 512 * 1024 * 1024;

/// The raw state format version read. v4 has been written since Terraform 0.12 and by every
/// OpenTofu release.
pub const SUPPORTED_STATE_VERSION: u64 = 4;

/// Which of the accepted inputs a state came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateKind {
    /// State format v4, as stored by a backend or printed by `terraform state pull`.
    Raw,
    /// `terraform show -json` (or `tofu show -json`) of a state.
    ShowJson,
    /// `pulumi stack export` (see [`crate::pulumi`]).
    Pulumi,
    /// `aws cloudformation describe-stack-resources` (see [`crate::cloudformation`]).
    CloudFormation,
}

impl StateKind {
    /// How imports name the kind (`ImportStateRequest.kind`, the `iac_states.kind` column).
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Raw => "state",
            StateKind::ShowJson => "show_json",
            StateKind::Pulumi => "pulumi",
            StateKind::CloudFormation => "cloudformation",
        }
    }
}

/// What driftwatch keeps of a state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSummary {
    pub kind: StateKind,
    pub terraform_version: Option<String>,
    /// Grows with every write of the state; only comparable within one lineage. `None` for
    /// [`StateKind::ShowJson`], which does not carry it.
    pub serial: Option<u64>,
    /// The state's identity, created with it and kept across writes. `None` for show -json.
    pub lineage: Option<String>,
    /// One entry per instance of a resource type that is read, sorted by address (the current
    /// object before deposed ones).
    pub resources: Vec<Resource>,
    /// Instances of managed resources of types driftwatch does not read (skipped unread).
    pub ignored_instances: u64,
    /// Attributes of unexpected shape and the like; at most about a hundred. They name
    /// addresses and attributes, never values.
    pub warnings: Vec<String>,
}

impl StateSummary {
    /// `(lineage, serial)`, for raw states.
    pub fn generation(&self) -> Option<(&str, u64)> {
        Some((self.lineage.as_deref()?, self.serial?))
    }
}

/// One resource instance object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// `module.web["a"].aws_instance.app[0]`: Terraform's own syntax, as `terraform state list`
    /// prints it.
    pub address: String,
    /// The module instance (`module.web`, `module.a.module.b`, `module.app["blue"]`); `None` in
    /// the root module.
    pub module: Option<String>,
    /// `aws_instance`.
    pub resource_type: String,
    pub name: String,
    /// The `count` or `for_each` key.
    pub index: Option<IndexKey>,
    /// `provider["registry.terraform.io/hashicorp/aws"]` (raw) or
    /// `registry.terraform.io/hashicorp/aws` (show -json).
    pub provider: Option<String>,
    pub status: InstanceStatus,
    pub kind: ResourceKind,
}

/// A resource instance's key: an integer under `count`, a string under `for_each`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IndexKey {
    Int(i64),
    Str(String),
}

impl fmt::Display for IndexKey {
    /// `[0]` or `["b"]`, quoted as Terraform quotes it (`toHCLQuotedString` in its `addrs`
    /// package) so addresses compare equal with the ones Terraform prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexKey::Int(i) => write!(f, "[{i}]"),
            IndexKey::Str(s) => write!(f, "[{}]", hcl_quoted(s)),
        }
    }
}

/// Whether an instance object is the live one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceStatus {
    /// Marked for replacement at the next apply (`terraform taint`, or a failed create).
    pub tainted: bool,
    /// Set for an object superseded under `create_before_destroy` and not destroyed yet: the
    /// machine may still be running next to its replacement.
    pub deposed: Option<String>,
}

impl InstanceStatus {
    /// The current object (deposed ones are on their way out).
    pub fn is_current(&self) -> bool {
        self.deposed.is_none()
    }
}

/// Why a state was not read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(
        "this state is encrypted by OpenTofu (encryption_version {}); driftwatch reads \
         decrypted state only: run `tofu state pull` with the encryption key configured \
         (the `encryption` block or TF_ENCRYPTION) and import its output",
        encryption_version.as_deref().unwrap_or("unknown")
    )]
    Encrypted { encryption_version: Option<String> },
    #[error(
        "unsupported state format version {found}: driftwatch reads version \
         {SUPPORTED_STATE_VERSION} (written by Terraform ≥ 0.12 and OpenTofu) and \
         `terraform show -json` output; upgrade older states with a current Terraform \
         (`terraform state pull` after `terraform init`)"
    )]
    UnsupportedVersion { found: u64 },
    #[error(
        "unsupported `terraform show -json` format_version {found:?}: driftwatch reads 0.x \
         and 1.x"
    )]
    UnsupportedFormatVersion { found: String },
    #[error(
        "this is `terraform show -json` of a plan, not of a state: run `terraform show -json` \
         without a plan file, or `terraform state pull`"
    )]
    Plan,
    #[error("a version 4 state without `{field}`: not a complete Terraform state")]
    Incomplete { field: &'static str },
    #[error(
        "the state's serial {0} is out of range (Terraform's serials count writes, at most \
         9223372036854775807): not a state driftwatch can order"
    )]
    SerialOutOfRange(u64),
    #[error(
        "not a Terraform state: no top-level `version` (raw state) or `format_version` \
         (`terraform show -json`)"
    )]
    NotAState,
}

/// A state older than the one already imported for the same lineage.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "stale state: lineage {lineage} is already imported at serial {stored_serial}, this copy \
     has serial {new_serial}; import the current state (`terraform state pull`)"
)]
pub struct StaleState {
    pub lineage: String,
    pub stored_serial: u64,
    pub new_serial: u64,
}

/// Parses a state of at most [`DEFAULT_MAX_STATE_BYTES`].
pub fn parse_state<R: Read>(reader: R) -> Result<StateSummary, StateError> {
    parse_state_limited(reader, DEFAULT_MAX_STATE_BYTES)
}

/// Parses a state, refusing it as soon as more than `max_bytes` have been read.
pub fn parse_state_limited<R: Read>(reader: R, max_bytes: u64) -> Result<StateSummary, StateError> {
    let mut refusal = None;
    let mut sink = Sink::default();
    let seed = Object(TopVisitor {
        refusal: &mut refusal,
        sink: &mut sink,
    });
    let top = match super::deserialize_capped(reader, max_bytes, seed) {
        Ok(top) => top,
        // The visitor stopped early on purpose: the reason is in `refusal`, not the JSON error.
        Err(error) => return Err(refusal.unwrap_or(StateError::Input(error))),
    };
    let kind = if top.version.is_some() {
        StateKind::Raw
    } else if let Some(found) = top.format_version {
        let major = found.split('.').next().unwrap_or_default();
        if major != "0" && major != "1" {
            return Err(StateError::UnsupportedFormatVersion { found });
        }
        StateKind::ShowJson
    } else {
        return Err(StateError::NotAState);
    };
    if kind == StateKind::Raw {
        match top.serial {
            None => return Err(StateError::Incomplete { field: "serial" }),
            Some(serial) if i64::try_from(serial).is_err() => {
                return Err(StateError::SerialOutOfRange(serial));
            }
            Some(_) => {}
        }
        if top.lineage.is_none() {
            return Err(StateError::Incomplete { field: "lineage" });
        }
    }
    let mut resources = sink.resources;
    resources.sort_by(|a, b| (&a.address, &a.status.deposed).cmp(&(&b.address, &b.status.deposed)));
    Ok(StateSummary {
        kind,
        terraform_version: top.terraform_version,
        serial: top.serial,
        lineage: top.lineage,
        resources,
        ignored_instances: sink.ignored,
        warnings: sink.warnings.into_vec(),
    })
}

/// Refuses `new` if it is older than what is stored for its lineage. `stored` is the
/// `(lineage, serial)` last imported under the same name. A different lineage is a new state
/// (recreated, or another workspace), never stale; an equal serial is the same state again.
/// A show -json summary carries no serial and cannot be checked, so it passes.
pub fn check_not_stale(stored: Option<(&str, u64)>, new: &StateSummary) -> Result<(), StaleState> {
    match (stored, new.generation()) {
        (Some((stored_lineage, stored_serial)), Some((lineage, new_serial)))
            if stored_lineage == lineage && new_serial < stored_serial =>
        {
            Err(StaleState {
                lineage: lineage.to_owned(),
                stored_serial,
                new_serial,
            })
        }
        _ => Ok(()),
    }
}

/// `[module.]type.name[key]`.
pub fn instance_address(
    module: Option<&str>,
    resource_type: &str,
    name: &str,
    index: Option<&IndexKey>,
) -> String {
    let mut address = String::new();
    if let Some(module) = module.filter(|m| !m.is_empty()) {
        address.push_str(module);
        address.push('.');
    }
    address.push_str(resource_type);
    address.push('.');
    address.push_str(name);
    if let Some(index) = index {
        address.push_str(&index.to_string());
    }
    address
}

/// A string as an HCL quoted string: what Terraform's `toHCLQuotedString` produces. Go's
/// `unicode.IsPrint` is approximated by "not a control character, and not whitespace other than
/// the ASCII space".
fn hcl_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' | '%' => {
                out.push(c);
                // `${` and `%{` start templates in HCL: doubled to stay literal.
                if chars.peek() == Some(&'{') {
                    out.push(c);
                }
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                let n = c as u32;
                if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
