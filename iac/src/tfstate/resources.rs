//! The resource types driftwatch reads from state, and the allow-list of attributes of each.
//!
//! Each type has two structs: a private `…Raw` one that names the allow-listed attributes as
//! lenient [`Field`]s (what the JSON reader fills; every attribute not named is skipped
//! unread), and the public one the rest of the collector uses. The split keeps "which
//! attributes may be read at all" in one visible place per type.

use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer};

use crate::Tags;
use crate::digest;
use crate::lenient::{Field, FieldValue, List, Notes, lenient_block};

/// An EC2 instance (`aws_instance`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsInstance {
    /// The instance id (`i-…`): what the agent reports from instance metadata.
    pub id: Option<String>,
    /// The AMI as last observed by a refresh, not necessarily what the configuration declares.
    pub ami: Option<String>,
    /// `pending`, `running`, `stopping`, `stopped`, …
    pub instance_state: Option<String>,
    pub availability_zone: Option<String>,
    pub private_ip: Option<String>,
    pub private_dns: Option<String>,
    pub public_ip: Option<String>,
    pub tags: Tags,
    /// `tags` plus the provider's `default_tags`: what the instance actually carries.
    pub tags_all: Tags,
    /// Hex SHA-1 of the user data as the instance sees it (see the `digest` module): stored as
    /// such by AWS provider < 6, computed here from `user_data` (provider ≥ 6, clear text) or
    /// `user_data_base64`.
    pub user_data_sha1: Option<String>,
    /// The launch template the instance was created from, if any.
    pub launch_template: Option<LaunchTemplateRef>,
}

/// A reference to a launch template, by id or name, and version (`$Latest`, `$Default` or a
/// number, as text).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LaunchTemplateRef {
    pub id: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
}

/// An EC2 launch template (`aws_launch_template`). State holds its latest version only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsLaunchTemplate {
    /// `lt-…`: what instances carry in their `aws:ec2launchtemplate:id` tag.
    pub id: Option<String>,
    pub name: Option<String>,
    pub latest_version: Option<u64>,
    pub default_version: Option<u64>,
    /// The AMI of the latest version.
    pub image_id: Option<String>,
    pub tags: Tags,
    pub tags_all: Tags,
    /// Hex SHA-1 of the latest version's (base64) user data, decoded.
    pub user_data_sha1: Option<String>,
}

/// An EC2 launch configuration (`aws_launch_configuration`): the older kind of group template.
/// Instances launched from one carry no tag naming it; their group names it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsLaunchConfiguration {
    /// Its name (the provider's `id` is the name too).
    pub name: Option<String>,
    pub image_id: Option<String>,
    /// Hex SHA-1 of the user data, as for `aws_instance` (see [`AwsInstance::user_data_sha1`]).
    pub user_data_sha1: Option<String>,
}

/// An autoscaling group (`aws_autoscaling_group`). Its instances are never in state; they are
/// recognised by the `aws:autoscaling:groupName` tag they carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsAutoscalingGroup {
    pub name: Option<String>,
    /// From `launch_template`, or from `mixed_instances_policy` when that is used instead.
    pub launch_template: Option<LaunchTemplateRef>,
    /// The launch configuration's name, for a group built from one instead of a template.
    pub launch_configuration: Option<String>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    pub desired_capacity: Option<u64>,
    /// From the `tag` blocks (and the legacy `tags` list of AWS provider < 5).
    pub tags: Vec<AsgTag>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AsgTag {
    pub key: String,
    pub value: String,
    pub propagate_at_launch: bool,
}

/// A GCE instance (`google_compute_instance`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoogleComputeInstance {
    /// The numeric instance id, as text: what the metadata server's `instance/id` returns.
    pub instance_id: Option<String>,
    pub name: Option<String>,
    pub project: Option<String>,
    pub zone: Option<String>,
    /// `RUNNING`, `TERMINATED`, …
    pub current_status: Option<String>,
    /// The image the boot disk was created from (`boot_disk.initialize_params.image`).
    pub boot_image: Option<String>,
    /// The primary network interface's internal IP.
    pub network_ip: Option<String>,
    /// Labels set in the configuration.
    pub labels: Tags,
    /// All labels on the instance (google provider ≥ 5), including provider defaults.
    pub effective_labels: Tags,
}

