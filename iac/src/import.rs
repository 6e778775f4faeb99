//! Imports: parsed states and manifests turned into the `driftwatch.v1` import requests (on
//! the operator's machine, so a state's secrets never leave it), and the checks the collector
//! makes of a request before storing it (any gRPC client can send one).

use driftwatch_proto::text::count;
use driftwatch_proto::v1;

use super::packer::PackerManifest;
use super::tfstate::{ResourceKind, StateSummary};

/// Longest state name.
pub const MAX_NAME_LEN: usize = 200;
/// Most resources (or images) one import may carry.
pub const MAX_IMPORT_ITEMS: usize = 1_000_000;

/// Resource roles (`IacResource.role`).
pub mod role {
    pub const INSTANCE: &str = "instance";
    pub const GROUP: &str = "group";
    pub const TEMPLATE: &str = "template";
}

/// The request importing `summary` under `name`.
pub fn state_request(summary: StateSummary, name: &str, source: &str) -> v1::ImportStateRequest {
    let resources = summary
        .resources
        .into_iter()
        // A deposed object is on its way out (create_before_destroy): the current one counts.
        .filter(|r| r.status.is_current())
        .map(|r| {
            let mut out = v1::IacResource {
                address: r.address,
                r#type: r.resource_type,
                ..Default::default()
            };
            match r.kind {
                ResourceKind::AwsInstance(i) => {
                    out.role = role::INSTANCE.into();
                    out.key = i.id.unwrap_or_default();
                    out.image_id = i.ami.unwrap_or_default();
                    out.private_ip = i.private_ip.unwrap_or_default();
                    out.private_dns = i.private_dns.unwrap_or_default();
                    out.user_data_sha1 = i.user_data_sha1.unwrap_or_default();
                    out.status = i.instance_state.unwrap_or_default();
                    out.location = i.availability_zone.unwrap_or_default();
                    out.name = i
                        .tags
                        .get("Name")
                        .or_else(|| i.tags_all.get("Name"))
                        .cloned()
                        .unwrap_or_default();
                    out.template = i
                        .launch_template
                        .and_then(|t| t.id.or(t.name))
                        .unwrap_or_default();
                }
                ResourceKind::AwsLaunchTemplate(t) => {
                    out.role = role::TEMPLATE.into();
                    out.key = t.id.unwrap_or_default();
                    out.name = t.name.unwrap_or_default();
                    out.image_id = t.image_id.unwrap_or_default();
                    out.user_data_sha1 = t.user_data_sha1.unwrap_or_default();
                }
                ResourceKind::AwsLaunchConfiguration(c) => {
                    // A group template like a launch template; its groups name it by name.
                    out.role = role::TEMPLATE.into();
                    out.key = c.name.unwrap_or_default();
                    out.name = out.key.clone();
                    out.image_id = c.image_id.unwrap_or_default();
                    out.user_data_sha1 = c.user_data_sha1.unwrap_or_default();
                }
                ResourceKind::AwsAutoscalingGroup(g) => {
                    out.role = role::GROUP.into();
                    out.key = g.name.unwrap_or_default();
                    out.name = out.key.clone();
                    out.template = g
                        .launch_template
                        .and_then(|t| t.id.or(t.name))
                        .or(g.launch_configuration)
                        .unwrap_or_default();
                }
                ResourceKind::GoogleComputeInstance(g) => {
                    out.role = role::INSTANCE.into();
                    out.key = g.instance_id.unwrap_or_default();
                    out.name = g.name.unwrap_or_default();
                    out.image_id = g.boot_image.unwrap_or_default();
                    out.private_ip = g.network_ip.unwrap_or_default();
                    out.status = g.current_status.unwrap_or_default();
                    out.location = g.zone.unwrap_or_default();
                }
                ResourceKind::AzureLinuxVm(a) => {
                    out.role = role::INSTANCE.into();
                    out.key = a.virtual_machine_id.unwrap_or_default();
                    out.name = a.name.unwrap_or_default();
                    out.image_id = a
                        .source_image_id
                        .or_else(|| a.source_image_reference.map(|r| r.to_string()))
                        .unwrap_or_default();
                    out.private_ip = a.private_ip_address.unwrap_or_default();
                    out.location = a.location.unwrap_or_default();
                }
            }
            out
        })
        .collect();
    v1::ImportStateRequest {
        name: name.to_owned(),
        source: source.to_owned(),
        kind: summary.kind.as_str().into(),
        lineage: summary.lineage.unwrap_or_default(),
        serial: summary.serial,
        terraform_version: summary.terraform_version.unwrap_or_default(),
        resources,
        ignored_instances: summary.ignored_instances,
    }
}

