//! Comparing what is with what should be: drift items ([`FileDrift`], the drift model's, from
//! `driftwatch_proto::drift`), their severity, and diffs.
//!
//! One function, [`compare()`], decides about one path; [`compare_sets`] merge-joins two sorted
//! entry lists (a baseline and a scan, or two baselines) through it, and
//! [`compare::compare_with_baseline`] a whole root as `scan` walks it. The daemon calls
//! [`compare()`] for single paths, so the one-shot check and the watcher can never disagree.
//!
//! - [`mod@compare`]: the whole-root comparison (`check`, the daemon's rescans).
//! - [`baseline`]: the baseline's entries, held compact for the daemon's life.
//! - [`redact`]: secret values in captured content, replaced before a baseline is baked or a
//!   diff is made; the host's [`RedactKey`].

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use driftwatch_proto::baseline::{Entry, FileKind};
pub use driftwatch_proto::drift::{DriftKind, Facts, FileDrift};
use driftwatch_proto::text::escape_bytes;

use crate::rules::{Attr, Rules, Severity};

pub mod baseline;
pub mod compare;
pub mod redact;

pub use redact::RedactKey;

const SETUID: u32 = 0o4000;
const SETGID: u32 = 0o2000;
const ANY_EXEC: u32 = 0o111;
const CAPABILITY_XATTR: &str = "security.capability";

/// Compares the expected and actual state of one path. `None` means no drift. Secret values in
/// captured content are redacted (`key` tags the current ones) before they reach the diff.
pub fn compare(
    path: &Path,
    expected: Option<&Entry>,
    actual: Option<&Entry>,
    rules: &Rules,
    key: &RedactKey,
) -> Option<FileDrift> {
    compare_inner(path, expected, actual, rules, key, false)
}

/// [`compare()`] for a regular file whose hash is still being computed (`actual.sha256` is
/// `None`): a large file is hashed off the event path, and its change reported before the
/// hash is known. Its content counts as changed (the caller only gets here when its
/// metadata no longer matches the baseline's), so the drift names `content` with no actual
/// hash, and the reason says the hash is pending; a follow-up evaluation with the hash
/// replaces it (or resolves it, if the content turns out unchanged).
pub fn compare_unhashed(
    path: &Path,
    expected: Option<&Entry>,
    actual: &Entry,
    rules: &Rules,
    key: &RedactKey,
) -> Option<FileDrift> {
    compare_inner(path, expected, Some(actual), rules, key, true)
}

/// What the reason of a drift item whose hash is pending ends with.
pub const HASH_PENDING: &str = "; hash pending";

fn compare_inner(
    path: &Path,
    expected: Option<&Entry>,
    actual: Option<&Entry>,
    rules: &Rules,
    key: &RedactKey,
    hash_pending: bool,
) -> Option<FileDrift> {
    let (kind, changed) = match (expected, actual) {
        (None, None) => return None,
        (None, Some(_)) => (DriftKind::Added, Vec::new()),
        (Some(_), None) => (DriftKind::Removed, Vec::new()),
        (Some(e), Some(a)) => {
            let changed = changed_attrs(e, a, rules.attributes(path), hash_pending);
            if changed.is_empty() {
                return None;
            }
            (DriftKind::Modified, changed)
        }
    };
    // Content is read (diff, cosmetic check) only when it may have changed: only then is it
    // worth redacting.
    let content_matters = kind != DriftKind::Modified
        || changed
            .iter()
            .any(|c| matches!(c, Attr::Content | Attr::Size));
    let (old, new) = if content_matters {
        redact::prepare(
            expected.and_then(|e| e.content.as_deref().map(|c| (c, e.sha256))),
            actual.and_then(|a| a.content.as_deref()),
            rules,
            key,
        )
    } else {
        (None, None)
    };
    // Each side: `None` when the path is absent there, `Some(None)` when its content is not
    // captured.
    let old = expected.map(|_| old.as_deref());
    let new = actual.map(|_| new.as_deref());
    let diff = content_diff(path, old, new, kind, &changed);
    let (severity, mut reason) =
        classify(path, kind, &changed, expected, actual, (old, new), rules);
    if hash_pending {
        reason.push_str(HASH_PENDING);
    }
    Some(FileDrift {
        path: path.to_path_buf(),
        kind,
        changed,
        severity,
        reason,
        expected: expected.map(Facts::of),
        actual: actual.map(Facts::of),
        diff,
    })
}

