//! The driftwatch host agent.
//!
//! - [`rules`]: the rules file (what to record, excludes, content capture, severities).
//! - [`scan`]: walking and hashing a root into baseline entries.
//! - [`packages`]: the package inventory (dpkg, rpm, apk) and its diff.
//! - [`evaluate`]: comparing entries with the baseline; drift items, severity, diffs.
//! - [`bake`]: `baseline build`.
//! - [`check`]: `check` and `baseline diff`.
//! - [`report`]: the drift report, as JSON and for people.
//! - [`cli`]: the command line.

pub mod bake;
pub mod check;
pub mod cli;
pub mod evaluate;
pub mod packages;
pub mod report;
pub mod rules;
pub mod scan;