/// An Azure Linux VM (`azurerm_linux_virtual_machine`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AzureLinuxVm {
    /// The ARM resource id; Azure treats it case-insensitively, so compare it that way.
    pub id: Option<String>,
    pub name: Option<String>,
    /// The VM's unique id: what instance metadata (`compute/vmId`) returns.
    pub virtual_machine_id: Option<String>,
    pub location: Option<String>,
    pub resource_group_name: Option<String>,
    /// A custom or gallery image id, when the VM was created from one.
    pub source_image_id: Option<String>,
    /// A marketplace image, when the VM was created from one.
    pub source_image_reference: Option<AzureImageReference>,
    pub private_ip_address: Option<String>,
    pub public_ip_address: Option<String>,
    pub tags: Tags,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AzureImageReference {
    pub publisher: Option<String>,
    pub offer: Option<String>,
    pub sku: Option<String>,
    pub version: Option<String>,
}

impl fmt::Display for AzureImageReference {
    /// `publisher:offer:sku:version`, the form `az vm create --image` takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |p: &Option<String>| p.clone().unwrap_or_default();
        write!(
            f,
            "{}:{}:{}:{}",
            part(&self.publisher),
            part(&self.offer),
            part(&self.sku),
            part(&self.version)
        )
    }
}

/// What one resource instance is, with the attributes kept for its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    AwsInstance(AwsInstance),
    AwsLaunchTemplate(AwsLaunchTemplate),
    AwsLaunchConfiguration(AwsLaunchConfiguration),
    AwsAutoscalingGroup(AwsAutoscalingGroup),
    GoogleComputeInstance(GoogleComputeInstance),
    AzureLinuxVm(AzureLinuxVm),
}

impl ResourceKind {
    /// The id a host reports for itself, for resources that are machines: the EC2 instance id,
    /// the GCE numeric instance id, the Azure `vmId`.
    pub fn instance_id(&self) -> Option<&str> {
        match self {
            ResourceKind::AwsInstance(r) => r.id.as_deref(),
            ResourceKind::GoogleComputeInstance(r) => r.instance_id.as_deref(),
            ResourceKind::AzureLinuxVm(r) => r.virtual_machine_id.as_deref(),
            ResourceKind::AwsLaunchTemplate(_)
            | ResourceKind::AwsLaunchConfiguration(_)
            | ResourceKind::AwsAutoscalingGroup(_) => None,
        }
    }

    /// The image the state says the machine (or the template's instances) runs.
    pub fn image(&self) -> Option<&str> {
        match self {
            ResourceKind::AwsInstance(r) => r.ami.as_deref(),
            ResourceKind::AwsLaunchTemplate(r) => r.image_id.as_deref(),
            ResourceKind::AwsLaunchConfiguration(r) => r.image_id.as_deref(),
            ResourceKind::GoogleComputeInstance(r) => r.boot_image.as_deref(),
            ResourceKind::AzureLinuxVm(r) => r.source_image_id.as_deref(),
            ResourceKind::AwsAutoscalingGroup(_) => None,
        }
    }

    /// The primary private IP: a low-confidence way to match a host.
    pub fn private_ip(&self) -> Option<&str> {
        match self {
            ResourceKind::AwsInstance(r) => r.private_ip.as_deref(),
            ResourceKind::GoogleComputeInstance(r) => r.network_ip.as_deref(),
            ResourceKind::AzureLinuxVm(r) => r.private_ip_address.as_deref(),
            ResourceKind::AwsLaunchTemplate(_)
            | ResourceKind::AwsLaunchConfiguration(_)
            | ResourceKind::AwsAutoscalingGroup(_) => None,
        }
    }
}