/// Merge-joins two entry lists sorted by path bytes.
pub fn compare_sets(
    expected: &[Entry],
    actual: &[Entry],
    rules: &Rules,
    key: &RedactKey,
) -> Vec<FileDrift> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < expected.len() || j < actual.len() {
        let order = match (expected.get(i), actual.get(j)) {
            (Some(e), Some(a)) => e
                .path
                .as_os_str()
                .as_bytes()
                .cmp(a.path.as_os_str().as_bytes()),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        let (e, a) = match order {
            std::cmp::Ordering::Less => {
                i += 1;
                (Some(&expected[i - 1]), None)
            }
            std::cmp::Ordering::Greater => {
                j += 1;
                (None, Some(&actual[j - 1]))
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
                (Some(&expected[i - 1]), Some(&actual[j - 1]))
            }
        };
        let path = e.or(a).map(|x| x.path.as_path()).expect("one side present");
        out.extend(compare(path, e, a, rules, key));
    }
    out
}

fn changed_attrs(
    e: &Entry,
    a: &Entry,
    check: crate::rules::AttrSet,
    hash_pending: bool,
) -> Vec<Attr> {
    let mut changed = Vec::new();
    let mut note = |attr: Attr, differs: bool| {
        if differs && check.contains(attr) {
            changed.push(attr);
        }
    };
    if e.kind != a.kind {
        note(Attr::Type, true);
        return changed;
    }
    note(Attr::Mode, e.mode != a.mode);
    note(Attr::Owner, e.uid != a.uid);
    note(Attr::Group, e.gid != a.gid);
    note(Attr::Size, e.size != a.size);
    // An unreadable file has no hash: that is an error reported elsewhere, not content drift.
    // One whose hash is pending may have any content.
    let content_differs = match (e.sha256, a.sha256) {
        (Some(x), Some(y)) => x != y,
        _ => hash_pending,
    };
    note(Attr::Content, content_differs);
    note(Attr::Target, e.target != a.target || e.rdev != a.rdev);
    note(Attr::Xattrs, e.xattrs != a.xattrs);
    changed
}

fn classify(
    path: &Path,
    kind: DriftKind,
    changed: &[Attr],
    expected: Option<&Entry>,
    actual: Option<&Entry>,
    contents: (SideContent<'_>, SideContent<'_>),
    rules: &Rules,
) -> (Severity, String) {
    let before_mode = expected.map_or(0, |e| e.mode);
    if let Some(a) = actual {
        let new_bits = a.mode & !before_mode;
        if new_bits & SETUID != 0 {
            return (Severity::Security, "new setuid bit".into());
        }
        if new_bits & SETGID != 0 && a.kind != FileKind::Directory {
            return (Severity::Security, "new setgid bit".into());
        }
    }
    if changed.contains(&Attr::Xattrs) || (kind == DriftKind::Added && actual.is_some_and(has_caps))
    {
        fn caps(x: Option<&Entry>) -> Option<&Vec<u8>> {
            x.and_then(|e| e.xattrs.iter().find(|x| x.name == CAPABILITY_XATTR))
                .map(|x| &x.value)
        }
        if caps(expected) != caps(actual) && caps(actual).is_some() {
            return (
                Severity::Security,
                "file capabilities granted or changed".into(),
            );
        }
    }
    if let Some(a) = actual {
        let newly_executable = a.kind == FileKind::Regular
            && a.mode & ANY_EXEC != 0
            && expected.is_none_or(|e| e.kind != FileKind::Regular || e.mode & ANY_EXEC == 0);
        if newly_executable && rules.is_executable_path(path) {
            return (Severity::Security, "new executable in a system path".into());
        }
    }
    if kind == DriftKind::Modified
        && changed
            .iter()
            .all(|c| matches!(c, Attr::Content | Attr::Size))
        && is_cosmetic(contents.0.flatten(), contents.1.flatten())
    {
        return (
            Severity::Cosmetic,
            "only whitespace or comment lines changed".into(),
        );
    }
    match rules.path_severity(path) {
        Some(Severity::Security) => (Severity::Security, "security-sensitive path".into()),
        Some(Severity::Cosmetic) => (Severity::Cosmetic, "cosmetic path".into()),
        Some(Severity::Behavioral) | None => (
            Severity::Behavioral,
            "configuration or binary changed".into(),
        ),
    }
}

