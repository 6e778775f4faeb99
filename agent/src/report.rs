//! Drift reports: the JSON object `check --json` prints and the human rendering.

use std::fmt::Write as _;
use std::path::PathBuf;

use driftwatch_proto::text::{display_path, terminal};
use serde::Serialize;

use crate::evaluate::baseline::ImageInfo;
use crate::evaluate::{DriftKind, FileDrift};
use crate::packages::{PackageChange, PackageDrift};
use crate::rules::Severity;
use crate::scan::ScanError;

/// Counts for the summary line.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub security: usize,
    pub behavioral: usize,
    pub cosmetic: usize,
    pub packages: usize,
    pub errors: usize,
    pub entries_checked: u64,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
}

/// A drift report: what `check` and `baseline diff` print.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub baseline_id: String,
    pub image: ImageInfo,
    #[serde(serialize_with = "driftwatch_proto::text::path_text::serialize")]
    pub root: PathBuf,
    pub drift: Vec<FileDrift>,
    pub packages: Vec<PackageDrift>,
    pub errors: Vec<ScanError>,
    pub summary: Summary,
}

impl Report {
    /// Whether anything drifted (exit code 2).
    pub fn has_drift(&self) -> bool {
        !self.drift.is_empty() || !self.packages.is_empty()
    }

    /// Fills in the summary counts from the items.
    pub fn summarize(&mut self) {
        let count = |s| self.drift.iter().filter(|d| d.severity == s).count();
        self.summary.security = count(Severity::Security);
        self.summary.behavioral = count(Severity::Behavioral);
        self.summary.cosmetic = count(Severity::Cosmetic);
        self.summary.packages = self.packages.len();
        self.summary.errors = self.errors.len();
    }

    /// The report for people: grouped by severity, most serious first, diffs indented.
    pub fn render_human(&self, title: &str) -> String {
        let mut out = String::new();
        let s = &self.summary;
        let image = match (self.image.name.as_str(), self.image.version.as_str()) {
            ("", "") => String::from("unnamed image"),
            (n, v) => terminal(format!("image {n} {v}").trim_end()).into_owned(),
        };
        let _ = writeln!(
            out,
            "{title} against baseline {} ({image}, built {})",
            short(&self.baseline_id),
            self.image.built_at
        );
        if !self.has_drift() {
            let _ = writeln!(
                out,
                "No drift: {} the baseline.",
                match s.entries_checked {
                    1 => "1 entry matches".to_owned(),
                    n => format!("{n} entries match"),
                }
            );
        } else {
            let _ = writeln!(
                out,
                "DRIFT: {} security, {} behavioral, {} cosmetic, {} package change{}",
                s.security,
                s.behavioral,
                s.cosmetic,
                s.packages,
                if s.packages == 1 { "" } else { "s" }
            );
        }
        for severity in Severity::ALL {
            let items: Vec<&FileDrift> = self
                .drift
                .iter()
                .filter(|d| d.severity == severity)
                .collect();
            if items.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "\n{} ({})",
                severity.as_str().to_uppercase(),
                items.len()
            );
            for item in items {
                render_item(&mut out, item);
            }
        }
        if !self.packages.is_empty() {
            let _ = writeln!(out, "\nPACKAGES ({})", self.packages.len());
            for p in &self.packages {
                let name = if p.arch.is_empty() {
                    p.name.clone()
                } else {
                    format!("{}:{}", p.name, p.arch)
                };
                let none = String::from("?");
                let (old, new) = (
                    p.expected_version.as_ref().unwrap_or(&none),
                    p.actual_version.as_ref().unwrap_or(&none),
                );
                let (name, old, new) = (terminal(&name), terminal(old), terminal(new));
                let _ = match p.kind {
                    PackageChange::Installed => writeln!(out, "  + {name} {new} installed"),
                    PackageChange::Removed => writeln!(out, "  - {name} {old} removed"),
                    PackageChange::VersionChanged => writeln!(out, "  ~ {name} {old} -> {new}"),
                };
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(
                out,
                "\nERRORS ({}): {} could not be checked",
                self.errors.len(),
                if self.errors.len() == 1 {
                    "this path"
                } else {
                    "these paths"
                }
            );
            for e in &self.errors {
                let _ = writeln!(out, "  ! {}", terminal(&e.to_string()));
            }
        }
        out
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn render_item(out: &mut String, item: &FileDrift) {
    let path = display_path(&item.path);
    let (sign, what) = match item.kind {
        DriftKind::Added => ("+", "added".to_owned()),
        DriftKind::Removed => ("-", "removed".to_owned()),
        DriftKind::Modified => ("~", describe_changes(item)),
    };
    let _ = writeln!(
        out,
        "  {sign} {}  {}  [{}]",
        terminal(&path),
        terminal(&what),
        terminal(&item.reason)
    );
    if let Some(diff) = &item.diff {
        for line in diff.lines() {
            let _ = writeln!(out, "      {}", terminal(line));
        }
    }
}

fn describe_changes(item: &FileDrift) -> String {
    use crate::rules::Attr;
    let (Some(e), Some(a)) = (&item.expected, &item.actual) else {
        return "modified".into();
    };
    let parts: Vec<String> = item
        .changed
        .iter()
        .map(|attr| match attr {
            Attr::Type => format!("type {} -> {}", e.kind.as_str(), a.kind.as_str()),
            Attr::Mode => format!("mode {:04o} -> {:04o}", e.mode, a.mode),
            Attr::Owner => format!("owner {} -> {}", e.owner, a.owner),
            Attr::Group => format!("group {} -> {}", e.group, a.group),
            Attr::Size => format!("size {} -> {}", e.size, a.size),
            Attr::Content => "content".into(),
            Attr::Target => format!(
                "target {} -> {}",
                e.target.as_deref().unwrap_or("?"),
                a.target.as_deref().unwrap_or("?")
            ),
            Attr::Xattrs => "xattrs".into(),
        })
        .collect();
    format!("modified: {}", parts.join(", "))
}
