//! Pulumi: `pulumi stack export`, reduced to the machine-like resources driftwatch correlates
//! with hosts, in the same [`StateSummary`] a Terraform state becomes.
//!
//! # The input
//! `{"version": 3, "deployment": {"manifest": {"time", "magic", "version", "plugins"},
//! "secrets_providers", "resources": [{"urn", "custom", "delete", "id", "type", "inputs",
//! "outputs", "parent", "provider", …}], "pending_operations", …}}` — Pulumi's
//! `apitype.UntypedDeployment` around a `DeploymentV3`. Version 4 is the same shape with a
//! top-level `features` list (written when a stack uses one); versions 1 and 2 come from
//! Pulumi CLIs of 2018–2019 and are refused. A URN is `urn:pulumi:STACK::PROJECT::TYPE::NAME`
//! (`TYPE` prefixed by its parents' types, `$`-separated).
//!
//! Resources read, and the outputs kept (the same facts the Terraform reader keeps, spelled
//! in Pulumi's camelCase; blocks of at most one element are objects, not lists):
//!
//! | type | kind | outputs |
//! |---|---|---|
//! | `aws:ec2/instance:Instance` | [`AwsInstance`] | `ami`, `instanceState`, `availabilityZone`, `privateIp`, `privateDns`, `publicIp`, `tags`, `tagsAll`, `userData` (SHA-1 only), `userDataBase64` (SHA-1 only), `launchTemplate` |
//! | `aws:ec2/launchTemplate:LaunchTemplate` | [`AwsLaunchTemplate`] | `name`, `latestVersion`, `defaultVersion`, `imageId`, `tags`, `tagsAll`, `userData` (SHA-1 only) |
//! | `aws:autoscaling/group:Group` | [`AwsAutoscalingGroup`] | `name`, `launchTemplate`, `launchConfiguration`, `minSize`, `maxSize`, `desiredCapacity` |
//! | `gcp:compute/instance:Instance` | [`GoogleComputeInstance`] | `instanceId`, `name`, `project`, `zone`, `currentStatus`, `bootDisk.initializeParams.image`, `networkInterfaces[0].networkIp`, `labels`, `effectiveLabels` |
//! | `azure:compute/linuxVirtualMachine:LinuxVirtualMachine` | [`AzureLinuxVm`] | `virtualMachineId`, `name`, `location`, `resourceGroupName`, `sourceImageId`, `sourceImageReference`, `privateIpAddress`, `publicIpAddress`, `tags` |
//! | `azure-native:compute:VirtualMachine` (and its API-versioned `compute/v…` types) | [`AzureLinuxVm`] | `vmId`, `name`, `location`, `storageProfile.imageReference` (`id`, else `publisher:offer:sku:version`), `tags` |
//!
//! The resource's own `id` is its key (the instance id, the launch template id, the group
//! name, the ARM id). The address is the URN: unique in the stack, and what `pulumi state`
//! commands take. A resource marked `delete` (replaced, its deletion pending) is kept as a
//! deposed object is in Terraform: not current.
//!
//! # Secrets
//! As in the Terraform reader (see the crate docs), the document is read once, streaming, and
//! only allow-listed outputs become values. `inputs` are never read (everything kept is in
//! `outputs`); `secrets_providers` (which can hold key material), `pending_operations`,
//! `metadata` and every key not named are skipped unread. A value Pulumi marks secret
//! (`{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
//! "ciphertext": …}`, or `"plaintext"` in an export made with `--show-secrets`) is never read,
//! even for an allow-listed output: it becomes a warning that names the output.
//!
//! # No serial, so no stale-import check
//! A stack export carries no write counter and no lineage: `manifest.time` is when the last
//! update began, by the clock of whichever machine ran it. Ordering imports by a wall clock
//! would refuse good exports after a clock step, so stacks are imported without a serial, like
//! `terraform show -json`, and an older export imported under a stack's name replaces a newer
//! one. `manifest.time` is returned in [`StackExport::time`] (not sent); the Pulumi CLI version
//! (`manifest.version`) stands where a state's Terraform version does.

use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::lenient::{Field, Notes, lenient_block};
use crate::tfstate::resources::{UserData, UserDataBase64};
use crate::tfstate::{
    AwsAutoscalingGroup, AwsInstance, AwsLaunchTemplate, AzureImageReference, AzureLinuxVm,
    GoogleComputeInstance, InstanceStatus, LaunchTemplateRef, Resource, ResourceKind, StateKind,
    StateSummary,
};
use crate::{InputError, Tags, Warnings};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// The largest export read by default (as for Terraform states).
pub const DEFAULT_MAX_EXPORT_BYTES: u64 = crate::tfstate::DEFAULT_MAX_STATE_BYTES;

