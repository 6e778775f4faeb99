//! Late and vanished trees: a recorded tree's top that is not a directory (missing when the
//! agent starts, deleted, moved away, or replaced by a symlink) is *pending*.
//!
//! A pending top waits at its nearest existing ancestor, with a watch that only reports the
//! ancestor's entries coming and going ([`ANCHOR_MASK`]: no writes, no attributes, nothing
//! below it), and looks only at the one name that leads to the top. When that name appears as
//! a directory the top waits one level deeper, until the top itself is a directory: then it
//! stops pending and a [`Change`] for it is handed out, which the daemon treats as any new
//! directory (watch the tree, compare all of it with the baseline). Every time a watch is
//! placed the next component is looked up again, so a tree made between two events (`mkdir -p`,
//! a file written before the watch) is never missed. The top itself turning into something
//! else (a symlink, a file) is a change of the top, reported as such.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use inotify::{EventMask, WatchMask};

use super::{Change, Step, Watcher, gone_and_step};
use crate::fsutil::host_path;
use crate::rules::Rules;

/// What an ancestor's watch reports: entries created, deleted or moved in it, and the
/// ancestor itself going away. Added to whatever watch the directory already has.
const ANCHOR_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR)
    .union(WatchMask::DONT_FOLLOW)
    .union(WatchMask::MASK_ADD);

impl Watcher {
    /// Watches every recorded tree the rules name (and do not exclude): those that are
    /// directories with all their directories, the others from their nearest existing
    /// ancestor until they appear.
    pub fn watch_recorded(&mut self, rules: &Rules) {
        self.tops = rules
            .paths()
            .iter()
            .filter(|p| !rules.is_excluded(p))
            .cloned()
            .collect();
        for top in self.tops.clone() {
            self.add_tree(rules, &top);
        }
    }

    /// Recorded trees that are not directories (yet), sorted.
    pub fn pending(&self) -> impl Iterator<Item = &Path> {
        self.pending.keys().map(PathBuf::as_path)
    }

    /// Number of pending trees.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// A top about to be watched as a tree: true when it is a directory (it stops pending),
    /// else it becomes (or stays) pending.
    pub(super) fn settle_top(&mut self, top: &Path) -> bool {
        if self.is_dir(top) {
            if let Some(anchor) = self.pending.remove(top).flatten() {
                self.release_anchor(&anchor);
            }
            true
        } else {
            self.pend(top);
            false
        }
    }

