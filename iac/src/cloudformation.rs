//! AWS CloudFormation: a stack's resources (`aws cloudformation describe-stack-resources`, or
//! `list-stack-resources` for stacks of more than 100), with what `aws ec2 describe-instances`
//! says of its instances, reduced to the same [`StateSummary`] a Terraform state becomes.
//!
//! # The inputs
//! - Stack resources: `{"StackResources": [{"StackName", "StackId", "LogicalResourceId",
//!   "PhysicalResourceId", "ResourceType", "Timestamp", "ResourceStatus", "DriftInformation",
//!   …}]}`; `list-stack-resources` writes `StackResourceSummaries` with the same entries
//!   without `StackName`. Read: `StackName`, `LogicalResourceId` (the address),
//!   `PhysicalResourceId` (the key), `ResourceType`, `ResourceStatus`. The types read:
//!   `AWS::EC2::Instance` (an instance), `AWS::AutoScaling::AutoScalingGroup` (a group: its
//!   physical id is the group name its members carry in `aws:autoscaling:groupName`),
//!   `AWS::EC2::LaunchTemplate` (a template, by `lt-…` id, without its image: stack resources
//!   do not say it) and `AWS::AutoScaling::LaunchConfiguration` (a template, by name). A
//!   resource whose status is `DELETE_COMPLETE` is gone and skipped.
//! - Instances (optional): `{"Reservations": [{"Instances": [{"InstanceId", "ImageId",
//!   "PrivateIpAddress", "PublicIpAddress", "PrivateDnsName", "State": {"Name"},
//!   "Placement": {"AvailabilityZone"}, "Tags": [{"Key", "Value"}], …}]}]}`: the image and
//!   addresses of each instance of the stack, by instance id. An instance of the stack it does
//!   not describe is kept without them, and the summary's warnings count it.
//!
//! Everything else — resource descriptions, status reasons, template metadata, and every
//! other key of an instance (its network interfaces, block devices, key name, IAM profile) — is
//! skipped unread, as in the Terraform reader (see the crate docs).
//!
//! # No serial
//! Neither output carries a version or a write counter (`Timestamp` is per resource, the last
//! status change), so stacks are imported without a serial, like `terraform show -json`, and no
//! import is refused as stale.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use driftwatch_proto::text::count;

use crate::lenient::{Field, Notes, lenient_block};
use crate::tfstate::{
    AwsAutoscalingGroup, AwsInstance, AwsLaunchConfiguration, AwsLaunchTemplate, InstanceStatus,
    Resource, ResourceKind, StateKind, StateSummary,
};
use crate::{InputError, Looks, Tags, Warnings};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// The largest input read by default (as for Terraform states).
pub const DEFAULT_MAX_BYTES: u64 = crate::tfstate::DEFAULT_MAX_STATE_BYTES;

/// What driftwatch keeps of a stack's resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stack {
    /// `kind` [`StateKind::CloudFormation`], no serial, lineage or tool version.
    pub summary: StateSummary,
    /// `StackName` (absent from `list-stack-resources` output).
    pub name: Option<String>,
    /// Instances of the stack the instances file did not describe (or all of them, without
    /// one): kept without image or addresses.
    pub undescribed: u64,
}

/// What `describe-instances` says of each instance, by instance id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Instances {
    pub by_id: HashMap<String, Ec2Instance>,
    /// Attributes of unexpected shape; named, never their values.
    pub warnings: Vec<String>,
}

/// One instance's allow-listed facts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ec2Instance {
    pub image_id: Option<String>,
    pub state: Option<String>,
    pub availability_zone: Option<String>,
    pub private_ip: Option<String>,
    pub private_dns: Option<String>,
    pub public_ip: Option<String>,
    pub tags: Tags,
}

/// Why stack resources were not read.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(
        "not `aws cloudformation describe-stack-resources` output: no top-level \
         `StackResources`{}",
        looks_like(*.0)
    )]
    NotStackResources(Option<Looks>),
    #[error(
        "resources of two stacks, {first:?} and {second:?}: import one stack's resources at a \
         time (`describe-stack-resources --stack-name NAME`)"
    )]
    SeveralStacks { first: String, second: String },
}

/// Why an instances file was not read.
#[derive(Debug, thiserror::Error)]
pub enum InstancesError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(
        "not `aws ec2 describe-instances` output: no top-level `Reservations`{}",
        looks_like(*.0)
    )]
    NotInstances(Option<Looks>),
}

fn looks_like(looks: Option<Looks>) -> String {
    looks.map_or_else(String::new, |l| format!("; this looks like {l}"))
}

/// Parses stack resources of at most [`DEFAULT_MAX_BYTES`], with `instances` for their images.
pub fn parse_stack<R: Read>(reader: R, instances: Option<&Instances>) -> Result<Stack, StackError> {
    parse_stack_limited(reader, DEFAULT_MAX_BYTES, instances)
}

