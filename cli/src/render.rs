//! Human-readable output of the CLI: aligned tables, items with their diffs. Everything
//! writes to the `out` it is given (the CLI's locked, buffered stdout, see
//! `driftwatch_shell`) and passes its errors on: a reader that went away ends the
//! output there.
//!
//! Every string that came from a host or an import (paths, diff lines, names, versions) goes
//! through [`t`] (`driftwatch_proto::text::terminal`): a forged file name or an ESC sequence in
//! a file is shown, never acted on by the terminal. `--json` output is exact instead.

use std::io::{self, IsTerminal as _, Write};

use driftwatch_proto::drift::{Attr, DriftItem, FileDrift};
use driftwatch_proto::text::{count, display_path, terminal as t};
use driftwatch_proto::v1;
use serde_json::Value;

mod enroll;
mod iac;

pub use enroll::{enrolled, join_tokens};
pub use iac::{iac_status, report_markdown};

/// Writes rows as columns padded to their widest cell.
fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| t(cell).into_owned()).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, &mut header.iter().copied())?;
    for row in rows {
        line(out, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

/// The listing; `total` is how many hosts matched before `--limit`.
pub fn hosts(out: &mut dyn Write, hosts: &[v1::Host], total: u64) -> io::Result<()> {
    if hosts.is_empty() {
        return writeln!(out, "No hosts (none reported, or none match).");
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
        out,
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
    )?;
    let diverged = hosts.iter().filter(|h| h.drift_count > 0).count();
    writeln!(
        out,
        "\n{}, {diverged} with drift.",
        count(hosts.len() as u64, "host", "hosts")
    )?;
    let more = total.saturating_sub(hosts.len() as u64);
    if more > 0 {
        writeln!(
            out,
            "{more} more {}; raise --limit (0: every one) to see them.",
            if more == 1 {
                "host matches"
            } else {
                "hosts match"
            }
        )?;
    }
    Ok(())
}

pub fn host(out: &mut dyn Write, detail: &v1::HostDetail) -> io::Result<()> {
    let h = detail.host.clone().unwrap_or_default();
    writeln!(out, "Host      {} ({})", t(&h.host), t(&dash(&h.hostname)))?;
    writeln!(out, "Status    {}, last seen {}", h.status, t(&h.last_seen))?;
    writeln!(out, "Image     {} {}", t(&dash(&h.image)), t(&h.image_id))?;
    writeln!(out, "Baseline  {}", t(&dash(&h.baseline_id)))?;
    match &h.iac {
        Some(l) => {
            writeln!(
                out,
                "IaC       {} in state {} ({} confidence: {})",
                t(&l.address),
                t(&l.state),
                l.confidence,
                t(&l.correlation_path)
            )?;
            for p in &l.also {
                writeln!(
                    out,
                    "          also {} in state {}",
                    t(&p.address),
                    t(&p.state)
                )?;
            }
        }
        None => writeln!(out, "IaC       -")?,
    }
    for c in &h.candidates {
        writeln!(
            out,
            "Possible  {} in state {} ({}; not trusted)",
            t(&c.address),
            t(&c.state),
            t(&c.correlation_path)
        )?;
    }
    if !h.flags.is_empty() {
        writeln!(
            out,
            "Flags     {} (`driftwatch iac status` says why)",
            t(&h.flags.join(", "))
        )?;
    }
    writeln!(
        out,
        "Agent     {} (identity from {})",
        t(&dash(&h.agent_version)),
        t(&dash(&h.identity_source))
    )?;
    writeln!(out)?;
    if detail.drift.is_empty() {
        return writeln!(out, "No drift: the host matches its baseline.");
    }
    writeln!(
        out,
        "{}, worst {}{}:",
        count(detail.drift.len() as u64, "drift item", "drift items"),
        h.max_severity.as_deref().unwrap_or("-"),
        h.drifted_since
            .map(|s| format!(", drifted since {s}"))
            .unwrap_or_default()
    )?;
    for drift in &detail.drift {
        writeln!(out)?;
        item(out, drift)?;
    }
    Ok(())
}

/// One drift item, as `check` prints it: a headline, what differs, the diff.
fn item(out: &mut dyn Write, item: &v1::DriftItem) -> io::Result<()> {
    let item = match DriftItem::try_from(item.clone()) {
        Ok(item) => item,
        Err(e) => return writeln!(out, "  (an item the collector sent is not readable: {e})"),
    };
    match item {
        DriftItem::File(f) => {
            let changed: Vec<&str> = f.changed.iter().map(|a| a.as_str()).collect();
            writeln!(
                out,
                "  [{}] {} {}{}",
                f.severity,
                f.kind.as_str(),
                t(&display_path(&f.path)),
                if changed.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", changed.join(", "))
                }
            )?;
            if !f.reason.is_empty() {
                writeln!(out, "      {}", t(&f.reason))?;
            }
            for (attr, expected, actual) in attribute_changes(&f) {
                writeln!(out, "      {attr}: {} -> {}", t(&expected), t(&actual))?;
            }
            if let Some(diff) = &f.diff {
                let color = std::io::stdout().is_terminal();
                for line in diff.lines() {
                    let (pre, post) = match line.as_bytes().first() {
                        Some(b'+') if color && !line.starts_with("+++") => ("\x1b[32m", "\x1b[0m"),
                        Some(b'-') if color && !line.starts_with("---") => ("\x1b[31m", "\x1b[0m"),
                        _ => ("", ""),
                    };
                    writeln!(out, "      {pre}{}{post}", t(line))?;
                }
            }
            Ok(())
        }
        DriftItem::Package(p) => writeln!(
            out,
            "  [package] {} {}:{} ({} -> {})",
            p.kind.as_str(),
            t(&p.name),
            t(&p.arch),
            t(p.expected_version.as_deref().unwrap_or("-")),
            t(p.actual_version.as_deref().unwrap_or("-"))
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

pub fn paths(out: &mut dyn Write, paths: &[v1::PathSummary]) -> io::Result<()> {
    if paths.is_empty() {
        return writeln!(out, "No drifted paths.");
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
    table(out, &["HOSTS", "WORST", "FIRST SEEN", "PATH"], &rows)
}

pub fn causes(out: &mut dyn Write, causes: &[v1::Cause]) -> io::Result<()> {
    if causes.is_empty() {
        return writeln!(out, "No drift.");
    }
    for c in causes {
        writeln!(
            out,
            "{}  [{}] {} {} ({})",
            count(c.host_count, "host", "hosts"),
            c.severity,
            c.kind,
            t(&c.path),
            c.changed.join(", ")
        )?;
        let more = c.host_count.saturating_sub(c.hosts.len() as u64);
        let more = match more {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        writeln!(
            out,
            "  cause {}: {}{more}",
            t(&c.cause),
            t(&c.hosts.join(", "))
        )?;
    }
    Ok(())
}

pub fn history(out: &mut dyn Write, events: &[v1::HistoryEvent]) -> io::Result<()> {
    if events.is_empty() {
        return writeln!(out, "No events.");
    }
    for e in events {
        writeln!(out, "{}", event_line(e))?;
    }
    Ok(())
}

/// One event: when the collector received it (history's order), the host, the transition,
/// and when the agent observed it if that was noticeably earlier or later (a replay after an
/// outage, a skewed clock).
pub fn event_line(e: &v1::HistoryEvent) -> String {
    let parse = |text: &str| humantime::parse_rfc3339_weak(text).ok();
    let observed = match (parse(&e.received_at), parse(&e.observed_at)) {
        (Some(received), Some(observed))
            if received
                .duration_since(observed)
                .unwrap_or_else(|early| early.duration())
                < std::time::Duration::from_secs(1) =>
        {
            String::new()
        }
        _ => format!("  (observed {})", t(&e.observed_at)),
    };
    format!(
        "{}  {:<20} {:<9} {:<10} {}{observed}{}",
        t(&e.received_at),
        t(&e.host),
        t(&e.event),
        t(&e.severity),
        t(&e.path),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn text(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn one_host_and_one_item_are_singular() {
        let host = v1::Host {
            host: "i-1".into(),
            drift_count: 1,
            ..Default::default()
        };
        let listing = text(|out| hosts(out, std::slice::from_ref(&host), 2));
        assert!(listing.contains("\n1 host, 1 with drift."), "{listing}");
        assert!(listing.contains("1 more host matches;"), "{listing}");
        let detail = v1::HostDetail {
            host: Some(host),
            drift: vec![v1::DriftItem::default()],
        };
        let shown = text(|out| super::host(out, &detail));
        assert!(shown.contains("1 drift item, worst"), "{shown}");
        let cause = v1::Cause {
            host_count: 1,
            ..Default::default()
        };
        let grouped = text(|out| causes(out, &[cause]));
        assert!(grouped.starts_with("1 host  ["), "{grouped}");
    }

    #[test]
    fn an_event_line_leads_with_the_time_history_is_ordered_by() {
        let mut e = v1::HistoryEvent {
            host: "i-1".into(),
            event: "drifted".into(),
            observed_at: "2026-11-22T03:00:00.000Z".into(),
            received_at: "2026-11-22T03:00:00.200Z".into(),
            path: "/etc/motd".into(),
            ..Default::default()
        };
        let line = event_line(&e);
        assert!(line.starts_with("2026-11-22T03:00:00.200Z  i-1"), "{line}");
        assert!(!line.contains("observed"), "{line}");
        // A replay after an outage: observed long before it was received.
        e.received_at = "2026-11-22T04:00:00.000Z".into();
        let line = event_line(&e);
        assert!(
            line.starts_with("2026-11-22T04:00:00.000Z")
                && line.ends_with("(observed 2026-11-22T03:00:00.000Z)"),
            "{line}"
        );
    }
}
