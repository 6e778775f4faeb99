//! Property test: any stack export keeps the allow-list and nothing else.
//!
//! A generated document has resources of every type read and of others (providers, components,
//! types not read), some pending deletion, some with `outputs` before `type`. Every value that
//! is not allow-listed holds the case's marker (`SECRET-<n>`): `inputs`, unknown outputs and
//! unknown keys inside allow-listed objects, resource keys that are never read, the
//! `secrets_providers` state, `pending_operations`, unknown top-level keys, every output of
//! types not read; and allow-listed outputs that Pulumi marks secret (`ciphertext` or
//! `plaintext`), that have a shape not read, or that are user data (of which only the SHA-1
//! may survive). The marker must appear in neither the parsed export nor the import request.

use base64::Engine as _;
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;
use crate::import;

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_export_keeps_the_allow_list_and_nothing_else(
        marker in 0u64..u64::MAX,
        resources in vec((0usize..TYPES.len(), any::<bool>(), any::<bool>(), vec(any::<u8>(), 96)), 0..12),
        pending in any::<bool>(),
    ) {
        let marker = format!("SECRET-{marker:x}");
        let mut expected = Vec::new();
        let mut items = vec![json!({
            "urn": "urn:pulumi:st::proj::pulumi:pulumi:Stack::proj-st",
            "custom": false, "type": "pulumi:pulumi:Stack",
            "outputs": {"out": secret(&marker, true)},
        })];
        for (n, (t, delete, out_of_order, choices)) in resources.iter().enumerate() {
            let (ty, fields) = TYPES[*t];
            let urn = format!("urn:pulumi:st::proj::{ty}::r{n}");
            let mut choices = Choices(choices.iter().copied().cycle());
            let outputs = outputs(fields, &marker, &mut choices);
            let mut resource = Map::new();
            if *out_of_order {
                resource.insert("outputs".into(), outputs.clone());
            }
            resource.insert("urn".into(), json!(urn));
            resource.insert("custom".into(), json!(!ty.starts_with("my:")));
            resource.insert("delete".into(), json!(delete));
            resource.insert("id".into(), json!(format!("id-{n}")));
            resource.insert("type".into(), json!(ty));
            resource.insert("inputs".into(), json!({"userData": marker, "password": secret(&marker, false)}));
            if !*out_of_order {
                resource.insert("outputs".into(), outputs);
            }
            resource.insert("propertyDependencies".into(), json!({marker.clone(): [marker]}));
            resource.insert("initErrors".into(), json!([marker]));
            resource.insert("sourcePosition".into(), json!(format!("project:///{marker}.ts")));
            items.push(Value::Object(resource));
            if !fields.is_empty() {
                expected.push((urn, *delete));
            }
        }
        let mut deployment = json!({
            "manifest": {"time": "2024-06-01T10:00:00Z", "magic": marker, "version": "v3.117.0",
                         "plugins": [{"name": marker}]},
            "secrets_providers": {"type": "passphrase", "state": {"salt": marker}},
            "metadata": {"integrityErrorMetadata": {"message": marker}},
            "resources": items,
        });
        if pending {
            deployment["pending_operations"] =
                json!([{"resource": {"urn": "urn:pulumi:st::proj::aws:ec2/instance:Instance::p",
                                     "type": "aws:ec2/instance:Instance",
                                     "outputs": {"ami": marker}}, "type": "creating"}]);
        }
        let doc = json!({"version": 3, "features": [marker], "deployment": deployment});
        let text = serde_json::to_string_pretty(&doc).unwrap();

        let export = parse_export(text.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let request = import::state_request(export.summary.clone(), "proj/st", "st.json");
        import::validate_state(&request).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let rendered = format!("{export:?}\n{request:?}");
        prop_assert!(!rendered.contains(&marker), "{marker} survived:\n{rendered}\n{text}");
        prop_assert!(!rendered.contains("1b47061264138c4ac30d75fd1eb44270"));

        // Every resource of a type read is there, by URN; only current ones are sent.
        let kept: Vec<&str> = export.summary.resources.iter().map(|r| r.address.as_str()).collect();
        let mut want: Vec<&str> = expected.iter().map(|(u, _)| u.as_str()).collect();
        want.sort_unstable();
        prop_assert_eq!(kept, want);
        let sent: Vec<&str> = request.resources.iter().map(|r| r.address.as_str()).collect();
        let current: Vec<&str> = {
            let mut c: Vec<&str> = expected.iter().filter(|(_, d)| !d).map(|(u, _)| u.as_str()).collect();
            c.sort_unstable();
            c
        };
        prop_assert_eq!(sent, current);
        prop_assert_eq!(export.default_name(), Some("proj/st".to_owned()));
    }
}

