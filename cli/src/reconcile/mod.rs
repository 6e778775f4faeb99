//! `driftwatch reconcile`: from the fleet's drift to a commit in the team's configuration
//! repository (the files the image build installs), on a new branch, ready for review.
//!
//! The path: the collector says what drifted (`select`: one host's items, one cause's hosts,
//! or the hosts an IaC resource owns); [`plan`] decides, item by item, what the repository can
//! take and computes each file's new content, checked against the baseline's and the host's
//! SHA-256; [`git`] commits it off to the side, never touching the work tree, and never
//! pushes. `--dry-run` prints the patch instead.
//!
//! Modules: [`map`] (`--map` prefixes), [`patch`] (unified diffs: parse, apply exactly,
//! render; redaction markers), [`plan`], [`git`].
//!
//! Exit codes: 0 a commit was made (with `--dry-run`: would be) and nothing was refused; 2 at
//! least one file was refused (the rest, if any, committed): the operator must look; 3 nothing
//! to reconcile (no selected drift is a change a repository of files can take); 1 an error
//! (bad arguments, the collector, git, a dirty work tree, an existing branch).

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use driftwatch_proto::drift::DriftItem;
use driftwatch_proto::text::{count, display_path, terminal as t};
use driftwatch_proto::v1::{self, fleet_client::FleetClient};
use driftwatch_shell::{print, print_json};

use crate::Transport;

mod git;
mod map;
mod patch;
mod plan;

use plan::{Action, Observation, Outcome, Plan, Source};

/// A commit was made (dry run: would be), nothing refused.
pub const EXIT_COMMITTED: i32 = 0;
/// At least one file was refused.
pub const EXIT_REFUSED: i32 = 2;
/// Nothing to reconcile.
pub const EXIT_NOTHING: i32 = 3;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("selection").required(true).args(["host", "cause", "resource"]))]
pub struct ReconcileArgs {
    /// The configuration repository (a git work tree, or a directory in one); --map paths are
    /// relative to it.
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
    /// Where a host's files live in the repository: HOST_PREFIX=REPO_PATH, e.g.
    /// /etc=files/etc (repeatable; the longest prefix holding a path wins).
    #[arg(long = "map", value_name = "HOST_PREFIX=REPO_PATH", required = true)]
    pub maps: Vec<String>,
    /// That host's drift: its identity, or its hostname when no other host has it.
    #[arg(long)]
    pub host: Option<String>,
    /// One change shared by hosts (an id from `driftwatch causes`, or a prefix of one no other
    /// id has): applied once, every host named.
    #[arg(long)]
    pub cause: Option<String>,
    /// The drift of the hosts this IaC resource owns (its address, as `driftwatch report`
    /// shows it).
    #[arg(long, value_name = "ADDR")]
    pub resource: Option<String>,
    /// Only these host paths (a file, or a directory above files; repeatable).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
    /// The new branch (default: driftwatch/reconcile-<host, cause or resource>-<UTC time>).
    #[arg(long)]
    pub branch: Option<String>,
    /// Print the patch (on stdout; what is left out on stderr) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON: the branch, the commit, every change, what was skipped and refused.
    #[arg(long)]
    pub json: bool,
}

/// How the drift was selected, for the branch name and the commit message.
enum Selection {
    Host(String),
    Cause { id: String, path: String },
    Resource(String),
}

impl Selection {
    fn flag(&self) -> String {
        match self {
            Selection::Host(h) => format!("--host {h}"),
            Selection::Cause { id, .. } => format!("--cause {id}"),
            Selection::Resource(r) => format!("--resource {r}"),
        }
    }

    fn slug(&self) -> String {
        let raw = match self {
            Selection::Host(h) => h.as_str(),
            Selection::Cause { id, .. } => &id.chars().take(12).collect::<String>(),
            Selection::Resource(r) => r.as_str(),
        };
        let mut slug = String::new();
        for c in raw.chars() {
            let c = if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            };
            if !(c == '-' && slug.ends_with('-')) {
                slug.push(c);
            }
            if slug.len() >= 40 {
                break;
            }
        }
        let slug = slug.trim_matches('-').to_owned();
        if slug.is_empty() {
            "drift".into()
        } else {
            slug
        }
    }
}

