//! `check` and `baseline diff`: comparing a root, or a second baseline, with a baseline.

use std::path::Path;

use driftwatch_proto::baseline::LoadedBaseline;

use crate::evaluate::baseline::{BaselineRulesError, ImageInfo, baseline_rules};
use crate::evaluate::{self, RedactKey, compare::compare_with_baseline};
use crate::packages;
use crate::report::{Report, Summary};
use crate::scan::{ScanError, ScanOptions};

/// Why a check could not run at all (as opposed to paths it could not read).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Rules(#[from] BaselineRulesError),
    #[error("cannot read root {root}: {source}")]
    Root {
        root: String,
        source: std::io::Error,
    },
    #[error("root {0} is not a directory")]
    NotADirectory(String),
}

/// Compares the filesystem under `root` with the baseline; `key` tags redacted secret values.
pub fn check(
    loaded: &LoadedBaseline,
    root: &Path,
    full_hash: bool,
    progress: bool,
    key: &RedactKey,
) -> Result<Report, CheckError> {
    let rules = baseline_rules(loaded)?;
    let meta = std::fs::metadata(root).map_err(|source| CheckError::Root {
        root: root.display().to_string(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(CheckError::NotADirectory(root.display().to_string()));
    }
    std::fs::read_dir(root).map_err(|source| CheckError::Root {
        root: root.display().to_string(),
        source,
    })?;
    let baseline = &loaded.baseline;
    let compared = compare_with_baseline(
        ScanOptions {
            root,
            rules: &rules,
            full_hash,
            progress,
            throttle: None,
            cancel: None,
        },
        baseline,
        key,
    );
    let inventory = packages::read_inventory(root);
    let mut errors = compared.errors;
    errors.extend(inventory.errors.into_iter().map(|error| ScanError {
        path: "/".into(),
        error,
    }));
    let mut report = Report {
        baseline_id: loaded.id.to_hex(),
        image: ImageInfo::of(loaded),
        root: root.to_path_buf(),
        drift: compared.items,
        packages: packages::diff(&baseline.packages, &inventory.packages),
        errors,
        summary: Summary {
            entries_checked: compared.stats.entries,
            files_hashed: compared.stats.files_hashed,
            bytes_hashed: compared.stats.bytes_hashed,
            ..Summary::default()
        },
    };
    report.summarize();
    Ok(report)
}

/// What changed between two baselines, classified with the newer one's rules. Their secret
/// values are baked (`[redacted]`): a changed secret shows only as changed content.
pub fn diff_baselines(
    old: &LoadedBaseline,
    new: &LoadedBaseline,
    key: &RedactKey,
) -> Result<Report, CheckError> {
    let rules = baseline_rules(new)?;
    let mut report = Report {
        baseline_id: old.id.to_hex(),
        image: ImageInfo::of(old),
        root: new.baseline.header.scanned_root.clone(),
        drift: evaluate::compare_sets(&old.baseline.entries, &new.baseline.entries, &rules, key),
        packages: packages::diff(&old.baseline.packages, &new.baseline.packages),
        errors: Vec::new(),
        summary: Summary {
            entries_checked: new.baseline.entries.len() as u64,
            ..Summary::default()
        },
    };
    report.summarize();
    Ok(report)
}
