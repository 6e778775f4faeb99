//! The configuration repository, through the `git` command line (no library: git itself is
//! what the team uses on it, with its own configuration and hooks left alone).
//!
//! The commit is made with plumbing, off to the side: blobs are written, a tree is built in a
//! temporary index from `HEAD`'s, a commit made on it, and the new branch created pointing at
//! it only if no branch of that name exists (`update-ref` with an empty old value). The work
//! tree, the real index and the checked-out branch are never touched, so a failure at any
//! step leaves the repository as it was (but for unreachable objects `git gc` removes).

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, anyhow, bail};

/// A repository's work tree and the directory `--repo` named inside it.
pub struct Repo {
    /// The work tree's top.
    top: PathBuf,
    /// `--repo` relative to the top (`/`-terminated, or empty).
    prefix: String,
    /// `HEAD`'s commit when the repository was opened: every file is read from it and the
    /// commit made on it, whatever moves `HEAD` meanwhile.
    base: String,
}

/// A file at `HEAD`.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    Missing,
    /// A regular file: its git mode (0o100644 or 0o100755) and content.
    File {
        mode: u32,
        content: Vec<u8>,
    },
    /// Something else at that path: a symlink, a directory, a submodule.
    Other(&'static str),
}

/// One change of the commit, at a path relative to `--repo`.
pub enum Write<'a> {
    Put {
        path: &'a str,
        mode: u32,
        content: &'a [u8],
    },
    Remove {
        path: &'a str,
    },
}