/// The resource types read; every other type is skipped without looking at its instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KnownType {
    AwsInstance,
    AwsLaunchTemplate,
    AwsLaunchConfiguration,
    AwsAutoscalingGroup,
    GoogleComputeInstance,
    AzurermLinuxVirtualMachine,
}

impl KnownType {
    pub(super) fn from_type_name(name: &str) -> Option<Self> {
        Some(match name {
            "aws_instance" => KnownType::AwsInstance,
            "aws_launch_template" => KnownType::AwsLaunchTemplate,
            "aws_launch_configuration" => KnownType::AwsLaunchConfiguration,
            "aws_autoscaling_group" => KnownType::AwsAutoscalingGroup,
            "google_compute_instance" => KnownType::GoogleComputeInstance,
            "azurerm_linux_virtual_machine" => KnownType::AzurermLinuxVirtualMachine,
            _ => return None,
        })
    }
}

/// Reads an instance's `attributes` (raw state) or `values` (show -json) for a known type.
pub(super) struct AttrsSeed(pub(super) KnownType);

impl<'de> DeserializeSeed<'de> for AttrsSeed {
    type Value = Field<RawAttrs>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Ok(match self.0 {
            KnownType::AwsInstance => Field::deserialize(d)?.map(RawAttrs::AwsInstance),
            KnownType::AwsLaunchTemplate => Field::deserialize(d)?.map(RawAttrs::AwsLaunchTemplate),
            KnownType::AwsLaunchConfiguration => {
                Field::deserialize(d)?.map(RawAttrs::AwsLaunchConfiguration)
            }
            KnownType::AwsAutoscalingGroup => {
                Field::deserialize(d)?.map(RawAttrs::AwsAutoscalingGroup)
            }
            KnownType::GoogleComputeInstance => {
                Field::deserialize(d)?.map(RawAttrs::GoogleComputeInstance)
            }
            KnownType::AzurermLinuxVirtualMachine => {
                Field::deserialize(d)?.map(RawAttrs::AzureLinuxVm)
            }
        })
    }
}

/// The allow-listed attributes of one instance, as read.
pub(super) enum RawAttrs {
    AwsInstance(AwsInstanceRaw),
    AwsLaunchTemplate(AwsLaunchTemplateRaw),
    AwsLaunchConfiguration(AwsLaunchConfigurationRaw),
    AwsAutoscalingGroup(AwsAutoscalingGroupRaw),
    GoogleComputeInstance(GoogleComputeInstanceRaw),
    AzureLinuxVm(AzureLinuxVmRaw),
}

impl RawAttrs {
    /// For an instance without attributes: the type is known, nothing else.
    pub(super) fn empty(kind: KnownType) -> Self {
        match kind {
            KnownType::AwsInstance => RawAttrs::AwsInstance(Default::default()),
            KnownType::AwsLaunchTemplate => RawAttrs::AwsLaunchTemplate(Default::default()),
            KnownType::AwsLaunchConfiguration => {
                RawAttrs::AwsLaunchConfiguration(Default::default())
            }
            KnownType::AwsAutoscalingGroup => RawAttrs::AwsAutoscalingGroup(Default::default()),
            KnownType::GoogleComputeInstance => RawAttrs::GoogleComputeInstance(Default::default()),
            KnownType::AzurermLinuxVirtualMachine => RawAttrs::AzureLinuxVm(Default::default()),
        }
    }

    pub(super) fn convert(self, notes: &mut Notes<'_>) -> ResourceKind {
        match self {
            RawAttrs::AwsInstance(r) => ResourceKind::AwsInstance(r.convert(notes)),
            RawAttrs::AwsLaunchTemplate(r) => ResourceKind::AwsLaunchTemplate(r.convert(notes)),
            RawAttrs::AwsLaunchConfiguration(r) => {
                ResourceKind::AwsLaunchConfiguration(r.convert(notes))
            }
            RawAttrs::AwsAutoscalingGroup(r) => ResourceKind::AwsAutoscalingGroup(r.convert(notes)),
            RawAttrs::GoogleComputeInstance(r) => {
                ResourceKind::GoogleComputeInstance(r.convert(notes))
            }
            RawAttrs::AzureLinuxVm(r) => ResourceKind::AzureLinuxVm(r.convert(notes)),
        }
    }
}