/// What driftwatch keeps of a stack export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackExport {
    /// `kind` [`StateKind::Pulumi`], no serial or lineage, `terraform_version` the Pulumi CLI
    /// version that wrote the checkpoint.
    pub summary: StateSummary,
    /// From the first resource's URN (the stack resource comes first).
    pub stack: Option<String>,
    pub project: Option<String>,
    /// `manifest.time`: when the update that wrote the checkpoint began.
    pub time: Option<String>,
}

impl StackExport {
    /// The name a stack is stored under when none is given: `PROJECT/STACK` (two projects
    /// often both have a `dev` stack), else the stack alone.
    pub fn default_name(&self) -> Option<String> {
        match (&self.project, &self.stack) {
            (Some(project), Some(stack)) => Some(format!("{project}/{stack}")),
            (None, Some(stack)) => Some(stack.clone()),
            _ => None,
        }
    }
}

/// Why an export was not read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(
        "not a `pulumi stack export` document: no top-level `deployment`{}",
        looks_like(*.0)
    )]
    NotAnExport(Option<crate::Looks>),
    #[error("a stack export without `version`: not a complete `pulumi stack export` document")]
    NoVersion,
    #[error(
        "unsupported stack export version {0}: driftwatch reads versions 3 and 4 (written by \
         Pulumi ≥ 1.0); export the stack again with a current Pulumi CLI"
    )]
    UnsupportedVersion(u64),
}

fn looks_like(looks: Option<crate::Looks>) -> String {
    looks.map_or_else(String::new, |l| format!("; this looks like {l}"))
}

/// Parses an export of at most [`DEFAULT_MAX_EXPORT_BYTES`].
pub fn parse_export<R: Read>(reader: R) -> Result<StackExport, ExportError> {
    parse_export_limited(reader, DEFAULT_MAX_EXPORT_BYTES)
}

/// Parses an export, refusing it as soon as more than `max_bytes` have been read.
pub fn parse_export_limited<R: Read>(
    reader: R,
    max_bytes: u64,
) -> Result<StackExport, ExportError> {
    let mut sink = Sink::default();
    let top = crate::deserialize_capped(reader, max_bytes, Object(TopVisitor { sink: &mut sink }))?;
    if !top.deployment {
        return Err(ExportError::NotAnExport(top.looks));
    }
    match top.version {
        None => return Err(ExportError::NoVersion),
        Some(v) if !supported(v) => return Err(ExportError::UnsupportedVersion(v)),
        Some(_) => {}
    }
    let mut resources = sink.resources;
    resources.sort_by(|a, b| (&a.address, &a.status.deposed).cmp(&(&b.address, &b.status.deposed)));
    Ok(StackExport {
        summary: StateSummary {
            kind: StateKind::Pulumi,
            terraform_version: top.manifest.version,
            serial: None,
            lineage: None,
            resources,
            ignored_instances: sink.ignored,
            warnings: sink.warnings.into_vec(),
        },
        stack: sink.stack,
        project: sink.project,
        time: top.manifest.time,
    })
}

/// `(stack, project, qualified type, name)` of `urn:pulumi:STACK::PROJECT::TYPE::NAME`.
pub(crate) fn split_urn(urn: &str) -> Option<(&str, &str, &str, &str)> {
    let rest = urn.strip_prefix("urn:pulumi:")?;
    let mut parts = rest.splitn(4, "::");
    Some((parts.next()?, parts.next()?, parts.next()?, parts.next()?))
}

/// The resource types read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KnownType {
    AwsInstance,
    AwsLaunchTemplate,
    AwsAutoscalingGroup,
    GcpInstance,
    AzureLinuxVm,
    AzureNativeVm,
}

impl KnownType {
    pub(crate) fn from_type_name(name: &str) -> Option<Self> {
        Some(match name {
            "aws:ec2/instance:Instance" => KnownType::AwsInstance,
            "aws:ec2/launchTemplate:LaunchTemplate" => KnownType::AwsLaunchTemplate,
            "aws:autoscaling/group:Group" => KnownType::AwsAutoscalingGroup,
            "gcp:compute/instance:Instance" => KnownType::GcpInstance,
            "azure:compute/linuxVirtualMachine:LinuxVirtualMachine" => KnownType::AzureLinuxVm,
            "azure-native:compute:VirtualMachine" => KnownType::AzureNativeVm,
            // The provider's API-versioned modules: `azure-native:compute/v20230301:…`.
            _ if name.starts_with("azure-native:compute/v")
                && name.ends_with(":VirtualMachine")
                && name.matches(':').count() == 2 =>
            {
                KnownType::AzureNativeVm
            }
            _ => return None,
        })
    }
}

