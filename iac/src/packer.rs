//! Packer manifests: which build produced which image, where, in which run, baking which
//! baseline.
//!
//! The manifest post-processor appends one entry per build per run to `packer-manifest.json`:
//!
//! ```json
//! {"builds": [{"name": "web", "builder_type": "amazon-ebs", "build_time": 1714557000,
//!              "files": null,
//!              "artifact_id": "eu-west-1:ami-0aa…,us-east-1:ami-0ee…",
//!              "packer_run_uuid": "6f0c…", "custom_data": {"driftwatch_baseline_id": "bl-…"}}],
//!  "last_run_uuid": "6f0c…"}
//! ```
//!
//! `artifact_id` is builder-specific: the Amazon builders join `region:ami-id` pairs with commas
//! (one per region copied to); other builders give one id (a GCE image name, an Azure resource
//! id, a Docker `sha256:` digest), kept whole. `custom_data` is free-form strings; an image
//! pipeline passes the id of the baseline it baked as [`BASELINE_ID_KEYS`].
//!
//! A manifest is small (a few hundred bytes per build) and holds no secrets by design, so it is
//! read as a JSON value and checked field by field: every problem names the build index and the
//! field, and never echoes a value.

use std::collections::BTreeMap;
use std::io::Read;
use std::marker::PhantomData;

use serde_json::{Map, Value};

use super::InputError;

/// The largest manifest read by default: years of appended builds fit in a few megabytes.
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

/// `custom_data` keys that name the baseline baked into a build, in order of preference.
pub const BASELINE_ID_KEYS: [&str; 2] = ["driftwatch_baseline_id", "baseline_id"];

/// A Packer manifest, builds in the order they were appended (oldest first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackerManifest {
    pub builds: Vec<PackerBuild>,
    /// The run that appended last; its builds are the current images.
    pub last_run_uuid: Option<String>,
}

/// One build entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackerBuild {
    /// Position in `builds`, for messages that point back into the file.
    pub index: usize,
    /// The build (source) name.
    pub name: String,
    /// `amazon-ebs`, `googlecompute`, `azure-arm`, …
    pub builder_type: String,
    /// Unix seconds. Packer omits it when zero.
    pub build_time: Option<i64>,
    /// As written, for display.
    pub artifact_id: String,
    /// `artifact_id` split into images (see [`split_artifact_id`]).
    pub artifacts: Vec<Artifact>,
    /// The run this build was part of; absent in manifests of very old Packer versions.
    pub packer_run_uuid: Option<String>,
    pub custom_data: BTreeMap<String, String>,
}

/// One image a build produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// The AWS region, for AMIs; `None` for images whose id is global (GCE, Azure, Docker).
    pub region: Option<String>,
    /// `ami-…`, a GCE image name, an Azure resource id, …
    pub image_id: String,
}

impl PackerBuild {
    /// The artifacts that are cloud images a host can run and report (see
    /// [`crate::image::is_cloud_image`]); qemu's `VM` or a docker digest is not one.
    pub fn cloud_images(&self) -> impl Iterator<Item = &Artifact> {
        self.artifacts
            .iter()
            .filter(|a| crate::image::is_cloud_image(&self.builder_type, &a.image_id))
    }

    /// The baseline baked into this build, from `custom_data` ([`BASELINE_ID_KEYS`]).
    pub fn baseline_id(&self) -> Option<&str> {
        BASELINE_ID_KEYS
            .iter()
            .find_map(|key| self.custom_data.get(*key))
            .map(String::as_str)
            .filter(|id| !id.is_empty())
    }
}

impl PackerManifest {
    /// The builds of the last run.
    pub fn last_run(&self) -> impl Iterator<Item = &PackerBuild> {
        self.builds
            .iter()
            .filter(|b| b.packer_run_uuid.is_some() && b.packer_run_uuid == self.last_run_uuid)
    }