/// `aws_instance.user_data`: a SHA-1 digest (provider < 6) kept as is, or clear text (provider
/// ≥ 6) hashed on the spot. Only the digest leaves the visitor.
pub(crate) struct UserData(pub(crate) String);

impl FieldValue for UserData {
    fn from_str(v: &str) -> Field<Self> {
        if v.is_empty() {
            Field::Absent
        } else if digest::is_sha1_hex(v) {
            Field::Value(UserData(v.to_owned()))
        } else {
            Field::Value(UserData(digest::user_data_sha1(v)))
        }
    }
}

/// `user_data_base64` and `aws_launch_template.user_data`: base64 text, hashed decoded.
pub(crate) struct UserDataBase64(pub(crate) String);

impl FieldValue for UserDataBase64 {
    fn from_str(v: &str) -> Field<Self> {
        if v.is_empty() {
            return Field::Absent;
        }
        match digest::base64_decode(v) {
            Some(bytes) => Field::Value(UserDataBase64(hex::encode(digest::sha1(&bytes)))),
            None => Field::Unexpected("a string that is not base64"),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct AwsInstanceRaw {
    id: Field<String>,
    ami: Field<String>,
    instance_state: Field<String>,
    availability_zone: Field<String>,
    private_ip: Field<String>,
    private_dns: Field<String>,
    public_ip: Field<String>,
    tags: Field<Tags>,
    tags_all: Field<Tags>,
    user_data: Field<UserData>,
    user_data_base64: Field<UserDataBase64>,
    launch_template: List<LaunchTemplateSpecRaw>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LaunchTemplateSpecRaw {
    id: Field<String>,
    name: Field<String>,
    version: Field<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct AwsLaunchTemplateRaw {
    id: Field<String>,
    name: Field<String>,
    latest_version: Field<u64>,
    default_version: Field<u64>,
    image_id: Field<String>,
    tags: Field<Tags>,
    tags_all: Field<Tags>,
    user_data: Field<UserDataBase64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct AwsLaunchConfigurationRaw {
    id: Field<String>,
    name: Field<String>,
    image_id: Field<String>,
    user_data: Field<UserData>,
    user_data_base64: Field<UserDataBase64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct AwsAutoscalingGroupRaw {
    id: Field<String>,
    name: Field<String>,
    launch_template: List<LaunchTemplateSpecRaw>,
    launch_configuration: Field<String>,
    mixed_instances_policy: List<MixedInstancesPolicyRaw>,
    min_size: Field<u64>,
    max_size: Field<u64>,
    desired_capacity: Field<u64>,
    tag: List<AsgTagRaw>,
    /// AWS provider < 5: a list of `{key, value, propagate_at_launch}` string maps.
    tags: List<AsgTagRaw>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MixedInstancesPolicyRaw {
    launch_template: List<MixedLaunchTemplateRaw>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MixedLaunchTemplateRaw {
    launch_template_specification: List<MixedLaunchTemplateSpecRaw>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MixedLaunchTemplateSpecRaw {
    launch_template_id: Field<String>,
    launch_template_name: Field<String>,
    version: Field<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AsgTagRaw {
    key: Field<String>,
    value: Field<String>,
    propagate_at_launch: Field<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct GoogleComputeInstanceRaw {
    instance_id: Field<String>,
    name: Field<String>,
    project: Field<String>,
    zone: Field<String>,
    current_status: Field<String>,
    boot_disk: List<BootDiskRaw>,
    network_interface: List<NetworkInterfaceRaw>,
    labels: Field<Tags>,
    effective_labels: Field<Tags>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BootDiskRaw {
    initialize_params: List<InitializeParamsRaw>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct InitializeParamsRaw {
    image: Field<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NetworkInterfaceRaw {
    network_ip: Field<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct AzureLinuxVmRaw {
    id: Field<String>,
    name: Field<String>,
    virtual_machine_id: Field<String>,
    location: Field<String>,
    resource_group_name: Field<String>,
    source_image_id: Field<String>,
    source_image_reference: List<AzureImageReferenceRaw>,
    private_ip_address: Field<String>,
    public_ip_address: Field<String>,
    tags: Field<Tags>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AzureImageReferenceRaw {
    publisher: Field<String>,
    offer: Field<String>,
    sku: Field<String>,
    version: Field<String>,
}

lenient_block!(
    AwsInstanceRaw,
    LaunchTemplateSpecRaw,
    AwsLaunchTemplateRaw,
    AwsLaunchConfigurationRaw,
    AwsAutoscalingGroupRaw,
    MixedInstancesPolicyRaw,
    MixedLaunchTemplateRaw,
    MixedLaunchTemplateSpecRaw,
    AsgTagRaw,
    GoogleComputeInstanceRaw,
    BootDiskRaw,
    InitializeParamsRaw,
    NetworkInterfaceRaw,
    AzureLinuxVmRaw,
    AzureImageReferenceRaw,
);

impl LaunchTemplateSpecRaw {
    fn convert(self, notes: &mut Notes<'_>) -> LaunchTemplateRef {
        LaunchTemplateRef {
            id: notes.take("launch_template.id", self.id),
            name: notes.take("launch_template.name", self.name),
            version: notes.take("launch_template.version", self.version),
        }
    }
}

impl AwsInstanceRaw {
    fn convert(self, notes: &mut Notes<'_>) -> AwsInstance {
        let user_data = notes.take("user_data", self.user_data).map(|d| d.0);
        let user_data_base64 = notes
            .take("user_data_base64", self.user_data_base64)
            .map(|d| d.0);
        AwsInstance {
            id: notes.take("id", self.id),
            ami: notes.take("ami", self.ami),
            instance_state: notes.take("instance_state", self.instance_state),
            availability_zone: notes.take("availability_zone", self.availability_zone),
            private_ip: notes.take("private_ip", self.private_ip),
            private_dns: notes.take("private_dns", self.private_dns),
            public_ip: notes.take("public_ip", self.public_ip),
            tags: notes.tags("tags", self.tags),
            tags_all: notes.tags("tags_all", self.tags_all),
            user_data_sha1: user_data.or(user_data_base64),
            launch_template: notes
                .first("launch_template", self.launch_template)
                .map(|lt| lt.convert(notes)),
        }
    }
}

impl AwsLaunchTemplateRaw {
    fn convert(self, notes: &mut Notes<'_>) -> AwsLaunchTemplate {
        AwsLaunchTemplate {
            id: notes.take("id", self.id),
            name: notes.take("name", self.name),
            latest_version: notes.take("latest_version", self.latest_version),
            default_version: notes.take("default_version", self.default_version),
            image_id: notes.take("image_id", self.image_id),
            tags: notes.tags("tags", self.tags),
            tags_all: notes.tags("tags_all", self.tags_all),
            user_data_sha1: notes.take("user_data", self.user_data).map(|d| d.0),
        }
    }
}

impl AwsLaunchConfigurationRaw {
    fn convert(self, notes: &mut Notes<'_>) -> AwsLaunchConfiguration {
        let user_data = notes.take("user_data", self.user_data).map(|d| d.0);
        let user_data_base64 = notes
            .take("user_data_base64", self.user_data_base64)
            .map(|d| d.0);
        let id = notes.take("id", self.id);
        AwsLaunchConfiguration {
            // The provider's id is the name; older states may lack `name`.
            name: notes.take("name", self.name).or(id),
            image_id: notes.take("image_id", self.image_id),
            user_data_sha1: user_data.or(user_data_base64),
        }
    }
}

impl AwsAutoscalingGroupRaw {
    fn convert(self, notes: &mut Notes<'_>) -> AwsAutoscalingGroup {
        let direct = notes
            .first("launch_template", self.launch_template)
            .map(|lt| lt.convert(notes));
        let mixed = notes
            .first("mixed_instances_policy", self.mixed_instances_policy)
            .and_then(|p| notes.first("mixed_instances_policy.launch_template", p.launch_template))
            .and_then(|lt| {
                notes.first(
                    "mixed_instances_policy.launch_template.launch_template_specification",
                    lt.launch_template_specification,
                )
            })
            .map(|spec| LaunchTemplateRef {
                id: notes.take("launch_template_id", spec.launch_template_id),
                name: notes.take("launch_template_name", spec.launch_template_name),
                version: notes.take("version", spec.version),
            });
        let mut tags = Vec::new();
        for (attribute, list) in [("tag", self.tag), ("tags", self.tags)] {
            for t in notes.all(attribute, list) {
                let Some(key) = notes.take("tag.key", t.key) else {
                    continue;
                };
                tags.push(AsgTag {
                    key,
                    // An empty tag value is `""`, which a string field reads as absent.
                    value: notes.take("tag.value", t.value).unwrap_or_default(),
                    propagate_at_launch: notes
                        .take("tag.propagate_at_launch", t.propagate_at_launch)
                        .unwrap_or(false),
                });
            }
        }
        let id = notes.take("id", self.id);
        AwsAutoscalingGroup {
            // The group's id is its name; older states may lack `name`.
            name: notes.take("name", self.name).or(id),
            launch_template: direct.or(mixed),
            launch_configuration: notes.take("launch_configuration", self.launch_configuration),
            min_size: notes.take("min_size", self.min_size),
            max_size: notes.take("max_size", self.max_size),
            desired_capacity: notes.take("desired_capacity", self.desired_capacity),
            tags,
        }
    }
}

impl GoogleComputeInstanceRaw {
    fn convert(self, notes: &mut Notes<'_>) -> GoogleComputeInstance {
        let boot_image = notes
            .first("boot_disk", self.boot_disk)
            .and_then(|d| notes.first("boot_disk.initialize_params", d.initialize_params))
            .and_then(|p| notes.take("boot_disk.initialize_params.image", p.image));
        let network_ip = notes
            .first("network_interface", self.network_interface)
            .and_then(|n| notes.take("network_interface.network_ip", n.network_ip));
        GoogleComputeInstance {
            instance_id: notes.take("instance_id", self.instance_id),
            name: notes.take("name", self.name),
            project: notes.take("project", self.project),
            zone: notes.take("zone", self.zone),
            current_status: notes.take("current_status", self.current_status),
            boot_image,
            network_ip,
            labels: notes.tags("labels", self.labels),
            effective_labels: notes.tags("effective_labels", self.effective_labels),
        }
    }
}

impl AzureLinuxVmRaw {
    fn convert(self, notes: &mut Notes<'_>) -> AzureLinuxVm {
        let source_image_reference = notes
            .first("source_image_reference", self.source_image_reference)
            .map(|r| AzureImageReference {
                publisher: notes.take("source_image_reference.publisher", r.publisher),
                offer: notes.take("source_image_reference.offer", r.offer),
                sku: notes.take("source_image_reference.sku", r.sku),
                version: notes.take("source_image_reference.version", r.version),
            });
        AzureLinuxVm {
            id: notes.take("id", self.id),
            name: notes.take("name", self.name),
            virtual_machine_id: notes.take("virtual_machine_id", self.virtual_machine_id),
            location: notes.take("location", self.location),
            resource_group_name: notes.take("resource_group_name", self.resource_group_name),
            source_image_id: notes.take("source_image_id", self.source_image_id),
            source_image_reference,
            private_ip_address: notes.take("private_ip_address", self.private_ip_address),
            public_ip_address: notes.take("public_ip_address", self.public_ip_address),
            tags: notes.tags("tags", self.tags),
        }
    }
}