impl Repo {
    /// Opens the repository holding `dir`; it must have a commit checked out.
    pub fn open(dir: &Path) -> Result<Repo> {
        if !dir.is_dir() {
            bail!("--repo {}: not a directory", dir.display());
        }
        let probe = Repo {
            top: dir.to_path_buf(),
            prefix: String::new(),
            base: String::new(),
        };
        let top = probe
            .text(["rev-parse", "--show-toplevel"])
            .with_context(|| format!("--repo {} is not a git work tree", dir.display()))?;
        let prefix = probe.text(["rev-parse", "--show-prefix"])?;
        let base = probe
            .text(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
            .map_err(|_| {
                anyhow!(
                    "--repo {}: the repository has no commit yet (commit the baseline files first)",
                    dir.display()
                )
            })?;
        Ok(Repo {
            top: PathBuf::from(top),
            prefix,
            base,
        })
    }

    /// Tracked files with changes not committed (staged or not), as `git status` names them.
    pub fn uncommitted(&self) -> Result<Vec<String>> {
        let out = self.run(
            ["status", "--porcelain", "--untracked-files=no", "-z"],
            None,
        )?;
        Ok(out
            .split(|b| *b == 0)
            .filter(|e| e.len() > 3)
            .map(|e| String::from_utf8_lossy(&e[3..]).into_owned())
            .collect())
    }

    /// The commit the repository was read at (`HEAD` when opened), and the new branch's
    /// parent.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The checked-out branch's name, if one is.
    pub fn current_branch(&self) -> Option<String> {
        self.text(["symbolic-ref", "--quiet", "--short", "HEAD"])
            .ok()
    }

    /// Whether `name` is a valid new branch name, and none of that name exists.
    pub fn check_new_branch(&self, name: &str) -> Result<()> {
        self.run(["check-ref-format", "--branch", name], None)
            .map_err(|_| anyhow!("--branch {name:?} is not a valid branch name"))?;
        let exists = self
            .run(
                [
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("refs/heads/{name}"),
                ],
                None,
            )
            .is_ok();
        if exists {
            bail!(
                "a branch named {name:?} already exists in {}: choose another with --branch",
                self.top.display()
            );
        }
        Ok(())
    }

    /// The file at `path` (relative to `--repo`) in the base commit.
    pub fn entry(&self, path: &str) -> Result<Entry> {
        let full = self.full(path);
        let out = self.run(
            ["ls-tree", "-z", "--full-tree", &self.base, "--", &full],
            None,
        )?;
        // `MODE TYPE OID\tPATH\0`, for exactly this path (never a directory's children).
        let Some(record) = out
            .split(|b| *b == 0)
            .find(|r| r.split(|b| *b == b'\t').nth(1) == Some(full.as_bytes()))
        else {
            return Ok(Entry::Missing);
        };
        let meta = String::from_utf8_lossy(record.split(|b| *b == b'\t').next().unwrap_or(b""))
            .into_owned();
        let mut fields = meta.split(' ');
        let (mode, kind, oid) = (fields.next(), fields.next(), fields.next());
        Ok(match (mode, kind, oid) {
            (Some(mode @ ("100644" | "100755")), Some("blob"), Some(oid)) => Entry::File {
                mode: u32::from_str_radix(mode, 8).expect("octal"),
                content: self.run(["cat-file", "blob", oid], None)?,
            },
            (Some("120000"), ..) => Entry::Other("a symbolic link"),
            (_, Some("tree"), _) => Entry::Other("a directory"),
            (_, Some("commit"), _) => Entry::Other("a submodule"),
            _ => Entry::Other("not a regular file"),
        })
    }

    /// Commits `writes` on the base commit as a new branch `branch`; returns the commit's id.
    pub fn commit(&self, branch: &str, message: &str, writes: &[Write<'_>]) -> Result<String> {
        let head = self.base.clone();
        let index = self.git_path(&format!(
            "driftwatch-reconcile-{}.index",
            std::process::id()
        ))?;
        let result = self.commit_with_index(&index, &head, branch, message, writes);
        let _ = std::fs::remove_file(&index);
        result
    }

    fn commit_with_index(
        &self,
        index: &Path,
        head: &str,
        branch: &str,
        message: &str,
        writes: &[Write<'_>],
    ) -> Result<String> {
        let with_index = |args: &[&str], stdin: Option<&[u8]>| -> Result<Vec<u8>> {
            self.run_env(args, stdin, &[("GIT_INDEX_FILE", index.as_os_str())])
        };
        with_index(&["read-tree", head], None)?;
        for write in writes {
            match write {
                Write::Put {
                    path,
                    mode,
                    content,
                } => {
                    let oid = String::from_utf8_lossy(&self.run(
                        ["hash-object", "-w", "--no-filters", "--stdin"],
                        Some(content),
                    )?)
                    .trim()
                    .to_owned();
                    let info = format!("{mode:o},{oid},{}", self.full(path));
                    with_index(&["update-index", "--add", "--cacheinfo", &info], None)?;
                }
                Write::Remove { path } => {
                    with_index(
                        &["update-index", "--force-remove", "--", &self.full(path)],
                        None,
                    )?;
                }
            }
        }
        let tree = String::from_utf8_lossy(&with_index(&["write-tree"], None)?)
            .trim()
            .to_owned();
        let commit = String::from_utf8_lossy(&self.run(
            ["commit-tree", &tree, "-p", head, "-F", "-"],
            Some(message.as_bytes()),
        )?)
        .trim()
        .to_owned();
        // An empty old value: created only if no such branch exists (checked before, and
        // again here, atomically).
        self.run(
            [
                "update-ref",
                "-m",
                "driftwatch reconcile",
                &format!("refs/heads/{branch}"),
                &commit,
                "",
            ],
            None,
        )
        .with_context(|| format!("creating the branch {branch:?}"))?;
        Ok(commit)
    }

    /// A file in the repository's git directory.
    fn git_path(&self, name: &str) -> Result<PathBuf> {
        let path = PathBuf::from(self.text(["rev-parse", "--git-path", name])?);
        Ok(if path.is_absolute() {
            path
        } else {
            self.top.join(path)
        })
    }

    fn full(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    fn text<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.run(args, None)?;
        Ok(String::from_utf8_lossy(&out)
            .trim_end_matches('\n')
            .to_owned())
    }

    fn run<I, S>(&self, args: I, stdin: Option<&[u8]>) -> Result<Vec<u8>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_env(args, stdin, &[])
    }

    fn run_env<I, S>(
        &self,
        args: I,
        stdin: Option<&[u8]>,
        env: &[(&str, &OsStr)],
    ) -> Result<Vec<u8>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let shown = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut command = Command::new("git");
        command
            .arg("-C")
            .arg(&self.top)
            .args(&args)
            // Paths are paths, never patterns; no pager, no prompt.
            .env("GIT_LITERAL_PATHSPECS", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_PAGER", "cat")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow!("git is not installed (or not on PATH): reconcile needs it")
            } else {
                anyhow!("running git {shown}: {e}")
            }
        })?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("piped");
            let input = input.to_vec();
            // Written from a thread: a large blob must not block on git's full stdout.
            let writer = std::thread::spawn(move || pipe.write_all(&input));
            let out = child
                .wait_with_output()
                .with_context(|| format!("running git {shown}"))?;
            writer
                .join()
                .map_err(|_| anyhow!("writing to git {shown}"))?
                .with_context(|| format!("writing to git {shown}"))?;
            return finish(&shown, out);
        }
        let out = child
            .wait_with_output()
            .with_context(|| format!("running git {shown}"))?;
        finish(&shown, out)
    }
}

