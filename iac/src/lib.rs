//! Infrastructure-as-code inputs: what Terraform/OpenTofu state, Pulumi stack exports,
//! CloudFormation stack resources and Packer manifests say about the machines the agents run
//! on, reduced to what correlation with hosts needs.
//!
//! - [`tfstate`]: Terraform/OpenTofu state format v4 (`terraform.tfstate`, `terraform state
//!   pull`) and `terraform show -json` output → [`tfstate::StateSummary`]: one
//!   [`tfstate::Resource`] per instance of the resource types that describe machines (EC2
//!   instances, launch templates, autoscaling groups, GCE instances, Azure Linux VMs), with its
//!   address (`module.web.aws_instance.app["b"]`), status and allow-listed attributes.
//!   [`tfstate::check_not_stale`] refuses an older copy of a state already imported.
//! - [`pulumi`]: `pulumi stack export` → a [`tfstate::StateSummary`] of the same resource
//!   kinds (AWS, GCP and Azure instances, launch templates, autoscaling groups), addressed by
//!   URN, without a serial (the format has none).
//! - [`cloudformation`]: `aws cloudformation describe-stack-resources` (instances, autoscaling
//!   groups, launch templates and configurations), with `aws ec2 describe-instances` for the
//!   instances' images and addresses → a [`tfstate::StateSummary`], without a serial.
//! - [`packer`]: the manifest post-processor's `packer-manifest.json` →
//!   [`packer::PackerManifest`]: which build produced which image, in which region, in which run,
//!   and which baseline it baked.
//!
//! - [`image`]: image ids as each cloud spells them, reduced to one key for comparison; which
//!   Packer artifacts are cloud images at all.
//! - [`import`]: all of them turned into the `driftwatch.v1` import requests (allow-listed fields
//!   only), and the collector's checks of a request as received.
//!
//! A file given to the wrong reader is refused saying what it looks like ([`Looks`]).
//!
//! The `driftwatch` CLI reads states and manifests on the operator's machine with this crate
//! and sends only the reduced resources; the collector uses it for the states it follows
//! itself (`serve --state-source`) and to check every import it receives. Correlating hosts
//! with resources is the collector's (`driftwatch_collector::iac`).
//!
//! # Secrets
//! A state file holds every attribute of every resource in plain text — database passwords,
//! private keys, user data — whatever its `sensitive_attributes` says (that lists paths; it
//! redacts nothing). So the state parser works from an allow-list: each understood resource
//! type has a struct naming the attributes correlation needs, and every other value is skipped
//! by the JSON reader as it streams past (`serde::de::IgnoredAny`), never becoming a Rust value.
//! Resource types not understood, data sources, outputs and `private` blobs are skipped whole.
//! User data is reduced to its SHA-1 the moment it is read (the `digest` module). Errors and warnings
//! name positions and attribute names, never attribute values.
//!
//! # Bounded input
//! Parsers read from any [`Read`] through a byte cap ([`CappedReader`]) and never hold the
//! input: a state of 500 MB is parsed in one pass with memory proportional to what is kept, and
//! an input over the cap is refused as soon as the cap is crossed, without reading further.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};

use serde::de::DeserializeSeed;

pub mod cloudformation;
mod digest;
pub mod image;
pub mod import;
pub(crate) mod lenient;
pub mod packer;
pub mod pulumi;
pub mod tfstate;

/// Tags (AWS, Azure) and labels (GCE): key → value.
pub type Tags = BTreeMap<String, String>;

/// A problem reading the input as JSON, before its meaning is looked at.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("reading the input failed: {0}")]
    Io(#[source] io::Error),
    #[error("the input is empty")]
    Empty,
    /// Refused once `limit` bytes were read and more followed; the rest was not read.
    #[error(
        "the input is larger than the limit of {limit} bytes; it was refused without reading \
         the rest (raise the limit if this input is expected)"
    )]
    TooLarge { limit: u64 },
    /// The JSON stops before the document is complete: a partial download or an interrupted write.
    #[error(
        "the JSON is truncated: it ends at line {line}, column {column} before the document is \
         complete"
    )]
    Truncated { line: usize, column: usize },
    #[error("not valid JSON: {message} at line {line}, column {column}")]
    NotJson {
        line: usize,
        column: usize,
        message: String,
    },
    /// Valid JSON, but not the structure this format has.
    #[error("unexpected structure: {message} at line {line}, column {column}")]
    Shape {
        line: usize,
        column: usize,
        message: String,
    },
}

/// What a file given to the wrong reader looks like, told by one of its top-level keys, so the
/// refusal can say which input it is and how to import it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Looks {
    TerraformState,
    PulumiExport,
    StackResources,
    Stacks,
    Instances,
    PackerManifest,
}

impl Looks {
    pub(crate) fn from_top_level_key(key: &str) -> Option<Self> {
        Some(match key {
            "lineage" | "terraform_version" | "format_version" | "encrypted_data" => {
                Looks::TerraformState
            }
            "deployment" => Looks::PulumiExport,
            "StackResources" | "StackResourceSummaries" => Looks::StackResources,
            "Stacks" => Looks::Stacks,
            "Reservations" => Looks::Instances,
            "builds" | "last_run_uuid" => Looks::PackerManifest,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Looks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Looks::TerraformState => {
                "a Terraform/OpenTofu state (import it with `--terraform-state`)"
            }
            Looks::PulumiExport => "`pulumi stack export` output (import it with `--pulumi-stack`)",
            Looks::StackResources => {
                "`aws cloudformation describe-stack-resources` output (import it with \
                 `--cloudformation`)"
            }
            Looks::Stacks => {
                "`aws cloudformation describe-stacks` output, which names no resources (import \
                 `aws cloudformation describe-stack-resources --stack-name NAME` output with \
                 `--cloudformation`)"
            }
            Looks::Instances => {
                "`aws ec2 describe-instances` output (give it with `--instances`, next to \
                 `--cloudformation`)"
            }
            Looks::PackerManifest => "a Packer manifest (import it with `--packer-manifest`)",
        })
    }
}