/// Where the visitors put what they keep.
#[derive(Default)]
struct Sink {
    resources: Vec<Resource>,
    ignored: u64,
    warnings: Warnings,
    stack: Option<String>,
    project: Option<String>,
}

/// Reads a JSON object with the visitor `V`.
struct Object<V>(V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for Object<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_map(self.0)
    }
}

/// The manifest's fields kept.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Manifest {
    time: Option<String>,
    version: Option<String>,
}

#[derive(Default)]
struct Top {
    version: Option<u64>,
    deployment: bool,
    manifest: Manifest,
    looks: Option<crate::Looks>,
}

struct TopVisitor<'a> {
    sink: &'a mut Sink,
}

/// The versions whose `deployment` is a `DeploymentV3`.
fn supported(version: u64) -> bool {
    (3..=4).contains(&version)
}

impl<'de> Visitor<'de> for TopVisitor<'_> {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Pulumi stack export (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut top = Top::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "version" => top.version = Some(map.next_value()?),
                "deployment" => {
                    top.deployment = true;
                    if top.version.is_some_and(|v| !supported(v)) {
                        // Another version's shape: refused below, never read.
                        map.next_value::<IgnoredAny>()?;
                    } else {
                        top.manifest = map.next_value_seed(Object(DeploymentVisitor {
                            sink: &mut *self.sink,
                        }))?;
                    }
                }
                // `features`, and whatever else a later version adds.
                other => {
                    top.looks = top.looks.or(crate::Looks::from_top_level_key(other));
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(top)
    }
}

/// `deployment`: its manifest and resources.
struct DeploymentVisitor<'a> {
    sink: &'a mut Sink,
}

impl<'de> Visitor<'de> for DeploymentVisitor<'_> {
    type Value = Manifest;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`deployment`: an object with `manifest` and `resources`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Manifest, A::Error> {
        let mut manifest = Manifest::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "manifest" => manifest = map.next_value()?,
                "resources" => map.next_value_seed(Array(ResourcesVisitor {
                    sink: &mut *self.sink,
                }))?,
                // `secrets_providers` (its `state` can hold key material), `pending_operations`,
                // `metadata`: never read.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(manifest)
    }
}

/// Reads a JSON array with the visitor `V`.
struct Array<V>(V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for Array<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_seq(self.0)
    }
}

struct ResourcesVisitor<'a> {
    sink: &'a mut Sink,
}

impl<'de> Visitor<'de> for ResourcesVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`deployment.resources`: an array of resources")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut position = 0;
        while seq
            .next_element_seed(Object(ResourceVisitor {
                sink: &mut *self.sink,
                position,
            }))?
            .is_some()
        {
            position += 1;
        }
        Ok(())
    }
}

/// One element of `deployment.resources`.
struct ResourceVisitor<'a> {
    sink: &'a mut Sink,
    position: usize,
}