pub async fn run(
    channel: Transport,
    collector: &str,
    args: ReconcileArgs,
    rpc: impl Fn(tonic::Status) -> anyhow::Error,
) -> Result<i32> {
    let maps = args
        .maps
        .iter()
        .map(|m| map::Mapping::parse(m).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let repo = git::Repo::open(&args.repo)?;
    let mut client = FleetClient::new(channel).max_decoding_message_size(256 << 20);
    let (selection, mut observations) = select(&mut client, &args, &rpc).await?;
    let branch = args.branch.clone().unwrap_or_else(|| {
        format!(
            "driftwatch/reconcile-{}-{}",
            selection.slug(),
            stamp(std::time::SystemTime::now())
        )
    });
    repo.check_new_branch(&branch)?;
    if !args.paths.is_empty() {
        observations.retain(|o| match &o.item {
            DriftItem::File(f) => {
                let path = display_path(&f.path);
                args.paths.iter().any(|p| {
                    let p = p.trim_end_matches('/');
                    path == p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
                })
            }
            DriftItem::Package(_) => false,
        });
    }
    let mut plan = plan::plan(&observations, &maps, &RepoAtHead(&repo))?;
    fill_times(&mut client, &mut plan, &rpc).await?;
    let code = if !plan.refused.is_empty() {
        EXIT_REFUSED
    } else if plan.changes.is_empty() {
        EXIT_NOTHING
    } else {
        EXIT_COMMITTED
    };
    let patch: String = plan.changes.iter().map(|c| c.patch.as_str()).collect();
    let base = repo.base().to_owned();
    let mut commit = None;
    if !args.dry_run && !plan.changes.is_empty() {
        let dirty = repo.uncommitted()?;
        if !dirty.is_empty() {
            bail!(
                "the repository has uncommitted changes ({}): commit or stash them first",
                dirty.join(", ")
            );
        }
        let message = message(&selection, &args.paths, &plan, collector);
        let writes: Vec<git::Write<'_>> = plan
            .changes
            .iter()
            .map(|c| match &c.content {
                Some(content) => git::Write::Put {
                    path: &c.repo_path,
                    mode: c.mode,
                    content,
                },
                None => git::Write::Remove { path: &c.repo_path },
            })
            .collect();
        commit = Some(repo.commit(&branch, &message, &writes)?);
    }
    if args.json {
        print_json(&json(
            &plan,
            &branch,
            commit.as_deref(),
            &base,
            args.dry_run,
            &patch,
        ))?;
        return Ok(code);
    }
    if args.dry_run {
        let dirty = repo.uncommitted()?;
        if !dirty.is_empty() {
            eprintln!(
                "note: the repository has uncommitted changes ({}); the patch is against HEAD, and a real run refuses until they are committed or stashed",
                t(&dirty.join(", "))
            );
        }
        // The patch alone on stdout, for `git apply`; the rest for people on stderr.
        print(|out| out.write_all(patch.as_bytes()))?;
        let mut err = std::io::stderr().lock();
        summary(&mut err, &plan, None, &branch, &base, repo.current_branch())?;
        return Ok(code);
    }
    print(|out| {
        summary(
            out,
            &plan,
            commit.as_deref(),
            &branch,
            &base,
            repo.current_branch(),
        )
    })?;
    Ok(code)
}

/// `20261203T231000Z`.
fn stamp(now: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(now)
        .to_string()
        .replace(['-', ':'], "")
}

struct RepoAtHead<'a>(&'a git::Repo);

impl plan::RepoView for RepoAtHead<'_> {
    fn entry(&self, repo_path: &str) -> Result<git::Entry> {
        self.0.entry(repo_path)
    }
}