/// What an import of a state stored, for people: `imported state "prod", serial 42: 12
/// resources (3 replaced)`; a state without a serial (`terraform show -json`, Pulumi and
/// CloudFormation stacks carry none) says so, and a stack says what it is (`imported pulumi
/// stack "web/dev", no serial: …`).
pub fn state_summary(
    kind: &str,
    name: &str,
    serial: Option<u64>,
    stored: u64,
    replaced: u64,
) -> String {
    format!(
        "imported {} {name:?}, {}: {} ({replaced} replaced)",
        kind_noun(kind),
        serial.map_or_else(|| "no serial".to_owned(), |s| format!("serial {s}")),
        count(stored, "resource", "resources"),
    )
}

/// What a stored state of `kind` is, for people: `state`, `pulumi stack`, `cloudformation
/// stack`.
pub fn kind_noun(kind: &str) -> &'static str {
    match kind {
        "pulumi" => "pulumi stack",
        "cloudformation" => "cloudformation stack",
        _ => "state",
    }
}

/// Why a stored state of `kind` has no serial, for people; `None` for kinds that have one.
pub fn why_no_serial(kind: &str) -> Option<&'static str> {
    match kind {
        "show_json" => Some("a `terraform show -json` export"),
        "pulumi" => Some("a Pulumi stack export has none"),
        "cloudformation" => Some("CloudFormation stack resources have none"),
        _ => None,
    }
}

/// The name a state is stored under when none is given: its lineage (stable across writes),
/// else the file's name.
pub fn default_state_name(summary: &StateSummary, source: &str) -> String {
    match &summary.lineage {
        Some(lineage) if !lineage.is_empty() => lineage.clone(),
        _ => std::path::Path::new(source)
            .file_name()
            .map_or_else(|| source.to_owned(), |n| n.to_string_lossy().into_owned()),
    }
}

/// Why a manifest import was refused before sending.
#[derive(Debug, thiserror::Error)]
pub enum ManifestImportError {
    #[error(
        "build {build:?} (index {index}) names baseline {named} in custom_data, but the \
         baseline file given is {given}; drop --baseline or fix the manifest"
    )]
    BaselineConflict {
        build: String,
        index: usize,
        named: String,
        given: String,
    },
    #[error("the manifest has no builds with images to import")]
    NoImages,
    /// Every build's artifact is something other than a cloud image (qemu's `VM`, a docker
    /// digest): nothing a host can report.
    #[error(
        "the manifest has no cloud images to import (AMIs, GCE images, Azure images): its {0} \
         of other builders (qemu, docker, ...) produce no image a host reports"
    )]
    NoCloudImages(String),
}

/// The request importing a manifest's images. `baseline` (the id of the baseline file given
/// on import) is linked to the builds of the manifest's last run that do not name one.
pub fn manifest_request(
    manifest: &PackerManifest,
    source: &str,
    baseline: Option<&str>,
) -> Result<v1::ImportManifestRequest, ManifestImportError> {
    let last_run = manifest.last_run_uuid.as_deref();
    let mut images = Vec::new();
    for build in &manifest.builds {
        let in_last_run = match (last_run, build.packer_run_uuid.as_deref()) {
            (Some(last), Some(run)) => last == run,
            // Without run ids, the last build entry is the newest.
            _ => build.index + 1 == manifest.builds.len(),
        };
        let baseline_id = match (build.baseline_id(), baseline) {
            (Some(named), Some(given)) if in_last_run && named != given => {
                return Err(ManifestImportError::BaselineConflict {
                    build: build.name.clone(),
                    index: build.index,
                    named: named.to_owned(),
                    given: given.to_owned(),
                });
            }
            (Some(named), _) => named.to_owned(),
            (None, Some(given)) if in_last_run => given.to_owned(),
            (None, _) => String::new(),
        };
        for artifact in build.cloud_images() {
            images.push(v1::PackerImage {
                region: artifact.region.clone().unwrap_or_default(),
                image_id: artifact.image_id.clone(),
                build: build.name.clone(),
                builder_type: build.builder_type.clone(),
                run_uuid: build.packer_run_uuid.clone().unwrap_or_default(),
                build_time: build.build_time.unwrap_or(0),
                baseline_id: baseline_id.clone(),
            });
        }
    }
    if images.is_empty() {
        let others = manifest.not_cloud_images().count() as u64;
        if others > 0 {
            return Err(ManifestImportError::NoCloudImages(count(
                others, "build", "builds",
            )));
        }
        return Err(ManifestImportError::NoImages);
    }
    Ok(v1::ImportManifestRequest {
        source: source.to_owned(),
        images,
    })
}

