//! File utilities every part of the agent uses: crash-safe replacement of a file, the mapping
//! between paths inside the agent's root and paths on the host, and loading the baseline file
//! (the one load that `check`, the `baseline` commands and the daemon share).
//!
//! A leaf room: it imports nothing from the rest of the agent.

use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use driftwatch_proto::baseline::{self, FormatError, LoadedBaseline};
use driftwatch_proto::keys::{self, KeyError};

/// Replaces `path` with `bytes` crash-safely: a temp file in the same directory (created with
/// `mode`, filtered by the umask like any new file, so the data is never readable more widely),
/// written, fsynced, renamed over `path`, then the directory fsynced. A reader sees the old file
/// or the new one, never a torn one. The temp file is named `.NAME.XXXXXX.tmp` (a crash may
/// leave one behind) and removed on failure.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{}: not a file path", path.display())))?;
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Why a baseline file cannot be used. Each names the file it concerns; the message of its
/// source follows (`{:#}`: "refusing baseline /x.dwb: …").
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot read baseline {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing baseline {}", path.display())]
    Refused {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    #[error("cannot read public key {}", path.display())]
    ReadKey {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("public key {}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    /// Unsigned, or signed by another key than the trusted one.
    #[error("{}", path.display())]
    Signer {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
}

/// Reads and decodes a baseline file; with a trusted public key (PEM, or 64 hex digits),
/// refuses it unless it is signed by that key. `check`, the `baseline` commands and the
/// daemon (start-up, SIGHUP, `validate`) all load baselines here.
pub fn load_baseline(
    path: &Path,
    public_key: Option<&Path>,
) -> Result<LoadedBaseline, BaselineError> {
    let bytes = std::fs::read(path).map_err(|source| BaselineError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let loaded = baseline::decode(&bytes).map_err(|source| BaselineError::Refused {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(key_path) = public_key {
        let key = load_public_key(key_path)?;
        loaded
            .verify_signer(&key)
            .map_err(|source| BaselineError::Signer {
                path: path.to_path_buf(),
                source,
            })?;
    }
    Ok(loaded)
}

fn load_public_key(path: &Path) -> Result<ed25519_dalek::VerifyingKey, BaselineError> {
    let text = std::fs::read_to_string(path).map_err(|source| BaselineError::ReadKey {
        path: path.to_path_buf(),
        source,
    })?;
    keys::verifying_key_from_text(&text).map_err(|source| BaselineError::Key {
        path: path.to_path_buf(),
        source,
    })
}

/// Maps a path inside the root to the host path.
pub fn host_path(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(rel) if rel.as_os_str().is_empty() => root.to_path_buf(),
        Ok(rel) => root.join(rel),
        Err(_) => root.join(path),
    }
}

/// Maps a host path under `root` to the path inside the root.
pub fn root_path(root: &Path, host: &Path) -> PathBuf {
    match host.strip_prefix(root) {
        Ok(rel) => Path::new("/").join(rel),
        Err(_) => host.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn replaces_the_file_with_its_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        write_atomically(&path, b"one", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(mode(&path), 0o600);
        // Replacing takes the new file's mode, and the content is whole.
        write_atomically(&path, b"two, longer", 0o640).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two, longer");
        assert_eq!(mode(&path), 0o640 & !umask());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["ledger.json"]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), "x").unwrap();
        // Renaming a file over a non-empty directory fails.
        assert!(write_atomically(&path, b"new", 0o600).is_err());
        assert!(path.join("inside").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_atomically(Path::new("/"), b"x", 0o600).is_err());
    }

    /// This process's umask (read without changing it, from /proc).
    fn umask() -> u32 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
            .unwrap()
    }

    #[test]
    fn root_paths_map_both_ways() {
        let root = Path::new("/srv/image");
        assert_eq!(
            host_path(root, Path::new("/etc/ssh")),
            Path::new("/srv/image/etc/ssh")
        );
        assert_eq!(host_path(root, Path::new("/")), root);
        assert_eq!(
            root_path(root, Path::new("/srv/image/etc/ssh")),
            Path::new("/etc/ssh")
        );
        assert_eq!(
            root_path(root, Path::new("/elsewhere")),
            Path::new("/elsewhere")
        );
    }
}