/// Parses stack resources, refusing them as soon as more than `max_bytes` have been read.
pub fn parse_stack_limited<R: Read>(
    reader: R,
    max_bytes: u64,
    instances: Option<&Instances>,
) -> Result<Stack, StackError> {
    let top = crate::deserialize_capped(reader, max_bytes, Object(TopVisitor))?;
    let Some(entries) = top.resources else {
        return Err(StackError::NotStackResources(top.looks));
    };
    let mut warnings = Warnings::default();
    let mut name: Option<String> = None;
    let mut resources = Vec::new();
    let mut ignored = 0;
    let mut undescribed = Vec::new();
    for (position, entry) in entries.into_iter().enumerate() {
        let at = format!("StackResources[{position}]");
        let mut notes = Notes {
            address: &at,
            warnings: &mut warnings,
        };
        let entry = match entry {
            Field::Value(entry) => entry,
            Field::Absent => continue,
            Field::Unexpected(kind) => {
                notes
                    .warnings
                    .push(format!("{at} is {kind}, not a resource; skipped"));
                continue;
            }
        };
        if let Some(stack) = notes.take("StackName", entry.stack_name) {
            match &name {
                None => name = Some(stack),
                Some(first) if *first != stack => {
                    return Err(StackError::SeveralStacks {
                        first: first.clone(),
                        second: stack,
                    });
                }
                Some(_) => {}
            }
        }
        let status = notes.take("ResourceStatus", entry.resource_status);
        let resource_type = notes.take("ResourceType", entry.resource_type);
        let logical = notes.take("LogicalResourceId", entry.logical_resource_id);
        let physical = notes.take("PhysicalResourceId", entry.physical_resource_id);
        if status.as_deref() == Some("DELETE_COMPLETE") {
            continue;
        }
        let (Some(resource_type), Some(logical)) = (resource_type, logical) else {
            notes.warnings.push(format!(
                "{at}: no `ResourceType` or `LogicalResourceId`; skipped"
            ));
            continue;
        };
        let kind = match resource_type.as_str() {
            "AWS::EC2::Instance" => {
                let described = physical.as_deref().and_then(|id| instances?.by_id.get(id));
                if described.is_none() {
                    undescribed.push(logical.clone());
                }
                let i = described.cloned().unwrap_or_default();
                ResourceKind::AwsInstance(AwsInstance {
                    id: physical,
                    ami: i.image_id,
                    instance_state: i.state,
                    availability_zone: i.availability_zone,
                    private_ip: i.private_ip,
                    private_dns: i.private_dns,
                    public_ip: i.public_ip,
                    tags_all: i.tags.clone(),
                    tags: i.tags,
                    user_data_sha1: None,
                    launch_template: None,
                })
            }
            "AWS::AutoScaling::AutoScalingGroup" => {
                ResourceKind::AwsAutoscalingGroup(AwsAutoscalingGroup {
                    name: physical,
                    ..Default::default()
                })
            }
            "AWS::EC2::LaunchTemplate" => ResourceKind::AwsLaunchTemplate(AwsLaunchTemplate {
                id: physical,
                ..Default::default()
            }),
            "AWS::AutoScaling::LaunchConfiguration" => {
                ResourceKind::AwsLaunchConfiguration(AwsLaunchConfiguration {
                    name: physical,
                    ..Default::default()
                })
            }
            _ => {
                ignored += 1;
                continue;
            }
        };
        resources.push(Resource {
            address: logical.clone(),
            module: None,
            resource_type,
            name: logical,
            index: None,
            provider: None,
            status: InstanceStatus::default(),
            kind,
        });
    }
    if !undescribed.is_empty() {
        let n = undescribed.len() as u64;
        let shown: Vec<&str> = undescribed.iter().take(10).map(String::as_str).collect();
        let more = if undescribed.len() > shown.len() {
            ", …"
        } else {
            ""
        };
        let why = if instances.is_some() {
            "not in the instances file (`aws ec2 describe-instances`)"
        } else {
            "not described: no instances file (`aws ec2 describe-instances`) was given"
        };
        warnings.push(format!(
            "{} of the stack {why}: stored without image or addresses ({}{more})",
            count(n, "instance", "instances"),
            shown.join(", ")
        ));
    }
    resources.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(Stack {
        summary: StateSummary {
            kind: StateKind::CloudFormation,
            terraform_version: None,
            serial: None,
            lineage: None,
            resources,
            ignored_instances: ignored,
            warnings: warnings.into_vec(),
        },
        name,
        undescribed: undescribed.len() as u64,
    })
}

/// Parses `describe-instances` output of at most [`DEFAULT_MAX_BYTES`].
pub fn parse_instances<R: Read>(reader: R) -> Result<Instances, InstancesError> {
    parse_instances_limited(reader, DEFAULT_MAX_BYTES)
}

