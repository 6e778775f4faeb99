//! `iac status` for people, and the reconciliation report in Markdown.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use driftwatch_iac::import;
use driftwatch_proto::drift::DriftItem;
use driftwatch_proto::text::count;
use driftwatch_proto::v1;

use super::{attribute_changes, dash, table};

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.0}%", part as f64 * 100.0 / whole as f64)
    }
}

fn coverage_lines(c: &v1::Coverage) -> [String; 2] {
    [
        format!(
            "Reporting hosts owned by an IaC resource: {} of {} ({})",
            c.correlated_hosts,
            c.reporting_hosts,
            percent(c.correlated_hosts, c.reporting_hosts)
        ),
        format!(
            "Instances in state with a reporting agent: {} of {} ({})",
            c.covered_instances,
            c.state_instances,
            percent(c.covered_instances, c.state_instances)
        ),
    ]
}

fn state_line(s: &v1::StateInfo) -> String {
    let by = if s.imported_by.is_empty() {
        String::new()
    } else {
        format!(" by {}", s.imported_by)
    };
    let serial = match (s.serial, import::why_no_serial(&s.kind)) {
        (Some(n), _) => format!("serial {n}"),
        // `terraform show -json`, Pulumi and CloudFormation stacks carry no serial (nor
        // lineage): say so rather than omit it.
        (None, Some(why)) => format!("no serial: {why}"),
        (None, None) => "no serial".into(),
    };
    // A Terraform state is named alone, as it always was; a stack says what it is.
    let label = match s.kind.as_str() {
        "pulumi" | "cloudformation" => format!("{} {}", import::kind_noun(&s.kind), s.name),
        _ => s.name.clone(),
    };
    format!(
        "{label} ({serial}, {}, from {}, imported {}{by})",
        count(s.resources, "resource", "resources"),
        dash(&s.source),
        s.imported_at
    )
}

fn iac_cell(link: Option<&v1::IacLink>) -> String {
    let also = |l: &v1::IacLink| {
        if l.also.is_empty() {
            String::new()
        } else {
            format!(" (+{} in other states)", l.also.len())
        }
    };
    match link {
        None => "-".into(),
        Some(l) if l.confidence == "high" => format!("{}{}", l.address, also(l)),
        Some(l) => format!("{} ({} confidence){}", l.address, l.confidence, also(l)),
    }
}

pub fn iac_status(out: &mut dyn Write, s: &v1::IacStatus) -> io::Result<()> {
    if s.states.is_empty() {
        writeln!(
            out,
            "No state imported yet: `driftwatch iac import --terraform-state FILE` (or \
             `--pulumi-stack FILE`, `--cloudformation FILE`)."
        )?;
    } else {
        writeln!(out, "States:")?;
        for state in &s.states {
            writeln!(out, "  {}", super::t(&state_line(state)))?;
        }
    }
    writeln!(
        out,
        "Images in the catalog (Packer manifests): {}",
        s.catalog_images
    )?;
    for line in coverage_lines(&s.coverage.unwrap_or_default()) {
        writeln!(out, "{line}")?;
    }
    writeln!(out)?;
    if s.hosts.is_empty() {
        writeln!(out, "No host is flagged.")?;
    } else {
        let rows: Vec<Vec<String>> = s
            .hosts
            .iter()
            .flat_map(|h| {
                h.flags.iter().enumerate().map(move |(i, f)| {
                    let first = i == 0;
                    vec![
                        if first { h.host.clone() } else { String::new() },
                        if first {
                            iac_cell(h.iac.as_ref())
                        } else {
                            String::new()
                        },
                        f.flag.clone(),
                        f.reason.clone(),
                    ]
                })
            })
            .collect();
        table(out, &["HOST", "IAC", "FLAG", "WHY"], &rows)?;
    }
    if !s.ghosts.is_empty() {
        writeln!(out)?;
        let rows: Vec<Vec<String>> = s
            .ghosts
            .iter()
            .map(|g| vec![g.address.clone(), g.state.clone(), g.reason.clone()])
            .collect();
        table(out, &["GHOST", "STATE", "WHY"], &rows)?;
    }
    if !s.flag_counts.is_empty() {
        let counts: Vec<String> = s
            .flag_counts
            .iter()
            .map(|(f, n)| format!("{f} {n}"))
            .collect();
        writeln!(out, "\nFlags: {}.", counts.join(", "))?;
    }
    Ok(())
}