fn has_caps(e: &Entry) -> bool {
    e.xattrs.iter().any(|x| x.name == CAPABILITY_XATTR)
}

/// One side's content, redacted: `None` when the path is absent, `Some(None)` when its content
/// is not captured.
type SideContent<'a> = Option<Option<&'a [u8]>>;

/// Whether two contents mean the same: equal once comment lines, blank lines and whitespace
/// runs are ignored. Only decidable when both contents are known.
fn is_cosmetic(old: Option<&[u8]>, new: Option<&[u8]>) -> bool {
    match (old, new) {
        (Some(x), Some(y)) => meaningful_lines(x).eq(meaningful_lines(y)),
        _ => false,
    }
}

fn meaningful_lines(content: &[u8]) -> impl Iterator<Item = Vec<&[u8]>> {
    content.split(|b| *b == b'\n').filter_map(|line| {
        let words: Vec<&[u8]> = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .collect();
        match words.first() {
            None => None,
            Some(w) if w.starts_with(b"#") || w.starts_with(b";") || w.starts_with(b"//") => None,
            Some(_) => Some(words),
        }
    })
}

fn content_diff(
    path: &Path,
    old: SideContent<'_>,
    new: SideContent<'_>,
    kind: DriftKind,
    changed: &[Attr],
) -> Option<String> {
    if kind == DriftKind::Modified && !changed.contains(&Attr::Content) {
        return None;
    }
    let (old, new) = match (old, new) {
        (Some(Some(o)), Some(Some(n))) => (o, n),
        (None, Some(Some(n))) => (&b""[..], n),
        (Some(Some(o)), None) => (o, &b""[..]),
        _ => return None,
    };
    let (old, new) = (String::from_utf8_lossy(old), String::from_utf8_lossy(new));
    // A diff is lines: a name with a newline would break its header into lines of its own.
    let shown = escape_bytes(path.as_os_str().as_bytes());
    let shown = driftwatch_proto::text::terminal(&shown);
    let diff = similar::TextDiff::from_lines(old.as_ref(), new.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(&format!("a{shown}"), &format!("b{shown}"))
        .to_string();
    (!diff.is_empty()).then_some(diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RedactKey {
        RedactKey::from_bytes([9; 32])
    }

    fn file(path: &str, mode: u32, content: &[u8]) -> Entry {
        use sha2::Digest;
        Entry {
            path: path.into(),
            kind: FileKind::Regular,
            mode,
            uid: 0,
            gid: 0,
            size: content.len() as u64,
            sha256: Some(sha2::Sha256::digest(content).into()),
            target: None,
            xattrs: vec![],
            content: Some(content.to_vec()),
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 1,
            rdev: 0,
        }
    }

    #[test]
    fn touch_is_not_drift() {
        let rules = Rules::builtin();
        let a = file("/etc/x.conf", 0o644, b"a=1\n");
        let mut b = a.clone();
        b.mtime_ns = 99;
        b.ctime_ns = 99;
        b.inode = 7;
        assert_eq!(compare(&a.path, Some(&a), Some(&b), &rules, &key()), None);
    }

    #[test]
    fn comment_and_whitespace_edits_are_cosmetic() {
        let rules = Rules::builtin();
        let a = file("/etc/ssh/sshd_config", 0o644, b"# hi\nPermitRootLogin no\n");
        let b = file(
            "/etc/ssh/sshd_config",
            0o644,
            b"# hello there\n\nPermitRootLogin    no  \n",
        );
        let item = compare(&a.path, Some(&a), Some(&b), &rules, &key()).unwrap();
        assert_eq!(item.severity, Severity::Cosmetic);
        assert!(item.diff.unwrap().contains("+# hello there"));
        let c = file(
            "/etc/ssh/sshd_config",
            0o644,
            b"# hi\nPermitRootLogin yes\n",
        );
        let item = compare(&a.path, Some(&a), Some(&c), &rules, &key()).unwrap();
        assert_eq!(item.severity, Severity::Security);
        assert_eq!(item.changed, vec![Attr::Size, Attr::Content]);
    }

    #[test]
    fn setuid_and_new_executables_are_security() {
        let rules = Rules::builtin();
        let a = file("/opt/tool", 0o755, b"x");
        let b = file("/opt/tool", 0o4755, b"x");
        let item = compare(&a.path, Some(&a), Some(&b), &rules, &key()).unwrap();
        assert_eq!(
            (item.severity, item.changed),
            (Severity::Security, vec![Attr::Mode])
        );
        let new = file("/usr/local/bin/backdoor", 0o755, b"#!/bin/sh\n");
        let item = compare(&new.path, None, Some(&new), &rules, &key()).unwrap();
        assert_eq!(
            (item.kind, item.severity),
            (DriftKind::Added, Severity::Security)
        );
        let data = file("/usr/local/share/x", 0o644, b"data");
        let item = compare(&data.path, None, Some(&data), &rules, &key()).unwrap();
        assert_eq!(item.severity, Severity::Behavioral);
    }

    #[test]
    fn secrets_reach_no_diff_and_do_not_spoil_cosmetic_edits() {
        let rules = Rules::builtin();
        let original = b"# db\npassword = hunter2\nport = 1\n";
        let mut old = file("/etc/app/db.conf", 0o644, original);
        old.content = redact::bake(original, &rules);
        // A comment edit beside an unchanged secret is cosmetic, and the secret is not shown.
        let new = file(
            "/etc/app/db.conf",
            0o644,
            b"# the db\npassword = hunter2\nport = 1\n",
        );
        let item = compare(&old.path, Some(&old), Some(&new), &rules, &key()).unwrap();
        assert_eq!(item.severity, Severity::Cosmetic);
        let diff = item.diff.unwrap();
        assert!(diff.contains(" password = [redacted]\n"), "{diff}");
        // A changed secret is a changed line, its value tagged.
        let new = file(
            "/etc/app/db.conf",
            0o644,
            b"# db\npassword = hunter3\nport = 1\n",
        );
        let item = compare(&old.path, Some(&old), Some(&new), &rules, &key()).unwrap();
        assert_eq!(item.severity, Severity::Behavioral);
        let diff = item.diff.unwrap();
        assert!(
            diff.contains("-password = [redacted]\n+password = [redacted "),
            "{diff}"
        );
        assert!(!diff.contains("hunter"), "{diff}");
    }

    #[test]
    fn a_pending_hash_is_changed_content_until_the_hash_says_otherwise() {
        let rules = Rules::builtin();
        let old = file("/usr/bin/big", 0o755, b"same");
        let mut now = old.clone();
        now.sha256 = None;
        now.mtime_ns = 5;
        let item = compare_unhashed(&old.path, Some(&old), &now, &rules, &key()).unwrap();
        assert_eq!(
            (item.kind, item.changed.clone()),
            (DriftKind::Modified, vec![Attr::Content])
        );
        assert!(item.reason.ends_with(HASH_PENDING), "{}", item.reason);
        assert_eq!(item.actual.unwrap().sha256, None);
        assert_eq!(item.diff, None);
        // The hash arrives: the same content is no drift.
        now.sha256 = old.sha256;
        assert_eq!(
            compare(&old.path, Some(&old), Some(&now), &rules, &key()),
            None
        );
        // A new large file: added, classified as any new file, its hash pending.
        let mut new = file("/usr/bin/new", 0o755, b"");
        new.sha256 = None;
        let item = compare_unhashed(&new.path, None, &new, &rules, &key()).unwrap();
        assert_eq!(
            (item.kind, item.severity),
            (DriftKind::Added, Severity::Security)
        );
        assert_eq!(
            item.reason,
            format!("new executable in a system path{HASH_PENDING}")
        );
    }

    #[test]
    fn merge_join_finds_added_removed_modified() {
        let rules = Rules::builtin();
        let old = vec![
            file("/etc/a", 0o644, b"1"),
            file("/etc/b", 0o644, b"1"),
            file("/etc/c", 0o644, b"1"),
        ];
        let new = vec![
            file("/etc/b", 0o600, b"1"),
            file("/etc/c", 0o644, b"1"),
            file("/etc/d", 0o644, b"1"),
        ];
        let items = compare_sets(&old, &new, &rules, &key());
        let got: Vec<(String, DriftKind)> = items
            .iter()
            .map(|i| (i.path.display().to_string(), i.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/etc/a".into(), DriftKind::Removed),
                ("/etc/b".into(), DriftKind::Modified),
                ("/etc/d".into(), DriftKind::Added)
            ]
        );
    }
}
