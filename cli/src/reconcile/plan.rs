//! From drift items to the repository's changes, without touching anything: which items are
//! reconcilable, where each goes (`map`), whether the repository still holds what the drift
//! was measured against, and the content each file gets. Every item ends in exactly one of
//! three lists: a change, skipped (not something a repository of files can take, with why),
//! or refused (it could be, but doing it would be wrong now, with why).
//!
//! What is reconcilable:
//! - a modified regular file whose content changed and whose diff the agent captured: the
//!   diff is applied to the repository's file;
//! - an added regular file with its content captured (a diff from nothing): the file is
//!   created, where the repository has nothing;
//! - a removed regular file: the repository's file is removed (its content is not needed).
//!
//! Skipped: packages, anything not a regular file, changes of only mode, owner, group or
//! extended attributes (a repository holds content; the image build sets those), content the
//! agent did not capture (secrets, binaries, files over its size limit: no diff), a hash still
//! pending, a path outside every `--map`, and a file the repository already has as the host
//! has it.
//!
//! Refused: a repository file whose SHA-256 is not the baseline's (`expected.sha256`) — it
//! moved on since the image was built; a diff holding a redaction marker (the secret's real
//! value never leaves the host); a diff that does not apply exactly, or whose result's SHA-256
//! is not the host's (`actual.sha256`); hosts that changed one path differently.

use std::collections::BTreeMap;

use driftwatch_proto::baseline::FileKind;
use driftwatch_proto::drift::{Attr, DriftItem, DriftKind, FileDrift, Severity};
use driftwatch_proto::text::display_path;
use sha2::{Digest as _, Sha256};

use super::git::Entry;
use super::map::{Mapping, map};
use super::patch::{self, Hunk};

/// One host's drift item, with what the commit message says about it.
#[derive(Clone, Debug)]
pub struct Observation {
    pub host: Source,
    pub item: DriftItem,
}

/// A host an item came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The host's identity.
    pub host: String,
    pub hostname: String,
    /// The IaC resources that own the host (addresses).
    pub resources: Vec<String>,
    /// When the agent observed the change (RFC 3339), if the history holds it.
    pub observed_at: Option<String>,
    /// Who made the change: the collector's items carry no attribution yet.
    pub changed_by: Option<String>,
}

/// What the repository holds, at `HEAD`.
pub trait RepoView {
    fn entry(&self, repo_path: &str) -> anyhow::Result<Entry>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Modify,
    Create,
    Remove,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Modify => "modify",
            Action::Create => "create",
            Action::Remove => "remove",
        }
    }
}

/// One file of the commit.
#[derive(Clone, Debug)]
pub struct Change {
    pub host_path: String,
    pub repo_path: String,
    pub action: Action,
    /// The git mode the file gets (unused for a removal).
    pub mode: u32,
    /// The git mode it had (unused for a creation).
    pub old_mode: u32,
    /// The new content; `None` for a removal.
    pub content: Option<Vec<u8>>,
    /// The file's patch, as `git diff` prints it.
    pub patch: String,
    pub severity: Severity,
    pub hosts: Vec<Source>,
    /// What of the host's change the commit does not carry (mode, owner...).
    pub notes: Vec<String>,
}

/// An item left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The host's path (or `package:NAME:ARCH`).
    pub path: String,
    pub repo_path: Option<String>,
    pub hosts: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub skipped: Vec<Outcome>,
    pub refused: Vec<Outcome>,
}