/// The drift the flags select, each item with its host.
async fn select(
    client: &mut FleetClient<Transport>,
    args: &ReconcileArgs,
    rpc: &impl Fn(tonic::Status) -> anyhow::Error,
) -> Result<(Selection, Vec<Observation>)> {
    if let Some(host) = &args.host {
        let detail = client
            .get_host(v1::GetHostRequest { host: host.clone() })
            .await
            .map_err(rpc)?
            .into_inner();
        let (source, items) = host_items(detail)?;
        let selection = Selection::Host(source.host.clone());
        let observations = items
            .into_iter()
            .map(|item| Observation {
                host: source.clone(),
                item,
            })
            .collect();
        return Ok((selection, observations));
    }
    if let Some(id) = &args.cause {
        let causes = client
            .list_causes(v1::ListCausesRequest {
                path: String::new(),
                severity: String::new(),
                min_hosts: 1,
                limit: 0,
                // Every host of the cause: each is fetched and named in the commit.
                max_hosts: 0,
            })
            .await
            .map_err(rpc)?
            .into_inner()
            .causes;
        let id = id.trim().to_ascii_lowercase();
        if id.is_empty() {
            bail!("--cause needs an id (from `driftwatch causes`)");
        }
        let matching: Vec<&v1::Cause> = match causes.iter().find(|c| c.cause == id) {
            Some(exact) => vec![exact],
            None => causes.iter().filter(|c| c.cause.starts_with(&id)).collect(),
        };
        let cause = match matching[..] {
            [one] => one,
            [] => bail!(
                "no current drift has cause {id} (it may have been resolved): see `driftwatch causes`"
            ),
            _ => bail!(
                "cause {id} is the start of {} ids: give more of it",
                matching.len()
            ),
        };
        let example = cause
            .example
            .clone()
            .map(DriftItem::try_from)
            .transpose()
            .context("the cause's example item is not readable")?;
        let mut observations = Vec::new();
        for host in &cause.hosts {
            let detail = client
                .get_host(v1::GetHostRequest { host: host.clone() })
                .await
                .map_err(rpc)?
                .into_inner();
            let (source, items) = host_items(detail)?;
            // The host's item of this cause: same path, same change (it may have moved on
            // since the listing; then it is not this cause's any more).
            let same = |item: &DriftItem| match (item, &example) {
                (DriftItem::File(f), Some(DriftItem::File(e))) => {
                    f.path == e.path
                        && f.kind == e.kind
                        && f.expected.as_ref().map(|x| x.sha256)
                            == e.expected.as_ref().map(|x| x.sha256)
                        && f.actual.as_ref().map(|x| x.sha256)
                            == e.actual.as_ref().map(|x| x.sha256)
                }
                (DriftItem::Package(p), Some(DriftItem::Package(e))) => p == e,
                _ => false,
            };
            observations.extend(items.into_iter().filter(same).map(|item| Observation {
                host: source.clone(),
                item,
            }));
        }
        let selection = Selection::Cause {
            id: cause.cause.clone(),
            path: cause.path.clone(),
        };
        return Ok((selection, observations));
    }
    let address = args.resource.clone().unwrap_or_default();
    let hosts = client
        .list_hosts(v1::ListHostsRequest {
            diverged: true,
            severity: String::new(),
            path: String::new(),
            limit: 0,
        })
        .await
        .map_err(rpc)?
        .into_inner()
        .hosts;
    let owned: Vec<&v1::Host> = hosts
        .iter()
        .filter(|h| resources(h).contains(&address))
        .collect();
    let possible: Vec<&str> = hosts
        .iter()
        .filter(|h| h.candidates.iter().any(|c| c.address == address))
        .map(|h| h.host.as_str())
        .collect();
    if owned.is_empty() && !possible.is_empty() {
        eprintln!(
            "note: {} only possibly {} {address} (a shared private IP or name, not an owner): select {} with --host",
            possible.join(", "),
            if possible.len() == 1 {
                "matches"
            } else {
                "match"
            },
            if possible.len() == 1 { "it" } else { "each" },
        );
    }
    let mut observations = Vec::new();
    for host in owned {
        let detail = client
            .get_host(v1::GetHostRequest {
                host: host.host.clone(),
            })
            .await
            .map_err(rpc)?
            .into_inner();
        let (source, items) = host_items(detail)?;
        observations.extend(items.into_iter().map(|item| Observation {
            host: source.clone(),
            item,
        }));
    }
    Ok((Selection::Resource(address), observations))
}