    /// Builds whose artifacts include something other than a cloud image (skipped on import).
    pub fn not_cloud_images(&self) -> impl Iterator<Item = &PackerBuild> {
        self.builds
            .iter()
            .filter(|b| b.cloud_images().count() < b.artifacts.len())
    }

    /// The most recent build that produced `image_id` (in any region), with that artifact.
    pub fn find_image(&self, image_id: &str) -> Option<(&PackerBuild, &Artifact)> {
        self.builds.iter().rev().find_map(|b| {
            b.artifacts
                .iter()
                .find(|a| a.image_id == image_id)
                .map(|a| (b, a))
        })
    }
}

/// Why a manifest was not read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("not a Packer manifest: the top level is {found}, not an object with `builds`")]
    NotAManifest { found: &'static str },
    /// A top-level field of the wrong shape.
    #[error("Packer manifest: `{field}` {problem}")]
    Manifest {
        field: &'static str,
        problem: String,
    },
    /// A build entry, or one of its fields, of the wrong shape.
    #[error("Packer manifest: builds[{build}].{field} {problem}")]
    Build {
        build: usize,
        field: String,
        problem: String,
    },
}

/// Parses a manifest of at most [`DEFAULT_MAX_MANIFEST_BYTES`].
pub fn parse_manifest<R: Read>(reader: R) -> Result<PackerManifest, ManifestError> {
    parse_manifest_limited(reader, DEFAULT_MAX_MANIFEST_BYTES)
}

/// Parses a manifest, refusing it as soon as more than `max_bytes` have been read.
pub fn parse_manifest_limited<R: Read>(
    reader: R,
    max_bytes: u64,
) -> Result<PackerManifest, ManifestError> {
    let value: Value = super::deserialize_capped(reader, max_bytes, PhantomData)?;
    let Value::Object(mut top) = value else {
        return Err(ManifestError::NotAManifest {
            found: kind(&value),
        });
    };
    let builds = match top.remove("builds") {
        Some(Value::Array(builds)) => builds,
        Some(other) => {
            return Err(ManifestError::Manifest {
                field: "builds",
                problem: format!("must be an array, not {}", kind(&other)),
            });
        }
        None => {
            return Err(ManifestError::Manifest {
                field: "builds",
                problem: "is missing".into(),
            });
        }
    };
    let last_run_uuid = match top.remove("last_run_uuid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s).filter(|s| !s.is_empty()),
        Some(other) => {
            return Err(ManifestError::Manifest {
                field: "last_run_uuid",
                problem: format!("must be a string, not {}", kind(&other)),
            });
        }
    };
    let builds = builds
        .into_iter()
        .enumerate()
        .map(|(index, build)| read_build(index, build))
        .collect::<Result<_, _>>()?;
    Ok(PackerManifest {
        builds,
        last_run_uuid,
    })
}

/// Splits an `artifact_id` into images. Amazon builders (and ids made only of `region:ami-…`
/// pairs, whatever the builder) give one artifact per pair; any other id is one artifact with
/// no region, colons and all (a Docker `sha256:…`).
pub fn split_artifact_id(builder_type: &str, artifact_id: &str) -> Vec<Artifact> {
    let id = artifact_id.trim();
    if id.is_empty() {
        return Vec::new();
    }
    let pairs = builder_type.starts_with("amazon-") || id.split(',').all(is_region_ami_pair);
    if !pairs {
        return vec![Artifact {
            region: None,
            image_id: id.to_owned(),
        }];
    }
    id.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once(':') {
            Some((region, image)) if !region.is_empty() && !image.is_empty() => Artifact {
                region: Some(region.to_owned()),
                image_id: image.to_owned(),
            },
            _ => Artifact {
                region: None,
                image_id: part.to_owned(),
            },
        })
        .collect()
}

/// `eu-west-1:ami-0abc`: a region (lowercase, dashed, ending in a digit) and an AMI id.
fn is_region_ami_pair(part: &str) -> bool {
    let Some((region, image)) = part.trim().split_once(':') else {
        return false;
    };
    region.contains('-')
        && region.ends_with(|c: char| c.is_ascii_digit())
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && image.starts_with("ami-")
}