/// Plans the changes of `observations` in `repo`. Fails only when the repository cannot be
/// read.
pub fn plan(
    observations: &[Observation],
    maps: &[Mapping],
    repo: &dyn RepoView,
) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    // Skipped items of one path for one reason are one line, naming every host.
    let mut skipped: BTreeMap<(String, Option<String>, String), Vec<String>> = BTreeMap::new();
    let mut groups: BTreeMap<String, Group<'_>> = BTreeMap::new();
    for obs in observations {
        let file = match &obs.item {
            DriftItem::Package(p) => {
                skipped
                    .entry((
                        format!("package:{}:{}", p.name, p.arch),
                        None,
                        "a package: the image build installs packages, a repository of files does not hold them".into(),
                    ))
                    .or_default()
                    .push(obs.host.host.clone());
                continue;
            }
            DriftItem::File(f) => f.as_ref(),
        };
        let path = display_path(&file.path);
        let repo_path = match map(maps, &file.path) {
            Ok(p) => p,
            Err(why) => {
                skipped
                    .entry((path, None, why))
                    .or_default()
                    .push(obs.host.host.clone());
                continue;
            }
        };
        if let Some(why) = not_reconcilable(file) {
            skipped
                .entry((path, Some(repo_path), why))
                .or_default()
                .push(obs.host.host.clone());
            continue;
        }
        groups
            .entry(path)
            .or_insert_with(|| (repo_path, Vec::new()))
            .1
            .push((&obs.host, file));
    }
    for ((path, repo_path, reason), hosts) in skipped {
        plan.skipped.push(Outcome {
            path,
            repo_path,
            hosts: dedup(hosts),
            reason,
        });
    }
    for (path, (repo_path, items)) in groups {
        let hosts: Vec<String> = dedup(items.iter().map(|(s, _)| s.host.clone()).collect());
        let outcome = |reason: String| Outcome {
            path: path.clone(),
            repo_path: Some(repo_path.clone()),
            hosts: hosts.clone(),
            reason,
        };
        // Hosts that changed the path differently: one change cannot be all of them.
        let mut variants: BTreeMap<Variant, Vec<String>> = BTreeMap::new();
        for (source, f) in &items {
            variants
                .entry((f.kind, sha(f, Side::Expected), sha(f, Side::Actual)))
                .or_default()
                .push(source.host.clone());
        }
        if variants.len() > 1 {
            let mut described: Vec<String> = variants
                .iter()
                .map(|((kind, expected, actual), hosts)| {
                    let sha = |s: &Option<[u8; 32]>| s.as_ref().map_or("?".into(), short);
                    format!(
                        "{} {}",
                        dedup(hosts.clone()).join(", "),
                        match kind {
                            DriftKind::Removed => {
                                format!("removed it (sha256 {})", sha(expected))
                            }
                            DriftKind::Added => format!("created it as sha256 {}", sha(actual)),
                            DriftKind::Modified => format!(
                                "changed it from sha256 {} to {}",
                                sha(expected),
                                sha(actual)
                            ),
                        }
                    )
                })
                .collect();
            // By host, not by hash.
            described.sort();
            plan.refused.push(outcome(format!(
                "hosts changed it differently ({}): narrow the selection (--host, --cause or --path) to one change",
                described.join("; ")
            )));
            continue;
        }
        let (_, first) = items[0];
        let sources: Vec<Source> = {
            let mut seen = Vec::new();
            let mut out = Vec::new();
            for (s, _) in &items {
                if !seen.contains(&s.host) {
                    seen.push(s.host.clone());
                    out.push((*s).clone());
                }
            }
            out
        };
        match decide(first, &path, &repo_path, repo)? {
            Decision::Change(change) => plan.changes.push(Change {
                hosts: sources,
                ..*change
            }),
            Decision::Skip(why) => plan.skipped.push(outcome(why)),
            Decision::Refuse(why) => plan.refused.push(outcome(why)),
        }
    }
    Ok(plan)
}

/// A host path's repository path and the items of it, with their hosts.
type Group<'a> = (String, Vec<(&'a Source, &'a FileDrift)>);

/// A change as a whole: its kind and the SHA-256 before and after.
type Variant = (DriftKind, Option<[u8; 32]>, Option<[u8; 32]>);

enum Decision {
    Change(Box<Change>),
    Skip(String),
    Refuse(String),
}

#[derive(Clone, Copy)]
enum Side {
    Expected,
    Actual,
}

fn sha(f: &FileDrift, side: Side) -> Option<[u8; 32]> {
    match side {
        Side::Expected => f.expected.as_ref()?.sha256,
        Side::Actual => f.actual.as_ref()?.sha256,
    }
}

fn short(sha: &[u8; 32]) -> String {
    hex::encode(&sha[..6])
}

