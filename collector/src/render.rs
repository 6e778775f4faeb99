//! Human-readable output of the CLI: aligned tables, items with their diffs.

use std::io::{IsTerminal as _, Write as _};

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
    for json in &detail.drift {
        println!();
        item(json);
    }
}

/// One drift item, as `check` prints it: a headline, what differs, the diff.
fn item(json: &str) {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        println!("  {json}");
        return;
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    if v.get("path").is_some() {
        let changed: Vec<&str> = v
            .get("changed")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "  [{}] {} {}{}",
            s("severity"),
            s("kind"),
            s("path"),
            if changed.is_empty() {
                String::new()
            } else {
                format!(" ({})", changed.join(", "))
            }
        );
        if !s("reason").is_empty() {
            println!("      {}", s("reason"));
        }
        for attr in changed.iter().filter(|a| **a != "content") {
            let get = |side: &str| {
                v.get(side)
                    .and_then(|o| o.get(*attr))
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "-".into())
            };
            println!("      {attr}: {} -> {}", get("expected"), get("actual"));
        }
        if let Some(diff) = v.get("diff").and_then(Value::as_str) {
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
    } else {
        let version = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        println!(
            "  [package] {} {}:{} ({} -> {})",
            s("kind"),
            s("name"),
            s("arch"),
            version("expected_version"),
            version("actual_version")
        );
    }
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
