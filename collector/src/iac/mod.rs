//! Infrastructure as code on the fleet side, beside the store: which IaC resource owns each
//! reporting host ([`correlate`]) and the states the collector follows by itself
//! ([`sources`]). Reading states and manifests is `driftwatch_iac`'s.

pub mod correlate;
pub mod sources;

pub use driftwatch_iac::{import, packer, tfstate};

use driftwatch_proto::v1;

use crate::store::{Image, ManifestImport, Resource, StateImport};

/// A state import as received (after `import::validate_state`), as the store keeps it.
pub fn state_import(r: v1::ImportStateRequest) -> StateImport {
    StateImport {
        name: r.name,
        source: r.source,
        kind: r.kind,
        lineage: r.lineage,
        serial: r.serial,
        terraform_version: r.terraform_version,
        resources: r
            .resources
            .into_iter()
            .map(|r| Resource {
                address: r.address,
                resource_type: r.r#type,
                role: r.role,
                key: r.key,
                name: r.name,
                image_id: r.image_id,
                private_ip: r.private_ip,
                private_dns: r.private_dns,
                user_data_sha1: r.user_data_sha1,
                status: r.status,
                template: r.template,
                location: r.location,
            })
            .collect(),
        ignored_instances: r.ignored_instances,
        // Set by whoever takes the import in: the query service or a followed source.
        imported_by: String::new(),
    }
}

/// A manifest import as received (after `import::validate_manifest`), as the store keeps it,
/// and how many of its artifacts were skipped as not cloud images (qemu's `VM`, a docker
/// digest: a client older than this collector sends them).
pub fn manifest_import(r: v1::ImportManifestRequest) -> (ManifestImport, u64) {
    let sent = r.images.len() as u64;
    let import = ManifestImport {
        source: r.source,
        images: r
            .images
            .into_iter()
            .filter(|i| driftwatch_iac::image::is_cloud_image(&i.builder_type, &i.image_id))
            .map(|i| Image {
                region: i.region,
                image_id: i.image_id,
                build: i.build,
                builder_type: i.builder_type,
                run_uuid: i.run_uuid,
                build_time: i.build_time,
                baseline_id: i.baseline_id,
            })
            .collect(),
    };
    let skipped = sent - import.images.len() as u64;
    (import, skipped)
}