/// Parses `describe-instances` output, refusing it as soon as more than `max_bytes` were read.
pub fn parse_instances_limited<R: Read>(
    reader: R,
    max_bytes: u64,
) -> Result<Instances, InstancesError> {
    let top = crate::deserialize_capped(reader, max_bytes, Object(InstancesTopVisitor))?;
    let Some(reservations) = top.reservations else {
        return Err(InstancesError::NotInstances(top.looks));
    };
    let mut warnings = Warnings::default();
    let mut by_id = HashMap::new();
    for (r, reservation) in reservations.into_iter().enumerate() {
        let at = format!("Reservations[{r}]");
        let mut notes = Notes {
            address: &at,
            warnings: &mut warnings,
        };
        let reservation = match reservation {
            Field::Value(reservation) => reservation,
            Field::Absent => continue,
            Field::Unexpected(kind) => {
                notes
                    .warnings
                    .push(format!("{at} is {kind}, not a reservation; skipped"));
                continue;
            }
        };
        for (i, instance) in notes
            .all("Instances", reservation.instances)
            .into_iter()
            .enumerate()
        {
            let at = format!("Reservations[{r}].Instances[{i}]");
            let mut notes = Notes {
                address: &at,
                warnings: &mut warnings,
            };
            let Some(id) = notes.take("InstanceId", instance.instance_id) else {
                continue;
            };
            let mut tags = Tags::new();
            for tag in notes.all("Tags", instance.tags) {
                if let Some(key) = notes.take("Tags.Key", tag.key) {
                    let value = notes.take("Tags.Value", tag.value).unwrap_or_default();
                    tags.insert(key, value);
                }
            }
            let described = Ec2Instance {
                image_id: notes.take("ImageId", instance.image_id),
                state: notes
                    .take("State", instance.state)
                    .and_then(|s| notes.take("State.Name", s.name)),
                availability_zone: notes
                    .take("Placement", instance.placement)
                    .and_then(|p| notes.take("Placement.AvailabilityZone", p.availability_zone)),
                private_ip: notes.take("PrivateIpAddress", instance.private_ip_address),
                private_dns: notes.take("PrivateDnsName", instance.private_dns_name),
                public_ip: notes.take("PublicIpAddress", instance.public_ip_address),
                tags,
            };
            by_id.insert(id, described);
        }
    }
    Ok(Instances {
        by_id,
        warnings: warnings.into_vec(),
    })
}

/// Reads a JSON object with the visitor `V`.
struct Object<V>(V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for Object<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_map(self.0)
    }
}

#[derive(Default)]
struct Top {
    resources: Option<Vec<Field<StackResourceRaw>>>,
    looks: Option<Looks>,
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`describe-stack-resources` output (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut top = Top::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "StackResources" | "StackResourceSummaries" => {
                    top.resources = Some(map.next_value_seed(Elements(
                        "`StackResources`: an array of stack resources",
                        std::marker::PhantomData,
                    ))?);
                }
                // `NextToken` (a page of `list-stack-resources`), and anything else.
                other => {
                    top.looks = top.looks.or(Looks::from_top_level_key(other));
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(top)
    }
}

#[derive(Default)]
struct InstancesTop {
    reservations: Option<Vec<Field<ReservationRaw>>>,
    looks: Option<Looks>,
}

struct InstancesTopVisitor;

impl<'de> Visitor<'de> for InstancesTopVisitor {
    type Value = InstancesTop;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`describe-instances` output (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InstancesTop, A::Error> {
        let mut top = InstancesTop::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == "Reservations" {
                top.reservations = Some(map.next_value_seed(Elements(
                    "`Reservations`: an array of reservations",
                    std::marker::PhantomData,
                ))?);
            } else {
                top.looks = top.looks.or(Looks::from_top_level_key(&key));
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(top)
    }
}

/// An array of lenient elements (`null` is an empty array): what is not an array is an error
/// naming what was expected.
struct Elements<T>(&'static str, std::marker::PhantomData<T>);

impl<'de, T: crate::lenient::FieldValue> DeserializeSeed<'de> for Elements<T> {
    type Value = Vec<Field<T>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: crate::lenient::FieldValue> Visitor<'de> for Elements<T> {
    type Value = Vec<Field<T>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<Field<T>>()? {
            out.push(item);
        }
        Ok(out)
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct StackResourceRaw {
    stack_name: Field<String>,
    logical_resource_id: Field<String>,
    physical_resource_id: Field<String>,
    resource_type: Field<String>,
    resource_status: Field<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct ReservationRaw {
    instances: Field<Vec<Field<InstanceRaw>>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct InstanceRaw {
    instance_id: Field<String>,
    image_id: Field<String>,
    private_ip_address: Field<String>,
    public_ip_address: Field<String>,
    private_dns_name: Field<String>,
    state: Field<StateRaw>,
    placement: Field<PlacementRaw>,
    tags: Field<Vec<Field<TagRaw>>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct StateRaw {
    name: Field<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct PlacementRaw {
    availability_zone: Field<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct TagRaw {
    key: Field<String>,
    value: Field<String>,
}

lenient_block!(
    StackResourceRaw,
    ReservationRaw,
    InstanceRaw,
    StateRaw,
    PlacementRaw,
    TagRaw,
);