/// A [`Read`] that delivers at most `limit` bytes and fails (recording why) as soon as the
/// input turns out to be longer, so an oversized input is refused without being read in full.
pub struct CappedReader<R> {
    inner: R,
    remaining: u64,
    consumed: u64,
    exceeded: bool,
}

impl<R: Read> CappedReader<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        CappedReader {
            inner,
            remaining: limit,
            consumed: 0,
            exceeded: false,
        }
    }

    /// Whether the input was longer than the limit.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// Bytes delivered so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Ask for one byte more than allowed: getting it is how "longer than the limit" shows.
        let want = (buf.len() as u64).min(self.remaining.saturating_add(1)) as usize;
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.remaining {
            self.exceeded = true;
            return Err(io::Error::other("input larger than the configured limit"));
        }
        self.remaining -= n as u64;
        self.consumed += n as u64;
        Ok(n)
    }
}

/// Deserializes one JSON document from `reader`, at most `limit` bytes, with `seed`, and checks
/// that nothing but whitespace follows it.
pub(crate) fn deserialize_capped<R, S, V>(reader: R, limit: u64, seed: S) -> Result<V, InputError>
where
    R: Read,
    S: for<'de> DeserializeSeed<'de, Value = V>,
{
    let mut capped = CappedReader::new(reader, limit);
    let result = {
        // serde_json reads an `io::Read` byte by byte: the buffer makes that cheap.
        let mut de = serde_json::Deserializer::from_reader(BufReader::new(&mut capped));
        seed.deserialize(&mut de)
            .and_then(|value| de.end().map(|()| value))
    };
    result.map_err(|error| {
        if capped.exceeded() {
            InputError::TooLarge { limit }
        } else if capped.consumed() == 0 && error.is_eof() {
            InputError::Empty
        } else {
            classify(error)
        }
    })
}

/// Maps a `serde_json` error to what went wrong, keeping the position.
pub(crate) fn classify(error: serde_json::Error) -> InputError {
    use serde_json::error::Category;
    let (line, column) = (error.line(), error.column());
    match error.classify() {
        Category::Io => InputError::Io(io::Error::from(error)),
        Category::Eof => InputError::Truncated { line, column },
        Category::Syntax => InputError::NotJson {
            line,
            column,
            message: message_without_position(&error),
        },
        Category::Data => InputError::Shape {
            line,
            column,
            message: message_without_position(&error),
        },
    }
}

/// `serde_json` appends " at line L column C" to its messages; the variants place it themselves.
fn message_without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// Non-fatal findings while parsing (an attribute of unexpected shape, user data that had to be
/// hashed). Capped so that a state with the same oddity in 50,000 resources stays readable.
#[derive(Debug, Default)]
pub(crate) struct Warnings {
    list: Vec<String>,
    suppressed: usize,
}

impl Warnings {
    const MAX: usize = 100;

    pub(crate) fn push(&mut self, warning: String) {
        if self.list.len() < Self::MAX {
            self.list.push(warning);
        } else {
            self.suppressed += 1;
        }
    }

    pub(crate) fn into_vec(mut self) -> Vec<String> {
        if self.suppressed > 0 {
            self.list.push(format!(
                "… and {} more warnings like these",
                self.suppressed
            ));
        }
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endless input that counts what was pulled from it.
    struct Endless {
        pulled: u64,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(b' ');
            self.pulled += buf.len() as u64;
            Ok(buf.len())
        }
    }

    #[test]
    fn the_cap_stops_reading_one_byte_past_the_limit() {
        let mut source = Endless { pulled: 0 };
        let err =
            deserialize_capped(&mut source, 1000, std::marker::PhantomData::<u64>).unwrap_err();
        assert!(
            matches!(err, InputError::TooLarge { limit: 1000 }),
            "{err:?}"
        );
        assert_eq!(source.pulled, 1001);
    }

    #[test]
    fn an_input_of_exactly_the_limit_is_read() {
        let value: u64 = deserialize_capped(&b"12345 "[..], 6, std::marker::PhantomData).unwrap();
        assert_eq!(value, 12345);
    }

    #[test]
    fn errors_say_where() {
        let seed = std::marker::PhantomData::<Vec<u64>>;
        match deserialize_capped(&b"[1,\n2,"[..], 100, seed) {
            Err(InputError::Truncated { line: 2, column: 2 }) => {}
            other => panic!("{other:?}"),
        }
        match deserialize_capped(&b"[1,\n  x]"[..], 100, seed) {
            Err(
                e @ InputError::NotJson {
                    line: 2, column: 3, ..
                },
            ) => {
                assert_eq!(
                    e.to_string(),
                    "not valid JSON: expected value at line 2, column 3"
                );
            }
            other => panic!("{other:?}"),
        }
        match deserialize_capped(&b"[1] [2]"[..], 100, seed) {
            Err(InputError::NotJson { .. }) => {}
            other => panic!("{other:?}"),
        }
        match deserialize_capped(&b""[..], 100, seed) {
            Err(InputError::Empty) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn warnings_are_capped() {
        let mut w = Warnings::default();
        for i in 0..(Warnings::MAX + 5) {
            w.push(format!("w{i}"));
        }
        let list = w.into_vec();
        assert_eq!(list.len(), Warnings::MAX + 1);
        assert_eq!(list[Warnings::MAX], "… and 5 more warnings like these");
    }
}