    /// Places the ancestor watches that could not be placed before.
    pub(super) fn retry_pending(&mut self) {
        let stuck: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, a)| a.is_none())
            .map(|(t, _)| t.clone())
            .collect();
        for top in stuck {
            self.pend(&top);
        }
    }

    /// Makes `top` wait at its nearest existing ancestor. If it turns out to be a directory
    /// already (it appeared before the watch was in place), it does not pend: a change for it
    /// is queued instead.
    pub(super) fn pend(&mut self, top: &Path) {
        let old = self.pending.remove(top).flatten();
        let mut at = top
            .ancestors()
            .skip(1)
            .find(|a| self.is_dir(a))
            .map(Path::to_path_buf);
        let anchor = loop {
            let Some(dir) = at.take() else { break None };
            let anchor = match self.place_anchor(&dir) {
                Ok(anchor) => anchor,
                Err(error) => {
                    tracing::warn!(
                        dir = %dir.display(), tree = %top.display(), %error,
                        "Cannot watch for a recorded tree to appear; periodic rescans cover it."
                    );
                    break None;
                }
            };
            // The next component may have appeared before the watch was placed.
            let Some(next) = next_component(&dir, top) else {
                break Some(anchor);
            };
            if !self.is_dir(&next) {
                break Some(anchor);
            }
            // Not in `pending` now, so the watch goes unless another top waits there.
            self.release_anchor(&anchor);
            if next == top {
                self.ready.push(Change::Path {
                    path: top.to_path_buf(),
                    dir: true,
                    gone: false,
                    step: Step::Done,
                });
                if let Some(old) = old {
                    self.release_anchor(&old);
                }
                return;
            }
            at = Some(next);
        };
        self.pending.insert(top.to_path_buf(), anchor);
        // Released after the new one is placed: a shared ancestor keeps its watch.
        if let Some(old) = old {
            self.release_anchor(&old);
        }
    }

    /// An event on an ancestor watch.
    pub(super) fn anchor_event(&mut self, event: &inotify::EventOwned) -> Vec<Change> {
        let Some(anchor) = self.anchors.get(&event.wd).cloned() else {
            return Vec::new();
        };
        let waiting: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, a)| a.as_ref() == Some(&anchor))
            .map(|(t, _)| t.clone())
            .collect();
        if event
            .mask
            .intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF)
        {
            // The ancestor itself went away: wait higher up.
            self.anchors.remove(&event.wd);
            if self.anchor_wds.get(&anchor) == Some(&event.wd) {
                self.anchor_wds.remove(&anchor);
            }
            if !event.mask.contains(EventMask::IGNORED) && !self.by_wd.contains_key(&event.wd) {
                let _ = self.watches.remove(event.wd.clone());
            }
            for top in waiting {
                self.pending.insert(top.clone(), None);
                self.pend(&top);
            }
            return Vec::new();
        }
        let Some(name) = event.name.as_deref() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for top in waiting {
            let Some(next) = next_component(&anchor, &top) else {
                continue;
            };
            if next.file_name() != Some(name) {
                continue;
            }
            let (gone, step) = gone_and_step(event.mask);
            if !gone && event.mask.contains(EventMask::ISDIR) {
                // Maybe the top, maybe a step towards it.
                self.pend(&top);
            } else if next == top {
                // The top came or went as something other than a directory.
                out.push(Change::Path {
                    path: top,
                    dir: false,
                    gone,
                    step,
                });
            }
        }
        out
    }

    /// Adds (or reuses) the ancestor watch on `dir`.
    fn place_anchor(&mut self, dir: &Path) -> std::io::Result<Arc<Path>> {
        if let Some((anchor, _)) = self.anchor_wds.get_key_value(dir) {
            return Ok(anchor.clone());
        }
        if self
            .max
            .is_some_and(|m| self.by_path.len() + self.anchor_wds.len() >= m as usize)
        {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let wd = self.watches.add(host_path(&self.root, dir), ANCHOR_MASK)?;
        let anchor: Arc<Path> = Arc::from(dir);
        self.anchors.insert(wd.clone(), anchor.clone());
        self.anchor_wds.insert(anchor.clone(), wd);
        Ok(anchor)
    }

    /// Drops the ancestor watch on `anchor` unless a pending top still waits there. A
    /// directory watched for its own sake keeps its watch.
    fn release_anchor(&mut self, anchor: &Path) {
        if self.pending.values().any(|a| a.as_deref() == Some(anchor)) {
            return;
        }
        if let Some(wd) = self.anchor_wds.remove(anchor) {
            self.anchors.remove(&wd);
            if !self.by_wd.contains_key(&wd) && !self.extra.contains_key(&wd) {
                let _ = self.watches.remove(wd);
            }
        }
    }

    fn is_dir(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(host_path(&self.root, path)).is_ok_and(|m| m.is_dir())
    }
}

