//! Who this host is, as the collector indexes it (`HostIdentity` in the wire protocol): part of
//! shipping, what the stream's hello says. (`config` also reads an identity file here, to
//! validate it.)
//!
//! The host key comes from the first source that has one:
//!
//! 1. `collector.identity_file`: a JSON file shaped like cloud-init's instance-data.json
//!    (`v1.instance_id` required). Configured, so a bad one is a configuration error.
//! 2. `/run/cloud-init/instance-data.json` under the agent's root. Optional, so a malformed one
//!    is a warning and the next source is tried.
//! 3. The instance metadata service, when `collector.metadata_service` is on (EC2 IMDSv2: a
//!    token PUT, then GETs; short timeouts). It also fills what cloud-init does not know (the
//!    instance tags that tie a host to its autoscaling group and launch template, the SHA-1 of
//!    the user data that Terraform records), so it is asked even when cloud-init named the host.
//! 4. `machine-id:` and a keyed SHA-256 of `/etc/machine-id` under the root. The raw value is
//!    meant to be confidential (FORMATS.md, "Host identity"), so it never leaves the host; the
//!    keyed hash is sent in every hello (`machine_id_hash`), because several hosts with the
//!    same hash reveal an image baked with a populated machine-id.
//! 5. `hostname:` and the host name, with a warning: a host without any of the above (a bare
//!    container) still gets a name, if a weak one.
//!
//! The host name comes from the identity source, else `/etc/hostname` under the root, else the
//! kernel's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Where cloud-init writes its instance data (under the agent's root).
pub const CLOUD_INIT_INSTANCE_DATA: &str = "/run/cloud-init/instance-data.json";
/// The EC2 instance metadata service.
pub const IMDS_ADDR: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 169, 254)),
    80,
);
/// The key of the machine-id hash: fixed and driftwatch's own, so the hash cannot be matched
/// against other tools' hashes of the same id (systemd's `sd_id128_get_machine_app_specific`
/// follows the same idea).
const MACHINE_ID_KEY: &[u8] = b"driftwatch-machine-id-v1\0";
/// The instance tags asked of the metadata service: what ties an autoscaled instance to its
/// group and launch template, which Terraform state never lists.
pub const IMDS_TAGS: &[&str] = &[
    "aws:autoscaling:groupName",
    "aws:ec2launchtemplate:id",
    "aws:ec2launchtemplate:version",
];
/// Where the host key came from (`HostIdentity.source`).
pub mod source {
    pub const IDENTITY_FILE: &str = "identity_file";
    pub const CLOUD_INIT: &str = "cloud_init";
    pub const IMDS: &str = "imds";
    pub const MACHINE_ID: &str = "machine_id";
    pub const HOSTNAME: &str = "hostname";
}

/// The host's identity; the fields mirror `driftwatch.v1.HostIdentity` ("" when unknown).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostIdentity {
    /// The key the fleet is indexed by.
    pub host: String,
    /// Where `host` came from (see [`source`]).
    pub source: String,
    pub hostname: String,
    pub cloud: String,
    pub region: String,
    pub availability_zone: String,
    pub instance_id: String,
    /// The cloud image the instance runs (e.g. the AMI id).
    pub image_id: String,
    pub private_ip: String,
    /// Keyed SHA-256 of /etc/machine-id, hex.
    pub machine_id_hash: String,
    /// Hex SHA-1 of the instance's user data.
    pub user_data_sha1: String,
    pub tags: BTreeMap<String, String>,
    pub account_id: String,
}

impl HostIdentity {
    /// Fills every empty field from `other` (which never overrides what is known).
    fn fill_from(&mut self, other: HostIdentity) {
        let pairs = [
            (&mut self.hostname, other.hostname),
            (&mut self.cloud, other.cloud),
            (&mut self.region, other.region),
            (&mut self.availability_zone, other.availability_zone),
            (&mut self.instance_id, other.instance_id),
            (&mut self.image_id, other.image_id),
            (&mut self.private_ip, other.private_ip),
            (&mut self.user_data_sha1, other.user_data_sha1),
            (&mut self.account_id, other.account_id),
        ];
        for (mine, theirs) in pairs {
            if mine.is_empty() {
                *mine = theirs;
            }
        }
        for (k, v) in other.tags {
            self.tags.entry(k).or_insert(v);
        }
    }
}

/// An identity source that was configured and cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Malformed {
        path: PathBuf,
        #[source]
        source: InstanceDataError,
    },
}