fn dedup(mut hosts: Vec<String>) -> Vec<String> {
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Why an item is no change for a repository of files, if it is not.
fn not_reconcilable(f: &FileDrift) -> Option<String> {
    let regular = |facts: Option<&driftwatch_proto::drift::Facts>| {
        facts.is_none_or(|x| x.kind == FileKind::Regular)
    };
    if !regular(f.expected.as_ref()) || !regular(f.actual.as_ref()) {
        return Some("not a regular file (a directory, symlink or device)".into());
    }
    if f.reason.ends_with("; hash pending") {
        return Some("the host is still hashing it: run again once its hash is reported".into());
    }
    match f.kind {
        DriftKind::Removed => None,
        DriftKind::Modified if !f.changed.contains(&Attr::Content) => {
            let changed: Vec<&str> = f.changed.iter().map(|a| a.as_str()).collect();
            Some(format!(
                "only its {} changed: a repository holds content; set those in the image build",
                changed.join(", ")
            ))
        }
        DriftKind::Modified | DriftKind::Added if f.diff.is_none() => Some(
            "the agent captured no content for it (a secret, a binary or a file over its size limit): no diff to apply"
                .into(),
        ),
        DriftKind::Modified | DriftKind::Added => {
            if f.actual.as_ref().and_then(|a| a.sha256).is_none() {
                Some("the host reported no hash of its content".into())
            } else {
                None
            }
        }
    }
}

fn decide(
    f: &FileDrift,
    path: &str,
    repo_path: &str,
    repo: &dyn RepoView,
) -> anyhow::Result<Decision> {
    let entry = repo.entry(repo_path)?;
    let actual_sha = sha(f, Side::Actual);
    let expected_sha = sha(f, Side::Expected);
    let sum = |content: &[u8]| -> [u8; 32] { Sha256::digest(content).into() };
    let mut notes = Vec::new();
    let (old_mode, old) = match (&entry, f.kind) {
        (Entry::Other(what), _) => {
            return Ok(Decision::Refuse(format!(
                "{repo_path} is {what} in the repository, not a regular file"
            )));
        }
        (Entry::Missing, DriftKind::Removed) => {
            return Ok(Decision::Skip("already absent from the repository".into()));
        }
        (Entry::Missing, DriftKind::Modified) => {
            return Ok(Decision::Refuse(format!(
                "{repo_path} is not in the repository (at HEAD): check --map"
            )));
        }
        (Entry::Missing, DriftKind::Added) => (0o100644, Vec::new()),
        (Entry::File { content, .. }, DriftKind::Modified | DriftKind::Added)
            if Some(sum(content)) == actual_sha =>
        {
            return Ok(Decision::Skip(
                "the repository already has it as the host has it".into(),
            ));
        }
        (Entry::File { .. }, DriftKind::Added) => {
            return Ok(Decision::Refuse(format!(
                "{repo_path} exists in the repository, but the baseline had no such file: it is not the content the drift was measured against"
            )));
        }
        (Entry::File { mode, content }, _) => {
            let have = sum(content);
            if Some(have) != expected_sha {
                return Ok(Decision::Refuse(format!(
                    "{repo_path} no longer matches the baseline the drift was measured against (sha256 {} in the repository, {} in the baseline)",
                    hex::encode(have),
                    expected_sha.map_or_else(|| "unknown".into(), hex::encode)
                )));
            }
            (*mode, content.clone())
        }
    };
    let exec = |facts: Option<&driftwatch_proto::drift::Facts>| facts.map(|x| x.mode & 0o111 != 0);
    if f.kind == DriftKind::Removed {
        let patch = match patch::removal(&old) {
            Some(hunks) => format!(
                "diff --git a/{repo_path} b/{repo_path}\ndeleted file mode {old_mode:o}\n--- a/{repo_path}\n+++ /dev/null\n{}",
                patch::render_hunks(&hunks)
            ),
            None => format!(
                "diff --git a/{repo_path} b/{repo_path}\ndeleted file mode {old_mode:o}\nBinary files a/{repo_path} and /dev/null differ\n"
            ),
        };
        return Ok(Decision::Change(Box::new(Change {
            host_path: path.to_owned(),
            repo_path: repo_path.to_owned(),
            action: Action::Remove,
            mode: old_mode,
            old_mode,
            content: None,
            patch,
            severity: f.severity,
            hosts: Vec::new(),
            notes,
        })));
    }
    let diff = f.diff.as_deref().unwrap_or_default();
    let hunks: Vec<Hunk> = match patch::parse(diff) {
        Ok(h) => h,
        Err(e) => return Ok(Decision::Refuse(format!("its diff cannot be read: {e}"))),
    };
    if patch::hunks_redacted(&hunks) {
        return Ok(Decision::Refuse(
            "its diff touches a redacted secret ([redacted …]): the real value never leaves the host, so this change must be made by hand"
                .into(),
        ));
    }
    let new = match patch::apply(&old, &hunks) {
        Ok(n) => n,
        Err(e) => {
            return Ok(Decision::Refuse(format!(
                "its diff does not apply to {repo_path}: {e}"
            )));
        }
    };
    if Some(sum(&new)) != actual_sha {
        return Ok(Decision::Refuse(format!(
            "applying its diff does not give the host's content (sha256 {} expected, {} made): the diff is not the whole change (e.g. bytes that are not UTF-8)",
            actual_sha.map_or_else(|| "unknown".into(), hex::encode),
            hex::encode(sum(&new))
        )));
    }
    // A repository holds the executable bit and content; the rest of a file's metadata is the
    // image build's.
    let mut mode = old_mode;
    match exec(f.actual.as_ref()) {
        Some(true) if f.kind == DriftKind::Added || f.changed.contains(&Attr::Mode) => {
            mode = 0o100755
        }
        Some(false) if f.changed.contains(&Attr::Mode) => mode = 0o100644,
        _ => {}
    }
    let others: Vec<&str> = f
        .changed
        .iter()
        .filter(|a| matches!(a, Attr::Mode | Attr::Owner | Attr::Group | Attr::Xattrs))
        .map(|a| a.as_str())
        .collect();
    if !others.is_empty() {
        let what = match (&f.expected, &f.actual) {
            (Some(e), Some(a)) if f.changed.contains(&Attr::Mode) => {
                format!(" (mode {:04o} -> {:04o})", e.mode, a.mode)
            }
            _ => String::new(),
        };
        notes.push(format!(
            "its {} changed too{what}: not carried beyond the executable bit; set it in the image build",
            others.join(", ")
        ));
    }
    let (action, header) = match f.kind {
        DriftKind::Added => (
            Action::Create,
            format!(
                "diff --git a/{repo_path} b/{repo_path}\nnew file mode {mode:o}\n--- /dev/null\n+++ b/{repo_path}\n"
            ),
        ),
        _ => {
            let mut header = format!("diff --git a/{repo_path} b/{repo_path}\n");
            if mode != old_mode {
                header.push_str(&format!("old mode {old_mode:o}\nnew mode {mode:o}\n"));
            }
            header.push_str(&format!("--- a/{repo_path}\n+++ b/{repo_path}\n"));
            (Action::Modify, header)
        }
    };
    Ok(Decision::Change(Box::new(Change {
        host_path: path.to_owned(),
        repo_path: repo_path.to_owned(),
        action,
        mode,
        old_mode,
        content: Some(new),
        patch: format!("{header}{}", patch::render_hunks(&hunks)),
        severity: f.severity,
        hosts: Vec::new(),
        notes,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_proto::drift::{Facts, PackageChange, PackageDrift};
    use std::collections::HashMap;

    struct FakeRepo(HashMap<&'static str, Entry>);

    impl RepoView for FakeRepo {
        fn entry(&self, repo_path: &str) -> anyhow::Result<Entry> {
            Ok(match self.0.get(repo_path) {
                Some(Entry::File { mode, content }) => Entry::File {
                    mode: *mode,
                    content: content.clone(),
                },
                Some(Entry::Other(what)) => Entry::Other(what),
                Some(Entry::Missing) | None => Entry::Missing,
            })
        }
    }

    fn repo(files: &[(&'static str, &str)]) -> FakeRepo {
        FakeRepo(
            files
                .iter()
                .map(|(p, c)| {
                    (
                        *p,
                        Entry::File {
                            mode: 0o100644,
                            content: c.as_bytes().to_vec(),
                        },
                    )
                })
                .collect(),
        )
    }

    fn facts(content: &str, mode: u32) -> Facts {
        Facts {
            kind: FileKind::Regular,
            mode,
            owner: 0,
            group: 0,
            size: content.len() as u64,
            sha256: Some(Sha256::digest(content.as_bytes()).into()),
            target: None,
            xattrs: vec![],
        }
    }

    fn diff(old: &str, new: &str, path: &str) -> String {
        similar::TextDiff::from_lines(old, new)
            .unified_diff()
            .context_radius(3)
            .header(&format!("a{path}"), &format!("b{path}"))
            .to_string()
    }

    fn modified(path: &str, old: &str, new: &str) -> DriftItem {
        DriftItem::File(Box::new(FileDrift {
            path: path.into(),
            kind: DriftKind::Modified,
            changed: vec![Attr::Size, Attr::Content],
            severity: Severity::Security,
            reason: "security-sensitive path".into(),
            expected: Some(facts(old, 0o644)),
            actual: Some(facts(new, 0o644)),
            diff: Some(diff(old, new, path)),
        }))
    }

    fn obs(host: &str, item: DriftItem) -> Observation {
        Observation {
            host: Source {
                host: host.into(),
                hostname: format!("{host}.test"),
                resources: vec![],
                observed_at: None,
                changed_by: None,
            },
            item,
        }
    }

    fn maps() -> Vec<Mapping> {
        vec![Mapping::parse("/etc=files/etc").unwrap()]
    }

    const SSHD: &str = "# sshd\nPermitRootLogin no\nPasswordAuthentication no\n";
    const SSHD_NEW: &str = "# sshd\nPermitRootLogin no\nPasswordAuthentication yes\n";

    #[test]
    fn a_modified_file_gets_the_host_s_content() {
        let r = repo(&[("files/etc/ssh/sshd_config", SSHD)]);
        let observations = [
            obs("i-1", modified("/etc/ssh/sshd_config", SSHD, SSHD_NEW)),
            obs("i-2", modified("/etc/ssh/sshd_config", SSHD, SSHD_NEW)),
        ];
        let plan = plan(&observations, &maps(), &r).unwrap();
        assert!(
            plan.skipped.is_empty() && plan.refused.is_empty(),
            "{plan:?}"
        );
        let [change] = &plan.changes[..] else {
            panic!("{plan:?}")
        };
        assert_eq!(change.repo_path, "files/etc/ssh/sshd_config");
        assert_eq!(change.content.as_deref(), Some(SSHD_NEW.as_bytes()));
        assert_eq!(change.action, Action::Modify);
        let hosts: Vec<&str> = change.hosts.iter().map(|s| s.host.as_str()).collect();
        assert_eq!(hosts, ["i-1", "i-2"], "one change, every host");
        assert!(
            change
                .patch
                .contains("--- a/files/etc/ssh/sshd_config\n+++ b/files/etc/ssh/sshd_config\n"),
            "{}",
            change.patch
        );
        assert!(
            change
                .patch
                .contains("-PasswordAuthentication no\n+PasswordAuthentication yes\n")
        );
    }

    #[test]
    fn a_repository_file_that_moved_on_is_refused() {
        let r = repo(&[("files/etc/ssh/sshd_config", "# edited since\n")]);
        let plan = plan(
            &[obs("i-1", modified("/etc/ssh/sshd_config", SSHD, SSHD_NEW))],
            &maps(),
            &r,
        )
        .unwrap();
        assert!(plan.changes.is_empty());
        assert!(
            plan.refused[0].reason.starts_with(
                "files/etc/ssh/sshd_config no longer matches the baseline the drift was measured against (sha256 "
            ),
            "{plan:?}"
        );
    }

    #[test]
    fn hosts_that_disagree_refuse_the_path_naming_them() {
        let r = repo(&[("files/etc/ssh/sshd_config", SSHD)]);
        let plan = plan(
            &[
                obs("i-1", modified("/etc/ssh/sshd_config", SSHD, SSHD_NEW)),
                obs("i-2", modified("/etc/ssh/sshd_config", SSHD, "other\n")),
            ],
            &maps(),
            &r,
        )
        .unwrap();
        assert!(plan.changes.is_empty());
        let reason = &plan.refused[0].reason;
        assert!(
            reason.contains("hosts changed it differently (i-"),
            "{reason}"
        );
        assert!(
            reason.contains("i-1 changed it from sha256 ")
                && reason.contains("; i-2 changed it from sha256 "),
            "{reason}"
        );
    }

    #[test]
    fn redacted_secrets_are_never_written() {
        let old = "user = app\npassword = [redacted]\n";
        let new = "user = app2\npassword = [redacted 0a1b2c3d]\n";
        let r = repo(&[("files/etc/app.conf", "user = app\npassword = hunter2\n")]);
        let mut item = modified("/etc/app.conf", old, new);
        if let DriftItem::File(f) = &mut item {
            // The hashes are of the real contents.
            f.expected = Some(facts("user = app\npassword = hunter2\n", 0o644));
            f.actual = Some(facts("user = app2\npassword = hunter3\n", 0o644));
        }
        let plan = plan(&[obs("i-1", item)], &maps(), &r).unwrap();
        assert!(plan.changes.is_empty());
        assert!(
            plan.refused[0].reason.contains("redacted secret"),
            "{plan:?}"
        );
    }

    #[test]
    fn a_result_that_is_not_the_host_s_content_is_refused() {
        let r = repo(&[("files/etc/motd", "hi\n")]);
        let mut item = modified("/etc/motd", "hi\n", "hello\n");
        if let DriftItem::File(f) = &mut item {
            f.actual = Some(facts("hello\u{fffd}\n", 0o644));
        }
        let plan = plan(&[obs("i-1", item)], &maps(), &r).unwrap();
        assert!(
            plan.refused[0]
                .reason
                .starts_with("applying its diff does not give the host's content"),
            "{plan:?}"
        );
    }

    #[test]
    fn what_a_repository_cannot_take_is_skipped_with_why() {
        let r = repo(&[("files/etc/motd", "hi\n"), ("files/etc/done", "new\n")]);
        let mut mode_only = modified("/etc/motd", "hi\n", "hi\n");
        let mut no_diff = modified("/etc/shadow", "a\n", "b\n");
        if let DriftItem::File(f) = &mut mode_only {
            f.changed = vec![Attr::Mode];
            f.diff = None;
        }
        if let DriftItem::File(f) = &mut no_diff {
            f.diff = None;
        }
        let package = DriftItem::Package(PackageDrift {
            name: "nginx".into(),
            arch: "amd64".into(),
            kind: PackageChange::Installed,
            expected_version: None,
            actual_version: Some("1".into()),
            source: "dpkg".into(),
        });
        let plan = plan(
            &[
                obs("i-1", mode_only),
                obs("i-1", no_diff),
                obs("i-1", package),
                obs("i-1", modified("/usr/bin/x", "a\n", "b\n")),
                obs("i-1", modified("/etc/done", "old\n", "new\n")),
            ],
            &maps(),
            &r,
        )
        .unwrap();
        assert!(
            plan.changes.is_empty() && plan.refused.is_empty(),
            "{plan:?}"
        );
        let reasons: Vec<(&str, &str)> = plan
            .skipped
            .iter()
            .map(|o| (o.path.as_str(), o.reason.as_str()))
            .collect();
        let has = |path: &str, says: &str| {
            assert!(
                reasons.iter().any(|(p, r)| *p == path && r.contains(says)),
                "{path}: {says}: {reasons:?}"
            )
        };
        has("/etc/motd", "only its mode changed");
        has("/etc/shadow", "captured no content");
        has("package:nginx:amd64", "a package");
        has("/usr/bin/x", "outside every --map");
        has("/etc/done", "already has it as the host has it");
    }

    #[test]
    fn added_files_are_created_and_removed_ones_removed() {
        let r = repo(&[("files/etc/old.conf", "gone\n")]);
        let added = DriftItem::File(Box::new(FileDrift {
            path: "/etc/new.conf".into(),
            kind: DriftKind::Added,
            changed: vec![],
            severity: Severity::Behavioral,
            reason: String::new(),
            expected: None,
            actual: Some(facts("a = 1\n", 0o755)),
            diff: Some(diff("", "a = 1\n", "/etc/new.conf")),
        }));
        let removed = DriftItem::File(Box::new(FileDrift {
            path: "/etc/old.conf".into(),
            kind: DriftKind::Removed,
            changed: vec![],
            severity: Severity::Behavioral,
            reason: String::new(),
            expected: Some(facts("gone\n", 0o644)),
            actual: None,
            diff: None,
        }));
        let plan = plan(&[obs("i-1", added), obs("i-1", removed)], &maps(), &r).unwrap();
        assert!(
            plan.refused.is_empty() && plan.skipped.is_empty(),
            "{plan:?}"
        );
        let created = &plan.changes[0];
        assert_eq!(
            (created.action, created.mode, created.content.as_deref()),
            (Action::Create, 0o100755, Some(&b"a = 1\n"[..]))
        );
        assert!(
            created
                .patch
                .contains("new file mode 100755\n--- /dev/null\n")
        );
        let gone = &plan.changes[1];
        assert_eq!(
            (gone.action, gone.content.as_deref()),
            (Action::Remove, None)
        );
        assert!(
            gone.patch.contains("+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n"),
            "{}",
            gone.patch
        );
    }
}