/// A table cell: pipes escaped, lines joined.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// A line of the report's text from a host: newlines shown, not followed.
fn inline(text: &str) -> String {
    text.replace('\n', "\\n")
}

/// A fence longer than any backtick run in `text`.
fn fence(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat((longest + 1).max(3))
}

fn code(text: &str) -> String {
    let f = if text.contains('`') { "`` " } else { "`" };
    let close = if text.contains('`') { " ``" } else { "`" };
    format!("{f}{text}{close}")
}

fn cause_markdown(out: &mut String, c: &v1::Cause, everywhere: &HashMap<&str, Vec<&str>>) {
    let item = c
        .example
        .clone()
        .and_then(|item| DriftItem::try_from(item).ok());
    let subject = match item {
        Some(DriftItem::Package(_)) => format!("package {}", inline(&c.path)),
        _ => inline(&c.path),
    };
    let _ = writeln!(
        out,
        "#### [{}] {} {}{} — {}\n",
        c.severity,
        c.kind,
        code(&subject),
        if c.changed.is_empty() {
            String::new()
        } else {
            format!(" ({})", c.changed.join(", "))
        },
        count(c.host_count, "host", "hosts")
    );
    let elsewhere: Vec<&str> = everywhere
        .get(c.cause.as_str())
        .map(|all| {
            all.iter()
                .copied()
                .filter(|h| !c.hosts.iter().any(|mine| mine == h))
                .collect()
        })
        .unwrap_or_default();
    if elsewhere.is_empty() {
        let _ = writeln!(out, "Hosts: {}\n", inline(&c.hosts.join(", ")));
    } else {
        let _ = writeln!(
            out,
            "Hosts: {} (the same change on {} elsewhere in this report: {})\n",
            inline(&c.hosts.join(", ")),
            count(elsewhere.len() as u64, "more host", "more hosts"),
            inline(&elsewhere.join(", "))
        );
    }
    match &item {
        Some(DriftItem::File(f)) => {
            let _ = writeln!(out, "{}\n", inline(&f.reason));
            for (attr, expected, actual) in attribute_changes(f) {
                let _ = writeln!(out, "- {attr}: {expected} → {actual}");
            }
            if let Some(diff) = &f.diff {
                let f = fence(diff);
                let _ = writeln!(out, "\n{f}diff\n{}\n{f}", diff.trim_end());
            }
        }
        Some(DriftItem::Package(p)) => {
            if let (Some(exp), Some(act)) = (&p.expected_version, &p.actual_version) {
                let _ = writeln!(out, "- version: {exp} → {act}");
            }
        }
        None => {}
    }
    out.push('\n');
}

