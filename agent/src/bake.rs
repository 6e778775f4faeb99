//! `baseline build`: scanning a root into a baseline and writing it crash-safely.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use driftwatch_proto::baseline::{self, Baseline, BaselineId, Header};
use ed25519_dalek::SigningKey;

use crate::evaluate::redact;
use crate::packages;
use crate::rules::Rules;
use crate::scan::{self, ScanError, ScanOptions, ScanStats};

/// What to put in the header.
#[derive(Clone, Debug, Default)]
pub struct ImageLabel {
    pub name: String,
    pub version: String,
}

/// The outcome of a build.
#[derive(Debug)]
pub struct Built {
    pub id: BaselineId,
    pub bytes: Vec<u8>,
    pub stats: ScanStats,
    pub packages: usize,
    pub package_sources: Vec<String>,
    pub errors: Vec<ScanError>,
    pub elapsed: Duration,
}

/// Scans `root` with `rules` and encodes the baseline (signed when a key is given).
pub fn build(
    root: &Path,
    rules: &Rules,
    image: &ImageLabel,
    key: Option<&SigningKey>,
    progress: bool,
) -> Built {
    let started = Instant::now();
    let scan = scan::scan(ScanOptions {
        root,
        rules,
        full_hash: true,
        progress,
        throttle: None,
        cancel: None,
    });
    let mut entries = scan.entries;
    // A baseline travels widely: secret values in captured content are baked to `[redacted]`.
    for entry in &mut entries {
        if let Some(baked) = entry
            .content
            .as_deref()
            .and_then(|c| redact::bake(c, rules))
        {
            entry.content = Some(baked);
        }
    }
    let inventory = packages::read_inventory(root);
    let mut errors = scan.errors;
    errors.extend(inventory.errors.iter().map(|e| ScanError {
        path: "/".into(),
        error: e.clone(),
    }));
    let mut baseline = Baseline {
        header: Header {
            created_unix: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            builder_host: crate::ship::identity::kernel_hostname(),
            image_name: image.name.clone(),
            image_version: image.version.clone(),
            rules_toml: rules.source().to_owned(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            package_sources: inventory.sources.clone(),
            scanned_root: root.to_path_buf(),
        },
        entries,
        packages: inventory.packages,
    };
    baseline.normalize();
    let (bytes, id) = baseline::encode(&baseline, key);
    Built {
        id,
        bytes,
        stats: scan.stats,
        packages: baseline.packages.len(),
        package_sources: inventory.sources,
        errors,
        elapsed: started.elapsed(),
    }
}