/// Why an import request is refused as received.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the state needs a name")]
    NoName,
    #[error("{field} is {len} bytes long (limit {max})")]
    TooLong {
        field: Field,
        len: usize,
        max: usize,
    },
    #[error("{field} contains control characters")]
    ControlCharacters { field: Field },
    #[error("unknown state kind {0:?} (expected state, show_json, pulumi or cloudformation)")]
    UnknownKind(String),
    #[error("{count} {what} in one import (limit {MAX_IMPORT_ITEMS})")]
    TooMany { what: &'static str, count: usize },
    #[error("resource {index}: empty address")]
    EmptyAddress { index: usize },
    #[error(
        "resource {index} ({address:?}): unknown role {role:?} (expected instance, group or \
         template)"
    )]
    UnknownRole {
        index: usize,
        address: String,
        role: String,
    },
    #[error("resource {index} ({address:?}): the address appears twice")]
    DuplicateAddress { index: usize, address: String },
    #[error("the manifest import has no images")]
    NoImages,
    #[error("image {index}: empty image id")]
    EmptyImageId { index: usize },
}

/// A text field of an import request, as a refusal names it.
#[derive(Debug)]
pub enum Field {
    StateName,
    Source,
    Address { index: usize, address: String },
    ImageId { index: usize },
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::StateName => f.write_str("the state name"),
            Field::Source => f.write_str("the source"),
            Field::Address { index, address } => {
                write!(f, "resource {index} ({address:?}): the address")
            }
            Field::ImageId { index } => write!(f, "image {index}: the image id"),
        }
    }
}