/// The IaC addresses that own a host.
fn resources(h: &v1::Host) -> Vec<String> {
    match &h.iac {
        Some(link) if link.confidence != "candidate" => std::iter::once(link.address.clone())
            .chain(link.also.iter().map(|p| p.address.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

fn host_items(detail: v1::HostDetail) -> Result<(Source, Vec<DriftItem>)> {
    let host = detail.host.unwrap_or_default();
    let items = detail
        .drift
        .into_iter()
        .map(DriftItem::try_from)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("a drift item of host {} is not readable", host.host))?;
    let source = Source {
        resources: resources(&host),
        host: host.host,
        hostname: host.hostname,
        observed_at: None,
        changed_by: None,
    };
    Ok((source, items))
}

/// When each change's hosts observed it: the newest event of its path in their history.
async fn fill_times(
    client: &mut FleetClient<Transport>,
    plan: &mut Plan,
    rpc: &impl Fn(tonic::Status) -> anyhow::Error,
) -> Result<()> {
    for change in &mut plan.changes {
        // A path with a glob's characters is looked for in the host's whole history.
        let literal = !change
            .host_path
            .contains(['*', '?', '[', ']', '{', '}', '\\']);
        for source in &mut change.hosts {
            let events = client
                .history(v1::HistoryRequest {
                    host: source.host.clone(),
                    since: String::new(),
                    path: if literal {
                        change.host_path.clone()
                    } else {
                        String::new()
                    },
                    limit: if literal { 100 } else { 0 },
                })
                .await
                .map_err(rpc)?
                .into_inner()
                .events;
            source.observed_at = events
                .iter()
                .rev()
                .find(|e| e.path == change.host_path && e.event != "resolved")
                .map(|e| e.observed_at.clone());
        }
    }
    Ok(())
}

/// The commit message: a subject, then each file with its hosts, resources, who and when,
/// and where it came from.
fn message(selection: &Selection, paths: &[String], plan: &Plan, collector: &str) -> String {
    let files = count(plan.changes.len() as u64, "file", "files");
    let hosts: Vec<&Source> = {
        let mut all: Vec<&Source> = plan.changes.iter().flat_map(|c| &c.hosts).collect();
        all.sort_by(|a, b| a.host.cmp(&b.host));
        all.dedup_by(|a, b| a.host == b.host);
        all
    };
    let subject = match selection {
        Selection::Host(h) => format!("driftwatch: reconcile {files} drifted on {h}"),
        Selection::Cause { path, .. } => format!(
            "driftwatch: reconcile {path} as changed on {}",
            count(hosts.len() as u64, "host", "hosts")
        ),
        Selection::Resource(r) => format!("driftwatch: reconcile {files} drifted on {r}"),
    };
    // Everything a host or the collector named is shown escaped, as on a terminal: a forged
    // path cannot add lines to the message.
    let mut m = truncate(&t(&subject), 72);
    m.push_str(
        "\n\nWhat the hosts below changed by hand, as driftwatch observed it, made the image's\nconfiguration.\n",
    );
    for change in &plan.changes {
        m.push_str(&format!(
            "\n{} ({}, from {}, {})\n",
            t(&change.repo_path),
            change.action.as_str(),
            t(&change.host_path),
            change.severity
        ));
        for s in &change.hosts {
            m.push_str(&format!(
                "  host {}{}: resource {}; changed by {}; observed {}\n",
                t(&s.host),
                if s.hostname.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", t(&s.hostname))
                },
                if s.resources.is_empty() {
                    "none".to_owned()
                } else {
                    t(&s.resources.join(", ")).into_owned()
                },
                t(s.changed_by.as_deref().unwrap_or("unknown")),
                t(s.observed_at.as_deref().unwrap_or("at an unknown time")),
            ));
        }
        for note in &change.notes {
            m.push_str(&format!("  note: {}\n", t(note)));
        }
    }
    let mut resources: Vec<&str> = hosts
        .iter()
        .flat_map(|s| s.resources.iter().map(String::as_str))
        .collect();
    resources.sort_unstable();
    resources.dedup();
    let selected: String = std::iter::once(selection.flag())
        .chain(paths.iter().map(|p| format!("--path {p}")))
        .collect::<Vec<_>>()
        .join(" ");
    m.push_str(&format!(
        "\nHosts: {}\nResources: {}\nCollector: {}\nSelected with: driftwatch reconcile {}\n",
        t(&hosts
            .iter()
            .map(|s| s.host.as_str())
            .collect::<Vec<_>>()
            .join(", ")),
        if resources.is_empty() {
            "none".to_owned()
        } else {
            t(&resources.join(", ")).into_owned()
        },
        t(collector),
        t(&selected),
    ));
    if !plan.skipped.is_empty() || !plan.refused.is_empty() {
        m.push_str("\nLeft out:\n");
        for o in plan.refused.iter().chain(&plan.skipped) {
            m.push_str(&format!("  {}: {}\n", t(&o.path), t(&o.reason)));
        }
    }
    m
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn summary(
    out: &mut dyn std::io::Write,
    plan: &Plan,
    commit: Option<&str>,
    branch: &str,
    base: &str,
    current: Option<String>,
) -> std::io::Result<()> {
    let files = count(plan.changes.len() as u64, "file", "files");
    let base = format!(
        "{}{}",
        current.map(|b| format!("{b} at ")).unwrap_or_default(),
        base.chars().take(12).collect::<String>()
    );
    match commit {
        Some(c) => writeln!(
            out,
            "Committed {files} on the new branch {} ({}), from {}; the checkout is unchanged, nothing was pushed.",
            t(branch),
            c.chars().take(12).collect::<String>(),
            t(&base)
        )?,
        None if plan.changes.is_empty() && plan.skipped.is_empty() && plan.refused.is_empty() => {
            writeln!(out, "Nothing to reconcile: the selection holds no drift.")?
        }
        None if plan.changes.is_empty() => writeln!(out, "Nothing to commit.")?,
        None => writeln!(
            out,
            "Dry run: would commit {files} on the new branch {}, from {}.",
            t(branch),
            t(&base)
        )?,
    }
    for c in &plan.changes {
        let hosts: Vec<&str> = c.hosts.iter().map(|s| s.host.as_str()).collect();
        writeln!(
            out,
            "  {:<6}  {}  ({}; {})",
            c.action.as_str(),
            t(&c.repo_path),
            t(&c.host_path),
            t(&hosts.join(", "))
        )?;
        for note in &c.notes {
            writeln!(out, "          note: {}", t(note))?;
        }
    }
    outcomes(out, "Refused", &plan.refused)?;
    outcomes(out, "Skipped", &plan.skipped)?;
    if commit.is_some() {
        writeln!(
            out,
            "Review it with `git show {}`; push it for review when it is right.",
            t(branch)
        )?;
    }
    Ok(())
}

fn outcomes(out: &mut dyn std::io::Write, what: &str, list: &[Outcome]) -> std::io::Result<()> {
    if list.is_empty() {
        return Ok(());
    }
    writeln!(out, "{what} ({}):", list.len())?;
    for o in list {
        writeln!(
            out,
            "  {}{}: {} ({})",
            t(&o.path),
            o.repo_path
                .as_ref()
                .map(|r| format!(" -> {}", t(r)))
                .unwrap_or_default(),
            t(&o.reason),
            t(&o.hosts.join(", "))
        )?;
    }
    Ok(())
}

fn json(
    plan: &Plan,
    branch: &str,
    commit: Option<&str>,
    base: &str,
    dry_run: bool,
    patch: &str,
) -> serde_json::Value {
    use serde_json::json;
    let outcome = |o: &Outcome| {
        json!({
            "path": o.path,
            "repo_path": o.repo_path,
            "hosts": o.hosts,
            "reason": o.reason,
        })
    };
    json!({
        "branch": branch,
        "commit": commit,
        "base": base,
        "dry_run": dry_run,
        "changes": plan.changes.iter().map(|c| json!({
            "action": c.action.as_str(),
            "path": c.host_path,
            "repo_path": c.repo_path,
            "severity": c.severity.as_str(),
            "mode": format!("{:o}", if c.action == Action::Remove { c.old_mode } else { c.mode }),
            "hosts": c.hosts.iter().map(|s| json!({
                "host": s.host,
                "hostname": s.hostname,
                "resources": s.resources,
                "changed_by": s.changed_by,
                "observed_at": s.observed_at,
            })).collect::<Vec<_>>(),
            "notes": c.notes,
            "patch": c.patch,
        })).collect::<Vec<_>>(),
        "skipped": plan.skipped.iter().map(outcome).collect::<Vec<_>>(),
        "refused": plan.refused.iter().map(outcome).collect::<Vec<_>>(),
        "patch": patch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_branch_names_are_valid_refs() {
        assert_eq!(Selection::Host("i-0abc".into()).slug(), "i-0abc");
        assert_eq!(
            Selection::Resource("module.web.aws_instance.app[\"b\"]".into()).slug(),
            "module-web-aws_instance-app-b"
        );
        assert_eq!(Selection::Host("../..".into()).slug(), "drift");
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_803_400);
        assert_eq!(stamp(when), "20251203T231000Z");
    }

    #[test]
    fn the_message_names_hosts_resources_who_and_when_and_cannot_be_forged() {
        let source = |host: &str, resource: &str| Source {
            host: host.into(),
            hostname: format!("{host}.internal"),
            resources: vec![resource.into()],
            observed_at: Some("2026-12-03T22:00:00Z".into()),
            changed_by: None,
        };
        let plan = Plan {
            changes: vec![plan::Change {
                host_path: "/etc/app.conf".into(),
                repo_path: "files/etc/app.conf".into(),
                action: Action::Modify,
                mode: 0o100644,
                old_mode: 0o100644,
                content: Some(b"x\n".to_vec()),
                patch: String::new(),
                severity: driftwatch_proto::drift::Severity::Behavioral,
                hosts: vec![
                    source("i-1", "aws_instance.web[0]"),
                    source("i-2", "aws_instance.web[1]"),
                ],
                notes: vec![],
            }],
            skipped: vec![Outcome {
                path: "/etc/x\nSigned-off-by: someone".into(),
                repo_path: None,
                hosts: vec!["i-1".into()],
                reason: "outside every --map".into(),
            }],
            refused: vec![],
        };
        let selection = Selection::Cause {
            id: "00ff".into(),
            path: "/etc/app.conf".into(),
        };
        let m = message(&selection, &["/etc".into()], &plan, "http://c:7470");
        let expected = "driftwatch: reconcile /etc/app.conf as changed on 2 hosts\n\n";
        assert!(m.starts_with(expected), "{m}");
        for says in [
            "\nfiles/etc/app.conf (modify, from /etc/app.conf, behavioral)\n",
            "  host i-1 (i-1.internal): resource aws_instance.web[0]; changed by unknown; observed 2026-12-03T22:00:00Z\n",
            "  host i-2 (i-2.internal): resource aws_instance.web[1]; changed by unknown; observed 2026-12-03T22:00:00Z\n",
            "\nHosts: i-1, i-2\nResources: aws_instance.web[0], aws_instance.web[1]\nCollector: http://c:7470\n",
            "Selected with: driftwatch reconcile --cause 00ff --path /etc\n",
            "Left out:\n  /etc/x\\nSigned-off-by: someone: outside every --map\n",
        ] {
            assert!(m.contains(says), "{says:?} not in:\n{m}");
        }
        assert!(!m.contains("\nSigned-off-by"), "{m}");
    }

    #[test]
    fn long_subjects_are_cut_on_a_character() {
        assert_eq!(truncate("short", 72), "short");
        let long = "é".repeat(100);
        assert_eq!(truncate(&long, 72).chars().count(), 72);
    }
}