fn read_build(index: usize, build: Value) -> Result<PackerBuild, ManifestError> {
    let problem = |field: &str, problem: String| ManifestError::Build {
        build: index,
        field: field.to_owned(),
        problem,
    };
    let Value::Object(mut fields) = build else {
        return Err(ManifestError::Manifest {
            field: "builds",
            problem: format!("element {index} must be an object, not {}", kind(&build)),
        });
    };
    let mut required = |field: &'static str| -> Result<String, ManifestError> {
        match fields.remove(field) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(problem(
                field,
                format!("must be a string, not {}", kind(&other)),
            )),
            None => Err(problem(field, "is missing".into())),
        }
    };
    let name = required("name")?;
    let builder_type = required("builder_type")?;
    let artifact_id = required("artifact_id")?;
    let build_time = match fields.remove("build_time") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(t) => Some(t).filter(|&t| t != 0),
            None => {
                return Err(problem(
                    "build_time",
                    "must be whole seconds since the Unix epoch".into(),
                ));
            }
        },
        Some(other) => {
            return Err(problem(
                "build_time",
                format!(
                    "must be a number (seconds since the Unix epoch), not {}",
                    kind(&other)
                ),
            ));
        }
    };
    let packer_run_uuid = match fields.remove("packer_run_uuid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s).filter(|s| !s.is_empty()),
        Some(other) => {
            return Err(problem(
                "packer_run_uuid",
                format!("must be a string, not {}", kind(&other)),
            ));
        }
    };
    let custom_data = match fields.remove("custom_data") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(map)) => read_custom_data(map).map_err(|(key, found)| {
            problem(
                &format!("custom_data.{key}"),
                format!("must be a string, not {found}"),
            )
        })?,
        Some(other) => {
            return Err(problem(
                "custom_data",
                format!("must be an object of strings, not {}", kind(&other)),
            ));
        }
    };
    Ok(PackerBuild {
        index,
        artifacts: split_artifact_id(&builder_type, &artifact_id),
        name,
        builder_type,
        build_time,
        artifact_id,
        packer_run_uuid,
        custom_data,
    })
}

/// `custom_data` is `map[string]string` in Packer; anything else is an error naming the key.
fn read_custom_data(
    map: Map<String, Value>,
) -> Result<BTreeMap<String, String>, (String, &'static str)> {
    let mut out = BTreeMap::new();
    for (key, value) in map {
        match value {
            Value::String(s) => {
                out.insert(key, s);
            }
            other => return Err((key, kind(&other))),
        }
    }
    Ok(out)
}