/// What an allow-listed leaf holds.
#[derive(Clone, Copy)]
enum Leaf {
    Str,
    Num,
    Tags,
    /// Clear-text user data: only its SHA-1 may survive.
    UserData,
    /// Base64 user data: the same.
    UserData64,
}

/// Types read, with their allow-listed outputs (`a.b` nests objects, `a[].b` an array of
/// objects); types with no outputs listed are not read.
type TypeSpec = (&'static str, &'static [(&'static str, Leaf)]);

const LAUNCH_TEMPLATE_REF: [(&str, Leaf); 3] = [
    ("launchTemplate.id", Leaf::Str),
    ("launchTemplate.name", Leaf::Str),
    ("launchTemplate.version", Leaf::Str),
];

const TYPES: &[TypeSpec] = &[
    (
        "aws:ec2/instance:Instance",
        &[
            ("id", Leaf::Str),
            ("ami", Leaf::Str),
            ("instanceState", Leaf::Str),
            ("availabilityZone", Leaf::Str),
            ("privateIp", Leaf::Str),
            ("privateDns", Leaf::Str),
            ("publicIp", Leaf::Str),
            ("tags", Leaf::Tags),
            ("tagsAll", Leaf::Tags),
            ("userData", Leaf::UserData),
            ("userDataBase64", Leaf::UserData64),
            LAUNCH_TEMPLATE_REF[0],
            LAUNCH_TEMPLATE_REF[1],
            LAUNCH_TEMPLATE_REF[2],
        ],
    ),
    (
        "aws:ec2/launchTemplate:LaunchTemplate",
        &[
            ("id", Leaf::Str),
            ("name", Leaf::Str),
            ("imageId", Leaf::Str),
            ("latestVersion", Leaf::Num),
            ("defaultVersion", Leaf::Num),
            ("tags", Leaf::Tags),
            ("tagsAll", Leaf::Tags),
            ("userData", Leaf::UserData64),
        ],
    ),
    (
        "aws:autoscaling/group:Group",
        &[
            ("name", Leaf::Str),
            ("launchConfiguration", Leaf::Str),
            ("minSize", Leaf::Num),
            ("maxSize", Leaf::Num),
            ("desiredCapacity", Leaf::Num),
            LAUNCH_TEMPLATE_REF[0],
            LAUNCH_TEMPLATE_REF[1],
            LAUNCH_TEMPLATE_REF[2],
        ],
    ),
    (
        "gcp:compute/instance:Instance",
        &[
            ("instanceId", Leaf::Str),
            ("name", Leaf::Str),
            ("project", Leaf::Str),
            ("zone", Leaf::Str),
            ("currentStatus", Leaf::Str),
            ("bootDisk.initializeParams.image", Leaf::Str),
            ("networkInterfaces[].networkIp", Leaf::Str),
            ("labels", Leaf::Tags),
            ("effectiveLabels", Leaf::Tags),
        ],
    ),
    (
        "azure:compute/linuxVirtualMachine:LinuxVirtualMachine",
        &[
            ("id", Leaf::Str),
            ("name", Leaf::Str),
            ("virtualMachineId", Leaf::Str),
            ("location", Leaf::Str),
            ("resourceGroupName", Leaf::Str),
            ("sourceImageId", Leaf::Str),
            ("sourceImageReference.publisher", Leaf::Str),
            ("sourceImageReference.offer", Leaf::Str),
            ("sourceImageReference.sku", Leaf::Str),
            ("sourceImageReference.version", Leaf::Str),
            ("privateIpAddress", Leaf::Str),
            ("publicIpAddress", Leaf::Str),
            ("tags", Leaf::Tags),
        ],
    ),
    (
        "azure-native:compute/v20230301:VirtualMachine",
        &[
            ("id", Leaf::Str),
            ("name", Leaf::Str),
            ("vmId", Leaf::Str),
            ("location", Leaf::Str),
            ("storageProfile.imageReference.id", Leaf::Str),
            ("storageProfile.imageReference.publisher", Leaf::Str),
            ("storageProfile.imageReference.offer", Leaf::Str),
            ("storageProfile.imageReference.sku", Leaf::Str),
            ("storageProfile.imageReference.version", Leaf::Str),
            ("tags", Leaf::Tags),
        ],
    ),
    // Not read: every output is a secret to the reader.
    ("random:index/randomPassword:RandomPassword", &[]),
    ("aws:s3/bucket:Bucket", &[]),
    ("pulumi:providers:aws", &[]),
    ("my:web:Server", &[]),
];

/// A stream of choices drawn from the generated bytes.
struct Choices<I>(I);

impl<I: Iterator<Item = u8>> Choices<I> {
    fn next(&mut self, n: u8) -> u8 {
        self.0.next().unwrap_or(0) % n
    }
}

/// A value Pulumi marks secret, encrypted or (`--show-secrets`) in plain text.
fn secret(marker: &str, encrypted: bool) -> Value {
    let mut v = Map::new();
    v.insert(PULUMI_SIG.into(), json!("1b47061264138c4ac30d75fd1eb44270"));
    if encrypted {
        v.insert("ciphertext".into(), json!(format!("v1:{marker}")));
    } else {
        v.insert("plaintext".into(), json!(format!("\"{marker}\"")));
    }
    Value::Object(v)
}

const PULUMI_SIG: &str = crate::lenient::PULUMI_SECRET_SIG;

/// A type's outputs: each allow-listed leaf plain, secret, odd or absent; marked values
/// everywhere else.
fn outputs<I: Iterator<Item = u8>>(
    fields: &[(&str, Leaf)],
    marker: &str,
    choices: &mut Choices<I>,
) -> Value {
    let mut out = json!({
        "arn": marker, "passwordData": marker, "adminPassword": secret(marker, true),
        "metadata": {"ssh-keys": marker}, "__meta": marker,
    });
    if fields.is_empty() {
        out["ami"] = json!(marker);
        out["id"] = json!(marker);
        out["name"] = json!(marker);
        return out;
    }
    for (path, leaf) in fields {
        let value = match choices.next(8) {
            0 => continue,
            1 => secret(marker, choices.next(2) == 0),
            2 => json!([marker, {"k": marker}]),
            // An object is what tags are: theirs is another odd shape, a string.
            3 if matches!(leaf, Leaf::Tags) => json!(marker),
            3 => json!({"nested": marker}),
            _ => plain(*leaf, marker, choices),
        };
        set(&mut out, path, value, marker);
    }
    out
}

/// A well-shaped value of `leaf`: free of the marker, except user data (hashed).
fn plain<I: Iterator<Item = u8>>(leaf: Leaf, marker: &str, choices: &mut Choices<I>) -> Value {
    let n = choices.next(100);
    match leaf {
        Leaf::Str => json!(format!("v{n}")),
        Leaf::Num => json!(n),
        Leaf::Tags => {
            let mut tags = json!({"Name": format!("n{n}"), "empty": ""});
            // A tag whose value is an object is skipped; one marked secret drops the map.
            tags["odd"] = json!({"x": marker});
            if choices.next(4) == 0 {
                tags[PULUMI_SIG] = json!("1b47061264138c4ac30d75fd1eb44270");
                tags["ciphertext"] = json!(marker);
            }
            tags
        }
        Leaf::UserData => json!(format!("#!/bin/sh\necho {marker}\n")),
        Leaf::UserData64 => {
            json!(base64::engine::general_purpose::STANDARD.encode(format!("echo {marker}")))
        }
    }
}

/// Sets `path` in `out`, creating the objects (and one-element arrays) on the way, each with a
/// marked key of its own.
fn set(out: &mut Value, path: &str, value: Value, marker: &str) {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let Some(rest) = rest else {
        out[head] = value;
        return;
    };
    if let Some(array) = head.strip_suffix("[]") {
        if !out[array].is_array() {
            out[array] = json!([{"unknown": marker, "accessConfigs": [{"natIp": marker}]}]);
        }
        set(&mut out[array][0], rest, value, marker);
    } else {
        if !out[head].is_object() {
            out[head] = json!({"unknown": marker});
        }
        set(&mut out[head], rest, value, marker);
    }
}