/// Why a file is not usable instance data (cloud-init's shape, plus driftwatch's extension).
#[derive(Debug, thiserror::Error)]
pub enum InstanceDataError {
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("v1: not an object")]
    V1NotAnObject,
    #[error("v1: missing (not cloud-init instance data)")]
    NoV1,
    #[error("v1.{key}: expected a string, found {found}")]
    NotAString { key: &'static str, found: Value },
    #[error("v1.instance_id: missing or empty")]
    NoInstanceId,
    /// The `driftwatch` object does not have its documented shape.
    #[error("driftwatch: {0}")]
    Extension(#[source] serde_json::Error),
    #[error("driftwatch.user_data_sha1: expected 40 hex digits")]
    UserDataSha1,
}

/// What [`resolve`] looks at.
#[derive(Clone, Debug)]
pub struct Sources {
    /// The directory that stands for `/`.
    pub root: PathBuf,
    /// `collector.identity_file`.
    pub identity_file: Option<PathBuf>,
    /// `collector.metadata_service`: where to ask, if at all ([`IMDS_ADDR`] in production).
    pub metadata_service: Option<SocketAddr>,
}

/// The largest identity file (or cloud-init instance data) read: cloud-init's is a few KiB
/// plus the user data, which cloud providers cap at 16 KiB to 64 KiB.
const MAX_INSTANCE_DATA: u64 = 16 << 20;

/// Reads and checks a configured identity file (cloud-init's instance-data.json shape).
///
/// Besides cloud-init's keys, an identity file may carry a `driftwatch` object with what
/// cloud-init's instance data does not hold, for machines (and tests) without a metadata
/// service: `user_data_sha1` (string), `tags` (object of strings) and `image_id` (string: GCE's
/// instance data has no image), added to the identity.
pub fn read_identity_file(path: &Path) -> Result<HostIdentity, IdentityError> {
    let bytes = crate::fsutil::read_bounded(path, MAX_INSTANCE_DATA).map_err(|source| {
        IdentityError::Read {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let malformed = |source| IdentityError::Malformed {
        path: path.to_path_buf(),
        source,
    };
    let mut identity = parse_instance_data(&bytes).map_err(malformed)?;
    add_extension(&mut identity, &bytes).map_err(malformed)?;
    Ok(identity)
}

/// The identity file's `driftwatch` object (see [`read_identity_file`]).
fn add_extension(identity: &mut HostIdentity, bytes: &[u8]) -> Result<(), InstanceDataError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Extension {
        #[serde(default)]
        user_data_sha1: String,
        #[serde(default)]
        tags: BTreeMap<String, String>,
        #[serde(default)]
        image_id: String,
    }
    #[derive(serde::Deserialize)]
    struct File {
        driftwatch: Option<Extension>,
    }
    let file: File = serde_json::from_slice(bytes).map_err(InstanceDataError::Extension)?;
    if let Some(ext) = file.driftwatch {
        let sha1 = ext.user_data_sha1.trim().to_ascii_lowercase();
        if !sha1.is_empty() && (sha1.len() != 40 || !sha1.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(InstanceDataError::UserDataSha1);
        }
        if !sha1.is_empty() {
            identity.user_data_sha1 = sha1;
        }
        identity.tags.extend(ext.tags);
        let image = ext.image_id.trim();
        if !image.is_empty() {
            identity.image_id = image.to_owned();
        }
    }
    Ok(())
}

/// Parses cloud-init's instance-data.json: `v1.instance_id` (required), `v1.cloud_name`,
/// `v1.region`, `v1.availability_zone`, `v1.local_hostname`; from the raw datasource metadata
/// (`ds.meta_data`) what each cloud's datasource keeps there:
///
/// - EC2: `ami-id` (the image), `local-ipv4`, instance tags (cloud-init writes these keys with
///   dashes or, in some releases, underscores: both are read), and the account id from
///   `ds.dynamic.instance-identity.document`;
/// - Azure: the instance metadata service's answer under `imds`: `compute.vmId` (the instance
///   id Terraform records as `virtual_machine_id`; cloud-init's own `instance_id` is the
///   SMBIOS UUID, which may differ from it in byte order, so it stays the host key only),
///   `compute.storageProfile.imageReference` (a gallery or managed image's `id`, else
///   `publisher:offer:sku:version`), `compute.tagsList`, the first private IP;
/// - GCE: nothing more; the image comes from the metadata server (see [`resolve`]).
///
/// The `v1` keys are checked strictly (they are cloud-init's stable interface); the
/// datasource's raw data is taken when it has the expected shape and ignored otherwise.
pub fn parse_instance_data(bytes: &[u8]) -> Result<HostIdentity, InstanceDataError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(InstanceDataError::NotJson)?;
    let Some(top) = doc.as_object() else {
        return Err(InstanceDataError::NotAnObject);
    };
    let v1 = match top.get("v1") {
        Some(Value::Object(v1)) => v1,
        Some(_) => return Err(InstanceDataError::V1NotAnObject),
        None => return Err(InstanceDataError::NoV1),
    };
    // cloud-init writes each v1 key with underscores, older releases also with dashes; a
    // value it does not know is null.
    let v1_str = |key: &'static str| {
        let value = v1.get(key).or_else(|| v1.get(&key.replace('_', "-")));
        match value {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.trim().to_owned()),
            Some(other) => Err(InstanceDataError::NotAString {
                key,
                found: other.clone(),
            }),
        }
    };
    let instance_id = v1_str("instance_id")?;
    if instance_id.is_empty() {
        return Err(InstanceDataError::NoInstanceId);
    }
    let mut identity = HostIdentity {
        host: instance_id.clone(),
        instance_id,
        cloud: v1_str("cloud_name")?,
        region: v1_str("region")?,
        availability_zone: v1_str("availability_zone")?,
        hostname: v1_str("local_hostname")?,
        ..HostIdentity::default()
    };
    let ds = top.get("ds");
    let meta = ds.and_then(|d| d.get("meta_data"));
    // A datasource key, with dashes or with underscores.
    let key = |v: Option<&Value>, dashed: &str| -> Option<Value> {
        let v = v?;
        v.get(dashed)
            .or_else(|| v.get(dashed.replace('-', "_")))
            .cloned()
    };
    let text = |v: Option<Value>| {
        v.as_ref()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    identity.image_id = text(key(meta, "ami-id"));
    identity.private_ip = text(key(meta, "local-ipv4"));
    if let Some(Value::Object(tags)) = key(meta, "tags").and_then(|t| t.get("instance").cloned()) {
        for (k, v) in tags {
            if let Some(v) = v.as_str() {
                identity.tags.insert(k, v.to_owned());
            }
        }
    }
    let dynamic = key(ds, "dynamic");
    identity.account_id = text(
        key(dynamic.as_ref(), "instance-identity")
            .and_then(|d| d.get("document").cloned())
            .and_then(|d| d.get("accountId").cloned()),
    );
    if let Some(compute) = meta
        .and_then(|m| m.get("imds"))
        .and_then(|i| i.get("compute"))
    {
        azure_compute(&mut identity, compute);
        if let Some(ip) = meta
            .and_then(|m| m.get("imds"))
            .and_then(|i| i.get("network"))
            .and_then(azure_private_ip)
        {
            identity.private_ip = ip;
        }
    }
    Ok(identity)
}

/// What Azure's instance metadata (`compute`) says of the VM: its `vmId` as the instance id,
/// its image, tags, location and subscription. Fields of other shapes are ignored.
pub(super) fn azure_compute(identity: &mut HostIdentity, compute: &Value) {
    let text = |key: &str| str_at(compute, key);
    let vm_id = text("vmId");
    if !vm_id.is_empty() {
        identity.instance_id = vm_id;
    }
    if identity.region.is_empty() {
        identity.region = text("location");
    }
    if identity.account_id.is_empty() {
        identity.account_id = text("subscriptionId");
    }
    if let Some(image) = compute
        .get("storageProfile")
        .and_then(|p| p.get("imageReference"))
    {
        let part = |key: &str| str_at(image, key);
        let id = part("id");
        identity.image_id = if !id.is_empty() {
            id
        } else if !part("publisher").is_empty() {
            // `exactVersion` (newer API versions) is what runs; `version` may be `latest`.
            let version = Some(part("exactVersion"))
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| part("version"));
            format!(
                "{}:{}:{}:{version}",
                part("publisher"),
                part("offer"),
                part("sku")
            )
        } else {
            String::new()
        };
    }
    if let Some(Value::Array(tags)) = compute.get("tagsList") {
        for tag in tags {
            if let (Some(k), Some(v)) = (
                tag.get("name").and_then(Value::as_str),
                tag.get("value").and_then(Value::as_str),
            ) {
                identity.tags.insert(k.to_owned(), v.to_owned());
            }
        }
    }
}