/// A JSON value's kind, for messages that must not echo the value itself.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = include_str!("testdata/packer-manifest.json");

    fn parse(text: &str) -> Result<PackerManifest, ManifestError> {
        parse_manifest(text.as_bytes())
    }

    fn artifacts(pairs: &[(Option<&str>, &str)]) -> Vec<Artifact> {
        pairs
            .iter()
            .map(|(region, image)| Artifact {
                region: region.map(str::to_owned),
                image_id: image.to_string(),
            })
            .collect()
    }

    #[test]
    fn builds_of_several_runs() {
        let m = parse(MANIFEST).unwrap();
        assert_eq!(m.builds.len(), 5);
        assert_eq!(
            m.last_run_uuid.as_deref(),
            Some("a1b2c3d4-e5f6-4711-8899-aabbccddeeff")
        );
        let first = &m.builds[0];
        assert_eq!(
            (
                first.index,
                first.name.as_str(),
                first.builder_type.as_str()
            ),
            (0, "web", "amazon-ebs")
        );
        assert_eq!(first.build_time, Some(1714557000));
        assert_eq!(
            first.packer_run_uuid.as_deref(),
            Some("6f0c1a2b-3d4e-5f60-7182-93a4b5c6d7e8")
        );
        assert_eq!(
            first.custom_data.get("git_sha").map(String::as_str),
            Some("4c1e9a5")
        );
        let last_run: Vec<_> = m.last_run().map(|b| b.name.as_str()).collect();
        assert_eq!(last_run, ["web", "azure-web", "web-container"]);
    }

    #[test]
    fn multi_region_amis_are_split() {
        let m = parse(MANIFEST).unwrap();
        assert_eq!(
            m.builds[0].artifacts,
            artifacts(&[
                (Some("eu-west-1"), "ami-0aa11bb22cc33dd44"),
                (Some("us-east-1"), "ami-0ee55ff66aa77bb88"),
            ])
        );
        assert_eq!(
            m.builds[2].artifacts,
            artifacts(&[
                (Some("eu-central-1"), "ami-0c55b159cbfafe1f0"),
                (Some("eu-west-1"), "ami-0c55b159cbfafe1f0"),
                (Some("us-east-1"), "ami-0d99e88f77a66b55c"),
            ])
        );
        let (build, artifact) = m.find_image("ami-0d99e88f77a66b55c").unwrap();
        assert_eq!(
            (build.index, artifact.region.as_deref()),
            (2, Some("us-east-1"))
        );
        assert!(m.find_image("ami-0000000000unknown").is_none());
    }

    #[test]
    fn other_builders_keep_the_whole_id() {
        let m = parse(MANIFEST).unwrap();
        assert_eq!(
            m.builds[1].artifacts,
            artifacts(&[(None, "web-20240501-1714557000")])
        );
        assert_eq!(m.builds[3].artifacts.len(), 1);
        assert!(
            m.builds[3].artifacts[0]
                .image_id
                .ends_with("/images/web-20240601")
        );
        assert_eq!(m.builds[3].artifacts[0].region, None);
        assert_eq!(
            m.builds[4].artifacts,
            artifacts(&[(
                None,
                "sha256:9b2a1d0c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b"
            )])
        );
    }

    #[test]
    fn split_artifact_id_cases() {
        // A plugin builder whose id is still region:AMI pairs.
        assert_eq!(
            split_artifact_id("custom-ami", "us-gov-west-1:ami-1, cn-north-1:ami-2"),
            artifacts(&[
                (Some("us-gov-west-1"), "ami-1"),
                (Some("cn-north-1"), "ami-2")
            ])
        );
        // An Amazon builder with an odd part keeps it, without a region.
        assert_eq!(
            split_artifact_id("amazon-ebs", "eu-west-1:ami-1,ami-2"),
            artifacts(&[(Some("eu-west-1"), "ami-1"), (None, "ami-2")])
        );
        assert_eq!(split_artifact_id("null", ""), []);
        assert_eq!(
            split_artifact_id("file", "build/output.img"),
            artifacts(&[(None, "build/output.img")])
        );
    }

    #[test]
    fn baseline_id_from_custom_data() {
        let m = parse(MANIFEST).unwrap();
        assert_eq!(m.builds[0].baseline_id(), Some("bl-web-2024-05-01"));
        assert_eq!(m.builds[2].baseline_id(), Some("bl-web-2024-06-01"));
        assert_eq!(m.builds[1].baseline_id(), None, "custom_data null");
        assert_eq!(m.builds[3].baseline_id(), None, "custom_data empty");
        let both = r#"{"builds": [{"name": "x", "builder_type": "amazon-ebs",
            "artifact_id": "eu-west-1:ami-1",
            "custom_data": {"baseline_id": "old", "driftwatch_baseline_id": "new"}}]}"#;
        assert_eq!(parse(both).unwrap().builds[0].baseline_id(), Some("new"));
    }

    /// Fields Packer may omit: `build_time` (zero), `packer_run_uuid` (old Packer),
    /// `custom_data`, `files`, `last_run_uuid`. Unknown fields are ignored.
    #[test]
    fn optional_and_unknown_fields() {
        let minimal = r#"{"builds": [{"name": "x", "builder_type": "googlecompute",
            "artifact_id": "img-1", "future_field": {"a": 1}}], "other": true}"#;
        let m = parse(minimal).unwrap();
        let b = &m.builds[0];
        assert_eq!((b.build_time, &b.packer_run_uuid), (None, &None));
        assert!(b.custom_data.is_empty());
        assert_eq!(m.last_run_uuid, None);
        assert_eq!(m.last_run().count(), 0);
        assert_eq!(parse(r#"{"builds": []}"#).unwrap().builds.len(), 0);
    }

    #[test]
    fn unexpected_shapes_name_the_build_and_field() {
        let cases = [
            (
                r#"{"builds": {"name": "x"}}"#,
                "Packer manifest: `builds` must be an array, not an object",
            ),
            (
                r#"{"last_run_uuid": "x"}"#,
                "Packer manifest: `builds` is missing",
            ),
            (
                r#"{"builds": [], "last_run_uuid": 7}"#,
                "Packer manifest: `last_run_uuid` must be a string, not a number",
            ),
            (
                r#"{"builds": ["ami-1"]}"#,
                "Packer manifest: `builds` element 0 must be an object, not a string",
            ),
            (
                r#"{"builds": [{"name": "a", "builder_type": "amazon-ebs", "artifact_id": "eu-west-1:ami-1"},
                               {"name": "b", "builder_type": "amazon-ebs"}]}"#,
                "Packer manifest: builds[1].artifact_id is missing",
            ),
            (
                r#"{"builds": [{"name": "a", "builder_type": "amazon-ebs", "artifact_id": 12345}]}"#,
                "Packer manifest: builds[0].artifact_id must be a string, not a number",
            ),
            (
                r#"{"builds": [{"name": 3, "builder_type": "amazon-ebs", "artifact_id": "x"}]}"#,
                "Packer manifest: builds[0].name must be a string, not a number",
            ),
            (
                r#"{"builds": [{"name": "a", "builder_type": "amazon-ebs", "artifact_id": "x",
                    "build_time": "1714557000"}]}"#,
                "Packer manifest: builds[0].build_time must be a number (seconds since the Unix epoch), not a string",
            ),
            (
                r#"{"builds": [{"name": "a", "builder_type": "amazon-ebs", "artifact_id": "x",
                    "build_time": 1.5}]}"#,
                "Packer manifest: builds[0].build_time must be whole seconds since the Unix epoch",
            ),
            (
                r#"{"builds": [{"name": "a", "builder_type": "amazon-ebs", "artifact_id": "x",
                    "custom_data": {"baseline_id": 42}}]}"#,
                "Packer manifest: builds[0].custom_data.baseline_id must be a string, not a number",
            ),
            (
                r#"{"builds": [{"name": "a", "builder_type": "amazon-ebs", "artifact_id": "x",
                    "custom_data": ["k=v"]}]}"#,
                "Packer manifest: builds[0].custom_data must be an object of strings, not an array",
            ),
            (
                r#"{"builds": [{"name": "a", "builder_type": "amazon-ebs", "artifact_id": "x",
                    "packer_run_uuid": {}}]}"#,
                "Packer manifest: builds[0].packer_run_uuid must be a string, not an object",
            ),
            (
                r#"[{"name": "x"}]"#,
                "not a Packer manifest: the top level is an array, not an object with `builds`",
            ),
        ];
        for (input, want) in cases {
            let err = parse(input).unwrap_err();
            assert_eq!(err.to_string(), want, "{input}");
        }
    }

    #[test]
    fn bad_json_and_size() {
        let cut = &MANIFEST[..MANIFEST.len() / 2];
        assert!(
            matches!(
                parse(cut),
                Err(ManifestError::Input(InputError::Truncated { .. }))
            ),
            "{:?}",
            parse(cut)
        );
        assert!(matches!(
            parse("builds: []"),
            Err(ManifestError::Input(InputError::NotJson {
                line: 1,
                column: 1,
                ..
            }))
        ));
        assert!(matches!(
            parse_manifest_limited(MANIFEST.as_bytes(), 100),
            Err(ManifestError::Input(InputError::TooLarge { limit: 100 }))
        ));
    }
}