/// The reconciliation report, ready to paste into a pull request or a ticket.
pub fn report_markdown(r: &v1::IacReport) -> String {
    let mut out = String::new();
    let status = r.status.clone().unwrap_or_default();
    let _ = writeln!(out, "# Drift reconciliation report\n");
    let _ = writeln!(out, "Generated {} by driftwatch.\n", r.generated_at);
    let _ = writeln!(out, "## Summary\n");
    for line in coverage_lines(&status.coverage.unwrap_or_default()) {
        let _ = writeln!(out, "- {line}");
    }
    let _ = writeln!(
        out,
        "- Images in the catalog (Packer manifests): {}",
        status.catalog_images
    );
    if status.states.is_empty() {
        let _ = writeln!(out, "- No IaC state imported");
    }
    for s in &status.states {
        // A stack's line names its kind itself ("pulumi stack web/dev (…)").
        let prefix = match s.kind.as_str() {
            "pulumi" | "cloudformation" => "",
            _ => "State ",
        };
        let _ = writeln!(out, "- {prefix}{}", state_line(s));
    }
    if !status.flag_counts.is_empty() {
        let counts: Vec<String> = status
            .flag_counts
            .iter()
            .map(|(f, n)| format!("{} {n}", code(f)))
            .collect();
        let _ = writeln!(out, "- Flags: {}", counts.join(", "));
    }
    // Every host of each cause, across groups: a change made fleet-wide shows as such.
    let mut everywhere: HashMap<&str, Vec<&str>> = HashMap::new();
    for c in r.groups.iter().flat_map(|g| &g.causes) {
        everywhere
            .entry(c.cause.as_str())
            .or_default()
            .extend(c.hosts.iter().map(String::as_str));
    }
    let _ = writeln!(out, "\n## Drift by resource and image\n");
    if r.groups.is_empty() {
        let _ = writeln!(out, "No drift.\n");
    }
    for g in &r.groups {
        let resource = if g.resource.is_empty() {
            "Hosts no IaC resource owns".to_owned()
        } else {
            code(&g.resource)
        };
        let image = if g.image_id.is_empty() {
            "unknown image".to_owned()
        } else if g.image_build.is_empty() {
            format!("image {}", code(&g.image_id))
        } else {
            format!(
                "image {} (Packer build {})",
                code(&g.image_id),
                g.image_build
            )
        };
        let _ = writeln!(out, "### {resource} — {image}\n");
        if !g.state.is_empty() {
            let _ = writeln!(out, "State: {}  ", g.state);
        }
        let _ = writeln!(
            out,
            "{}: {}\n",
            count(g.hosts.len() as u64, "host", "hosts"),
            g.hosts.join(", ")
        );
        for c in &g.causes {
            cause_markdown(&mut out, c, &everywhere);
        }
    }
    if !status.hosts.is_empty() {
        let _ = writeln!(out, "## Flagged hosts\n");
        let _ = writeln!(out, "| Host | IaC resource | Flag | Why |");
        let _ = writeln!(out, "|---|---|---|---|");
        for h in &status.hosts {
            for f in &h.flags {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    cell(&h.host),
                    cell(&iac_cell(h.iac.as_ref())),
                    code(&f.flag),
                    cell(&f.reason)
                );
            }
        }
        out.push('\n');
    }
    if !status.ghosts.is_empty() {
        let _ = writeln!(out, "## Ghosts: IaC instances no agent reports for\n");
        let _ = writeln!(out, "| Resource | State | Instance | Why |");
        let _ = writeln!(out, "|---|---|---|---|");
        for g in &status.ghosts {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell(&g.address),
                cell(&g.state),
                cell(&dash(&g.instance_id)),
                cell(&g.reason)
            );
        }
        out.push('\n');
    }
    // Every line of it made safe for a terminal (it is printed on one by default).
    out.split('\n').map(super::t).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `terraform show -json` export carries no serial: the line says so. One resource is
    /// "1 resource".
    #[test]
    fn state_lines_say_no_serial_and_count_in_the_singular() {
        let shown = v1::StateInfo {
            name: "web".into(),
            kind: "show_json".into(),
            serial: None,
            resources: 1,
            source: "plan.json".into(),
            imported_at: "2026-11-22T10:00:00.000Z".into(),
            ..Default::default()
        };
        assert_eq!(
            state_line(&shown),
            "web (no serial: a `terraform show -json` export, 1 resource, from plan.json, \
             imported 2026-11-22T10:00:00.000Z)"
        );
        let raw = v1::StateInfo {
            kind: "state".into(),
            serial: Some(4),
            resources: 2,
            ..shown
        };
        assert!(state_line(&raw).starts_with("web (serial 4, 2 resources,"));
        let pulumi = v1::StateInfo {
            kind: "pulumi".into(),
            name: "web/dev".into(),
            serial: None,
            ..raw.clone()
        };
        assert!(
            state_line(&pulumi)
                .starts_with("pulumi stack web/dev (no serial: a Pulumi stack export has none, 2"),
            "{}",
            state_line(&pulumi)
        );
        let cfn = v1::StateInfo {
            kind: "cloudformation".into(),
            serial: None,
            ..raw.clone()
        };
        assert!(
            state_line(&cfn).starts_with(
                "cloudformation stack web (no serial: CloudFormation stack resources have none,"
            ),
            "{}",
            state_line(&cfn)
        );
    }

    #[test]
    fn the_markdown_report_has_causes_diffs_flags_and_ghosts() {
        let facts = |mode| serde_json::json!({"type": "file", "mode": mode, "owner": 0, "group": 0, "size": 9});
        let example: DriftItem = serde_json::from_value(serde_json::json!({
            "path": "/etc/sudoers.d/90-admin", "kind": "modified", "changed": ["content", "mode"],
            "severity": "security", "reason": "content differs from the baseline",
            "expected": facts("0440"), "actual": facts("0640"),
            "diff": "--- a\n+++ b\n-x\n+ALL ```\n"
        }))
        .unwrap();
        let report = v1::IacReport {
            generated_at: "2026-11-22T10:00:00.000Z".into(),
            status: Some(v1::IacStatus {
                coverage: Some(v1::Coverage {
                    reporting_hosts: 3,
                    correlated_hosts: 2,
                    state_instances: 3,
                    covered_instances: 2,
                }),
                hosts: vec![v1::FlaggedHost {
                    host: "i-2".into(),
                    flags: vec![v1::Flag {
                        flag: "image_differs_from_state".into(),
                        reason: "state | says ami-1".into(),
                    }],
                    ..Default::default()
                }],
                ghosts: vec![v1::Ghost {
                    address: "aws_instance.ghost".into(),
                    state: "prod".into(),
                    instance_id: "i-9".into(),
                    reason: "no agent".into(),
                    also: vec![],
                }],
                flag_counts: [("ghost".to_owned(), 1)].into(),
                ..Default::default()
            }),
            groups: vec![v1::ReportGroup {
                resource: "module.web.aws_instance.app[\"a\"]".into(),
                state: "prod".into(),
                image_id: "ami-1".into(),
                image_build: "web".into(),
                hosts: vec!["i-1".into(), "i-2".into()],
                causes: vec![v1::Cause {
                    path: "/etc/sudoers.d/90-admin".into(),
                    kind: "modified".into(),
                    severity: "security".into(),
                    changed: vec!["content".into(), "mode".into()],
                    host_count: 2,
                    hosts: vec!["i-1".into(), "i-2".into()],
                    example: Some(example.to_wire()),
                    ..Default::default()
                }],
            }],
        };
        let md = report_markdown(&report);
        assert!(md.contains("2 of 3 (67%)"), "{md}");
        assert!(
            md.contains(
                "### `module.web.aws_instance.app[\"a\"]` — image `ami-1` (Packer build web)"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "#### [security] modified `/etc/sudoers.d/90-admin` (content, mode) — 2 hosts"
            ),
            "{md}"
        );
        assert!(md.contains("- mode: \"0440\" → \"0640\""), "{md}");
        // The diff holds three backticks: the fence is longer.
        assert!(
            md.contains("````diff\n--- a\n+++ b\n-x\n+ALL ```\n````"),
            "{md}"
        );
        assert!(
            md.contains("| i-2 | - | `image_differs_from_state` | state \\| says ami-1 |"),
            "{md}"
        );
        assert!(
            md.contains("| aws_instance.ghost | prod | i-9 | no agent |"),
            "{md}"
        );
    }
}