impl<'de> Visitor<'de> for ResourceVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "deployment.resources[{}]: a resource object",
            self.position
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let position = self.position;
        let mut urn: Option<String> = None;
        let mut resource_type: Option<String> = None;
        let mut id: Field<String> = Field::Absent;
        let mut custom = true;
        let mut delete = false;
        let mut provider: Option<String> = None;
        let mut outputs: Field<RawOutputs> = Field::Absent;
        // `outputs` before `type` (Pulumi writes `type` first): held as text until the type
        // is known, then read the same way and dropped.
        let mut deferred: Option<Box<RawValue>> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "urn" => urn = Some(map.next_value()?),
                "type" => resource_type = Some(map.next_value()?),
                "id" => id = map.next_value()?,
                "custom" => custom = map.next_value::<Option<bool>>()?.unwrap_or(true),
                "delete" => delete = map.next_value::<Option<bool>>()?.unwrap_or(false),
                "provider" => provider = map.next_value()?,
                "outputs" => match resource_type.as_deref().map(KnownType::from_type_name) {
                    Some(Some(kind)) => outputs = map.next_value_seed(OutputsSeed(kind))?,
                    Some(None) => {
                        map.next_value::<IgnoredAny>()?;
                    }
                    None => deferred = Some(map.next_value()?),
                },
                // `inputs`, `parent`, `dependencies`, `propertyDependencies`,
                // `additionalSecretOutputs`, `initErrors`, …: never read.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let missing = |field: &str| -> A::Error {
            de::Error::custom(format_args!(
                "deployment.resources[{position}] has no `{field}`"
            ))
        };
        let urn = urn.ok_or_else(|| missing("urn"))?;
        let resource_type = resource_type.ok_or_else(|| missing("type"))?;
        let parts = split_urn(&urn);
        if self.sink.stack.is_none()
            && let Some((stack, project, _, _)) = parts
        {
            self.sink.stack = Some(stack.to_owned());
            self.sink.project = Some(project.to_owned());
        }
        let Some(kind) = KnownType::from_type_name(&resource_type) else {
            // Component resources and providers are not infrastructure of their own.
            if custom && !resource_type.starts_with("pulumi:") {
                self.sink.ignored += 1;
            }
            return Ok(());
        };
        if let Some(raw) = deferred {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            outputs = OutputsSeed(kind).deserialize(&mut de).map_err(|e| {
                let message = crate::classify(e).to_string();
                de::Error::custom(format_args!(
                    "deployment.resources[{position}].outputs: {message}"
                ))
            })?;
        }
        let name = parts
            .map_or(urn.as_str(), |(_, _, _, name)| name)
            .to_owned();
        let mut notes = Notes {
            address: &urn,
            warnings: &mut self.sink.warnings,
        };
        let id = notes.take("id", id);
        let outputs = notes
            .take("outputs", outputs)
            .unwrap_or_else(|| RawOutputs::empty(kind));
        let kind = outputs.convert(id, &mut notes);
        self.sink.resources.push(Resource {
            address: urn,
            module: None,
            resource_type,
            name,
            index: None,
            provider,
            status: InstanceStatus {
                tainted: false,
                deposed: delete.then(|| "pending delete".to_owned()),
            },
            kind,
        });
        Ok(())
    }
}

/// Reads a resource's `outputs` for a known type.
struct OutputsSeed(KnownType);

impl<'de> DeserializeSeed<'de> for OutputsSeed {
    type Value = Field<RawOutputs>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Ok(match self.0 {
            KnownType::AwsInstance => Field::deserialize(d)?.map(RawOutputs::AwsInstance),
            KnownType::AwsLaunchTemplate => {
                Field::deserialize(d)?.map(RawOutputs::AwsLaunchTemplate)
            }
            KnownType::AwsAutoscalingGroup => {
                Field::deserialize(d)?.map(RawOutputs::AwsAutoscalingGroup)
            }
            KnownType::GcpInstance => Field::deserialize(d)?.map(RawOutputs::GcpInstance),
            KnownType::AzureLinuxVm => Field::deserialize(d)?.map(RawOutputs::AzureLinuxVm),
            KnownType::AzureNativeVm => Field::deserialize(d)?.map(RawOutputs::AzureNativeVm),
        })
    }
}

/// The allow-listed outputs of one resource, as read.
enum RawOutputs {
    AwsInstance(AwsInstanceRaw),
    AwsLaunchTemplate(AwsLaunchTemplateRaw),
    AwsAutoscalingGroup(AwsAutoscalingGroupRaw),
    GcpInstance(GcpInstanceRaw),
    AzureLinuxVm(AzureLinuxVmRaw),
    AzureNativeVm(AzureNativeVmRaw),
}

impl RawOutputs {
    fn empty(kind: KnownType) -> Self {
        match kind {
            KnownType::AwsInstance => RawOutputs::AwsInstance(Default::default()),
            KnownType::AwsLaunchTemplate => RawOutputs::AwsLaunchTemplate(Default::default()),
            KnownType::AwsAutoscalingGroup => RawOutputs::AwsAutoscalingGroup(Default::default()),
            KnownType::GcpInstance => RawOutputs::GcpInstance(Default::default()),
            KnownType::AzureLinuxVm => RawOutputs::AzureLinuxVm(Default::default()),
            KnownType::AzureNativeVm => RawOutputs::AzureNativeVm(Default::default()),
        }
    }

