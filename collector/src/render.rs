//! Human-readable output of the CLI: aligned tables, items with their diffs.

use std::io::{IsTerminal as _, Write as _};

use driftwatch_proto::drift::{Attr, DriftItem, FileDrift};
use driftwatch_proto::text::display_path;
use driftwatch_proto::v1;
use serde_json::Value;

mod iac;

pub use iac::{iac_status, report_markdown};

/// Prints rows as columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |out: &mut std::io::StdoutLock<'_>, cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(&mut out, &mut header.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
}

/// The listing; `total` is how many hosts matched before `--limit`.
pub fn hosts(hosts: &[v1::Host], total: u64) {
    if hosts.is_empty() {
        println!("No hosts (none reported, or none match).");
        return;
    }
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                h.host.clone(),
                h.hostname.clone(),
                h.drift_count.to_string(),
                h.max_severity.clone().unwrap_or_else(|| "-".into()),
                h.drifted_since.clone().unwrap_or_else(|| "-".into()),
                h.last_seen.clone(),
                h.status.clone(),
                dash(&h.image),
                short(&h.baseline_id),
                h.iac
                    .as_ref()
                    .map_or_else(|| "-".into(), |l| l.address.clone()),
                if h.flags.is_empty() {
                    "-".into()
                } else {
                    h.flags.join(",")
                },
            ]
        })
        .collect();
    table(
        &[
            "HOST",
            "HOSTNAME",
            "DRIFT",
            "WORST",
            "SINCE",
            "LAST SEEN",
            "STATUS",
            "IMAGE",
            "BASELINE",
            "IAC",
            "FLAGS",
        ],
        &rows,
    );
    let diverged = hosts.iter().filter(|h| h.drift_count > 0).count();
    println!("\n{} hosts, {diverged} with drift.", hosts.len());
    let more = total.saturating_sub(hosts.len() as u64);
    if more > 0 {
        println!("{more} more hosts match; raise --limit (0: every one) to see them.");
    }
}

pub fn host(detail: &v1::HostDetail) {
    let h = detail.host.clone().unwrap_or_default();
    println!("Host      {} ({})", h.host, dash(&h.hostname));
    println!("Status    {}, last seen {}", h.status, h.last_seen);
    println!("Image     {} {}", dash(&h.image), h.image_id);
    println!("Baseline  {}", dash(&h.baseline_id));
    match &h.iac {
        Some(l) => println!(
            "IaC       {} in state {} ({} confidence: {})",
            l.address, l.state, l.confidence, l.correlation_path
        ),
        None => println!("IaC       -"),
    }
    if !h.flags.is_empty() {
        println!(
            "Flags     {} (`driftwatch iac status` says why)",
            h.flags.join(", ")
        );
    }
    println!(
        "Agent     {} (identity from {})",
        dash(&h.agent_version),
        dash(&h.identity_source)
    );
    println!();
    if detail.drift.is_empty() {
        println!("No drift: the host matches its baseline.");
        return;
    }
    println!(
        "{} drift items, worst {}{}:",
        detail.drift.len(),
        h.max_severity.as_deref().unwrap_or("-"),
        h.drifted_since
            .map(|s| format!(", drifted since {s}"))
            .unwrap_or_default()
    );
    for drift in &detail.drift {
        println!();
        item(drift);
    }
}

/// One drift item, as `check` prints it: a headline, what differs, the diff.
fn item(item: &v1::DriftItem) {
    let item = match DriftItem::try_from(item.clone()) {
        Ok(item) => item,
        Err(e) => {
            println!("  (an item the collector sent is not readable: {e})");
            return;
        }
    };
    match item {
        DriftItem::File(f) => {
            let changed: Vec<&str> = f.changed.iter().map(|a| a.as_str()).collect();
            println!(
                "  [{}] {} {}{}",
                f.severity,
                f.kind.as_str(),
                display_path(&f.path),
                if changed.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", changed.join(", "))
                }
            );
            if !f.reason.is_empty() {
                println!("      {}", f.reason);
            }
            for (attr, expected, actual) in attribute_changes(&f) {
                println!("      {attr}: {expected} -> {actual}");
            }
            if let Some(diff) = &f.diff {
                let color = std::io::stdout().is_terminal();
                for line in diff.lines() {
                    let (pre, post) = match line.as_bytes().first() {
                        Some(b'+') if color && !line.starts_with("+++") => ("\x1b[32m", "\x1b[0m"),
                        Some(b'-') if color && !line.starts_with("---") => ("\x1b[31m", "\x1b[0m"),
                        _ => ("", ""),
                    };
                    println!("      {pre}{line}{post}");
                }
            }
        }
        DriftItem::Package(p) => println!(
            "  [package] {} {}:{} ({} -> {})",
            p.kind.as_str(),
            p.name,
            p.arch,
            p.expected_version.as_deref().unwrap_or("-"),
            p.actual_version.as_deref().unwrap_or("-")
        ),
    }
}

/// What differs beyond the content (which the diff shows): each changed attribute with its
/// expected and actual values as the JSON form shows them (`"0644"`, `1000`).
fn attribute_changes(f: &FileDrift) -> Vec<(Attr, String, String)> {
    let side = |facts: &Option<driftwatch_proto::drift::Facts>, attr: Attr| {
        facts
            .as_ref()
            .and_then(|x| serde_json::to_value(x).ok())
            .and_then(|v| v.get(attr.as_str()).map(Value::to_string))
            .unwrap_or_else(|| "-".into())
    };
    f.changed
        .iter()
        .filter(|a| **a != Attr::Content)
        .map(|&a| (a, side(&f.expected, a), side(&f.actual, a)))
        .collect()
}

pub fn paths(paths: &[v1::PathSummary]) {
    if paths.is_empty() {
        println!("No drifted paths.");
        return;
    }
    let rows: Vec<Vec<String>> = paths
        .iter()
        .map(|p| {
            vec![
                p.hosts.to_string(),
                p.max_severity.clone(),
                p.first_observed.clone(),
                p.path.clone(),
            ]
        })
        .collect();
    table(&["HOSTS", "WORST", "FIRST SEEN", "PATH"], &rows);
}

pub fn causes(causes: &[v1::Cause]) {
    if causes.is_empty() {
        println!("No drift.");
        return;
    }
    for c in causes {
        println!(
            "{} host{}  [{}] {} {} ({})",
            c.host_count,
            if c.host_count == 1 { "" } else { "s" },
            c.severity,
            c.kind,
            c.path,
            c.changed.join(", ")
        );
        println!("  cause {}: {}", c.cause, c.hosts.join(", "));
    }
}

pub fn history(events: &[v1::HistoryEvent]) {
    if events.is_empty() {
        println!("No events.");
        return;
    }
    for e in events {
        println!("{}", event_line(e));
    }
}

pub fn event_line(e: &v1::HistoryEvent) -> String {
    format!(
        "{}  {:<20} {:<9} {:<10} {}{}",
        e.observed_at,
        e.host,
        e.event,
        e.severity,
        e.path,
        if e.source == "snapshot" {
            "  (from a snapshot)"
        } else {
            ""
        }
    )
}

fn dash(s: &str) -> String {
    if s.trim().is_empty() {
        "-".into()
    } else {
        s.trim().to_string()
    }
}

fn short(id: &str) -> String {
    if id.is_empty() {
        "-".into()
    } else {
        id.chars().take(12).collect()
    }
}