fn check_text(field: impl FnOnce() -> Field, value: &str, max: usize) -> Result<(), RequestError> {
    if value.len() > max {
        return Err(RequestError::TooLong {
            field: field(),
            len: value.len(),
            max,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(RequestError::ControlCharacters { field: field() });
    }
    Ok(())
}

/// Checks a state import as received.
pub fn validate_state(r: &v1::ImportStateRequest) -> Result<(), RequestError> {
    if r.name.trim().is_empty() {
        return Err(RequestError::NoName);
    }
    check_text(|| Field::StateName, &r.name, MAX_NAME_LEN)?;
    check_text(|| Field::Source, &r.source, 4096)?;
    if !matches!(
        r.kind.as_str(),
        "state" | "show_json" | "pulumi" | "cloudformation"
    ) {
        return Err(RequestError::UnknownKind(r.kind.clone()));
    }
    if r.resources.len() > MAX_IMPORT_ITEMS {
        return Err(RequestError::TooMany {
            what: "resources",
            count: r.resources.len(),
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(r.resources.len());
    for (index, res) in r.resources.iter().enumerate() {
        let address = || res.address.clone();
        if res.address.is_empty() {
            return Err(RequestError::EmptyAddress { index });
        }
        check_text(
            || Field::Address {
                index,
                address: address(),
            },
            &res.address,
            4096,
        )?;
        if !matches!(
            res.role.as_str(),
            role::INSTANCE | role::GROUP | role::TEMPLATE
        ) {
            return Err(RequestError::UnknownRole {
                index,
                address: address(),
                role: res.role.clone(),
            });
        }
        if !seen.insert(res.address.as_str()) {
            return Err(RequestError::DuplicateAddress {
                index,
                address: address(),
            });
        }
    }
    Ok(())
}

/// Checks a manifest import as received.
pub fn validate_manifest(r: &v1::ImportManifestRequest) -> Result<(), RequestError> {
    check_text(|| Field::Source, &r.source, 4096)?;
    if r.images.is_empty() {
        return Err(RequestError::NoImages);
    }
    if r.images.len() > MAX_IMPORT_ITEMS {
        return Err(RequestError::TooMany {
            what: "images",
            count: r.images.len(),
        });
    }
    for (index, image) in r.images.iter().enumerate() {
        if image.image_id.is_empty() {
            return Err(RequestError::EmptyImageId { index });
        }
        check_text(|| Field::ImageId { index }, &image.image_id, 1024)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{packer, tfstate};

    fn fixture_state() -> StateSummary {
        tfstate::parse_state(&include_bytes!("testdata/prod-web.tfstate")[..]).unwrap()
    }

    #[test]
    fn a_state_becomes_resources_by_role() {
        let req = state_request(fixture_state(), "prod-web", "prod-web.tfstate");
        validate_state(&req).unwrap();
        assert_eq!(req.kind, "state");
        assert_eq!(req.serial, Some(42));
        let find = |address: &str| {
            req.resources
                .iter()
                .find(|r| r.address == address)
                .unwrap_or_else(|| panic!("{address} missing"))
        };
        let app = find(r#"module.web.aws_instance.app["b"]"#);
        assert_eq!(app.role, "instance");
        assert_eq!(app.key, "i-0f66f66a66b66c661");
        let asg = find("aws_autoscaling_group.web");
        assert_eq!((asg.role.as_str(), asg.key.as_str()), ("group", "web-asg"));
        assert!(!asg.template.is_empty());
        let lt = find("aws_launch_template.web");
        assert_eq!(lt.role, "template");
        assert_eq!(lt.key, "lt-0a1b2c3d4e5f67890");
        assert!(!lt.image_id.is_empty());
        assert!(find("module.gcp.google_compute_instance.vm").key.len() > 3);
        assert!(
            !find("module.azure.azurerm_linux_virtual_machine.vm")
                .key
                .is_empty()
        );
        // Data sources and other types are not resources here.
        assert!(
            req.resources
                .iter()
                .all(|r| !r.r#type.starts_with("random"))
        );
    }

    /// A group built from a launch configuration names it as its template; the configuration
    /// is a template with its image and user data (issue 15).
    #[test]
    fn launch_configurations_are_group_templates() {
        let state = r#"{"version": 4, "serial": 1, "lineage": "l", "resources": [
          {"mode": "managed", "type": "aws_launch_configuration", "name": "old",
           "instances": [{"attributes": {"id": "old-lc-1", "name": "old-lc-1",
             "image_id": "ami-old", "user_data": "07c0f3b9d9e2ad71e6a5f8ead981296085701773",
             "root_block_device": [{"kms_key_id": "SECRET"}]}}]},
          {"mode": "managed", "type": "aws_autoscaling_group", "name": "old",
           "instances": [{"attributes": {"id": "old-asg", "name": "old-asg",
             "launch_configuration": "old-lc-1"}}]}]}"#;
        let summary = tfstate::parse_state(state.as_bytes()).unwrap();
        let req = state_request(summary, "s", "s.tfstate");
        validate_state(&req).unwrap();
        let find = |ty: &str| req.resources.iter().find(|r| r.r#type == ty).unwrap();
        let lc = find("aws_launch_configuration");
        assert_eq!(
            (lc.role.as_str(), lc.key.as_str(), lc.image_id.as_str()),
            ("template", "old-lc-1", "ami-old")
        );
        assert_eq!(
            lc.user_data_sha1,
            "07c0f3b9d9e2ad71e6a5f8ead981296085701773"
        );
        let asg = find("aws_autoscaling_group");
        assert_eq!(
            (asg.role.as_str(), asg.template.as_str()),
            ("group", "old-lc-1")
        );
    }

    /// qemu's `VM` and a docker digest are not cloud images: not imported, and two qemu builds
    /// no longer collapse into one catalog row (issue 15).
    #[test]
    fn artifacts_that_are_not_cloud_images_are_skipped() {
        let manifest = r#"{"builds": [
          {"name": "a", "builder_type": "qemu", "artifact_id": "VM", "packer_run_uuid": "r"},
          {"name": "b", "builder_type": "qemu", "artifact_id": "VM", "packer_run_uuid": "r"},
          {"name": "d", "builder_type": "docker", "artifact_id": "sha256:9b2a", "packer_run_uuid": "r"},
          {"name": "g", "builder_type": "googlecompute", "artifact_id": "web-1", "packer_run_uuid": "r"}
        ], "last_run_uuid": "r"}"#;
        let m = packer::parse_manifest(manifest.as_bytes()).unwrap();
        let req = manifest_request(&m, "m.json", None).unwrap();
        let ids: Vec<&str> = req.images.iter().map(|i| i.image_id.as_str()).collect();
        assert_eq!(ids, ["web-1"]);
        let skipped: Vec<&str> = m.not_cloud_images().map(|b| b.name.as_str()).collect();
        assert_eq!(skipped, ["a", "b", "d"]);
        let only_local = r#"{"builds": [
          {"name": "a", "builder_type": "qemu", "artifact_id": "VM"}]}"#;
        let m = packer::parse_manifest(only_local.as_bytes()).unwrap();
        let err = manifest_request(&m, "m.json", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no cloud images") && err.contains("1 build "),
            "{err}"
        );
    }

    #[test]
    fn summaries_say_the_serial_or_that_there_is_none() {
        assert_eq!(
            state_summary("state", "web", Some(42), 1, 0),
            "imported state \"web\", serial 42: 1 resource (0 replaced)"
        );
        assert_eq!(
            state_summary("show_json", "plan", None, 3, 1),
            "imported state \"plan\", no serial: 3 resources (1 replaced)"
        );
        assert_eq!(
            state_summary("pulumi", "web/dev", None, 2, 0),
            "imported pulumi stack \"web/dev\", no serial: 2 resources (0 replaced)"
        );
        assert_eq!(
            state_summary("cloudformation", "web", None, 1, 1),
            "imported cloudformation stack \"web\", no serial: 1 resource (1 replaced)"
        );
    }

    #[test]
    fn manifests_link_the_given_baseline_to_the_last_run_only() {
        let manifest =
            packer::parse_manifest(&include_bytes!("testdata/packer-manifest.json")[..]).unwrap();
        let req = manifest_request(&manifest, "m.json", None).unwrap();
        validate_manifest(&req).unwrap();
        let ami = |id: &str, region: &str| {
            req.images
                .iter()
                .find(|i| i.image_id == id && i.region == region)
                .unwrap()
                .clone()
        };
        assert_eq!(
            ami("ami-0aa11bb22cc33dd44", "eu-west-1").baseline_id,
            "bl-web-2024-05-01"
        );
        assert_eq!(
            ami("ami-0d99e88f77a66b55c", "us-east-1").baseline_id,
            "bl-web-2024-06-01"
        );
        // The last run's web build names its baseline: a different file is a conflict.
        let err = manifest_request(&manifest, "m.json", Some("other")).unwrap_err();
        assert!(err.to_string().contains("bl-web-2024-06-01"), "{err}");
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let mut req = state_request(fixture_state(), "prod", "x");
        req.resources[1].address = req.resources[0].address.clone();
        assert!(
            validate_state(&req)
                .unwrap_err()
                .to_string()
                .contains("appears twice")
        );
        req.name = " ".into();
        assert!(
            validate_state(&req)
                .unwrap_err()
                .to_string()
                .contains("name")
        );
        let bad_role = v1::ImportStateRequest {
            name: "n".into(),
            kind: "state".into(),
            resources: vec![v1::IacResource {
                address: "a.b".into(),
                role: "vm".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(
            validate_state(&bad_role)
                .unwrap_err()
                .to_string()
                .contains("role")
        );
        assert!(validate_manifest(&v1::ImportManifestRequest::default()).is_err());
    }
}