/// A string field of a JSON object, trimmed; "" when absent or not a string.
fn str_at(object: &Value, key: &str) -> String {
    object
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The first private IPv4 address of Azure's instance metadata (`network`).
pub(super) fn azure_private_ip(network: &Value) -> Option<String> {
    network
        .get("interface")?
        .get(0)?
        .get("ipv4")?
        .get("ipAddress")?
        .get(0)?
        .get("privateIpAddress")?
        .as_str()
        .map(str::to_owned)
        .filter(|ip| !ip.is_empty())
}

/// cloud-init's placeholder when no cloud datasource was found: not an identity.
fn is_placeholder(identity: &HostIdentity) -> bool {
    identity.instance_id.starts_with("iid-datasource-none") || identity.cloud == "none"
}

/// Resolves the host's identity from the sources, in order (see the module docs). Fails only
/// when the configured identity file cannot be used; every optional source that fails is
/// logged and skipped.
pub async fn resolve(sources: &Sources) -> Result<HostIdentity, IdentityError> {
    let root = sources.root.clone();
    let mut identity = match &sources.identity_file {
        Some(path) => {
            let mut id = read_identity_file(path)?;
            id.source = source::IDENTITY_FILE.into();
            Some(id)
        }
        None => from_cloud_init(&root),
    };
    if let Some(addr) = sources.metadata_service {
        let cloud = identity
            .as_ref()
            .map(|id| id.cloud.clone())
            .unwrap_or_default();
        match query_metadata(addr, &cloud).await {
            Ok(imds) => match &mut identity {
                Some(id) if !id.instance_id.is_empty() && id.instance_id != imds.instance_id => {
                    tracing::warn!(
                        configured = %id.instance_id,
                        metadata_service = %imds.instance_id,
                        "The metadata service names another instance than the identity source; \
                         ignoring the metadata service."
                    );
                }
                Some(id) => id.fill_from(imds),
                None => identity = Some(imds),
            },
            Err(error) => tracing::warn!(%addr, %error, "Instance metadata service unavailable."),
        }
    }
    let machine_id_hash = machine_id_hash(&root);
    let mut identity = match identity {
        Some(id) => id,
        None => match &machine_id_hash {
            Some(hash) => HostIdentity {
                host: format!("machine-id:{hash}"),
                source: source::MACHINE_ID.into(),
                ..HostIdentity::default()
            },
            None => HostIdentity {
                source: source::HOSTNAME.into(),
                ..HostIdentity::default()
            },
        },
    };
    identity.machine_id_hash = machine_id_hash.unwrap_or_default();
    if identity.hostname.is_empty() {
        identity.hostname = hostname(&root);
    }
    if identity.host.is_empty() {
        tracing::warn!(
            hostname = %identity.hostname,
            "No instance id and no /etc/machine-id: naming this host by its host name, which \
             other hosts may share."
        );
        identity.host = format!("hostname:{}", identity.hostname);
    }
    Ok(identity)
}

/// cloud-init's instance data under the root, if usable.
fn from_cloud_init(root: &Path) -> Option<HostIdentity> {
    let path = crate::fsutil::host_path(root, Path::new(CLOUD_INIT_INSTANCE_DATA));
    let bytes = match crate::fsutil::read_bounded(&path, MAX_INSTANCE_DATA) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "Cannot read cloud-init's instance data; trying the next identity source.");
            return None;
        }
    };
    match parse_instance_data(&bytes) {
        Ok(id) if is_placeholder(&id) => None,
        Ok(mut id) => {
            id.source = source::CLOUD_INIT.into();
            Some(id)
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "Malformed cloud-init instance data; trying the next identity source.");
            None
        }
    }
}

