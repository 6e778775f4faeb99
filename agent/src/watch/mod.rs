//! Watching the recorded trees with inotify.
//!
//! One non-recursive watch per directory the rules do not exclude (excluded trees cost no
//! watches), added as directories appear and dropped as they go. The `inotify` crate is used
//! directly rather than through `notify`, because `notify` 8 always asks the kernel for
//! `IN_OPEN`: on `/usr/lib` that is an event for every library every process loads, and the
//! agent's own hashing would flood its queue. Our mask is only what can change a file:
//! create, delete, write-close, modify, moves, attribute changes.
//!
//! Blind spots are never silent: a kernel queue overflow comes out as [`Change::Overflow`]
//! (the caller rescans), and a directory that cannot get a watch (the `max_user_watches`
//! limit, or the configured `max_watches`) is kept in [`Watcher::unwatched`] for periodic
//! rescans and reported as degraded coverage.
//!
//! A recorded tree that is not a directory (missing at start, deleted, replaced by a symlink)
//! is *pending* ([`late`]): watched for from its nearest existing ancestor, with a watch that
//! only looks for the next path component, and watched as a tree the moment it appears.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt as _;
use inotify::{EventMask, EventStream, Inotify, WatchDescriptor, WatchMask, Watches};

use crate::fsutil::{host_path, root_path};
use crate::rules::Rules;

mod late;

const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::MODIFY)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR)
    .union(WatchMask::DONT_FOLLOW)
    .union(WatchMask::EXCL_UNLINK);

/// Something the caller must re-evaluate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A path inside the root changed; `dir` when the kernel says it is a directory.
    Path {
        path: PathBuf,
        dir: bool,
        gone: bool,
        step: Step,
    },
    /// A watched extra directory (a package database's) saw a change to this file name.
    Extra { dir: PathBuf, name: OsString },
    /// The kernel dropped events: everything must be rescanned.
    Overflow,
}

/// Whether more of the same change is likely to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `IN_MODIFY`: the writer may not have closed the file yet.
    Writing,
    /// A file (not a directory) was created: its content usually follows, and it may be a
    /// temporary file about to be renamed over another.
    Created,
    /// Anything else: closed after writing, moved, deleted, attributes changed.
    Done,
}

/// The inotify watches over a root.
pub struct Watcher {
    stream: EventStream<Vec<u8>>,
    watches: Watches,
    root: PathBuf,
    /// Both maps share each directory's path (thousands of them on a host's `/`).
    by_wd: HashMap<WatchDescriptor, Arc<Path>>,
    by_path: BTreeMap<Arc<Path>, WatchDescriptor>,
    extra: HashMap<WatchDescriptor, PathBuf>,
    unwatched: BTreeSet<PathBuf>,
    max: Option<u64>,
    limit_logged: bool,
    /// The recorded trees' tops (the rules' paths, not excluded).
    tops: Vec<PathBuf>,
    /// Tops that are not directories, each with the ancestor it waits at (`None`: no watch
    /// could be placed; retried with the unwatched directories).
    pending: BTreeMap<PathBuf, Option<Arc<Path>>>,
    /// The ancestors pending tops wait at, by watch and by path.
    anchors: HashMap<WatchDescriptor, Arc<Path>>,
    anchor_wds: BTreeMap<Arc<Path>, WatchDescriptor>,
    /// Changes found while placing watches (a pending tree that had appeared meanwhile),
    /// handed out by the next [`Watcher::next`].
    ready: Vec<Change>,
}

impl Watcher {
    /// A watcher with no watches yet. Needs a tokio runtime.
    pub fn new(root: &Path, max: Option<u64>) -> io::Result<Watcher> {
        let inotify = Inotify::init()?;
        let stream = inotify.into_event_stream(vec![0u8; 64 * 1024])?;
        Ok(Watcher {
            watches: stream.watches(),
            stream,
            root: root.to_path_buf(),
            by_wd: HashMap::new(),
            by_path: BTreeMap::new(),
            extra: HashMap::new(),
            unwatched: BTreeSet::new(),
            max,
            limit_logged: false,
            tops: Vec::new(),
            pending: BTreeMap::new(),
            anchors: HashMap::new(),
            anchor_wds: BTreeMap::new(),
            ready: Vec::new(),
        })
    }