/// The path one component below `dir` on the way to `top` (`None` unless `dir` is a proper
/// ancestor of `top`).
fn next_component(dir: &Path, top: &Path) -> Option<PathBuf> {
    let rest = top.strip_prefix(dir).ok()?;
    match rest.components().next()? {
        Component::Normal(name) => Some(dir.join(name)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(paths: &[&str]) -> Rules {
        let list: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
        Rules::parse(
            &format!("version = 1\n[scan]\npaths = [{}]\n", list.join(", ")),
            "test",
        )
        .unwrap()
    }

    /// A watcher over `root` that watches the recorded `paths`.
    fn watching(root: &Path, paths: &[&str]) -> (Watcher, Rules) {
        let rules = rules(paths);
        let mut w = Watcher::new(root, None).unwrap();
        w.watch_recorded(&rules);
        (w, rules)
    }

    /// Waits (bounded) for the watcher's next changes.
    async fn next(w: &mut Watcher) -> Vec<Change> {
        tokio::time::timeout(std::time::Duration::from_secs(5), w.next())
            .await
            .expect("a change within 5 s")
            .unwrap()
    }

    fn appeared(path: &str) -> Change {
        Change::Path {
            path: path.into(),
            dir: true,
            gone: false,
            step: Step::Done,
        }
    }

    #[test]
    fn next_component_walks_one_level() {
        let top = Path::new("/root/.ssh");
        assert_eq!(
            next_component(Path::new("/"), top),
            Some(PathBuf::from("/root"))
        );
        assert_eq!(next_component(Path::new("/root"), top), Some(top.into()));
        assert_eq!(next_component(top, top), None);
        assert_eq!(next_component(Path::new("/etc"), top), None);
    }

    #[tokio::test]
    async fn a_missing_tree_is_pending_until_it_appears_levels_below() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("etc")).unwrap();
        let (mut w, rules) = watching(root, &["/etc", "/usr/local/bin"]);
        assert_eq!(w.watched(), 1);
        let pending: Vec<&Path> = w.pending().collect();
        assert_eq!(pending, [Path::new("/usr/local/bin")]);
        assert!(!w.degraded());
        // One level at a time: the ancestor watch moves down, and nothing is reported yet.
        std::fs::create_dir(root.join("usr")).unwrap();
        assert_eq!(next(&mut w).await, []);
        assert_eq!(w.pending_count(), 1);
        // The rest at once (as `mkdir -p` does): found by looking again after the watch.
        std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
        let mut got = next(&mut w).await;
        while got.is_empty() {
            got = next(&mut w).await;
        }
        assert_eq!(got, [appeared("/usr/local/bin")]);
        assert_eq!(w.pending_count(), 0);
        // The daemon then watches it as a tree; only `/` and `/usr` had ancestor watches, and
        // they are gone.
        w.add_tree(&rules, Path::new("/usr/local/bin"));
        assert_eq!(w.watched(), 2);
        assert!(w.anchors.is_empty() && w.anchor_wds.is_empty());
    }

    #[tokio::test]
    async fn a_deleted_tree_waits_again_and_a_symlink_in_its_place_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("root/.ssh")).unwrap();
        let (mut w, _) = watching(root, &["/root/.ssh"]);
        assert_eq!((w.watched(), w.pending_count()), (1, 0));
        std::fs::remove_dir(root.join("root/.ssh")).unwrap();
        let got = next(&mut w).await;
        assert!(got.iter().any(|c| matches!(
            c,
            Change::Path {
                gone: true,
                dir: true,
                ..
            }
        )));
        w.remove_tree(Path::new("/root/.ssh"));
        assert_eq!((w.watched(), w.pending_count()), (0, 1));
        // A symlink where the tree was: a change of the top, still pending.
        std::os::unix::fs::symlink("/tmp", root.join("root/.ssh")).unwrap();
        let mut got = next(&mut w).await;
        while got.is_empty() {
            got = next(&mut w).await;
        }
        assert_eq!(
            got,
            [Change::Path {
                path: "/root/.ssh".into(),
                dir: false,
                gone: false,
                step: Step::Created
            }]
        );
        assert_eq!(w.pending_count(), 1);
        // Replaced by a directory again: it appears.
        std::fs::remove_file(root.join("root/.ssh")).unwrap();
        std::fs::create_dir(root.join("root/.ssh")).unwrap();
        let mut all = Vec::new();
        while !all.contains(&appeared("/root/.ssh")) {
            all.extend(next(&mut w).await);
        }
        assert_eq!(w.pending_count(), 0);
    }

    #[tokio::test]
    async fn an_ancestor_that_goes_away_hands_its_trees_up() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("root")).unwrap();
        let (mut w, _) = watching(root, &["/root/.ssh", "/root/.config"]);
        assert_eq!(w.pending_count(), 2);
        assert_eq!(w.anchor_wds.len(), 1, "both wait at /root, with one watch");
        std::fs::remove_dir(root.join("root")).unwrap();
        while w.anchor_wds.keys().any(|a| &**a == Path::new("/root")) {
            next(&mut w).await;
        }
        assert_eq!(w.pending_count(), 2);
        assert!(w.anchor_wds.keys().all(|a| &**a == Path::new("/")));
        std::fs::create_dir_all(root.join("root/.ssh")).unwrap();
        let mut all = Vec::new();
        while !all.contains(&appeared("/root/.ssh")) {
            all.extend(next(&mut w).await);
        }
        let pending: Vec<&Path> = w.pending().collect();
        assert_eq!(pending, [Path::new("/root/.config")]);
    }

    #[test]
    fn a_missing_ancestor_watch_is_degraded_coverage() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        // No watch to spare: the pending tree has no ancestor watch, and says so.
        let mut w = Watcher::new(dir.path(), Some(0)).unwrap();
        w.watch_recorded(&rules(&["/root/.ssh"]));
        assert_eq!(w.pending_count(), 1);
        assert!(w.degraded());
        w.max = None;
        w.retry_unwatched();
        assert!(!w.degraded());
    }
}