fn finish(shown: &str, out: std::process::Output) -> Result<Vec<u8>> {
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(anyhow!(
        "git {shown} failed ({}): {}",
        out.status,
        stderr.trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    /// A repository with `conf/a` (text), `conf/tool` (executable), a symlink and a directory.
    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path();
        std::fs::create_dir_all(top.join("sub/conf/dir")).unwrap();
        std::fs::write(top.join("sub/conf/a"), "a\n").unwrap();
        std::fs::write(top.join("sub/conf/dir/x"), "x\n").unwrap();
        std::fs::write(top.join("sub/conf/tool"), "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            top.join("sub/conf/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("a", top.join("sub/conf/link")).unwrap();
        git(top, &["init", "--quiet", "--initial-branch=main"]);
        git(top, &["config", "user.name", "T"]);
        git(top, &["config", "user.email", "t@example.com"]);
        git(top, &["config", "commit.gpgsign", "false"]);
        git(top, &["add", "."]);
        git(top, &["commit", "--quiet", "-m", "base"]);
        dir
    }

    #[test]
    fn a_commit_is_made_off_to_the_side_from_a_directory_inside_the_repository() {
        let dir = repo();
        // --repo may name a directory inside the work tree: paths are relative to it.
        let repo = Repo::open(&dir.path().join("sub")).unwrap();
        assert_eq!(
            repo.entry("conf/a").unwrap(),
            Entry::File {
                mode: 0o100644,
                content: b"a\n".to_vec()
            }
        );
        assert!(matches!(
            repo.entry("conf/tool").unwrap(),
            Entry::File { mode: 0o100755, .. }
        ));
        assert_eq!(
            repo.entry("conf/link").unwrap(),
            Entry::Other("a symbolic link")
        );
        assert_eq!(repo.entry("conf/dir").unwrap(), Entry::Other("a directory"));
        assert_eq!(repo.entry("conf/nope").unwrap(), Entry::Missing);
        // A name that would be a pattern is a name.
        assert_eq!(repo.entry("conf/*").unwrap(), Entry::Missing);

        let head = repo.base().to_owned();
        let commit = repo
            .commit(
                "reconcile/x",
                "subject\n\nbody\n",
                &[
                    Write::Put {
                        path: "conf/a",
                        mode: 0o100644,
                        content: b"b\n",
                    },
                    Write::Put {
                        path: "conf/new/b",
                        mode: 0o100755,
                        content: b"new\n",
                    },
                    Write::Remove { path: "conf/dir/x" },
                ],
            )
            .unwrap();
        let show = |spec: &str| {
            let out = Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(["show", spec])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(show("reconcile/x:sub/conf/a"), "b\n");
        assert_eq!(show("reconcile/x:sub/conf/new/b"), "new\n");
        let log = Command::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(["log", "-1", "--format=%P %s", "reconcile/x"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(log.stdout).unwrap(),
            format!("{head} subject\n")
        );
        assert!(commit.len() >= 40);
        // Nothing else moved: the checkout, the work tree, the index.
        assert_eq!(Repo::open(dir.path()).unwrap().base(), head);
        assert_eq!(repo.current_branch().as_deref(), Some("main"));
        assert!(repo.uncommitted().unwrap().is_empty());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/conf/a")).unwrap(),
            "a\n"
        );
        // The branch exists now: never moved.
        let error = repo
            .check_new_branch("reconcile/x")
            .unwrap_err()
            .to_string();
        assert!(error.contains("already exists"), "{error}");
        assert!(repo.commit("reconcile/x", "again", &[]).is_err());
        let error = repo.check_new_branch("bad..name").unwrap_err().to_string();
        assert!(error.contains("not a valid branch name"), "{error}");
    }

    #[test]
    fn uncommitted_changes_and_empty_repositories_are_reported() {
        let dir = repo();
        std::fs::write(dir.path().join("sub/conf/a"), "edited\n").unwrap();
        std::fs::write(dir.path().join("untracked"), "u\n").unwrap();
        let repo = Repo::open(dir.path()).unwrap();
        assert_eq!(repo.uncommitted().unwrap(), ["sub/conf/a"]);

        let empty = tempfile::tempdir().unwrap();
        git(empty.path(), &["init", "--quiet"]);
        let error = Repo::open(empty.path()).err().unwrap().to_string();
        assert!(error.contains("has no commit yet"), "{error}");
        let plain = tempfile::tempdir().unwrap();
        let error = format!("{:#}", Repo::open(plain.path()).err().unwrap());
        assert!(error.contains("is not a git work tree"), "{error}");
    }
}
