//! Imported infrastructure as code, as the store keeps it: states with the resources that
//! describe machines (only the allow-listed fields `driftwatch_iac` reduces a state to), the
//! image catalog from Packer manifests, and what hosts said of themselves that correlation
//! reads. Correlation (`crate::iac`) reads these; the store knows nothing of it.

use std::collections::BTreeMap;

use super::Millis;

/// One resource instance of a state that describes a machine, a group or a template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    /// `module.web.aws_instance.app["b"]`.
    pub address: String,
    /// aws_instance, aws_launch_template, aws_autoscaling_group, google_compute_instance, …
    pub resource_type: String,
    /// instance, group or template.
    pub role: String,
    /// What a host is matched on: the cloud instance id, the group name, the template id.
    pub key: String,
    pub name: String,
    /// The image the state records.
    pub image_id: String,
    pub private_ip: String,
    pub private_dns: String,
    /// Hex SHA-1 of the user data (never the user data).
    pub user_data_sha1: String,
    /// The cloud's status as recorded ("" when not recorded).
    pub status: String,
    /// The launch template an instance or group names.
    pub template: String,
    /// Region, zone or location.
    pub location: String,
}

/// A state to store under `name`, replacing what was stored under that name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateImport {
    pub name: String,
    /// Where it was read from (a path or URL), for display.
    pub source: String,
    /// state or show_json.
    pub kind: String,
    pub lineage: String,
    pub serial: Option<u64>,
    pub terraform_version: String,
    pub resources: Vec<Resource>,
    /// Instances of other resource types, skipped.
    pub ignored_instances: u64,
    /// Who imported it: the caller the access check named, or the state source.
    pub imported_by: String,
}

/// One image a Packer build produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    /// Empty for builders whose artifacts are not regional.
    pub region: String,
    pub image_id: String,
    pub build: String,
    pub builder_type: String,
    pub run_uuid: String,
    /// Unix seconds; 0 when unknown.
    pub build_time: i64,
    /// The driftwatch baseline baked into the image ("" when unknown).
    pub baseline_id: String,
}

/// A manifest's images, added to the catalog (or updated, by region and image id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManifestImport {
    pub source: String,
    pub images: Vec<Image>,
}

/// A stored state, without its resources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateInfo {
    pub name: String,
    pub source: String,
    pub kind: String,
    pub lineage: String,
    pub serial: Option<u64>,
    pub terraform_version: String,
    /// How many resources it holds.
    pub resources: u64,
    pub imported_at: Millis,
    pub imported_by: String,
}

/// Everything imported: states (with their resources) and the image catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IacData {
    pub states: Vec<StateInfo>,
    /// (state name, resource).
    pub resources: Vec<(String, Resource)>,
    pub images: Vec<Image>,
}

/// What a host's hello said that correlation uses, and when it was last heard from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    pub host: String,
    pub hostname: String,
    /// The cloud the host says it runs on (cloud-init's `cloud_name`: aws, gce, azure; "" off
    /// the clouds or unknown).
    pub cloud: String,
    pub instance_id: String,
    pub image_id: String,
    pub region: String,
    pub private_ip: String,
    pub machine_id_hash: String,
    pub user_data_sha1: String,
    pub tags: BTreeMap<String, String>,
    pub baseline_id: String,
    pub last_seen: Millis,
}