    /// `id` is the resource's own id (the outputs of bridged providers repeat it).
    fn convert(self, id: Option<String>, notes: &mut Notes<'_>) -> ResourceKind {
        match self {
            RawOutputs::AwsInstance(r) => {
                let user_data = notes.take("userData", r.user_data).map(|d| d.0);
                let user_data_base64 = notes
                    .take("userDataBase64", r.user_data_base64)
                    .map(|d| d.0);
                ResourceKind::AwsInstance(AwsInstance {
                    id: id.or_else(|| notes.take("id", r.id)),
                    ami: notes.take("ami", r.ami),
                    instance_state: notes.take("instanceState", r.instance_state),
                    availability_zone: notes.take("availabilityZone", r.availability_zone),
                    private_ip: notes.take("privateIp", r.private_ip),
                    private_dns: notes.take("privateDns", r.private_dns),
                    public_ip: notes.take("publicIp", r.public_ip),
                    tags: notes.tags("tags", r.tags),
                    tags_all: notes.tags("tagsAll", r.tags_all),
                    user_data_sha1: user_data.or(user_data_base64),
                    launch_template: notes
                        .take("launchTemplate", r.launch_template)
                        .map(|t| t.convert(notes)),
                })
            }
            RawOutputs::AwsLaunchTemplate(r) => {
                ResourceKind::AwsLaunchTemplate(AwsLaunchTemplate {
                    id: id.or_else(|| notes.take("id", r.id)),
                    name: notes.take("name", r.name),
                    latest_version: notes.take("latestVersion", r.latest_version),
                    default_version: notes.take("defaultVersion", r.default_version),
                    image_id: notes.take("imageId", r.image_id),
                    tags: notes.tags("tags", r.tags),
                    tags_all: notes.tags("tagsAll", r.tags_all),
                    user_data_sha1: notes.take("userData", r.user_data).map(|d| d.0),
                })
            }
            RawOutputs::AwsAutoscalingGroup(r) => {
                let name = notes.take("name", r.name);
                ResourceKind::AwsAutoscalingGroup(AwsAutoscalingGroup {
                    // The group's id is its name.
                    name: name.or(id),
                    launch_template: notes
                        .take("launchTemplate", r.launch_template)
                        .map(|t| t.convert(notes)),
                    launch_configuration: notes.take("launchConfiguration", r.launch_configuration),
                    min_size: notes.take("minSize", r.min_size),
                    max_size: notes.take("maxSize", r.max_size),
                    desired_capacity: notes.take("desiredCapacity", r.desired_capacity),
                    tags: Vec::new(),
                })
            }
            RawOutputs::GcpInstance(r) => {
                let boot_image = notes
                    .take("bootDisk", r.boot_disk)
                    .and_then(|d| notes.take("bootDisk.initializeParams", d.initialize_params))
                    .and_then(|p| notes.take("bootDisk.initializeParams.image", p.image));
                let network_ip = notes
                    .first("networkInterfaces", r.network_interfaces)
                    .and_then(|n| notes.take("networkInterfaces.networkIp", n.network_ip));
                ResourceKind::GoogleComputeInstance(GoogleComputeInstance {
                    instance_id: notes.take("instanceId", r.instance_id),
                    name: notes.take("name", r.name),
                    project: notes.take("project", r.project),
                    zone: notes.take("zone", r.zone),
                    current_status: notes.take("currentStatus", r.current_status),
                    boot_image,
                    network_ip,
                    labels: notes.tags("labels", r.labels),
                    effective_labels: notes.tags("effectiveLabels", r.effective_labels),
                })
            }
            RawOutputs::AzureLinuxVm(r) => {
                let source_image_reference = notes
                    .take("sourceImageReference", r.source_image_reference)
                    .map(|i| i.convert("sourceImageReference", notes));
                ResourceKind::AzureLinuxVm(AzureLinuxVm {
                    id: id.or_else(|| notes.take("id", r.id)),
                    name: notes.take("name", r.name),
                    virtual_machine_id: notes.take("virtualMachineId", r.virtual_machine_id),
                    location: notes.take("location", r.location),
                    resource_group_name: notes.take("resourceGroupName", r.resource_group_name),
                    source_image_id: notes.take("sourceImageId", r.source_image_id),
                    source_image_reference,
                    private_ip_address: notes.take("privateIpAddress", r.private_ip_address),
                    public_ip_address: notes.take("publicIpAddress", r.public_ip_address),
                    tags: notes.tags("tags", r.tags),
                })
            }
            RawOutputs::AzureNativeVm(r) => {
                let reference = notes
                    .take("storageProfile", r.storage_profile)
                    .and_then(|p| notes.take("storageProfile.imageReference", p.image_reference));
                let (source_image_id, source_image_reference) = match reference {
                    Some(mut i) => {
                        let image_id = std::mem::take(&mut i.id);
                        let image_id = notes.take("storageProfile.imageReference.id", image_id);
                        let market = i.convert("storageProfile.imageReference", notes);
                        let market = (market.publisher.is_some() || market.offer.is_some())
                            .then_some(market);
                        (image_id, market)
                    }
                    None => (None, None),
                };
                ResourceKind::AzureLinuxVm(AzureLinuxVm {
                    id: id.or_else(|| notes.take("id", r.id)),
                    name: notes.take("name", r.name),
                    virtual_machine_id: notes.take("vmId", r.vm_id),
                    location: notes.take("location", r.location),
                    resource_group_name: None,
                    source_image_id,
                    source_image_reference,
                    // The VM's addresses are on its network interfaces, other resources.
                    private_ip_address: None,
                    public_ip_address: None,
                    tags: notes.tags("tags", r.tags),
                })
            }
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct AwsInstanceRaw {
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
    launch_template: Field<LaunchTemplateSpecRaw>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LaunchTemplateSpecRaw {
    id: Field<String>,
    name: Field<String>,
    version: Field<String>,
}

impl LaunchTemplateSpecRaw {
    fn convert(self, notes: &mut Notes<'_>) -> LaunchTemplateRef {
        LaunchTemplateRef {
            id: notes.take("launchTemplate.id", self.id),
            name: notes.take("launchTemplate.name", self.name),
            version: notes.take("launchTemplate.version", self.version),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct AwsLaunchTemplateRaw {
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
#[serde(default, rename_all = "camelCase")]
struct AwsAutoscalingGroupRaw {
    name: Field<String>,
    launch_template: Field<LaunchTemplateSpecRaw>,
    launch_configuration: Field<String>,
    min_size: Field<u64>,
    max_size: Field<u64>,
    desired_capacity: Field<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct GcpInstanceRaw {
    instance_id: Field<String>,
    name: Field<String>,
    project: Field<String>,
    zone: Field<String>,
    current_status: Field<String>,
    boot_disk: Field<BootDiskRaw>,
    network_interfaces: Field<Vec<Field<NetworkInterfaceRaw>>>,
    labels: Field<Tags>,
    effective_labels: Field<Tags>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct BootDiskRaw {
    initialize_params: Field<InitializeParamsRaw>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct InitializeParamsRaw {
    image: Field<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct NetworkInterfaceRaw {
    network_ip: Field<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct AzureLinuxVmRaw {
    id: Field<String>,
    name: Field<String>,
    virtual_machine_id: Field<String>,
    location: Field<String>,
    resource_group_name: Field<String>,
    source_image_id: Field<String>,
    source_image_reference: Field<ImageReferenceRaw>,
    private_ip_address: Field<String>,
    public_ip_address: Field<String>,
    tags: Field<Tags>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct AzureNativeVmRaw {
    id: Field<String>,
    name: Field<String>,
    vm_id: Field<String>,
    location: Field<String>,
    storage_profile: Field<StorageProfileRaw>,
    tags: Field<Tags>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct StorageProfileRaw {
    image_reference: Field<ImageReferenceRaw>,
}

/// `sourceImageReference` (azure) or `storageProfile.imageReference` (azure-native, which
/// also names a custom or gallery image by `id`).
#[derive(Deserialize, Default)]
#[serde(default)]
struct ImageReferenceRaw {
    id: Field<String>,
    publisher: Field<String>,
    offer: Field<String>,
    sku: Field<String>,
    version: Field<String>,
}

impl ImageReferenceRaw {
    fn convert(self, at: &str, notes: &mut Notes<'_>) -> AzureImageReference {
        AzureImageReference {
            publisher: notes.take(&format!("{at}.publisher"), self.publisher),
            offer: notes.take(&format!("{at}.offer"), self.offer),
            sku: notes.take(&format!("{at}.sku"), self.sku),
            version: notes.take(&format!("{at}.version"), self.version),
        }
    }
}

lenient_block!(
    AwsInstanceRaw,
    LaunchTemplateSpecRaw,
    AwsLaunchTemplateRaw,
    AwsAutoscalingGroupRaw,
    GcpInstanceRaw,
    BootDiskRaw,
    InitializeParamsRaw,
    NetworkInterfaceRaw,
    AzureLinuxVmRaw,
    AzureNativeVmRaw,
    StorageProfileRaw,
    ImageReferenceRaw,
);