/// The keyed hash of `/etc/machine-id` under the root, hex; `None` when it is missing, empty
/// or not yet initialized (systemd's first-boot marker).
pub fn machine_id_hash(root: &Path) -> Option<String> {
    let path = crate::fsutil::host_path(root, Path::new("/etc/machine-id"));
    let text = std::fs::read_to_string(path).ok()?;
    let id = text.trim();
    if id.is_empty() || id == "uninitialized" {
        return None;
    }
    let mut hasher = Sha256::new();
    hasher.update(MACHINE_ID_KEY);
    hasher.update(id.as_bytes());
    Some(hex::encode(hasher.finalize()))
}

/// `/etc/hostname` under the root, else the kernel's host name.
pub fn hostname(root: &Path) -> String {
    let etc = crate::fsutil::host_path(root, Path::new("/etc/hostname"));
    let from_file = std::fs::read_to_string(etc).ok().and_then(|t| {
        // The first non-comment line, as hostname(5) says.
        t.lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
    });
    from_file.unwrap_or_else(kernel_hostname)
}

/// The kernel's host name (also the baseline header's `builder_host`). "" when unreadable.
pub fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): changes on every boot, so the collector
/// can tell a reboot from a reconnect. "" when unreadable.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

mod imds;
use imds::query_metadata;

#[cfg(test)]
mod tests;