    /// Watches `dir` (inside the root) and every directory below it the rules keep. Returns
    /// how many directories could not be watched. A recorded tree's top that is not a
    /// directory becomes pending instead.
    pub fn add_tree(&mut self, rules: &Rules, dir: &Path) -> usize {
        if self.tops.iter().any(|t| t == dir) && !self.settle_top(dir) {
            return 0;
        }
        let root = self.root.clone();
        let mut failed = 0;
        let walk = walkdir::WalkDir::new(host_path(&root, dir))
            .follow_links(false)
            .follow_root_links(false)
            .into_iter()
            .filter_entry(|e| {
                e.file_type().is_dir() && !rules.is_excluded(&root_path(&root, e.path()))
            });
        // Each directory is watched as the walk reaches it, before its entries are read: a
        // directory made in it meanwhile (a tree being created as it is found) is either
        // listed by the walk or reported by the watch.
        for d in walk.filter_map(Result::ok) {
            if !self.add_dir(&root_path(&root, d.path())) {
                failed += 1;
            }
        }
        failed
    }

    /// Watches one directory (inside the root). False when it could not be watched for lack
    /// of watches (it is then remembered as unwatched).
    pub fn add_dir(&mut self, dir: &Path) -> bool {
        if self.by_path.contains_key(dir) {
            return true;
        }
        let limited = self.max.is_some_and(|m| self.by_path.len() as u64 >= m);
        let result = if limited {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        } else {
            self.watches.add(host_path(&self.root, dir), MASK)
        };
        match result {
            Ok(wd) => {
                self.unwatched.remove(dir);
                let dir: Arc<Path> = Arc::from(dir);
                self.by_wd.insert(wd.clone(), dir.clone());
                self.by_path.insert(dir, wd);
                true
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                if !self.limit_logged {
                    tracing::warn!(
                        dir = %dir.display(),
                        watched = self.by_path.len(),
                        "Out of inotify watches (fs.inotify.max_user_watches or watch.max_watches); \
                         unwatched directories are covered by periodic rescans."
                    );
                    self.limit_logged = true;
                }
                self.unwatched.insert(dir.to_path_buf());
                false
            }
            // Vanished or not a directory any more: nothing to watch.
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "Cannot watch directory.");
                true
            }
        }
    }

    /// Drops the watches on `dir` and below (it was deleted or moved away); a recorded tree's
    /// top among them becomes pending.
    pub fn remove_tree(&mut self, dir: &Path) {
        let doomed: Vec<Arc<Path>> = self
            .by_path
            .range::<Path, _>((Bound::Included(dir), Bound::Unbounded))
            .map_while(|(p, _)| p.starts_with(dir).then(|| p.clone()))
            .collect();
        for p in doomed {
            if let Some(wd) = self.by_path.remove(&p) {
                self.by_wd.remove(&wd);
                // Fails harmlessly when the kernel already dropped it (IN_IGNORED).
                let _ = self.watches.remove(wd);
            }
        }
        let gone: Vec<PathBuf> = self
            .unwatched
            .range(dir.to_path_buf()..)
            .take_while(|p| p.starts_with(dir))
            .cloned()
            .collect();
        for p in gone {
            self.unwatched.remove(&p);
        }
        let tops: Vec<PathBuf> = self
            .tops
            .iter()
            .filter(|t| t.starts_with(dir))
            .cloned()
            .collect();
        for top in tops {
            self.pend(&top);
        }
    }

    /// Watches a directory outside the recorded trees (a package database's), by host path.
    pub fn add_extra(&mut self, host_dir: &Path) -> io::Result<()> {
        let wd = self.watches.add(host_dir, MASK)?;
        self.extra.insert(wd, host_dir.to_path_buf());
        Ok(())
    }

    /// Directories that have no watch.
    pub fn unwatched(&self) -> &BTreeSet<PathBuf> {
        &self.unwatched
    }

    /// Whether some directories have no watch, or some pending trees no ancestor watch: then
    /// only periodic rescans cover them.
    pub fn degraded(&self) -> bool {
        !self.unwatched.is_empty() || self.pending.values().any(Option::is_none)
    }

    /// Tries again to watch the unwatched directories and to place the missing ancestor
    /// watches (the limit may have been raised).
    pub fn retry_unwatched(&mut self) {
        self.retry_pending();
        let dirs: Vec<PathBuf> = self.unwatched.iter().cloned().collect();
        self.limit_logged = false;
        for d in dirs {
            if !self.add_dir(&d) {
                break;
            }
        }
    }

    /// Number of watched directories.
    pub fn watched(&self) -> usize {
        self.by_path.len()
    }

    /// Waits for the next batch of changes from the kernel (or returns at once the changes
    /// found while placing watches).
    pub async fn next(&mut self) -> io::Result<Vec<Change>> {
        if !self.ready.is_empty() {
            return Ok(std::mem::take(&mut self.ready));
        }
        let event = match self.stream.next().await {
            Some(e) => e?,
            None => return Err(io::Error::other("inotify stream ended")),
        };
        let mut changes = self.translate(event);
        changes.append(&mut self.ready);
        Ok(changes)
    }

    fn translate(&mut self, event: inotify::EventOwned) -> Vec<Change> {
        if event.mask.contains(EventMask::Q_OVERFLOW) {
            return vec![Change::Overflow];
        }
        if let Some(dir) = self.extra.get(&event.wd) {
            return match event.name {
                Some(name) => vec![Change::Extra {
                    dir: dir.clone(),
                    name,
                }],
                None => Vec::new(),
            };
        }
        // An ancestor of a pending tree may also be a watched directory (the same watch).
        let mut out = if self.anchors.contains_key(&event.wd) {
            self.anchor_event(&event)
        } else {
            Vec::new()
        };
        out.extend(self.tree_event(event));
        out
    }

    fn tree_event(&mut self, event: inotify::EventOwned) -> Vec<Change> {
        let Some(dir) = self.by_wd.get(&event.wd).cloned() else {
            return Vec::new();
        };
        if event.mask.contains(EventMask::IGNORED) {
            // The kernel removed the watch (directory deleted, or filesystem unmounted).
            self.by_wd.remove(&event.wd);
            if self.by_path.get(&dir) == Some(&event.wd) {
                self.by_path.remove(&dir);
            }
            return Vec::new();
        }
        let dir = dir.to_path_buf();
        let is_dir = event.mask.contains(EventMask::ISDIR);
        let (gone, step) = gone_and_step(event.mask);
        match event.name {
            Some(name) => vec![Change::Path {
                path: dir.join(name),
                dir: is_dir,
                gone,
                step,
            }],
            // Events on the watched directory itself: its attributes changed, or it went away.
            // The parent's watch reports a removal too, with the name, but a recorded tree's
            // top directory (`/root/.ssh`) has no watched parent.
            None if event.mask.contains(EventMask::ATTRIB) => vec![Change::Path {
                path: dir,
                dir: true,
                gone: false,
                step: Step::Done,
            }],
            None if event
                .mask
                .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF) =>
            {
                vec![Change::Path {
                    path: dir,
                    dir: true,
                    gone: true,
                    step: Step::Done,
                }]
            }
            None => Vec::new(),
        }
    }
}

/// Whether an event says its path went away, and whether more of the same change may follow.
fn gone_and_step(mask: EventMask) -> (bool, Step) {
    let gone = mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM);
    let step = if mask.contains(EventMask::MODIFY) {
        Step::Writing
    } else if mask.contains(EventMask::CREATE) && !mask.contains(EventMask::ISDIR) {
        Step::Created
    } else {
        Step::Done
    };
    (gone, step)
}
